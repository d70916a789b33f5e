"""One rollout (8 prompts × 48 sampled tokens): transformers' ``generate`` against our decode loop and its parts.

    .venv/bin/python benchmarks/bench_rollout.py [--model smollm2-135m] [--rounds 8] [--dtype float32|bfloat16]

Variants, run interleaved (round-robin) in one process on the same LoRA-wrapped model (r=8, α=16, q/v) and
the same 8 builtin:train prompts per round: ``hf-generate`` (``model.generate(do_sample=True, top_k=0)``), ``ours``
(``pama.sampling.sample``: inverse-CDF draw, LoRA merged for the loop, large float32 matmuls through oneDNN, the
prompts' common prefix prefilled once, the KV cache written in place, the MLP's gate and up projections as one
matmul), and ``ours`` without one of them: ``ours-no-onednn``, ``ours-unmerged``, ``ours-no-shared-prefix``,
``ours-no-slab-cache`` (``PAMA_DECODE_SLAB=0``), ``ours-no-fused-mlp`` (``PAMA_FUSED_MLP=0``). Every variant is forced
to 48 tokens (``min_new_tokens`` / no EOS) so all do the same work. Medians of wall and CPU seconds; ratio = hf /
variant.

The memory-bandwidth bound (issue 24), measured in the same run: every round first times a read of a 2 GiB float32
buffer (``torch.sum`` at the same threads, far larger than the last-level cache) for this machine's read bandwidth
now, in bytes per wall second and per CPU-second (user + sys of this process, all threads). A decode step reads every
weight of every linear layer once (the merged LoRA layers' base weights, the k/v projections, the vocabulary head,
which is the tied embedding; counted from the model's own tensors, each once), so a rollout of T tokens cannot take
less than T × those bytes / bandwidth. "of bound" is that bound over the variant's time, round by round (median):
wall, and CPU-seconds beside it because the CPU may be shared (another process's load stretches wall time but not
the CPU time). ``matmuls-only`` times just those layers' matmuls at the batch's rows for T steps, as the decode runs
them (oneDNN, prepacked weights where the CPU packs them, the MLPs' gate and up stacked; the small layers through
``F.linear``): what the rest of the decode (attention, norms, rotary, sampling, Python) adds is the gap between it and
``ours``.
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


def weight_bytes(model) -> int:
    """Bytes of the weights one decode step reads: every linear layer's weight and bias (LoRA's own A/B excluded: the
    decode merges them into the base weights), each tensor once (a vocabulary head tied to the embedding is read as
    the head; the embedding lookup reads only the batch's rows, left out)."""
    import torch

    seen, total = set(), 0
    for name, mod in model.named_modules():
        if type(mod) is not torch.nn.Linear or ".lora_" in f".{name}":
            continue
        for t in (mod.weight, mod.bias):
            if t is not None and t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
    return total


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def read_bandwidth(buf) -> tuple[float, float]:
    """(bytes per wall second, bytes per CPU-second) of one ``buf.sum()``: a streaming read of the whole buffer."""
    c, t = cpu_seconds(), time.perf_counter()
    buf.sum()
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    nbytes = buf.numel() * buf.element_size()
    return nbytes / wall, nbytes / max(cpu, 1e-9)


def matmul_steps(model, rows: int, steps: int):
    """A callable timing only the decode step's linear layers (as ``sampling.onednn_linears(prepack=True)`` runs them)
    on random (rows, 1, in) inputs, ``steps`` times. Gated MLPs run as whole modules, so their gate and up projections
    go through the one stacked matmul the decode uses (``PAMA_FUSED_MLP``; their silu and product are 8 × 1536
    numbers)."""
    import torch

    from pama import sampling

    mlps = [m for m in model.modules() if all(hasattr(m, a) for a in ("gate_proj", "up_proj", "down_proj"))]
    in_mlp = {id(sampling._plain_linear(getattr(m, a))) for m in mlps for a in ("gate_proj", "up_proj", "down_proj")}
    layers = [m for n, m in model.named_modules() if type(m) is torch.nn.Linear and ".lora_" not in f".{n}"
              and id(m) not in in_mlp]
    calls = [(m, m.in_features) for m in layers] + [(m, sampling._plain_linear(m.gate_proj).in_features) for m in mlps]

    def run(r: int):
        with torch.inference_mode(), sampling.merged_lora(model), \
                sampling.onednn_linears(model, prepack=sampling.prepack_requested(), rows=rows):
            xs = {k: torch.randn(rows, 1, k, dtype=layers[0].weight.dtype) for k in {k for _, k in calls}}
            for _ in range(steps):
                for m, k in calls:
                    m(xs[k])
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--bandwidth-mib", type=int, default=2048,
                    help="size of the buffer whose read measures the bandwidth (far above the last-level cache)")
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

    def ours(r: int, *, onednn: bool = True, merge: bool = True, share: bool = True, off: str = ""):
        enc = batch(r)
        saved, saved_env = sampling.onednn_linears, os.environ.get(off)
        if not onednn:
            sampling.onednn_linears = lambda m, **kw: contextlib.nullcontext()
        if off:   # a default-on switch of the decode loop turned off for this call
            os.environ[off] = "0"
        try:
            return sampling.sample(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=T, eos_ids=set(),
                                   pad_id=tok.pad_token_id, temperature=1.0, seed=r, merge_lora=merge,
                                   share_prefix=share)
        finally:
            sampling.onednn_linears = saved
            if off and saved_env is None:
                os.environ.pop(off)
            elif off:
                os.environ[off] = saved_env

    def hf(r: int):
        with torch.no_grad():
            return model.generate(**batch(r), max_new_tokens=T, min_new_tokens=T, do_sample=True, top_k=0,
                                  temperature=1.0, pad_token_id=tok.pad_token_id)

    variants = {"hf-generate": hf, "ours": ours, "ours-no-onednn": lambda r: ours(r, onednn=False),
                "ours-unmerged": lambda r: ours(r, merge=False), "ours-no-shared-prefix": lambda r: ours(r, share=False),
                "ours-no-slab-cache": lambda r: ours(r, off="PAMA_DECODE_SLAB"),
                "ours-no-fused-mlp": lambda r: ours(r, off="PAMA_FUSED_MLP"),
                "matmuls-only": matmul_steps(model, B, T)}
    step_bytes = weight_bytes(model)
    buf = torch.ones(args.bandwidth_mib * 2**20 // 4)
    buf.sum()
    print(header("Rollout: transformers generate vs pama.sampling", {
        "model": args.model, "base weights": args.dtype, "rollout": f"{B} prompts × {T} tokens (forced)",
        "schedule": f"1 warm-up + {args.rounds} rounds, variants round-robin",
        "bytes read per decode step": f"{step_bytes / 1e6:.1f} MB (every linear layer's weights, each once)",
        "bandwidth probe": f"torch.sum over {args.bandwidth_mib} MiB float32, once per round before the variants"}),
        flush=True)
    rows = []
    for r in range(args.rounds + 1):
        bw_wall, bw_cpu = read_bandwidth(buf)
        bound_wall, bound_cpu = step_bytes * T / bw_wall, step_bytes * T / bw_cpu
        print(f"round {r} bandwidth: {bw_wall / 1e9:.1f} GB/s wall, {bw_cpu / 1e9:.1f} GB/s per CPU-second; bound "
              f"{bound_wall:.2f} s wall, {bound_cpu:.2f} CPU-s", flush=True)
        for name, fn in variants.items():
            c0 = resource.getrusage(resource.RUSAGE_SELF)
            t = time.perf_counter()
            fn(r)
            wall = time.perf_counter() - t
            c1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
            if r:
                rows.append({"variant": name, "round": r, "wall_s": wall, "cpu_s": cpu,
                             "bw_wall_gbs": bw_wall / 1e9, "bw_cpu_gbs": bw_cpu / 1e9, "bound_wall_s": bound_wall,
                             "bound_cpu_s": bound_cpu, "of_bound_wall": bound_wall / wall,
                             "of_bound_cpu": bound_cpu / max(cpu, 1e-9)})
            print(f"round {r} {name}: {wall:.2f} s", flush=True)
    med = {n: median([x["wall_s"] for x in rows if x["variant"] == n]) for n in variants}
    summary = [{"variant": n, "wall s (median)": med[n],
                "CPU s (median)": median([x["cpu_s"] for x in rows if x["variant"] == n]),
                "speed vs hf-generate": med["hf-generate"] / med[n],
                "of bound (wall)": median([x["of_bound_wall"] for x in rows if x["variant"] == n]),
                "of bound (CPU)": median([x["of_bound_cpu"] for x in rows if x["variant"] == n])} for n in variants]
    bws = [x for x in rows if x["variant"] == "ours"]
    bound = (f"Bound: {step_bytes / 1e6:.1f} MB × {T} steps at the measured read bandwidth (median of the rounds: "
             f"{median([x['bw_wall_gbs'] for x in bws]):.1f} GB/s wall, "
             f"{median([x['bw_cpu_gbs'] for x in bws]):.1f} GB/s per CPU-second) = "
             f"{median([x['bound_wall_s'] for x in bws]):.2f} s wall, "
             f"{median([x['bound_cpu_s'] for x in bws]):.2f} CPU-s. 'of bound' = bound / time, per round, median "
             "(1.0 = reading the weights at the probe's bandwidth and doing nothing else).\n")
    table = markdown_table(summary, list(summary[0])) + "\n" + bound
    print()
    print(table)
    suffix = ("" if args.model == "smollm2-135m" else f"-{args.model}") + \
             ("" if args.dtype == "float32" else f"-{args.dtype}")
    write_csv(f"rollout{suffix}.csv", rows, list(rows[0]))
    write_text(f"rollout{suffix}.md", header("Rollout: transformers generate vs pama.sampling",
                                             {"model": args.model, "base weights": args.dtype}) + "\n" + table)


if __name__ == "__main__":
    main()
