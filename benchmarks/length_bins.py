"""An objective's mean by answer length, for each evaluation a learnability run stored (docs/learnability.md §14).

    .venv/bin/python benchmarks/length_bins.py benchmarks/results/learnability-s15-eosmin.jsonl \
        [--objective sentiment] [--edges 30,60,120]

The length-controlled score (pama.lengthcontrol) says whether a trained end moved beyond what its answer lengths
explain; this table says where: the mean score of the answers in each word-count bin, beside the base model's
answers of the same length, so "the ended answers are less positive than the base's answers of that length" can be
read off directly. Prints a markdown table (mean (n) per bin, median words, share of answers of at most 15 words).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def bin_means(scores, words, edges) -> list[tuple[float, int]]:
    """(mean score, count) per bin [0, e1), [e1, e2), ..., [e_last, inf); an empty bin's mean is nan."""
    s, w = np.asarray(scores, dtype=float), np.asarray(words)
    bounds = [0, *edges, np.inf]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        m = (w >= lo) & (w < hi)
        out.append((float(s[m].mean()) if m.any() else float("nan"), int(m.sum())))
    return out


def evaluations(records: list[dict]):
    """(label, evaluation) for the base rows and every stored evaluation of every trained end, in file order."""
    for r in records:
        if r["kind"] == "base":
            yield f"base ({r['pair']})", r
        elif r["kind"] == "run":
            objs = r["pair"].split(",")
            for e in r["evals"]:
                yield f"{r['variant']}: {objs[r['end']]} end, {e.get('step', '?')} steps", e


def table(records: list[dict], objective: str, edges: list[int]) -> str:
    names = [f"< {edges[0]}"] + [f"{a}-{b - 1}" for a, b in zip(edges, edges[1:])] + [f"≥ {edges[-1]}"]
    lines = ["| | " + " | ".join(names) + " | median words | ≤ 15 words |", "|---" * (len(names) + 3) + "|"]
    for label, e in evaluations(records):
        if "scores" not in e:
            continue
        k = list(e["values"]).index(objective)
        w = np.asarray(e["words"])
        cells = [f"{m:.2f} ({n})" for m, n in bin_means(e["scores"][k], w, edges)]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {np.median(w):.0f} | {(w <= 15).mean():.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("jsonl", type=Path, help="a benchmarks/results/learnability-*.jsonl file")
    ap.add_argument("--objective", default=None, help="which objective (default: the pair's first)")
    ap.add_argument("--edges", default="30,60,120", help="word-count bin edges, comma-separated")
    args = ap.parse_args()
    records = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line.strip()]
    pair = records[0]["pair"].split(",")
    objective = args.objective or pair[0]
    if objective not in pair:
        raise SystemExit(f"--objective {objective!r} is not in this file's pair {pair}; choose one of them")
    print(f"{objective} by answer length (words), {args.jsonl}\n")
    print(table(records, objective, [int(x) for x in args.edges.split(",")]))


if __name__ == "__main__":
    main()
