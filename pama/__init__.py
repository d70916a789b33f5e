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


def _tune_malloc() -> None:
    """Keep the memory a process frees, instead of glibc handing large blocks back to the kernel at every free.

    glibc serves blocks above its mmap threshold (128 KB, rising to at most 32 MB) with mmap and frees them with
    munmap, and gives back the heap's free top above the trim threshold; a training step allocates and frees
    hundreds of MB of activations and logits, so the next step faults them in again page by page. On the VMs here
    that was a third or more of a step's time, all of it in the kernel (docs/performance.md, "Memory allocator").
    ``PAMA_MALLOC=nommap`` (the default) serves every block from the heap and keeps up to 1 GB of free heap,
    ``PAMA_MALLOC=keep`` only raises the thresholds (blocks above 32 MB are still mapped and unmapped),
    ``PAMA_MALLOC=glibc`` leaves glibc alone, as does any ``MALLOC_*_`` or ``GLIBC_TUNABLES`` the user set."""
    env = _os.environ
    choice = env.get("PAMA_MALLOC", "nommap").strip().lower()
    if choice not in ("nommap", "keep") or not _sys.platform.startswith("linux"):
        return
    if "GLIBC_TUNABLES" in env or any(k.startswith("MALLOC_") and k.endswith("_") for k in env):
        return
    import ctypes  # only on Linux, for glibc's mallopt

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl): nothing to tune
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold, m_mmap_max = -1, -2, -3, -4  # glibc's malloc.h
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_top_pad, 64 << 20)
    if choice == "nommap":
        mallopt(m_mmap_max, 0)


_tune_malloc()

__version__ = "0.1.0"
