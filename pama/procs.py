"""Process state shared by the workflows: which pids are alive, and the children this process started (so that our
own exited children are reaped and never mistaken for live processes). Core: imports nothing of pama."""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import subprocess
import threading
from pathlib import Path

_children: dict[int, subprocess.Popen] = {}


def _reaper(proc: subprocess.Popen) -> None:
    """Wait for the child so it never lingers as a zombie (a zombie still answers kill(pid, 0))."""
    with contextlib.suppress(Exception):
        proc.wait()
    _children.pop(proc.pid, None)


def track(proc: subprocess.Popen) -> None:
    """Remember a started child and reap it in a daemon thread when it exits."""
    _children[proc.pid] = proc
    threading.Thread(target=_reaper, args=(proc,), daemon=True, name=f"reap-{proc.pid}").start()


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by a parent that is not us) is dead for our purposes
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def worker_lock_path(db_url: str, home: str | Path | None = None) -> Path | None:
    """The lock file of the local worker of a store's job queue: ``<database>.queue.worker.lock`` beside a SQLite
    file, ``<home>/queue-<hash of the URL>.worker.lock`` for a server (PostgreSQL: one local worker per machine and
    PAMA_HOME); None for an in-memory store. Parsed without SQLAlchemy: ``python -m pama worker --local`` takes it
    before any heavy import."""
    if db_url.startswith("postgresql") and home is not None:
        import hashlib  # only for a server's URL: the local worker imports this module before anything heavy

        return Path(home) / f"queue-{hashlib.sha1(db_url.encode()).hexdigest()[:12]}.worker.lock"
    if not db_url.startswith("sqlite:///") or db_url.split("?")[0].endswith(":memory:"):
        return None
    db = Path(db_url.split("?")[0][len("sqlite:///"):]).expanduser()
    return db.with_name(db.name + ".queue.worker.lock")


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when the thread that started it dies (a queue worker killed with
    SIGKILL takes its job's process with it, so the job, released and started again elsewhere, never runs twice at
    once). Set by a job whose environment names its parent (PAMA_DIE_WITH_PARENT); a no-op elsewhere."""
    parent = os.environ.pop("PAMA_DIE_WITH_PARENT", None)
    if not parent:
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes  # only in a queued job's process, at its start
        import signal  # (as above)

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if str(os.getppid()) != parent:  # the parent died before the line above: do not outlive it
        os._exit(1)


def take_worker_lock(db_url: str, home: str | Path | None = None) -> int | None:
    """Lock the local worker's file: its descriptor (kept open, locked, for the worker's life), -1 when another
    worker holds it, None for a store without a queue."""
    import fcntl  # POSIX only

    path = worker_lock_path(db_url, home)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return -1
    return fd


def release_memory() -> bool:
    """Hand the memory this process has freed back to the kernel (``gc.collect`` then glibc's ``malloc_trim(0)``);
    True when glibc released some. Why: ``import pama`` tells glibc to keep freed memory (``PAMA_MALLOC``, for the
    speed of a training step), so a sweep process that trained held the training's 11-13 GB through its whole
    evaluation, and a second training job beside it was killed by the OOM killer on a 24 GB machine
    (docs/deployment.md). Called between the two phases; a no-op where there is no glibc."""
    gc.collect()
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))
