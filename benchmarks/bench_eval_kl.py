"""The KL forwards of an adapter's evaluation: one forward over the batch's full width (before session 21) against
the shortest responses grouped and each group cut at its longest response (``evaluate_point(kl_rows=K)``).

    .venv/bin/python benchmarks/bench_eval_kl.py [--model smollm2-135m] [--adapter DIR] [--prompts 32] [--tokens 256]
        [--kl-rows 32,16,8,4] [--rounds 3] [--threads 2]

Per round the adapter writes one batch of responses (``models.generate`` with the evaluation's seed and temperature,
timed: the part no arm changes), then every arm computes the KL of those same responses (policy and reference
forwards, ``pama.evaluate._kl_rows``), in an order that alternates between rounds. ``kl_rows`` = the batch is the old
way (one group: the full width). Per arm: the median seconds of the KL forwards, of the whole evaluation batch
(generation + KL), the ratio against the old way, and the largest difference in any response's KL from the old way's
(float rounding only). The adapter: ``--adapter``, else demo/front's first adapter with the embedded model, else a
random LoRA on every linear layer. Writes benchmarks/results/eval-kl[-<model>].csv and .md.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from common import ROOT, header, markdown_table, median, write_csv, write_text


def _load(args):
    """(model with its adapter active, tokenizer, where the adapter came from)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from pama import adapters as adp
    from pama import models

    folder = Path(args.adapter) if args.adapter else None
    if folder is None and args.model == models.DEFAULT_MODEL:
        found = sorted((ROOT / "demo" / "front" / "adapters").glob("*/adapter_config.json"))
        folder = found[0].parent if found else None
    base, tok = models.load(args.model)
    if folder is not None:
        model = adp.load_adapters(base, {"point": folder})
        adp.mix(model, {"point": 1.0})
        return model.eval(), tok, str(folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder)
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                           task_type="CAUSAL_LM"))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
    return model.eval(), tok, "random LoRA r = 8 on every linear layer"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--prompts", type=int, default=32, help="one evaluation batch (EVAL_BATCH)")
    ap.add_argument("--prompt-set", default="builtin:premise-brief-heldout")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--kl-rows", default="32,16,8,4", help="arms; a value >= --prompts is the old full-width way")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from pama import evaluate as ev
    from pama import models
    from pama.logprobs import response_mask
    from pama.prompts import load_prompts

    torch.set_num_threads(args.threads)
    arms = [int(x) for x in args.kl_rows.split(",") if x.strip()]
    full = max(arms)
    model, tok, source = _load(args)
    prompts = load_prompts(args.prompt_set)[:args.prompts]
    eos = models.eos_ids(model, tok)
    print(header("Evaluation KL forwards: full width vs shortest responses grouped", {
        "model": args.model, "adapter": source, "prompts": f"{len(prompts)} of {args.prompt_set}",
        "max new tokens": args.tokens, "temperature": args.temperature, "rounds": args.rounds,
        "threads": args.threads, "arms (kl_rows)": arms}))

    gen_s: list[float] = []
    kl_s: dict[int, list[float]] = {k: [] for k in arms}
    diff: dict[int, float] = {k: 0.0 for k in arms}
    lengths: list[int] = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        _, enc, new = models.generate(model, tok, prompts, max_new_tokens=args.tokens, temperature=args.temperature,
                                      seed=1234 * 1000 + r, return_ids=True)
        gen_s.append(time.perf_counter() - t0)
        rmask = response_mask(new, eos).to(new.device)
        lengths += [int(x) for x in rmask.sum(1).tolist()]
        got = {}
        for k in (arms if r % 2 == 0 else arms[::-1]):
            t0 = time.perf_counter()
            got[k] = ev._kl_rows(model, enc, new, rmask, None, None, k, args.temperature)
            kl_s[k].append(time.perf_counter() - t0)
        for k in arms:
            diff[k] = max(diff[k], max(abs(a - b) for a, b in zip(got[k], got[full])))

    g = median(gen_s)
    rows = []
    for k in arms:
        kl = median(kl_s[k])
        rows.append({"kl_rows": k, "way": "old (full width)" if k == full else "grouped",
                     "kl_s": round(kl, 2), "generate_s": round(g, 2), "batch_s": round(g + kl, 2),
                     "kl_speedup": round(median(kl_s[full]) / kl, 2), "batch_speedup": round((g + median(kl_s[full]))
                                                                                           / (g + kl), 2),
                     "max_abs_kl_diff": f"{diff[k]:.2e}"})
    table = markdown_table(rows)
    lens = (f"responses: {len(lengths)}, mean length {sum(lengths) / len(lengths):.1f} tokens, "
            f"longest {max(lengths)}, at the limit {sum(n >= args.tokens for n in lengths)}")
    print(table + "\n" + lens)
    slug = "" if args.model == "smollm2-135m" else f"-{args.model.replace('/', '_')}"
    write_csv(f"eval-kl{slug}.csv", rows)
    write_text(f"eval-kl{slug}.md", header("Evaluation KL forwards", {"adapter": source}) + "\n" + table + "\n"
               + lens + "\n")


if __name__ == "__main__":
    main()
