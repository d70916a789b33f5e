"""Time each built-in objective on 64 realistic responses (~48 tokens each).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_objectives.py [--repeats 7] [--n 64]

Prints a markdown table (median / min seconds per batch of 64, after a warm-up call that loads any model; the
load time is reported separately) with the machine, and writes benchmarks/results/objectives.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pama import objectives as O  # noqa: E402

PROMPTS = [
    "Write a short review of a coffee shop you visited.",
    "Explain how vaccines train the immune system.",
    "Give me advice on preparing for a job interview.",
    "Tell a short story about a lighthouse keeper.",
    "What are the pros and cons of remote work?",
    "Describe your ideal weekend.",
    "How does a refrigerator keep food cold?",
    "Write a review of a disappointing movie.",
]

SENTENCES = [
    "I really enjoyed the experience and would happily recommend it to my friends.",
    "The staff were friendly, but the wait was far too long for a simple order.",
    "Vaccines expose the body to a harmless piece of a germ so it learns to fight it.",
    "Practice common questions out loud and research the company before you go.",
    "The keeper climbed the stairs every night to light the lamp for passing ships.",
    "Remote work saves commuting time, although some people feel isolated at home.",
    "A refrigerator moves heat from inside the box to the coils at the back.",
    "Honestly, the plot was predictable and the ending felt rushed and disappointing.",
    "Overall, it is a decent option if you are nearby and not in a hurry.",
    "Sleep well the night before and bring a copy of your resume.",
]


def responses(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n prompt/response pairs; each response is 2-3 sentences, about 48 tokens."""
    rng = random.Random(seed)
    ps, rs = [], []
    for i in range(n):
        ps.append(PROMPTS[i % len(PROMPTS)])
        rs.append(" ".join(rng.sample(SENTENCES, 3)))
    return ps, rs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "objectives.csv"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    prompts, resp = responses(args.n)
    tokens = O.token_count(resp)
    names = O.available() + ["length:unit=words", "length:unit=tokens"]
    rows = []
    for name in names:
        t0 = time.perf_counter()
        obj = O.get(name)
        obj.score(prompts[:2], resp[:2])  # warm-up: loads lazily-loaded models
        load = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            obj.score(prompts, resp)
            times.append(time.perf_counter() - t)
        rows.append({
            "objective": name,
            "n": args.n,
            "median_s": round(statistics.median(times), 5),
            "min_s": round(min(times), 5),
            "per_response_ms": round(1000 * statistics.median(times) / args.n, 3),
            "first_call_s": round(load, 3),
        })

    from common import header

    print(header("Objective scoring speed"))
    print(f"Batch: {args.n} responses, mean {sum(tokens) / len(tokens):.1f} WordPiece tokens, "
          f"{args.repeats} repeats after a warm-up\n")
    print("| objective | median s / 64 | min s | ms / response | first call (load) s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['objective']} | {r['median_s']:.4f} | {r['min_s']:.4f} | {r['per_response_ms']:.3f} | "
              f"{r['first_call_s']:.2f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) + ["machine", "torch_threads"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "machine": f"{platform.machine()} x{os.cpu_count()}",
                        "torch_threads": torch.get_num_threads()})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
