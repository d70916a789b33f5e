"""What the Queue page shows of the job queue, as pure functions of the store's job rows (``pama.jobs``): one row per
job with its place in line, the worker (host, device) that runs it and how long ago it was heard from; the workers
seen running jobs; whether a job can be cancelled."""
from __future__ import annotations

import datetime as dt
from typing import Mapping, Sequence

from ..jobs import ordinal

ACTIVE_JOB = ("waiting", "queued", "running")
KIND_LABEL = {"train": "train a run", "sweep": "sweep (one process)", "point": "train a sweep's point",
              "evaluate": "evaluate a sweep"}


def _age(t: dt.datetime | None, now: dt.datetime) -> float | None:
    if t is None:
        return None
    t = t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (now - t).total_seconds())


def phase(job: Mapping, position: int | None) -> str:
    """'queued, 2nd in line', 'waiting for its sweep's points', 'running', 'failed', ..."""
    status = job["status"]
    if status == "queued" and position:
        return f"queued, {ordinal(position)} in line"
    if status == "queued":
        return "queued (being taken by a worker)"
    if status == "waiting":
        return "waiting for its sweep's points"
    return status


def job_rows(jobs: Sequence[Mapping], *, names: Mapping[str, str], positions: Mapping[str, int],
             now: dt.datetime | None = None) -> list[dict]:
    """The table of the Queue page: active jobs first (in queue order), then the others, newest first."""
    now = now or dt.datetime.now(dt.timezone.utc)
    active = sorted((j for j in jobs if j["status"] in ACTIVE_JOB),
                    key=lambda j: (j["status"] != "running", positions.get(j["id"], 10 ** 6), j["created_at"]))
    ended = sorted((j for j in jobs if j["status"] not in ACTIVE_JOB), key=lambda j: j["created_at"], reverse=True)
    rows = []
    for j in active + ended:
        host = (j.get("worker") or "").rsplit(":", 1)[0]
        beat = _age(j.get("heartbeat_at"), now) if j["status"] == "running" else None
        rows.append({
            "job": j["id"], "what": KIND_LABEL.get(j["kind"], j["kind"]) + (
                f" {j['point']}" if j.get("point") is not None else ""),
            "of": names.get(j["target_id"], j["target_id"]), "status": phase(j, positions.get(j["id"])),
            "worker": host or "", "device": j.get("device") or ("cpu" if host else ""),
            "attempts": int(j.get("attempts") or 0),
            "heard from": "" if beat is None else f"{beat:.0f} s ago",
            "error": (j.get("error") or "").splitlines()[0][:200] if j.get("error") else "",
        })
    return rows


def workers(jobs: Sequence[Mapping], *, now: dt.datetime | None = None) -> list[dict]:
    """The workers running jobs now: host, process, devices in use, jobs, last heartbeat."""
    now = now or dt.datetime.now(dt.timezone.utc)
    seen: dict[str, dict] = {}
    for j in jobs:
        if j["status"] != "running" or not j.get("worker"):
            continue
        host, _, pid = j["worker"].rpartition(":")
        w = seen.setdefault(j["worker"], {"host": host, "pid": pid, "devices": [], "jobs": 0, "heard from": None})
        w["jobs"] += 1
        if j.get("device") is not None:
            w["devices"].append(str(j["device"]))
        age = _age(j.get("heartbeat_at"), now)
        if age is not None and (w["heard from"] is None or age < w["heard from"]):
            w["heard from"] = age
    return [dict(w, devices=",".join(w["devices"]) or "cpu",
                 **{"heard from": "" if w["heard from"] is None else f"{w['heard from']:.0f} s ago"})
            for w in seen.values()]


def cancellable(job: Mapping) -> bool:
    return job["status"] in ACTIVE_JOB
