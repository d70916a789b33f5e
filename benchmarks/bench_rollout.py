"""One rollout (8 prompts × 48 sampled tokens): transformers' ``generate`` against our decode loop and its parts.

    .venv/bin/python benchmarks/bench_rollout.py [--model smollm2-135m] [--rounds 8] [--dtype float32|bfloat16]

Variants, run interleaved (round-robin) in one process on the same LoRA-wrapped model (r=8, α=16, q/v) and
the same 8 builtin:train prompts per round: ``hf-generate`` (``model.generate(do_sample=True, top_k=0)``), ``ours``
(``pama.sampling.sample``: inverse-CDF draw, LoRA merged for the loop, large float32 matmuls through oneDNN, the
prompts' common prefix prefilled once), and ``ours`` without one of them: ``ours-no-onednn``, ``ours-unmerged``,
``ours-no-shared-prefix``. Every variant is forced to 48 tokens
(``min_new_tokens`` / no EOS) so all do the same work. Medians of wall and CPU seconds; ratio = hf / variant.
Writes benchmarks/results/rollout[-<model>][-<dtype>].csv and .md.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import resource
import time

os.environ.setdefault("PAMA_OMP_WAIT", "default")  # as in a training process

from common import header, markdown_table, median, write_csv, write_text  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model

    from pama import models, sampling
    from pama.prompts import load_prompts

    torch.set_num_threads(args.threads)
    model, tok = models.load(args.model, seed=0, dtype=getattr(torch, args.dtype))
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM")).eval()
    prompts = load_prompts("builtin:train")
    B, T = args.batch, args.tokens

    def batch(r: int) -> dict:
        start = (r * B) % max(1, len(prompts) - B)
        return models.encode(tok, prompts[start:start + B])

    def ours(r: int, *, onednn: bool = True, merge: bool = True, share: bool = True):
        enc = batch(r)
        saved = sampling.onednn_linears
        if not onednn:
            sampling.onednn_linears = lambda m, **kw: contextlib.nullcontext()
        try:
            return sampling.sample(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=T, eos_ids=set(),
                                   pad_id=tok.pad_token_id, temperature=1.0, seed=r, merge_lora=merge,
                                   share_prefix=share)
        finally:
            sampling.onednn_linears = saved

    def hf(r: int):
        with torch.no_grad():
            return model.generate(**batch(r), max_new_tokens=T, min_new_tokens=T, do_sample=True, top_k=0,
                                  temperature=1.0, pad_token_id=tok.pad_token_id)

    variants = {"hf-generate": hf, "ours": ours, "ours-no-onednn": lambda r: ours(r, onednn=False),
                "ours-unmerged": lambda r: ours(r, merge=False), "ours-no-shared-prefix": lambda r: ours(r, share=False)}
    print(header("Rollout: transformers generate vs pama.sampling", {
        "model": args.model, "base weights": args.dtype, "rollout": f"{B} prompts × {T} tokens (forced)",
        "schedule": f"1 warm-up + {args.rounds} rounds, variants round-robin"}), flush=True)
    rows = []
    for r in range(args.rounds + 1):
        for name, fn in variants.items():
            c0 = resource.getrusage(resource.RUSAGE_SELF)
            t = time.perf_counter()
            fn(r)
            wall = time.perf_counter() - t
            c1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
            if r:
                rows.append({"variant": name, "round": r, "wall_s": wall, "cpu_s": cpu})
            print(f"round {r} {name}: {wall:.2f} s", flush=True)
    med = {n: median([x["wall_s"] for x in rows if x["variant"] == n]) for n in variants}
    summary = [{"variant": n, "wall s (median)": med[n],
                "CPU s (median)": median([x["cpu_s"] for x in rows if x["variant"] == n]),
                "speed vs hf-generate": med["hf-generate"] / med[n]} for n in variants]
    table = markdown_table(summary, list(summary[0]))
    print()
    print(table)
    suffix = ("" if args.model == "smollm2-135m" else f"-{args.model}") + \
             ("" if args.dtype == "float32" else f"-{args.dtype}")
    write_csv(f"rollout{suffix}.csv", rows, ["variant", "round", "wall_s", "cpu_s"])
    write_text(f"rollout{suffix}.md", header("Rollout: transformers generate vs pama.sampling",
                                             {"model": args.model, "base weights": args.dtype}) + "\n" + table)


if __name__ == "__main__":
    main()
