"""`train`: train one LoRA adapter (PAMA, MORLHF, MGDA or TRL's GRPO); prints the run id first."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings

from .. import runs, trainer, trl_grpo
from ..livefront import run_callbacks
from ..config import ConfigError, TrainConfig, add_dataclass_arguments, build, describe_preset, from_dict
from ..store import Store


def register(sub, add) -> None:
    p = add("train", run, "Train one LoRA adapter (PAMA, MORLHF, MGDA, or TRL's GRPO: --method trl-grpo); "
                          "prints the run id first. --preset paper-exp1: the paper's first experiment.")
    p.add_argument("--config", default=None, help="YAML file of TrainConfig fields (flags override it)")
    p.add_argument("--resume", default=None, metavar="RUN_ID", help="continue a stopped run from its checkpoint")
    p.add_argument("--run-id", default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataclass_arguments(p, TrainConfig)


def run(args) -> int:
    store = Store(args.db) if _is_main_process() else None
    if args.resume:
        steps = None
        if args.steps is not None:
            try:
                steps = int(args.steps)
            except ValueError:
                raise ConfigError(f"--steps must be an integer, not {args.steps!r}") from None
        if _is_main_process():
            print(f"run id: {args.resume} (resuming)", flush=True)
        _install_sigterm()
        try:
            reader = store if store is not None else Store(args.db, create=False)
            trainer.resume(args.resume, reader, steps=steps, progress=not args.quiet,
                           callbacks=lambda cfg: run_callbacks(cfg, store))
        except trainer.RunCancelled:
            print(f"run {args.resume} cancelled; resume with `python -m pama train --resume {args.resume}`",
                  file=sys.stderr)
            return 1
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.run_id and args.config is None:
            # a queued run (pama.jobs): its config is the one stored with its row, so a worker on any machine that
            # reaches the store can start it
            row = (store or Store(args.db, create=False)).require_run(args.run_id)
            cfg = from_dict(TrainConfig, row["config"], source=f"run {args.run_id}", stored=True).validate()
        else:
            cfg = build(TrainConfig, args, args.config).validate()
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print_settings(cfg)
    run_id = args.run_id  # given when the row was created by the starter (pama.jobs), as sweeps pass theirs
    if store is not None and run_id is None:
        runs.preflight(cfg)  # bad prompts or an unknown model are refused before the run record exists
        # create the record up front so that the id is printed before the (slow) model load
        run_id = runs.create_run_record(store, cfg)
    if _is_main_process() and args.run_id is None:  # a starter that passed the id wrote this line already
        print(f"run id: {run_id}", flush=True)
    _install_sigterm()
    try:
        # the store's writer (main process only) and the live front, passed explicitly: the trainer needs neither
        trainer.train(cfg, run_id=run_id, progress=not args.quiet, callbacks=run_callbacks(cfg, store))
    except trainer.RunCancelled:
        if _is_main_process():  # the other processes of a multi-process run do not know the id
            print(f"run {run_id} cancelled; resume with `python -m pama train --resume {run_id}`", file=sys.stderr)
        return 1
    except Exception as err:
        # a failure before the first step (model load, adapter setup) must not leave the run 'queued' forever
        if store is not None:
            with contextlib.suppress(Exception):
                run = store.get_run(run_id)
                if run and run["status"] == "queued":
                    store.set_status(run_id, "failed", error=f"{type(err).__name__}: {err}")
        raise
    return 0


def print_settings(cfg) -> None:
    """A preset's settings (the stored config keeps ``preset`` and every value) and what trl-grpo does not use."""
    if not _is_main_process():
        return
    if cfg.preset:
        print(describe_preset(cfg), flush=True)
    if cfg.method == "trl-grpo":
        for line in trl_grpo.unsupported(cfg):
            print(f"note (trl-grpo): {line}", file=sys.stderr)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _install_sigterm() -> None:
    """SIGTERM (cancel from the app, docker stop) ends the step loop like Ctrl-C: status 'cancelled', no traceback."""
    def handler(signum, frame):
        raise KeyboardInterrupt()

    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, handler)
