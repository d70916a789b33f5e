"""pama-explorer: train LoRA adapters with PAMA across trade-offs, store them, and explore their Pareto fronts."""
import os as _os
import sys as _sys


def _set_omp_wait_policy() -> None:
    """How idle OpenMP threads wait; libgomp reads it once, when torch loads, so it is decided here.

    Measured on the 2-core machine (docs/performance.md): passive waiting keeps a small process next to a busy one
    fast (a tiny model's 8-token generation 0.08 s instead of 0.27 s), but costs a training step ~30% when the
    trainer runs alone (its many short parallel regions sleep and wake through futexes). So training processes
    (``python -m pama train|sweep``) keep libgomp's default spin-then-sleep, and everything else (the app, tests,
    evaluation) waits passively. ``PAMA_OMP_WAIT=passive|default`` forces a choice; an ``OMP_WAIT_POLICY`` the
    user set wins over both. A value we set ourselves is marked, so child processes decide afresh."""
    env = _os.environ
    if env.pop("PAMA_OMP_WAIT_SET", None) == "1":
        env.pop("OMP_WAIT_POLICY", None)  # inherited from a pama parent that chose it for itself
    if "OMP_WAIT_POLICY" in env:
        return
    choice = env.get("PAMA_OMP_WAIT", "auto").strip().lower()
    if choice not in ("passive", "default"):
        argv = _sys.argv  # during `python -m pama ...`, argv[0] is "-m" while this package is imported
        choice = "default" if len(argv) > 1 and argv[0] == "-m" and argv[1] in ("train", "sweep") else "passive"
    if choice == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        env["PAMA_OMP_WAIT_SET"] = "1"


_set_omp_wait_policy()

__version__ = "0.1.0"
