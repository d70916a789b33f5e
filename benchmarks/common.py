"""Shared helpers for the benchmarks: machine description, robust statistics, markdown tables, CSV output.

Every benchmark prints ``header(...)`` first (the machine and the exact command), then a markdown table, and
writes its rows as CSV under ``benchmarks/results/``.
"""
from __future__ import annotations

import csv
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
# $PAMA_BENCH_RESULTS redirects the output (the tests run the scripts without touching the committed results)
RESULTS = Path(os.environ.get("PAMA_BENCH_RESULTS") or ROOT / "benchmarks" / "results")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pama  # noqa: E402,F401  (sets OMP_WAIT_POLICY=PASSIVE before torch loads)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def busy_processes() -> list[str]:
    """Other heavy pama processes running now (they share the CPU and slow everything down)."""
    try:
        out = subprocess.run(["pgrep", "-af", "pama (sweep|train)"], capture_output=True, text=True).stdout
    except OSError:
        return []
    me = os.getpid()
    return [line for line in out.splitlines() if line and int(line.split()[0]) != me]


def machine_info() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        # this process's; a script whose timed work runs in worker processes says theirs separately
        "OMP_WAIT_POLICY (this process)": (os.environ.get("OMP_WAIT_POLICY")
                                           or "unset (libgomp's default spin-then-sleep)"),
    }


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [".venv/bin/python"] + sys.argv)


def header(title: str, extra: dict | None = None) -> str:
    info = machine_info()
    lines = [f"# {title}", "", f"command: `{command_line()}`", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    for k, v in (extra or {}).items():
        lines.append(f"- {k}: {v}")
    busy = busy_processes()
    if busy:
        lines.append(f"- CPU contention: {len(busy)} other pama training process(es) were running at the start: "
                     + "; ".join(b[:90] for b in busy))
    else:
        lines.append("- CPU contention: no other pama training process at the start")
    return "\n".join(lines) + "\n"


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def quantile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def iqr(xs: Sequence[float]) -> tuple[float, float]:
    return quantile(xs, 0.25), quantile(xs, 0.75)


def fmt(x, digits: int = 3) -> str:
    if isinstance(x, str):
        return x
    if x is None:
        return ""
    if isinstance(x, int):
        return str(x)
    ax = abs(x)
    if ax != 0 and (ax < 10 ** -(digits) or ax >= 1e6):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if ax < 1 else f"{x:,.{max(0, digits - len(str(int(ax))))}f}" if ax < 1000 else f"{x:,.0f}"


def fmt_ci(mean: float, lo: float, hi: float, digits: int = 3, signed: bool = False) -> str:
    """``mean [lo, hi]``: a mean with its interval, as every results table writes it."""
    f = f"{'+' if signed else ''}.{digits}f"
    return f"{mean:{f}} [{lo:{f}}, {hi:{f}}]"


def markdown_table(rows: list[dict], columns: Iterable[str] | None = None) -> str:
    if not rows:
        return "(no rows)\n"
    cols = list(columns) if columns is not None else list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out) + "\n"


def write_csv(name: str, rows: list[dict], columns: Iterable[str] | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def write_text(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text)
    return path
