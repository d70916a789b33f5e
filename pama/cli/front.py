"""`front`: show a sweep's Pareto front (optionally with exact adapter mixtures) and export it."""
from __future__ import annotations

from .. import report
from .. import sweep as sw
from ..store import Store


def register(sub, add) -> None:
    p = add("front", run, "Show a sweep's Pareto front (optionally with exact adapter mixtures) and export it.")
    p.add_argument("sweep_id", nargs="?", default=None, help="the sweep (omit to list sweeps)")
    p.add_argument("--mixtures", type=int, default=0, metavar="K",
                   help="evaluate K exact mixtures between each pair of neighbouring front adapters")
    p.add_argument("--export", choices=["csv", "json", "html"], default=None, help="write the front to a file")
    p.add_argument("--out", default=None, help="export path (default: front-<sweep id>.<format>)")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    store = Store(args.db)
    if not args.sweep_id:
        sweeps = store.sweep_records()
        if not sweeps:
            print("no sweeps yet: start one with `python -m pama sweep --points 5 --steps 20`")
            return 0
        for s in sweeps:
            hv = s.summary.get("hypervolume")
            print(f"{s.id:<13} {s.status:<9} {s.method:<7} {'/'.join(s.objectives):<28} "
                  f"{'' if hv is None else f'HV {hv:.4f}  '}{s.name}")
        return 0
    rows, summary = sw.front(store, args.sweep_id, mixtures=args.mixtures, progress=not args.quiet)
    print(sw.format_table(rows, summary))
    if args.export:
        out = args.out or f"front-{args.sweep_id}.{args.export}"
        path = report.export(store, args.sweep_id, args.export, out, rows=rows, summary=summary)
        print(f"\nwrote {path}")
    return 0
