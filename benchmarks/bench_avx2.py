"""The fast paths on this CPU's native ISA against the same CPU limited to AVX2, as an AVX2-only x86-64 runs them.

    .venv/bin/python benchmarks/bench_avx2.py [--model smollm2-135m | random:<config folder>] [--rounds 5]
        [--cpus 0,1] [--threads 2] [--modes native,avx2] [--tag TAG]

Two worker processes load the same LoRA-wrapped model (r=8, α=16, q/v; float32): ``native`` (this CPU as it is) and
``avx2``, started with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`` (ATen's
vectorised kernels and oneDNN's JIT kernels then stop at AVX2; what each worker really got is printed: ATen's
capability, the oneDNN implementation of a decode-step matmul, MKL's code-path index). The workers take turns round
by round (the order alternating), pinned to the same ``--cpus``; in each round each worker times, its variants'
order rotating:

- ``matmul:*``: the large linears of one decode step (every ``nn.Linear`` that ``onednn_linears`` routes, at
  ``--batch`` rows of one token), through ``F.linear`` (MKL's sgemm: ``mkl``), oneDNN with the plain weights
  (``onednn``: what ``pama.sampling`` does by default) and oneDNN with weights prepacked for the ISA
  (``onednn-packed``: ``PAMA_ONEDNN_PREPACK=1``); median of 5 passes, with the weights' read rate in GB/s;
- ``rollout:*``: ``pama.sampling.sample``, ``--batch`` prompts × ``--tokens`` forced tokens: ``ours`` (oneDNN
  with the plain weights, ``PAMA_ONEDNN_PREPACK=0``: the default until prepacking was measured here), ``ours-prepack``
  (the default now), ``ours-no-onednn`` (every layer on ``F.linear``);
- ``update:*``: what the trainer's update does with those rows: a no-grad forward (the reference) plus a forward
  and backward to the LoRA weights (the policy), with the linears through oneDNN (``onednn``, the trainer's path)
  or ``F.linear`` (``mkl``).

After the timed rounds each worker profiles one rollout and one update (``torch.profiler``, not timed) and reports
its top operators by self CPU time. Writes benchmarks/results/avx2[-<model>][-<tag>].csv and .md.

On a machine that has no AVX-512 the ``avx2`` worker is the same as ``native``; on one that has it, ``avx2`` shows
what the code does on an AVX2-only CPU, with this machine's memory and clock (not those of an AVX2-only EPYC).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("PAMA_OMP_WAIT", "default")  # as in a training process

from common import header, markdown_table, median, write_csv, write_text  # noqa: E402

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
MARK = "@@AVX2BENCH "
DEFAULTS = {"matmul": "matmul:onednn", "rollout": "rollout:ours", "update": "update:onednn"}  # the ratios' baselines


# ---------------------------------------------------------------------------------------------------------------- worker
def _mkl_code_path() -> str:
    """MKL's dispatch index (``mkl_serv_cpu_detect``: 0 is its generic path, which it takes on non-Intel CPUs)."""
    import torch  # heavy

    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        return f"cpu_detect={lib.mkl_serv_cpu_detect()} is_zen={lib.mkl_serv_cpuiszen()}"
    except (OSError, AttributeError):
        return "unknown"


def _onednn_impls(fn) -> list[str]:
    """The oneDNN implementations (``brg_matmul:avx2`` ...) that ``fn`` runs, read from oneDNN's verbose output."""
    import torch  # heavy

    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                fn()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        tmp.seek(0)
        lines = [line.split(",") for line in tmp.read().splitlines() if ",exec," in line]
    return sorted({f"{f[5]} {f[6]}" for f in lines if len(f) > 6})


