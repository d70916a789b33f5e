"""Time to obtain the objective weights for one step: PAMA's closed form vs MGDA's gradient min-norm.

    .venv/bin/python benchmarks/bench_weights.py [--model smollm2-135m|tiny-random] [--objectives 2,3,5,10]
                                                [--repeats 5] [--pama-repeats 300] [--threads 2]

Setting (the trainer's): the embedded model with a LoRA r=8 (alpha 16) on q_proj/v_proj, a batch of 8 builtin:train
prompts with 48 sampled response tokens each. One forward with gradients gives the response log-probs (shared by
both methods and NOT timed). Per-token advantages for n objectives are built the trainer's way from synthetic
sequence rewards (KL-shaped token rewards → GAE → per-objective whitening → Noon); the weight step does not depend
on which objectives produced them, which is what lets n go to 10.

- PAMA: ``algorithm.pama_combine(adv, preference, anchor=0.5)`` on the (n, 8, 48) advantages.
- MGDA: exactly the trainer's path: n clipped PPO losses (one per objective) from the shared forward, then
  ``trainer.mgda_loss_weights``: n backward passes over the LoRA parameters with ``retain_graph``, flattening into
  the (n, d) gradient matrix, the Gram matrix and the min-norm solve. ``solve only`` times the min-norm solve on the
  n×n Gram matrix alone (``algorithm.mgda_weights`` on an n×n factor of it, so no d-sized work is left).

Medians (and IQR) over repeats; the ratio is MGDA / PAMA, both measured in this run. Writes
benchmarks/results/weights[-<model>].csv and .md.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("PAMA_OMP_WAIT", "default")  # the weight step is part of training: time it as `pama train` runs

from common import header, iqr, markdown_table, median, write_csv, write_text  # noqa: E402

import torch  # noqa: E402  (after common: the OpenMP wait policy is decided there)


def build(model_spec: str, threads: int, batch: int, tokens: int, seed: int = 0):
    from peft import LoraConfig, get_peft_model

    from pama import models
    from pama.prompts import load_prompts
    from pama.trainer import response_mask

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model, tok = models.load(model_spec, seed=seed)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    prompts = load_prompts("builtin:train")[:batch]
    # real samples of the policy, forced to the full length (no early EOS) so that every row has `tokens` tokens
    texts, enc, new = models.generate(model, tok, prompts, max_new_tokens=tokens, temperature=1.0, seed=seed,
                                      return_ids=True)
    if new.shape[1] < tokens:  # every row stopped early: pad with EOS (masked out below)
        pad = torch.full((new.shape[0], tokens - new.shape[1]), tok.eos_token_id, dtype=new.dtype)
        new = torch.cat([new, pad], 1)
    eos = {tok.eos_token_id, tok.pad_token_id} - {None}
    rmask = response_mask(new, eos)
    input_ids = torch.cat([enc["input_ids"], new], 1)
    attn = torch.cat([enc["attention_mask"], rmask.long()], 1)
    return model, tok, input_ids, attn, rmask, enc["input_ids"].shape[1]


def advantages(n: int, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
    """(n, B, T) Noon advantages, the trainer's way, from synthetic sequence rewards of n objectives."""
    from pama import algorithm as alg

    g = torch.Generator().manual_seed(seed)
    B, T = mask.shape
    scores = torch.randn(n, B, generator=g)
    kl = (logp - ref_logp) * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards = (-0.2 * kl).unsqueeze(0).repeat(n, 1, 1)
    rewards[:, torch.arange(B), last] += scores
    values = 0.1 * torch.randn(n, B, T, generator=g)
    adv, _ = alg.gae(rewards, values, mask.unsqueeze(0).expand(n, B, T), 1.0, 0.95)
    adv = alg.whiten(adv, mask.unsqueeze(0).expand_as(adv))
    return alg.noon(adv) * mask


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--objectives", default="2,3,5,10", help="numbers of objectives n")
    ap.add_argument("--repeats", type=int, default=5, help="MGDA repeats per n (each: n backward passes)")
    ap.add_argument("--pama-repeats", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--anchor", type=float, default=0.5)
    args = ap.parse_args()
    ns = [int(x) for x in args.objectives.split(",")]

    from pama import algorithm as alg
    from pama.sampling import onednn_linears
    from pama.trainer import mgda_loss_weights, seq_logprobs_and_hidden

    model, tok, ids, attn, mask, qlen = build(args.model, args.threads, args.batch, args.tokens)
    params = [p for p in model.parameters() if p.requires_grad]
    d = sum(p.numel() for p in params)
    print(header("Objective weights per step: PAMA closed form vs MGDA min-norm",
                 {"model": args.model, "LoRA": f"r=8 alpha=16 q_proj,v_proj ({d:,} trainable parameters)",
                  "batch": f"{args.batch} × {ids.shape[1] - qlen} response tokens ({int(mask.sum())} unmasked), "
                           f"prompt length {qlen}",
                  "repeats": f"MGDA {args.repeats} per n, PAMA {args.pama_repeats} per n (medians)"}))
    model.train()
    with torch.no_grad(), model.disable_adapter(), onednn_linears(model):
        ref_logp, _ = seq_logprobs_and_hidden(model, ids, attn, qlen, hidden=False)
    t = time.perf_counter()
    with onednn_linears(model):  # as the trainer runs it: MGDA's n backward passes then go through oneDNN too
        logp, _ = seq_logprobs_and_hidden(model, ids, attn, qlen, hidden=False)  # the shared forward (not timed)
    forward_s = time.perf_counter() - t
    old_logp = logp.detach() + 0.01 * torch.randn_like(logp)  # a rollout policy slightly off the current one

    rows = []
    for n in ns:
        adv = advantages(n, logp.detach(), ref_logp, mask, seed=n)
        pref = [1.0 / n] * n
        alg.pama_combine(adv, pref, anchor=args.anchor)  # warm-up
        pama_t = timed(lambda: alg.pama_combine(adv, pref, anchor=args.anchor), args.pama_repeats)

        def mgda_step():
            losses = [alg.clipped_surrogate(logp, old_logp, adv[i], mask, 0.2)[0] for i in range(n)]
            return mgda_loss_weights(losses, params)

        mgda_step()  # warm-up (also checks it runs)
        mgda_t = timed(mgda_step, args.repeats)
        # the min-norm solve alone: a n×n factor R with R R^T = G has the same Gram matrix and no d-sized work
        grads = []
        for L in [alg.clipped_surrogate(logp, old_logp, adv[i], mask, 0.2)[0] for i in range(n)]:
            g = torch.autograd.grad(L, params, retain_graph=True, allow_unused=True)
            grads.append(torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1)
                                    for x, p in zip(g, params)]))
        G = torch.stack(grads).double()
        G = G @ G.T
        evals, evecs = torch.linalg.eigh(G)
        R = evecs * evals.clamp_min(0).sqrt()
        solve_t = timed(lambda: alg.mgda_weights(R), max(50, args.repeats))
        gram_t = timed(lambda: alg.mgda_weights(torch.stack(grads)), max(20, args.repeats))
        pm, mm = median(pama_t), median(mgda_t)
        rows.append({
            "n": n,
            "pama_ms": 1e3 * pm, "pama_iqr_ms": "%.3g–%.3g" % tuple(1e3 * x for x in iqr(pama_t)),
            "mgda_ms": 1e3 * mm, "mgda_iqr_ms": "%.0f–%.0f" % tuple(1e3 * x for x in iqr(mgda_t)),
            "mgda_gram_solve_ms": 1e3 * median(gram_t), "mgda_solve_only_ms": 1e3 * median(solve_t),
            "ratio_mgda_over_pama": mm / pm,
            "shared_forward_ms": 1e3 * forward_s, "d": d, "model": args.model,
        })
        print(f"n={n}: PAMA {1e3 * pm:.3f} ms, MGDA {1e3 * mm:.1f} ms, ratio {mm / pm:,.0f}×", flush=True)

    cols = ["n", "pama_ms", "pama_iqr_ms", "mgda_ms", "mgda_iqr_ms", "mgda_gram_solve_ms", "mgda_solve_only_ms",
            "ratio_mgda_over_pama"]
    table = markdown_table(rows, cols)
    print()
    print(table)
    print(f"shared forward with gradients (not in either figure): {1e3 * forward_s:.0f} ms")
    suffix = "" if args.model == "smollm2-135m" else f"-{args.model}"
    write_csv(f"weights{suffix}.csv", rows)
    write_text(f"weights{suffix}.md", header("Objective weights per step", {"model": args.model}) + "\n" + table)


if __name__ == "__main__":
    main()
