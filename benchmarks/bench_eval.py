"""A conditioned adapter's front evaluated the old way (one preference at a time) and the new way (preferences
batched together, finished rows leaving the decode batch), at the same prompts, tokens and seeds.

    .venv/bin/python benchmarks/bench_eval.py [--model smollm2-135m] [--adapter DIR] [--prompts 128] [--tokens 128]
        [--rounds 3] [--rows 64] [--threads 2]

Arms, interleaved (round-robin, the order alternating between rounds) in one process on one loaded model:

- ``old``: ``pama.evaluate.evaluate_at`` at each preference of ``pareto.conditioned_grid`` (11 for two objectives),
  one after another, finished rows staying in the decode batch (``sampling.compaction(False)``): the sweep's
  evaluation before session 8.
- ``old+compact`` (``--arms`` to include it): the same with finished rows leaving the batch, to split the gain.
- ``new``: ``pama.evaluate.evaluate_at_many`` over the whole grid, ``--rows`` rows per decode batch (default
  ``eval_rows()``): what ``pama.sweep`` runs now.

The adapter: ``--adapter`` (a conditioned adapter folder, e.g. demo/conditioned/adapters/<run>), else the shipped
conditioned demo's when ``--model smollm2-135m``, else a random svd-conditioned LoRA (q/v, r = 4 + 2) on the model.
Per arm: the median wall and CPU seconds over the rounds and the ratio old / arm. Agreement: for every preference and
objective the new mean lies inside the old 95% interval (and the reverse), with the share of identical responses.
Writes benchmarks/results/eval[-<model>].csv and .md.
"""
from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("PAMA_OMP_WAIT", "default")  # as in a sweep process

from common import ROOT, header, markdown_table, median, write_csv, write_text  # noqa: E402

