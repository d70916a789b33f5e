"""`worker`: serve the job queue (the runs and sweeps the app enqueues), a number of jobs at a time."""
from __future__ import annotations

import argparse

from .. import jobs


def register(sub, add) -> None:
    p = add("worker", run, "Take jobs (runs, sweeps) from the store's queue and run them, --slots at a time. The "
                           "app starts one local worker by itself; start more by hand (docs/deployment.md).")
    p.add_argument("--slots", type=int, default=None,
                   help="jobs run at once by this worker (default: the number of --gpus, else 1)")
    p.add_argument("--gpus", default="", metavar="0,1",
                   help="GPU ids: each job runs on one free GPU of these (CUDA_VISIBLE_DEVICES)")
    p.add_argument("--local", action="store_true",
                   help="the app's worker: exit at once if another local worker already serves the queue")
    p.add_argument("--lock-fd", type=int, default=None, help=argparse.SUPPRESS)  # set by the app's starter
    p.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                   help="exit after this long with nothing queued or running (default: never)")


def run(args) -> int:
    if args.slots is not None and args.slots < 1:
        print("--slots must be at least 1")
        return 2
    try:
        return jobs.run_worker(args.db, slots=args.slots, local=args.local, idle_exit_s=args.idle_exit,
                               lock_fd=args.lock_fd, gpus=args.gpus.split(","))
    except jobs.JobError as err:
        print(err)
        return 1
