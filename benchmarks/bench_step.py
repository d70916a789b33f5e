"""Seconds per training step and samples/s: our trainer (pama, morlhf, mgda) against TRL's GRPOTrainer.

    .venv/bin/python benchmarks/bench_step.py [--model smollm2-135m|tiny-random] [--rounds 5] [--warmup 1]
                                             [--methods pama,morlhf,mgda,trl-grpo,pama+svd,pama+prefix]
                                             [--threads 2]
                                             [--dtype float32|bfloat16] [--omp-wait default|passive]

Equal settings for every method: the same model and precision (``--dtype`` of the frozen base weights; LoRA
stays fp32), the same OpenMP wait policy (``--omp-wait``: ``default`` is what ``python -m pama train`` uses),
prompts (builtin:train, chat template), objectives (relevance and readability, weights 0.5/0.5), 8 completions
per step, 48 new tokens (temperature 1, top_k 0, top_p 1), LoRA r=8 alpha=16 dropout 0 on q_proj/v_proj,
learning rate 1e-4, KL coefficient 0.2 against the adapter-disabled reference, one optimisation pass per batch, no
gradient checkpointing, torch threads fixed.
TRL: ``GRPOConfig(num_generations=2, per_device_train_batch_size=8, ...)`` → 4 prompts × 2 completions per step
(GRPO needs ≥ 2 completions per prompt for its group baseline), ``reward_weights=[0.5, 0.5]``, ``beta=0.2``,
``use_cpu=True``, ``bf16=False``, ``gradient_checkpointing=False``, no vLLM, no logging or saving.

How it is measured: one worker subprocess per method (each loads its own model and trainer once, so its peak RSS is
clean); the driver makes them take single steps round-robin (pama, morlhf, mgda, trl, pama, ...) while the others
wait idle on a pipe, so machine noise (another job on the CPU) hits all methods alike. Each worker's first
``--warmup`` step(s) are not counted. Our per-step split (generate / score / update) comes from the trainer's own
``time/*`` metrics; TRL's from wrapping ``GRPOTrainer._generate`` (generate) and ``_calculate_rewards`` (score),
update = step − generate − score (for both: reference and policy forwards, loss, backward, optimiser). Our steps
are ``Trainer.train_step`` (no store logging, no checkpoint); TRL's are its own training loop steps.
``METHOD~POLICY`` (e.g. ``pama~glibc,pama~nommap``) runs the method under ``PAMA_MALLOC=POLICY`` (pama/__init__.py):
each step also reports its page faults and kernel seconds, the allocator's cost. ``pama+svd`` / ``pama+prefix`` (or
``morlhf+...``) train one preference-conditioned adapter of that form
(docs/conditioned.md): a preference drawn per prompt group and per-row combination, the cost of conditioning per step.
Writes benchmarks/results/step[-<model>].csv (one row per timed step) and step[-<model>].md (the summary).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, header, iqr, markdown_table, median, write_csv, write_text

TAG = "@@BENCH "
OBJECTIVES = ["relevance", "readability"]
PREFERENCE = [0.5, 0.5]
LR = 1e-4
BETA = 0.2


def _send(obj) -> None:
    sys.stdout.write(TAG + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Kernel:
    """Page faults and kernel seconds of this process since the last call (what the allocator costs a step)."""

    def __init__(self):
        self.last = resource.getrusage(resource.RUSAGE_SELF)

    def delta(self) -> dict:
        now = resource.getrusage(resource.RUSAGE_SELF)
        out = {"faults": now.ru_minflt - self.last.ru_minflt, "sys_s": now.ru_stime - self.last.ru_stime}
        self.last = now
        return out


# ---------------------------------------------------------------------------------------------------------------------
# workers: wait for "step" on stdin, take one step, report its timings; "quit" reports the peak RSS and exits

def worker_ours(args) -> None:
    import torch

    from pama.config import TrainConfig
    from pama.store import Store
    from pama.trainer import Trainer

    torch.set_num_threads(args.threads)
    home = tempfile.mkdtemp(prefix="bench-step-")
    store = Store(f"sqlite:///{home}/bench.db")
    method, _, form = args.worker.partition("+")     # "pama+svd": one preference-conditioned adapter (issue 16)
    conditioning = dict(conditioned=True, conditioning=form) if form else {}
    cfg = TrainConfig(model=args.model, objectives=list(OBJECTIVES), preference=list(PREFERENCE), method=method,
                      **conditioning, **(dict(anchor=0.5) if method == "pama" else {}),  # PAMA's own setting
                      steps=10_000, batch_size=args.batch, max_new_tokens=args.tokens, temperature=1.0,
                      top_p=1.0, learning_rate=LR, lora_r=8, lora_alpha=16, lora_dropout=0.0,
                      target_modules=["q_proj", "v_proj"], kl_coef=BETA, threads=args.threads, seed=0,
                      device="cpu", dtype=args.dtype,
                      # the settings every earlier figure used, so the ratios stay comparable across sessions
                      samples_per_prompt=1, missing_eos_penalty=0.0, target_kl=3.0, kl_horizon=10_000).validate()
    os.environ["PAMA_HOME"] = home
    trainer = Trainer(cfg, store, progress=False)
    _send({"ready": True, "rss_mb": _peak_rss_mb()})
    step = 0
    kernel = _Kernel()
    for line in sys.stdin:
        if line.strip() != "step":
            break
        step += 1
        kernel.delta()
        t = time.perf_counter()
        m = trainer.train_step(step)
        wall = time.perf_counter() - t
        _send({"step_s": wall, "generate": m["time/generate"], "score": m["time/score"], "update": m["time/update"],
               "samples": args.batch, "response_tokens": m["response_length"] * args.batch, **kernel.delta()})
    _send({"peak_rss_mb": _peak_rss_mb()})


def worker_trl(args) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from pama import models
    from pama import objectives as objmod
    from pama.prompts import load_prompts

    torch.set_num_threads(args.threads)
    objs = [objmod.get(o) for o in OBJECTIVES]

    def _text(x) -> str:
        return x[-1]["content"] if isinstance(x, list) else str(x)

    def make_reward(obj):
        def reward(prompts, completions, **kw):
            return [float(v) for v in obj.score([_text(p) for p in prompts], [_text(c).strip() for c in completions])]
        reward.__name__ = obj.name
        return reward

    model, tok = models.load(args.model, seed=0, dtype=getattr(torch, args.dtype))
    prompts = load_prompts("builtin:train")
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts])
    out = tempfile.mkdtemp(prefix="bench-trl-")
    cfg = GRPOConfig(
        output_dir=out, per_device_train_batch_size=args.batch, num_generations=args.trl_generations,
        max_completion_length=args.tokens, temperature=1.0, top_p=1.0, top_k=0, learning_rate=LR,
        lr_scheduler_type="constant", warmup_steps=0, beta=BETA, num_iterations=1, reward_weights=list(PREFERENCE),
        use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, use_vllm=False, report_to="none",
        logging_strategy="no", save_strategy="no", log_completions=False, max_steps=10_000, seed=0,
        dataloader_num_workers=0, disable_tqdm=True, max_grad_norm=1.0,
    )
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    timing = {"generate": 0.0, "score": 0.0}

    class Stepper(TrainerCallback):
        def __init__(self):
            self.t0 = None
            self.kernel = _Kernel()

        def on_step_begin(self, a, state, control, **kw):
            line = sys.stdin.readline()
            if line.strip() != "step":
                _send({"peak_rss_mb": _peak_rss_mb()})
                os._exit(0)
            timing.update(generate=0.0, score=0.0)
            self.kernel.delta()
            self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            wall = time.perf_counter() - self.t0
            _send({"step_s": wall, "generate": timing["generate"], "score": timing["score"],
                   "update": wall - timing["generate"] - timing["score"], "samples": args.batch,
                   **self.kernel.delta()})

    trainer = GRPOTrainer(model=model, reward_funcs=[make_reward(o) for o in objs], args=cfg, train_dataset=ds,
                          processing_class=tok, peft_config=lora, callbacks=[Stepper()])

    def wrap(name, key):
        orig = getattr(trainer, name)

        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                timing[key] += time.perf_counter() - t
        setattr(trainer, name, timed)

    wrap("_generate", "generate")
    wrap("_calculate_rewards", "score")
    torch.set_num_threads(args.threads)
    _send({"ready": True, "rss_mb": _peak_rss_mb(), "trainable": sum(p.numel() for p in trainer.model.parameters()
                                                                     if p.requires_grad)})
    trainer.train()
    _send({"peak_rss_mb": _peak_rss_mb()})


# ---------------------------------------------------------------------------------------------------------------------
# driver

class Worker:
    def __init__(self, method: str, args):
        kind, _, malloc = method.partition("~")  # "pama~glibc": the same method under another PAMA_MALLOC
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--model", args.model,
               "--threads", str(args.threads), "--batch", str(args.batch), "--tokens", str(args.tokens),
               "--trl-generations", str(args.trl_generations), "--dtype", args.dtype]
        env = dict(os.environ, PAMA_OMP_WAIT=args.omp_wait)
        if malloc:
            env["PAMA_MALLOC"] = malloc
        for key in ("OMP_WAIT_POLICY", "PAMA_OMP_WAIT_SET"):  # every worker decides from --omp-wait alone
            env.pop(key, None)
        self.method = method
        self.log = open(tempfile.mktemp(prefix=f"bench-step-{method}-", suffix=".log"), "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     bufsize=1, cwd=ROOT, env=env)

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG):])
        raise RuntimeError(f"worker {self.method} ended early; see {self.log.name}")

    def step(self) -> dict:
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        return self.read()

    def quit(self) -> dict:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        res = self.read()
        self.proc.wait(timeout=120)
        return res


def per_round_ratios(steps: list[dict], ref: str) -> str:
    """The speed ratio to ``ref`` within each round (the steps taken back to back): its median and range say how
    much the headline ratio of medians owes to machine noise."""
    rounds: dict = {}
    for s in steps:
        if s["timed"] in (True, "True"):
            rounds.setdefault(s["round"], {})[s["method"]] = float(s["step_s"])
    lines = []
    for m in sorted({m for r in rounds.values() for m in r} - {ref}):
        ratios = [r[ref] / r[m] for r in rounds.values() if m in r and ref in r]
        if ratios:
            lines.append(f"- {m}: median {median(ratios):.2f}, range {min(ratios):.2f}–{max(ratios):.2f} over "
                         f"{len(ratios)} rounds")
    return f"\nspeed vs {ref} within each round:\n" + "\n".join(lines) + "\n" if lines else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default="pama,morlhf,mgda,trl-grpo")
    ap.add_argument("--rounds", type=int, default=5, help="timed steps per method (round-robin)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per method first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="completions per step")
    ap.add_argument("--tokens", type=int, default=48, help="max new tokens per completion")
    ap.add_argument("--trl-generations", type=int, default=2, help="TRL num_generations (completions per prompt)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="precision of the frozen base weights, for every method")
    ap.add_argument("--omp-wait", default="default", choices=["default", "passive"],
                    help="OpenMP wait policy of every worker (PAMA_OMP_WAIT); training processes use 'default'")
    ap.add_argument("--tag", default="", help="suffix of the result files (e.g. 'before')")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        (worker_trl if args.worker == "trl-grpo" else worker_ours)(args)
        return

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    print(header("Seconds per step: pama / morlhf / mgda (ours) vs TRL GRPOTrainer",
                 {"model": args.model, "per step": f"{args.batch} completions × ≤{args.tokens} new tokens",
                  "objectives": f"{OBJECTIVES} weights {PREFERENCE}", "LoRA": "r=8 alpha=16 q_proj,v_proj",
                  "threads per worker": args.threads, "base weights": args.dtype,
                  "OpenMP wait policy of the workers (PAMA_OMP_WAIT)": args.omp_wait,
                  "schedule": f"{args.warmup} warm-up + {args.rounds} timed steps per method, round-robin"}),
          flush=True)
    workers = {}
    for m in methods:  # start one at a time: the loads would otherwise fight for the two cores
        workers[m] = Worker(m, args)
        info = workers[m].read()
        print(f"{m}: ready (RSS after setup {info['rss_mb']:.0f} MB)", flush=True)
    steps: list[dict] = []
    for r in range(args.warmup + args.rounds):
        for m in methods:
            res = workers[m].step()
            res.update(method=m, round=r + 1, timed=r >= args.warmup, model=args.model)
            steps.append(res)
            print(f"round {r + 1} {m}: {res['step_s']:.2f} s (generate {res['generate']:.2f}, score "
                  f"{res['score']:.2f}, update {res['update']:.2f})", flush=True)
    peaks = {m: w.quit()["peak_rss_mb"] for m, w in workers.items()}

    ref = "trl-grpo" if "trl-grpo" in methods else methods[0]
    med = {m: median([s["step_s"] for s in steps if s["method"] == m and s["timed"]]) for m in methods}
    rows = []
    for m in methods:
        ts = [s for s in steps if s["method"] == m and s["timed"]]
        st = [s["step_s"] for s in ts]
        lo, hi = iqr(st)
        rows.append({
            "method": m, "s/step (median)": med[m], "IQR": f"{lo:.2f}–{hi:.2f}",
            "samples/s": args.batch / med[m], f"speed vs {ref}": med[ref] / med[m],
            "generate s": median([s["generate"] for s in ts]), "score s": median([s["score"] for s in ts]),
            "update s": median([s["update"] for s in ts]), "kernel s": median([s["sys_s"] for s in ts]),
            "page faults": median([s["faults"] for s in ts]), "peak RSS MB": peaks[m],
        })
    cols = list(rows[0])
    table = markdown_table(rows, cols)
    extra = per_round_ratios(steps, ref)
    if "pama" in med and "morlhf" in med:
        extra += f"\npama / morlhf seconds per step: {med['pama'] / med['morlhf']:.3f}\n"
    print()
    print(table + extra)
    suffix = (("" if args.model == "smollm2-135m" else f"-{args.model}") + ("" if args.dtype == "float32" else
              f"-{args.dtype}") + (f"-{args.tag}" if args.tag else ""))
    write_csv(f"step{suffix}.csv", steps, ["model", "method", "round", "timed", "step_s", "generate", "score",
                                            "update", "sys_s", "faults", "samples"])
    write_csv(f"step{suffix}-summary.csv", rows, cols)
    write_text(f"step{suffix}.md", header("Seconds per step", {"model": args.model, "base weights": args.dtype,
                                                               "OpenMP wait policy of the workers (PAMA_OMP_WAIT)":
                                                                   args.omp_wait})
               + "\n" + table + extra)


if __name__ == "__main__":
    main()
