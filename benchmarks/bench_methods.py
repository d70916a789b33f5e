"""PAMA vs MORLHF vs MGDA at equal budget: per-objective means with 95% bootstrap CIs, and sweep hypervolumes.

    .venv/bin/python benchmarks/bench_methods.py [--model smollm2-135m|tiny-random] [--steps 12] [--points 3]
        [--configs pama:0.5,morlhf,mgda,morlhf+noon,mgda+noon,pama:1.0] [--eval-samples 32] [--tokens 32]
        [--ppo-epochs 1] [--mini-batches 1]

MORLHF and MGDA are plain PPO, as in the paper (``noon: auto``); ``+noon`` runs them with Noon PPO (an ablation),
``-noon`` runs PAMA without it. With ``--ppo-epochs 1 --mini-batches 1`` (the defaults) the ratio is 1 at the only
gradient step, so the clip never acts: run at least once with ``--ppo-epochs 2`` or more.

Each config is one ``pama.sweep.run_sweep`` (SweepConfig: same model, objectives relevance vs readability, steps,
batch 8, tokens, learning rate, KL settings and seed) into a temporary store (PAMA_HOME in a temp folder), which
trains one adapter per preference of ``preference_grid(2, points)`` and evaluates the base model and every adapter on
the same held-out prompts with the same sampling seeds (``evaluate_point``: means with 95% percentile-bootstrap CIs).

Preference-blind configs train ONE run: MGDA's min-norm weights and PAMA with λ = 1 do not read the preference, and
with the same seed their runs at different preferences are identical copies (same prompts, sampling seeds, LoRA
init), so the point is trained once and shown at every preference (``--train-blind-copies`` trains them all anyway).

Hypervolume: objectives normalised by their declared bounds, reference 0 (the lower bounds), as in pama.sweep —
the same reference for every method. Also reported: the hypervolume above the base model (reference = the base
model's normalised values: what a method adds beyond the base in both objectives at once).
Writes benchmarks/results/methods[-<model>].csv (points), methods[-<model>]-hv.csv and methods[-<model>].md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("PAMA_OMP_WAIT", "default")  # it trains in-process: the wait policy of `pama train`

from common import header, markdown_table, write_csv, write_text  # noqa: E402

OBJECTIVES = ["relevance", "readability"]


def parse_configs(text: str) -> list[tuple[str, float | None, str]]:
    """method[:anchor][+noon|-noon] items → (method, anchor, noon)."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        noon = "auto"
        for suffix, value in (("+noon", "true"), ("-noon", "false")):
            if item.endswith(suffix):
                item, noon = item[:-len(suffix)], value
        method, _, lam = item.partition(":")
        out.append((method, float(lam) if lam else (0.5 if method == "pama" else None), noon))
    return out


def label(method: str, lam: float | None, noon: str = "auto") -> str:
    name = f"pama λ={lam:g}" if method == "pama" else method
    return name + {"auto": "", "true": " +Noon", "false": " −Noon"}[noon]


