"""The two ends of a trade-off beside the base model, from stored points that need not share a sweep or a store:
raw and length-controlled scores with 95% intervals, tokens, KL, EOS, and the ends' separations (in pooled 95%
half-widths; above 2 the intervals do not overlap). For ends evaluated one by one with ``python -m pama evaluate``
(a conditioned run at ``--preference 1,0`` and ``0,1``, or two single runs), without assembling a sweep.

    .venv/bin/python benchmarks/ends_table.py BASE_DB:POINT END1_DB:POINT END2_DB:POINT [--out NAME.md]

DB is a SQLAlchemy URL or a path to a SQLite file; END1 is the first objective's end, END2 the second's. The length
control pools the three points' answers with the base as reference (``pama.lengthcontrol.control_front``), as a
sweep of those three points would (``pama.controlled``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench_learnability import separation
from common import header, markdown_table, write_text

from pama import controlled as C
from pama import lengthcontrol as LC
from pama.store import Store


def _store(db: str) -> Store:
    return Store(db if "://" in db else f"sqlite:///{Path(db).resolve()}", create=False)


def load(specs: list[str]) -> tuple[list[dict], dict, list[str]]:
    """(points, samples, objectives) for DB:POINT specs: each point renamed to its position so that the same id in
    two stores stays two points; the objectives are the ones every point has, in the first end's run's order."""
    stores, points = [], []
    for i, spec in enumerate(specs):
        db, _, pid = spec.rpartition(":")
        stores.append((_store(db), pid))
        p = stores[-1][0].get_point(pid)
        if p is None:
            raise SystemExit(f"no point {pid!r} in {db}")
        points.append(dict(p, id=str(i)))
    run = stores[1][0].get_run(points[1]["run_id"]) if points[1].get("run_id") else None
    order = [o["name"] for o in run["objectives"]] if run else sorted(points[1]["values"])
    objectives = [o for o in order if all(o in p["values"] for p in points)]
    samples = {}
    for i, (store, pid) in enumerate(stores):
        got = C.samples_of(store, [pid], objectives)
        if pid in got:
            samples[str(i)] = got[pid]
    return points, samples, objectives


def ends_table(points: list[dict], samples: dict, objectives: list[str]) -> tuple[list[dict], dict]:
    """Rows (base, end 1, end 2) and per objective its raw and length-controlled separation (own end minus the
    other) and the share of the ends' spread length explains."""
    if len(points) != 3 or len(objectives) != 2:
        raise SystemExit("ends_table needs the base and two ends, on two objectives")
    cf = LC.control_front(samples, objectives, C.is_length(objectives), base=points[0]["id"])

    def raw(p, o):
        v = p["values"][o]
        return (v["mean"], v["ci_low"], v["ci_high"])

    def lc(p, o):
        return (cf.values.get(p["id"]) or {}).get(o)

    rows = []
    for p, name in zip(points, ("base", "end 1", "end 2")):
        row = {"point": f"{name} {p.get('preference') or ''}".strip()}
        for o in objectives:
            m, lo, hi = raw(p, o)
            row[o] = f"{m:.3f} [{lo:.3f}, {hi:.3f}]"
            c = lc(p, o)
            row[f"{o}, lc"] = "-" if c is None else f"{c[0]:.3f} [{c[1]:.3f}, {c[2]:.3f}]"
        row.update(tokens=round(p["mean_length"] or 0), kl=round(p["kl"] or 0.0, 2), eos=round(p["eos_fraction"] or 0, 2))
        rows.append(row)
    seps = {}
    for j, o in enumerate(objectives):
        own, other = points[1 + j], points[2 - j]
        c_own, c_other = lc(own, o), lc(other, o)
        seps[o] = dict(raw=round(separation(raw(own, o), raw(other, o)), 2),
                       lc=None if c_own is None or c_other is None else round(separation(c_own, c_other), 2),
                       length_share=round(cf.share[o], 2))
    return rows, seps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs=3, metavar="DB:POINT", help="the base, the first objective's end, the second's")
    ap.add_argument("--out", default=None, metavar="NAME.md", help="also write the table to benchmarks/results/NAME.md")
    args = ap.parse_args()
    points, samples, objectives = load(args.specs)
    rows, seps = ends_table(points, samples, objectives)
    sep_rows = [dict(objective=o, **s) for o, s in seps.items()]
    text = "\n".join([header("The ends beside the base model"), "", markdown_table(rows), "", markdown_table(sep_rows), ""])
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
