"""The relevance objective's embedder: the hand-rolled mean-pooling all-MiniLM-L6-v2 (transformers' AutoModel, what
pama used before) vs sentence-transformers' SentenceTransformer on the same model folder (what pama uses now).

    nice -n 19 .venv/bin/python benchmarks/bench_embedder.py [--pairs 256] [--rounds 5] [--threads 2]

Both embed the same prompt/response pairs (the first ``--pairs`` built-in train prompts, responses of 1-6 sentences)
with the same batch size and torch thread count, after one warm-up call each; the two are timed alternately in each
round (which goes first alternates too), so load on the machine hits both alike. Reported: median and range of the
seconds to embed all prompts and responses, the ratio of medians and of each round, the load time, and how far the
two disagree: the largest |cos_hand - cos_st| over the pairs' cosine similarities (they must agree within 1e-4).
Writes benchmarks/results/embedder.csv and embedder.md.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import header, markdown_table, median, write_csv, write_text  # noqa: E402  (sets HF_HUB_OFFLINE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_objectives import SENTENCES  # noqa: E402  (the responses' sentences, as bench_objectives scores them)
from pama.objectives.builtin import _minilm_dir  # noqa: E402
from pama.prompts import load_prompts  # noqa: E402

TOLERANCE = 1e-4


class HandRolled:
    """pama's relevance embedder before sentence-transformers (kept here verbatim to measure against):
    AutoModel + mean pooling over the attention mask + L2 normalisation, inputs sorted by length."""

    def __init__(self, path: str):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        result = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for i in range(0, len(order), batch_size):
                idx = order[i: i + batch_size]
                batch = self.tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=256,
                                       return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                result[idx] = torch.nn.functional.normalize(emb, dim=-1).numpy()
        return result


class SentenceTransformers:
    """sentence-transformers on the same folder (its modules.json: Transformer → mean Pooling → Normalize), as
    pama.objectives.builtin loads it: local files only, CPU."""

    def __init__(self, path: str):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device="cpu", local_files_only=True)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                                 show_progress_bar=False)


def pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    prompts = load_prompts("builtin:train", limit=n)
    if len(prompts) < n:
        raise SystemExit(f"only {len(prompts)} built-in train prompts; ask for --pairs {len(prompts)} or fewer")
    rng = random.Random(seed)
    return prompts, [" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 6))) for _ in prompts]


def sharing() -> str:
    """Who else used the CPU at the start (the figures are only comparable within one run when it is shared)."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,ni,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[1:]
    except (OSError, subprocess.SubprocessError):
        return "unknown (no ps)"
    busy = [ln.split(None, 3) for ln in out if ln.split() and int(ln.split()[0]) != os.getpid()]
    busy = [f"pid {b[0]} nice {b[1]} {b[2]}% CPU: {b[3][:100]}" for b in busy if len(b) == 4 and float(b[2]) >= 20]
    return "; ".join(busy) or "no other process above 20% CPU"


def cosines(emb, prompts: list[str], responses: list[str], batch_size: int) -> np.ndarray:
    vecs = emb.encode(prompts + responses, batch_size=batch_size)
    return np.einsum("ij,ij->i", vecs[: len(prompts)], vecs[len(prompts):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load, busy = os.getloadavg(), sharing()
    path = str(_minilm_dir())
    prompts, responses = pairs(args.pairs)

    names = ("hand-rolled (AutoModel + mean pooling)", "sentence-transformers")
    embedders, load_s = {}, {}
    for name, cls in zip(names, (HandRolled, SentenceTransformers)):
        t = time.perf_counter()
        embedders[name] = cls(path)
        load_s[name] = time.perf_counter() - t
        cosines(embedders[name], prompts[:4], responses[:4], args.batch_size)  # warm-up
    times: dict[str, list[float]] = {n: [] for n in names}
    sims: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            sims[name] = cosines(embedders[name], prompts, responses, args.batch_size)
            times[name].append(time.perf_counter() - t)
    diff = float(np.max(np.abs(sims[names[0]] - sims[names[1]])))
    per_round = [b / a for a, b in zip(times[names[0]], times[names[1]])]

    rows = [dict(embedder=n, median_s=median(times[n]), min_s=min(times[n]), max_s=max(times[n]),
                 ms_per_text=1000 * median(times[n]) / (2 * args.pairs), load_s=load_s[n]) for n in names]
    text = header("Relevance embedder: hand-rolled mean pooling vs sentence-transformers",
                  {"model": f"all-MiniLM-L6-v2 from {path}", "pairs": f"{args.pairs} (so {2 * args.pairs} texts "
                   f"per round), batch {args.batch_size}, {args.rounds} rounds after a warm-up",
                   "niceness of this process": os.nice(0), "load average (1, 5, 15 min) at the start": load,
                   "other processes using the CPU at the start": busy})
    text += "\n" + markdown_table(rows, ["embedder", "median_s", "min_s", "max_s", "ms_per_text", "load_s"])
    text += (f"\nsentence-transformers / hand-rolled: ratio of medians {rows[1]['median_s'] / rows[0]['median_s']:.3f}"
             f", per round median {median(per_round):.3f} (range {min(per_round):.3f}-{max(per_round):.3f})\n"
             + "".join(f"seconds per round, {n}: " + ", ".join(f"{t:.2f}" for t in times[n]) + "\n" for n in names)
             + f"largest |cos_hand - cos_st| over {args.pairs} pairs: {diff:.2e} "
             f"({'within' if diff <= TOLERANCE else 'OUTSIDE'} {TOLERANCE:g})\n"
             f"load average at the end: {os.getloadavg()}\n")
    print(text)
    write_csv("embedder.csv", [dict(r, max_abs_cos_diff=diff) for r in rows])
    write_text("embedder.md", text)
    if diff > TOLERANCE:
        raise SystemExit(f"the embedders disagree: {diff:.2e} > {TOLERANCE:g}")


if __name__ == "__main__":
    main()
