"""`front`: show a sweep's Pareto front (optionally with exact adapter mixtures) and export it."""
from __future__ import annotations

from .. import report
from .. import sweep as sw
from ..fronts import format_table
from ..controlled import SUMMARY_KEY as LENGTH_CONTROL
from ..store import Store


def register(sub, add) -> None:
    p = add("front", run, "Show a sweep's Pareto front (optionally with exact adapter mixtures) and export it.")
    p.add_argument("sweep_id", nargs="?", default=None, help="the sweep (omit to list sweeps)")
    p.add_argument("--mixtures", type=int, default=0, metavar="K",
                   help="evaluate K exact mixtures between each pair of neighbouring front adapters")
    p.add_argument("--length-control", action="store_true",
                   help="(re)compute the length-controlled scores of every point from its stored generations (done "
                        "anyway when a point is added or the sweep has none yet) and print them; docs/fronts.md")
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
    rows, summary = sw.front(store, args.sweep_id, mixtures=args.mixtures, progress=not args.quiet,
                             length_control=args.length_control)
    print(format_table(rows, summary))
    print(length_control_text(rows, summary, table=args.length_control))
    if args.export:
        out = args.out or f"front-{args.sweep_id}.{args.export}"
        path = report.export(store, args.sweep_id, args.export, out, rows=rows, summary=summary)
        print(f"\nwrote {path}")
    return 0


def length_control_text(rows: list[dict], summary: dict, *, table: bool = False) -> str:
    """The front's length-control figures (share of each objective's spread that length explains, ρ with length,
    the warning) and, with ``table``, each point's controlled score; says how to compute them when absent."""
    lc = summary.get(LENGTH_CONTROL)
    if not lc:
        return ("\nlength control: not computed (no stored generations?); "
                "`python -m pama front SWEEP_ID --length-control`")
    objectives = summary["objectives"]
    lines = ["", "length control (docs/fronts.md): the share of the spread of the points' means that answer length",
             "explains, and Spearman ρ with length over every sample"]
    for o in objectives:
        share, rho = lc["share"].get(o), lc["rho"].get(o)
        what = "is length" if lc["is_length"].get(o) else ("-" if share is None else f"{share:.0%}")
        lines.append(f"  {o:<28} {what:>10}   ρ {'-' if rho is None else f'{rho:+.2f}'}")
    if lc.get("warning"):
        lines.append("WARNING: " + lc["warning"])
    if table:
        lines += ["", f"{'point':<13} " + " ".join(f"{(o + ' (length-controlled)')[:36]:>36}" for o in objectives)]
        for r in rows:
            cells = []
            for o in objectives:
                m, lo, hi = r.get(f"{o}/lc_mean"), r.get(f"{o}/lc_low"), r.get(f"{o}/lc_high")
                text = ("is length" if lc["is_length"].get(o) else "-") if m is None else f"{m:.3f} [{lo:.3f},{hi:.3f}]"
                cells.append(text.rjust(36))
            lines.append(f"{r['point_id']:<13} " + " ".join(cells))
    return "\n".join(lines)
