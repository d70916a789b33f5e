"""Process state shared by the workflows: which pids are alive, and the children this process started (so that our
own exited children are reaped and never mistaken for live processes). Core: imports nothing of pama."""
from __future__ import annotations

import contextlib
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


def worker_lock_path(db_url: str) -> Path | None:
    """The lock file of the local worker of a SQLite store's job queue (``<database>.queue.worker.lock``); None for
    other stores. Parsed without SQLAlchemy: ``python -m pama worker --local`` takes it before any heavy import."""
    if not db_url.startswith("sqlite:///") or db_url.split("?")[0].endswith(":memory:"):
        return None
    db = Path(db_url.split("?")[0][len("sqlite:///"):]).expanduser()
    return db.with_name(db.name + ".queue.worker.lock")


def take_worker_lock(db_url: str) -> int | None:
    """Lock the local worker's file: its descriptor (kept open, locked, for the worker's life), -1 when another
    worker holds it, None for a store without a queue."""
    import fcntl  # POSIX only

    path = worker_lock_path(db_url)
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