OBJECTIVES = ["informativeness", "conciseness"]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _load(args):
    """(model, tokenizer, adapter name, objectives, where the adapter came from)."""
    import copy

    import torch

    from pama import adapters as adp
    from pama import conditioning as cond
    from pama import models

    folder = Path(args.adapter) if args.adapter else None
    if folder is None and args.model == models.DEFAULT_MODEL:
        found = sorted((ROOT / "demo" / "conditioned" / "adapters").glob("*/conditioning.json"))
        folder = found[0].parent if found else None
    base, tok = models.load(args.model)
    if folder is not None:
        model = adp.load_adapters(base, {"conditioned": folder})
        info = cond.load_gates(model, folder, adapter="conditioned")
        adp.mix(model, {"conditioned": 1.0})
        return model.eval(), tok, "conditioned", list(info.objectives), str(folder)
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4 + len(OBJECTIVES), lora_alpha=8, lora_dropout=0.0,
                                                           target_modules=["q_proj", "v_proj"],
                                                           task_type="CAUSAL_LM"))
    cond.attach_gates(model, len(OBJECTIVES), objectives=OBJECTIVES, model_spec=args.model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval(), tok, "default", list(OBJECTIVES), "random svd-conditioned LoRA (seed 0)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--adapter", default=None, help="a conditioned adapter folder (default: see above)")
    ap.add_argument("--prompts", type=int, default=128, help="held-out prompts per preference (the sweep's default)")
    ap.add_argument("--tokens", type=int, default=128, help="max new tokens per response")
    ap.add_argument("--points", type=int, default=0, help="a sweep's points (conditioned_grid: 11 for two objectives)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=None, help="rows per decode batch of the new way (eval_rows())")
    ap.add_argument("--batch", type=int, default=32, help="the seed batch (pama.evaluate.EVAL_BATCH)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arms", default="old,new", help="comma-separated: old, old+compact, new")
    args = ap.parse_args()

    import torch

    from pama import sampling
    from pama.evaluate import eval_rows, evaluate_at, evaluate_at_many
    from pama.pareto import conditioned_grid
    from pama.prompts import load_prompts

    torch.set_num_threads(args.threads)
    model, tok, adapter, objectives, source = _load(args)
    prompts = load_prompts("builtin:heldout")[:args.prompts]
    grid = conditioned_grid(len(objectives), args.points)
    rows = args.rows or eval_rows()
    kw = dict(seed=args.seed, max_new_tokens=args.tokens, batch_size=args.batch, temperature=args.temperature)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]

    def run(arm: str):
        if arm == "new":
            return evaluate_at_many(model, tok, objectives, prompts, grid, adapter=adapter, rows=rows, **kw)
        with sampling.compaction(arm == "old+compact"):
            return [evaluate_at(model, tok, objectives, prompts, p, adapter=adapter, **kw) for p in grid]

    print(header("Conditioned evaluation: one preference at a time vs preferences batched", {
        "model": args.model, "adapter": source, "preferences": len(grid), "prompts": len(prompts),
        "max new tokens": args.tokens, "seed batch": args.batch, "rows per decode batch (new)": rows,
        "temperature": args.temperature, "rounds": args.rounds, "threads": args.threads}))
    times: dict[str, list[tuple[float, float]]] = {a: [] for a in arms}
    results: dict[str, list] = {}
    for r in range(args.rounds):
        order = arms if r % 2 == 0 else arms[::-1]
        for arm in order:
            w0, c0 = time.perf_counter(), _cpu()
            res = run(arm)
            times[arm].append((time.perf_counter() - w0, _cpu() - c0))
            results.setdefault(arm, res)   # every round draws the same (seeded): keep the first
            print(f"round {r + 1} {arm}: {times[arm][-1][0]:.1f} s wall", flush=True)

    old_wall = median([t[0] for t in times["old"]]) if "old" in times else None
    table = []
    for arm in arms:
        wall, cpu = median([t[0] for t in times[arm]]), median([t[1] for t in times[arm]])
        lengths = [n for res in results[arm] for n in res.lengths]
        table.append(dict(arm=arm, wall_s=round(wall, 2), cpu_s=round(cpu, 2),
                          ratio_old_over_arm=round(old_wall / wall, 2) if old_wall else "",
                          mean_length=round(sum(lengths) / len(lengths), 1),
                          rounds=" ".join(f"{t[0]:.1f}" for t in times[arm])))
    print("\n## Time for the whole front (median over rounds)\n")
    print(markdown_table(table))

    agree_rows, all_inside = [], True
    if "old" in results:
        for other in [a for a in arms if a != "old"]:
            for p, a, b in zip(grid, results["old"], results[other]):
                same = sum(x == y for x, y in zip(a.texts, b.texts)) / len(a.texts)
                for o in objectives:
                    (ma, la, ha), (mb, lb, hb) = a.values[o], b.values[o]
                    inside = la <= mb <= ha and lb <= ma <= hb
                    all_inside &= inside
                    agree_rows.append(dict(arm=other, preference="(" + ", ".join(f"{x:.2f}" for x in p) + ")",
                                           objective=o, old=f"{ma:.4f} [{la:.4f}, {ha:.4f}]",
                                           new=f"{mb:.4f} [{lb:.4f}, {hb:.4f}]", within=inside,
                                           identical_texts=round(same, 3), kl_old=round(a.kl, 4),
                                           kl_new=round(b.kl, 4)))
        print("## Agreement with the old way (each mean inside the other's 95% interval)\n")
        print(markdown_table(agree_rows))
        print(f"every mean inside the other's interval: {'yes' if all_inside else 'NO'}")
    slug = "" if args.model == "smollm2-135m" else f"-{args.model}"
    write_csv(f"eval{slug}.csv", [dict(r, kind="time") for r in table] + [dict(r, kind="agreement")
                                                                         for r in agree_rows])
    write_text(f"eval{slug}.md", markdown_table(table) + "\n" + markdown_table(agree_rows))


if __name__ == "__main__":
    main()