def blind(method: str, lam: float | None) -> bool:
    return method == "mgda" or (method == "pama" and lam is not None and lam >= 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--configs", default="pama:0.5,morlhf,mgda,morlhf+noon,mgda+noon,pama:1.0",
                    help="method[:anchor][+noon|-noon] list, run in this order")
    ap.add_argument("--ppo-epochs", type=int, default=1)
    ap.add_argument("--mini-batches", type=int, default=1)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--points", type=int, default=3, help="preferences per sweep (2 objectives: K points)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32, help="max new tokens in training and evaluation")
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--eval-samples", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples-per-prompt", type=int, default=1,
                    help="k completions per prompt with a per-prompt reward baseline (the demo front uses 4)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-blind-copies", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--home", default=None, help="store folder (default: a new temp folder)")
    args = ap.parse_args()

    home = args.home or tempfile.mkdtemp(prefix="bench-methods-")
    os.environ["PAMA_HOME"] = home
    os.environ.pop("PAMA_DB_URL", None)

    import numpy as np
    import torch

    from pama import pareto
    from pama.config import SweepConfig
    from pama.fronts import bounds as _bounds
    from pama.store import Store
    from pama.sweep import preference_grid, run_sweep

    torch.set_num_threads(args.threads)
    configs = parse_configs(args.configs)
    print(header("Methods at equal budget: PAMA / MORLHF / MGDA sweeps, relevance vs readability",
                 {"model": args.model, "budget per run": f"{args.steps} steps × batch {args.batch} × {args.tokens} "
                  f"tokens, lr {args.learning_rate:g}, seed {args.seed}, {args.samples_per_prompt} sample(s) per "
                  f"prompt, {args.ppo_epochs} PPO epoch(s) × {args.mini_batches} mini-batch(es)",
                  "preferences": preference_grid(2, args.points), "configs": [label(*c) for c in configs],
                  "evaluation": f"{args.eval_samples} builtin:heldout prompts, {args.tokens} tokens, T=0.7, "
                                "eval seed 1234, 2000 bootstrap resamples",
                  "store": home}), flush=True)
    store = Store(f"sqlite:///{home}/pama.db")
    lo, hi = _bounds(OBJECTIVES)
    point_rows, hv_rows = [], []
    base_vals = None
    def report(final: bool) -> None:
        base_row = {"config": "base model", "preference": "–"}
        for o in OBJECTIVES:
            v = base["values"][o]
            base_row[o] = v["mean"]
            base_row[f"{o} 95% CI"] = f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
        base_row.update({"KL": 0.0, "length": base["mean_length"]})
        rows = [base_row] + point_rows

        pcols = ["config", "preference"] + [c for o in OBJECTIVES for c in (o, f"{o} 95% CI")] + ["KL", "length"]
        hcols = list(hv_rows[0])
        t1, t2 = markdown_table(rows, pcols), markdown_table(hv_rows, hcols)
        pamas = [r for r in hv_rows if r["config"].startswith("pama λ=")]
        verdict = ""
        if pamas:
            best = max(pamas, key=lambda r: r["HV (ref 0)"])
            verdict = (f"\nLargest PAMA hypervolume (ref 0) over this sweep: {best['config']} "
                       f"({best['HV (ref 0)']:.4f}; " + ", ".join(f"{r['config']} {r['HV (ref 0)']:.4f}" for r in pamas)
                       + ")\n")
        note = "\n`*` preference-blind config: one run, the same point at every preference.\n"
        if final:
            print()
            print(t1 + note)
            print(t2 + verdict)
        suffix = ("" if args.model == "smollm2-135m" else f"-{args.model}") + (f"-{args.tag}" if args.tag else "")
        write_csv(f"methods{suffix}.csv", rows, pcols)
        write_csv(f"methods{suffix}-hv.csv", hv_rows, hcols)
        write_text(f"methods{suffix}.md", header("Methods at equal budget", {
            "model": args.model, "budget per run": f"{args.steps} steps × batch {args.batch} × {args.tokens} tokens"
                                                     f", lr {args.learning_rate:g}, {args.samples_per_prompt} "
                                                     "sample(s) per prompt",
            "evaluation": f"{args.eval_samples} held-out prompts"}) + "\n" + t1 + note + "\n" + t2 + verdict)


    for method, lam, noon in configs:
        is_blind = blind(method, lam) and not args.train_blind_copies
        cfg = SweepConfig(model=args.model, objectives=list(OBJECTIVES), method=method, noon=noon,
                          ppo_epochs=args.ppo_epochs, mini_batches=args.mini_batches,
                          **({} if lam is None else dict(anchor=lam)),  # PAMA's own setting: the others refuse it
                          steps=args.steps, batch_size=args.batch,
                          max_new_tokens=args.tokens, temperature=1.0, learning_rate=args.learning_rate, lora_r=8,
                          lora_alpha=16, target_modules=["q_proj", "v_proj"], kl_coef=0.2, target_kl=3.0,
                          samples_per_prompt=args.samples_per_prompt, save_every=args.steps, seed=args.seed,
                          threads=args.threads, device="cpu",
                          points=1 if is_blind else args.points, eval_prompts="builtin:heldout",
                          eval_samples=args.eval_samples, eval_max_new_tokens=args.tokens, eval_seed=1234)
        t = time.perf_counter()
        sweep_id = run_sweep(cfg, store, progress=False, name=label(method, lam, noon))
        wall = time.perf_counter() - t
        sweep = store.get_sweep(sweep_id)
        summary = sweep["summary"]
        points = store.points(sweep_id=sweep_id)
        runs = store.list_runs(sweep_id=sweep_id)
        step_times = [m["value"] for r in runs for m in store.metrics(r["id"], keys=["time/step"])]
        base = next(p for p in points if p["kind"] == "base")
        bvals = np.array([base["values"][o]["mean"] for o in OBJECTIVES])
        base_vals = bvals if base_vals is None else base_vals
        adapters = [p for p in points if p["kind"] == "adapter"]
        norm = pareto.normalise(np.array([[p["values"][o]["mean"] for o in OBJECTIVES] for p in adapters]), lo, hi)
        bnorm = pareto.normalise(base_vals, lo, hi)
        hv_rows.append({
            "config": label(method, lam, noon), "runs trained": len(runs),
            "HV (ref 0)": summary["hypervolume_adapters"],
            "HV adapters+base (ref 0)": summary["hypervolume_adapters_and_base"],
            "HV above base": pareto.hypervolume(norm, bnorm),
            "base HV (ref 0)": summary["hypervolume_base"],
            "s/step (median)": float(np.median(step_times)) if step_times else float("nan"),
            "sweep wall s": wall,
        })
        grid = preference_grid(2, args.points)
        for pref in grid:
            if is_blind:
                p = adapters[0]
            else:
                p = next(a for a in adapters if a["preference"] and np.allclose(a["preference"], pref, atol=1e-6))
            row = {"config": label(method, lam, noon), "preference": "(" + ", ".join(f"{x:.2f}" for x in pref) + ")"
                   + (" *" if is_blind else "")}
            for o in OBJECTIVES:
                v = p["values"][o]
                row[o] = v["mean"]
                row[f"{o} 95% CI"] = f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
            row.update({"KL": p["kl"], "length": p["mean_length"]})
            point_rows.append(row)
        print(f"{label(method, lam, noon)}: {len(runs)} run(s), {wall / 60:.1f} min, "
              f"HV {summary['hypervolume_adapters']:.4f}",
              flush=True)
        report(final=False)
    report(final=True)


if __name__ == "__main__":
    main()
