"""Deleting a run from the app: its store records, then its folders (only inside the checkpoints root, never the
shipped demo) and its job log."""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Mapping

from .. import jobs, paths
from .settings import UIError


def deletable_paths(run: Mapping, *, root: Path | None = None) -> list[Path]:
    """Folders to remove with a run: its run folder and adapter folder, only when inside the checkpoints root
    (never the root itself, never the shipped demo folder, never anything outside)."""
    root = (root or paths.home()).resolve()
    demo = (paths.REPO / "demo").resolve()
    cands = [paths.run_dir(run["id"]) if root == paths.home().resolve() else root / "runs" / run["id"]]
    ap = run.get("adapter_path")
    if ap:
        p = Path(ap)
        # <run folder>/step-N/adapter: remove the run folder; a stand-alone adapter folder: remove it
        cands.append(p.parent.parent if p.name == "adapter" and p.parent.name.startswith("step-") else p)
    out: list[Path] = []
    for c in cands:
        try:
            c = c.resolve()
        except OSError:
            continue
        if c == root or root not in c.parents:
            continue
        if c == demo or demo in c.parents:
            continue
        if c.exists() and c not in out and not any(o in c.parents for o in out):
            out.append(c)
    return out


def delete_run(store, run_id: str) -> list[str]:
    """Delete the run from the store, then its folders (see ``deletable_paths``) and its job log; returns the
    removed paths. A running run must be cancelled first."""
    run = store.run_record(run_id)
    if run is None:
        raise UIError(f"No run {run_id!r} (already deleted?). Refresh the list.")
    if run.active and jobs.pid_alive(jobs.local_pid(run)):
        raise UIError(f"Run {run_id} is still {run.status}: cancel it first, then delete it.")
    victims = deletable_paths(run)
    store.delete_run(run_id)
    removed = []
    for p in victims:
        shutil.rmtree(p, ignore_errors=True)
        removed.append(str(p))
    for f in (jobs.log_path(run_id), jobs.job_file(run_id)):
        with contextlib.suppress(OSError):
            f.unlink()
    return removed