def worker(args) -> None:
    if args.cpus:
        os.sched_setaffinity(0, [int(c) for c in args.cpus.split(",")])
    import torch  # heavy, and only after the affinity and the worker's environment are set
    from peft import LoraConfig, get_peft_model

    from pama import models, sampling
    from pama.prompts import load_prompts

    torch.set_num_threads(args.threads)
    model, tok = models.load(args.model, seed=0, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM")).eval()
    prompts = load_prompts("builtin:train")
    B, T = args.batch, args.tokens
    enc = models.encode(tok, prompts[:B])
    op, reorder = sampling._onednn_linear(), sampling._reorder_op()
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear and m.weight.numel() >= 300_000]
    gb = sum(m.weight.numel() * m.weight.element_size() for m in linears) / 1e9
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(B, 1, m.in_features, generator=g) for m in linears]
    packable = torch.float32 in sampling.prepack_dtypes()
    with torch.no_grad():
        packed = [reorder(m.weight.detach(), B) for m in linears] if packable else None
    head = model.get_output_embeddings()
    impls = _onednn_impls(lambda: (op(xs[-1], head.weight.detach(), None, "none", [], ""),
                                   packable and op(xs[-1], packed[-1], None, "none", [], ""))) if op else []

    def matmuls(kind: str) -> float:
        passes = []
        with torch.inference_mode():
            for _ in range(5):
                t = time.perf_counter()
                for i, (m, x) in enumerate(zip(linears, xs)):
                    if kind == "mkl":
                        torch.nn.functional.linear(x, m.weight, m.bias)
                    else:
                        op(x, packed[i] if kind == "onednn-packed" else m.weight, m.bias, "none", [], "")
                passes.append(time.perf_counter() - t)
        return median(passes)

    @contextlib.contextmanager
    def env(name: str, value: str | None):
        before = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before

    def rollout(kind: str, seed: int = 0):
        saved = sampling.onednn_linears
        if kind == "ours-no-onednn":
            sampling.onednn_linears = lambda m, **kw: contextlib.nullcontext()
        try:
            with env("PAMA_ONEDNN_PREPACK", "1" if kind == "ours-prepack" else "0"):
                return sampling.sample(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=T, eos_ids=set(),
                                       pad_id=tok.pad_token_id, temperature=1.0, seed=seed)
        finally:
            sampling.onednn_linears = saved

    new = rollout("ours")
    ids = torch.cat([enc["input_ids"], new], dim=1)
    mask = torch.cat([enc["attention_mask"], torch.ones_like(new)], dim=1)
    Q = enc["input_ids"].shape[1]

    def update(kind: str) -> None:
        routed = sampling.onednn_linears(model) if kind == "onednn" else contextlib.nullcontext()
        with routed:
            with torch.no_grad(), model.disable_adapter():
                sampling.forward_sharing_prefix(model, ids, mask, Q)
            model.zero_grad(set_to_none=True)
            out, _, _ = sampling.forward_sharing_prefix(model, ids, mask, Q)
            logp = out.logits[:, -T - 1:-1].log_softmax(-1).gather(-1, new.unsqueeze(-1))
            logp.mean().backward()

    variants = {f"matmul:{k}": (lambda k=k: matmuls(k)) for k in ("mkl", "onednn", "onednn-packed")
                if k != "onednn-packed" or packable}
    variants.update({f"rollout:{k}": (lambda k=k: rollout(k)) for k in ("ours", "ours-prepack", "ours-no-onednn")})
    variants.update({f"update:{k}": (lambda k=k: update(k)) for k in ("onednn", "mkl")})
    info = {"aten_capability": torch.backends.cpu.get_cpu_capability(), "onednn_impl (decode head)": "; ".join(impls),
            "mkl": _mkl_code_path(), "onednn_dtypes": [str(d) for d in sampling.onednn_dtypes()],
            "prepack_dtypes": [str(d) for d in sampling.prepack_dtypes()], "routed_weights_gb": gb,
            "routed_linears": len(linears), "threads": torch.get_num_threads(),
            "affinity": sorted(os.sched_getaffinity(0))}
    print(MARK + json.dumps({"ready": info}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("round") is not None:
            r = int(cmd["round"])
            names = list(variants)
            names = names[r % len(names):] + names[:r % len(names)]
            times = {}
            for name in names:
                t = time.perf_counter()
                value = variants[name]()
                times[name] = value if name.startswith("matmul:") else time.perf_counter() - t
            print(MARK + json.dumps({"times": times}), flush=True)
        elif cmd.get("profile"):
            from torch.profiler import ProfilerActivity, profile  # only for the profile at the end

            tops = {}
            for what, fn in (("rollout", lambda: rollout("ours-prepack")), ("update", lambda: update("onednn"))):
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    fn()
                ev = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
                total = sum(e.self_cpu_time_total for e in ev) or 1
                tops[what] = [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "calls": e.count,
                               "share": e.self_cpu_time_total / total} for e in ev[:args.top]]
            print(MARK + json.dumps({"profile": tops}), flush=True)
        else:
            break


# ---------------------------------------------------------------------------------------------------------------- parent
class Worker:
    def __init__(self, mode: str, args):
        env = {k: v for k, v in os.environ.items() if k not in AVX2_ENV}
        if mode == "avx2":
            env.update(AVX2_ENV)
        argv = [sys.executable, os.path.abspath(__file__), "--worker", "--model", args.model, "--threads",
                str(args.threads), "--batch", str(args.batch), "--tokens", str(args.tokens), "--top", str(args.top)]
        if args.cpus:
            argv += ["--cpus", args.cpus]
        self.mode = mode
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info: dict = {}

    def wait_ready(self) -> None:
        self.info = self.read()["ready"]

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
            print(f"[{self.mode}] {line}", end="")
        raise RuntimeError(f"worker {self.mode} exited with {self.proc.wait()}")

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.proc.wait(timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpus", default="", help="pin every worker to these CPUs, e.g. 0,1")
    ap.add_argument("--modes", default="native,avx2")
    ap.add_argument("--top", type=int, default=12, help="operators per profile")
    ap.add_argument("--tag", default="")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    modes = [m for m in args.modes.split(",") if m]
    head = header("Fast paths: native ISA vs AVX2 emulation", {
        "model": args.model, "rows": f"{args.batch} prompts × {args.tokens} forced tokens, float32, LoRA r=8 q/v",
        "schedule": f"1 warm-up + {args.rounds} rounds; workers {', '.join(modes)} alternate, pinned to "
                    f"{args.cpus or 'any CPU'}, {args.threads} threads each",
        "avx2 worker's environment": " ".join(f"{k}={v}" for k, v in AVX2_ENV.items())})
    print(head, flush=True)
    workers = {m: Worker(m, args) for m in modes}  # they load the model side by side, then take turns
    rows = []
    try:
        for w in workers.values():
            w.wait_ready()
        for r in range(args.rounds + 1):  # round 0 warms up
            order = modes if r % 2 == 0 else modes[::-1]
            for m in order:
                times = workers[m].ask(round=r)["times"]
                print(f"round {r} {m}: " + ", ".join(f"{k} {v:.3f}" for k, v in times.items()), flush=True)
                if r:
                    rows += [{"mode": m, "round": r, "variant": k, "seconds": v} for k, v in times.items()]
        profiles = {m: workers[m].ask(profile=True)["profile"] for m in modes}
    finally:
        for w in workers.values():
            w.close()

    variants = list(dict.fromkeys(x["variant"] for x in rows))
    med = {(m, v): median([x["seconds"] for x in rows if x["mode"] == m and x["variant"] == v])
           for m in modes for v in variants}
    gb = workers[modes[0]].info["routed_weights_gb"]
    summary = []
    for v in variants:
        row = {"variant": v}
        for m in modes:
            row[f"{m} s (median)"] = med[(m, v)]
        if v.startswith("matmul:"):
            for m in modes:
                row[f"{m} GB/s"] = gb / med[(m, v)]
        if len(modes) == 2:
            row[f"{modes[1]} / {modes[0]}"] = med[(modes[1], v)] / med[(modes[0], v)]
        default = DEFAULTS[v.split(":")[0]]  # what pama runs today
        row.update({f"{m}: time / {default.split(':')[1]}": med[(m, v)] / med[(m, default)] for m in modes})
        summary.append(row)
    cols = list(dict.fromkeys(k for row in summary for k in row))
    table = markdown_table(summary, cols)
    info_rows = [{"mode": m, **{k: (", ".join(map(str, v)) if isinstance(v, list) else v)
                                for k, v in workers[m].info.items()}} for m in modes]
    prof_md = []
    for what in ("rollout", "update"):
        for m in modes:
            prof_md.append(f"\n**{what}, {m}** (one profiled run, top operators by self CPU time):\n")
            prof_md.append(markdown_table(profiles[m][what], ["op", "self_ms", "calls", "share"]))
    print()
    print(markdown_table(info_rows, list(info_rows[0])))
    print(table)
    print("\n".join(prof_md))
    suffix = ("" if args.model == "smollm2-135m" else "-" + args.model.replace("random:", "random-").replace("/", "_")
              .strip("._-")) + (f"-{args.tag}" if args.tag else "")
    write_csv(f"avx2{suffix}.csv", rows, ["mode", "round", "variant", "seconds"])
    write_text(f"avx2{suffix}.md", head
        + "\n" + markdown_table(info_rows, list(info_rows[0])) + "\n\nMedians (matmul: seconds for the routed "
        "linears of one decode step; rollout, update: seconds per call); the last columns divide by the "
        "worker's time for what pama runs by default (onednn for matmul and update, ours for rollout):\n\n" + table
        + "\n" + "\n".join(prof_md) + "\n")


if __name__ == "__main__":
    main()
