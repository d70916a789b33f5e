"""The stability curve of one recipe: the separation of its two ends against training steps, raw and
length-controlled, gathered from the records that measured it (no training here).

    .venv/bin/python benchmarks/stability_curve.py --tag complaints \
        --learnability benchmarks/results/learnability-s15-brief.jsonl \
        --front benchmarks/results/front-complaints-40.json benchmarks/results/front-complaints-80.json

Sources: ``--learnability`` rows of bench_learnability.py (each checkpoint it evaluated, e.g. 10 and 20 steps) and
``--front`` exports of a two-end sweep (``python -m pama front SWEEP --export json --out FILE.json``): its steps
are the sweep config's, its ends the points with preference (1, 0) and (0, 1) (two adapters, or one conditioned
adapter evaluated there), its length-controlled intervals the ones the sweep stored (pama.lengthcontrol). The
same recipe, prompts, seeds and evaluation must lie behind every source: this script only lines them up.

Writes benchmarks/results/stability-TAG.md (table) and .html (plotly: one line per objective, dashed =
length-controlled; the dotted line at 2 is where the 95% intervals stop overlapping).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_learnability import separation, summarise
from common import RESULTS, header, markdown_table, write_text


def front_row(data: dict, source: str) -> dict:
    """One curve row from a sweep's JSON export: the separation of each objective between the ends (1, 0), (0, 1):
    two adapters of a plain sweep, or one conditioned adapter's points at those preferences."""
    objs = data["sweep"]["objectives"]
    if len(objs) != 2:
        raise SystemExit(f"{source}: a curve needs a two-objective sweep, this one has {objs}")
    ends = {}
    for p in data["points"]:
        pref = p.get("preference")
        if p["kind"] in ("adapter", "conditioned") and pref in ([1.0, 0.0], [0.0, 1.0]):
            ends[0 if pref[0] == 1.0 else 1] = p
    if set(ends) != {0, 1}:
        raise SystemExit(f"{source}: no adapter or conditioned points at the ends (1, 0) and (0, 1)")

    def triple(p, o, lc=False):  # (mean, low, high): raw, or the stored length-controlled ones
        keys = ("lc_mean", "lc_low", "lc_high") if lc else ("mean", "ci_low", "ci_high")
        return tuple(p[f"{o}/{k}"] for k in keys)

    row = dict(source=source, steps=int(data["sweep"]["config"]["steps"]))
    for i, o in enumerate(objs):
        own, other = ends[i], ends[1 - i]
        row[f"sep {o}"] = round(separation(triple(own, o), triple(other, o)), 2)
        has_lc = own.get(f"{o}/lc_mean") is not None and other.get(f"{o}/lc_mean") is not None
        row[f"lc sep {o}"] = round(separation(triple(own, o, True), triple(other, o, True)), 2) if has_lc else None
    row.update(kl=f"{ends[0]['kl']:.1f} / {ends[1]['kl']:.1f}",
               eos=f"{ends[0]['eos_fraction']:.2f} / {ends[1]['eos_fraction']:.2f}",
               length=f"{ends[0]['mean_length']:.0f} / {ends[1]['mean_length']:.0f}")
    return row


def learnability_rows(path: Path) -> list[dict]:
    """Curve rows from bench_learnability.py's JSONL (one per evaluated checkpoint of each two-end run)."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for r in summarise(records):
        a, b = r["pair"].split(",")
        out.append({"source": path.name, "steps": r["steps"], f"sep {a}": r["sep 1st"], f"sep {b}": r["sep 2nd"],
                    f"lc sep {a}": r["lc sep 1st"], f"lc sep {b}": r["lc sep 2nd"], "kl": r["kl"], "eos": r["eos"],
                    "length": r["length"]})
    return out


def plot(rows: list[dict], objs: list[str], path: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for o in objs:
        for lc in (False, True):
            key = f"{'lc ' if lc else ''}sep {o}"
            pts = [(r["steps"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            fig.add_trace(go.Scatter(x=[0] + [x for x, _ in pts], y=[0] + [y for _, y in pts], mode="lines+markers",
                                     line_dash="dash" if lc else "solid",
                                     name=f"{o}{', length-controlled' if lc else ''}"))
    fig.add_hline(y=2, line_dash="dot", annotation_text="95% intervals stop overlapping")
    fig.update_layout(title="Separation of the two ends against training steps",
                      xaxis_title="PPO steps per end", yaxis_title="separation (units of the mean 95% half-width)")
    fig.write_html(path, include_plotlyjs="cdn")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--learnability", nargs="*", default=[], type=Path)
    ap.add_argument("--front", nargs="*", default=[], type=Path)
    ap.add_argument("--tag", required=True)
    args = ap.parse_args()
    rows = [r for p in args.learnability for r in learnability_rows(p)]
    rows += [front_row(json.loads(p.read_text()), p.name) for p in args.front]
    if not rows:
        raise SystemExit("nothing to draw: give --learnability JSONL files and/or --front JSON exports")
    rows.sort(key=lambda r: r["steps"])
    objs = [k[4:] for k in rows[0] if k.startswith("sep ")]
    stem = f"stability-{args.tag}"
    cols = ["steps"] + [f"sep {o}" for o in objs] + [f"lc sep {o}" for o in objs] + ["kl", "eos", "length", "source"]
    table = markdown_table([{c: r.get(c) for c in cols} for r in rows])
    write_text(f"{stem}.md", header("Stability curve: separation of the two ends against steps")
               + "\n" + table)
    plot(rows, objs, RESULTS / f"{stem}.html")
    print(table)


if __name__ == "__main__":
    main()
