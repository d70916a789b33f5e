"""`sweep`: train one adapter per preference of a simplex grid (or one conditioned adapter, `--conditioned`), evaluate
them and the base, record the front."""
from __future__ import annotations

import sys
import warnings

from .. import jobs
from .. import sweep as sw
from ..fronts import format_table, front_table
from ..config import CONDITIONED_PRESET, SweepConfig, add_dataclass_arguments, build
from ..store import Store
from ..trainer import RunCancelled
from .train import print_settings


def register(sub, add) -> None:
    p = add("sweep", run, "Train one adapter per preference of a simplex grid, evaluate them and the base "
                          "model, record the Pareto front (resumable). With --conditioned: train ONE "
                          "preference-conditioned adapter and evaluate it along a preference grid.")
    p.add_argument("--config", default=None, help="YAML file of SweepConfig fields (flags override it)")
    p.add_argument("--resume", default=None, metavar="SWEEP_ID",
                   help="continue a stopped sweep: skip finished points, resume unfinished runs, evaluate the rest")
    p.add_argument("--point", type=int, default=None, metavar="I",
                   help="with --resume: train grid point I only (0-based) and stop, no evaluation (the queue's "
                        "point jobs; docs/deployment.md)")
    p.add_argument("--sweep-name", default=None, help="name of the sweep (default: method, size, objectives)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--enqueue", action="store_true",
                   help="put the sweep in the store's job queue (one job per point, then its evaluation) and return "
                        "at once; workers train it (`python -m pama worker`, docs/deployment.md)")
    add_dataclass_arguments(p, SweepConfig)


def run(args) -> int:
    store = Store(args.db)
    if args.resume:
        print(f"sweep id: {args.resume} (resuming)", flush=True)
        sweep_id = sw.run_sweep(None, store, sweep_id=args.resume, progress=not args.quiet, point=args.point)
        if args.point is not None:
            print(f"point {args.point} of sweep {sweep_id} trained", flush=True)
            return 0
    else:
        if args.point is not None:
            print("--point needs --resume SWEEP_ID (a point of an existing sweep)", file=sys.stderr)
            return 2
        if getattr(args, "conditioned", None) and args.config is None and getattr(args, "preset", None) is None:
            args.preset = CONDITIONED_PRESET   # flags still win; `--preset ''` trains from the plain defaults
            print(f"--conditioned without --config or --preset: the {CONDITIONED_PRESET} preset (docs/fronts.md)",
                  flush=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cfg = build(SweepConfig, args, args.config).validate()  # refuses a preference: the grid sets each run's
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        print_settings(cfg)
        if args.enqueue:
            job = jobs.start_sweep(cfg, store=store, name=args.sweep_name)
            print(f"sweep id: {job.id} (queued: {len(store.list_jobs(target_id=job.id)) - 1} point job(s) and its "
                  f"evaluation; the Queue page or `python -m pama front {job.id}` follows it)")
            return 0
        sweep_id = None
        try:
            sweep_id = sw.run_sweep(cfg, store, progress=not args.quiet, name=args.sweep_name)
        except RunCancelled:
            print("sweep cancelled; resume it with `python -m pama sweep --resume <sweep id>` (see `front`)",
                  file=sys.stderr)
            return 1
    rows, summary = front_table(store, sweep_id)
    print(format_table(rows, summary))
    print(f"\nsweep id: {sweep_id}")
    return 0
