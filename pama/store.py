"""The run store: runs, their objectives and per-step metrics, sweeps, evaluated points and generations, votes.

SQLAlchemy 2 over SQLite (default, under checkpoints/) or any URL in ``PAMA_DB_URL`` (PostgreSQL included).
Methods return plain dicts or frozen records (``pama.records``) so the CLI and the Streamlit pages never hold ORM
objects across sessions. The tables are in ``pama.orm``, the schema's versions, creation and upgrades in
``pama.migrate``, the heartbeat settings in ``pama.heartbeat``; the names callers import from here
(``StoreError``, ``SCHEMA_HEAD``, ``describe_url``, ``heartbeat_grace_s``, ``RUN_STATUSES``, ...) are re-exported.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import uuid
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import create_engine, delete, event, func, select, update
from sqlalchemy.exc import ArgumentError, DataError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import sessionmaker

from . import migrate, paths
from .heartbeat import heartbeat_grace_s, heartbeat_interval_s  # noqa: F401 (re-exported: trainer, jobs)
from .migrate import (  # noqa: F401 (re-exported: the CLI, the pages and the tests import them from here)
    SCHEMA_HEAD, UPGRADE_HINT, SchemaOutOfDateError, StoreError, alembic_config, describe_url, known_revisions,
)
from .orm import (  # noqa: F401 (the constants re-exported: pages and docs name store.RUN_STATUSES, POINT_KINDS)
    JOB_STATUSES, POINT_KINDS, RUN_STATUSES, VOTE_CHOICES, Generation, Job, Metric, Point, PointValue, Run, RunObjective,
    Sweep, Vote, utcnow,
)
from .orm import row as _row
from .records import PointRecord, RunRecord, SweepRecord

TERMINAL = ("finished", "failed", "cancelled")


class VoteRefused(StoreError):
    """A blind vote that cannot be recorded (a point was deleted, a bad choice); nothing was stored."""


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _finite(x: float) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"refusing to store a non-finite value ({x})")
    return x


class Store:
    """One store per process; short managed transactions, so several writers and readers share a SQLite file."""

    def __init__(self, url: str | None = None, *, create: bool = True):
        self.url = url or paths.default_db_url()
        # shown in messages: never a password (SQLite URLs hold none and are shown as typed)
        self.safe_url = self.url if self.url.startswith("sqlite") or "://" not in self.url else describe_url(self.url)
        try:
            if self.url.startswith("sqlite:///") and create:
                db = Path(self.url.removeprefix("sqlite:///"))
                # sqlite:///file:...?mode=ro&uri=true is a URI, not a path: nothing to create for it
                if str(db) not in ("", ":memory:") and not str(db).startswith("file:") and "?" not in str(db):
                    db.parent.mkdir(parents=True, exist_ok=True)
            elif self.url.startswith("sqlite:///") and not create:
                db = Path(self.url.removeprefix("sqlite:///"))
                if str(db) not in ("", ":memory:") and "?" not in str(db) and not db.exists():
                    # connecting would create an empty file: a read-only use must leave no trace
                    if not db.parent.is_dir():
                        raise StoreError(f"Cannot open the database at '{self.safe_url}': the folder {db.parent} does "
                                         "not exist. Check PAMA_DB_URL / PAMA_HOME.")
                    raise StoreError(f"No pama store at '{self.safe_url}'. Run `python -m pama db init` to create one.")
            kwargs: dict[str, Any] = {}
            if self.url.startswith("sqlite"):
                kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
            else:
                kwargs["pool_pre_ping"] = True
            self.engine = create_engine(self.url, **kwargs)
        except (ArgumentError, NoSuchModuleError, ValueError, ImportError, OSError) as err:
            raise StoreError(
                f"Cannot use the database URL '{self.safe_url}': {err}. Set PAMA_DB_URL to a SQLAlchemy URL such as "
                "sqlite:////abs/path/pama.db or postgresql+psycopg://user:password@host:5432/dbname."
            ) from err
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", migrate.sqlite_pragmas)
        self._Session = sessionmaker(self.engine, expire_on_commit=False)
        self._check_schema(create)

    # -- schema (pama.migrate) ------------------------------------------------------------------------------------
    def schema_version(self) -> str | None:
        return migrate.schema_version(self.engine, self.safe_url)

    def _check_schema(self, create: bool) -> None:
        migrate.check_schema(self.engine, self.url, self.safe_url, create)

    @staticmethod
    def upgrade(url: str | None = None) -> str:
        """Explicit upgrade to the current schema (Alembic); never done implicitly on open."""
        return migrate.upgrade(url)

    @contextlib.contextmanager
    def session(self):
        """A short transaction: commit on success, roll back on any error."""
        with self._Session() as s:
            try:
                yield s
                s.commit()
            except (OperationalError, DataError) as err:
                s.rollback()
                detail = " ".join(str(getattr(err, "orig", err)).split())[:300]
                raise StoreError(
                    f"The database at '{self.safe_url}' refused the operation: {detail}. Check that it is writable "
                    "(file permissions, read-only mount or URI), that the disk is not full and that the server is "
                    "reachable (PAMA_DB_URL); nothing was changed.") from err
            except BaseException:
                s.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()

    # -- runs ---------------------------------------------------------------------------------------------------
    def create_run(self, *, name: str, method: str, model: str, config: dict, objectives: list[dict],
                   total_steps: int = 0, sweep_id: str | None = None, run_id: str | None = None) -> str:
        run_id = run_id or new_id("r")
        with self.session() as s:
            s.add(Run(id=run_id, name=name, method=method, model=model, config=config, status="queued",
                      total_steps=total_steps, sweep_id=sweep_id))
            s.flush()
            for i, o in enumerate(objectives):
                s.add(RunObjective(run_id=run_id, position=i, name=o["name"], direction=o.get("direction", "maximize"),
                                   lower=float(o["lower"]), upper=float(o["upper"])))
        return run_id

    def get_run(self, run_id: str) -> dict | None:
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                return None
            out = _row(run)
            out["objectives"] = [
                _row(o) for o in s.scalars(select(RunObjective).where(RunObjective.run_id == run_id)
                                           .order_by(RunObjective.position))
            ]
            return out

    def require_run(self, run_id: str) -> dict:
        run = self.get_run(run_id)
        if run is None:
            raise StoreError(f"No run with id '{run_id}' in {self.safe_url}. `python -m pama runs` lists them.")
        return run

    def list_runs(self, *, status: str | None = None, method: str | None = None, sweep_id: str | None = None,
                  limit: int | None = None) -> list[dict]:
        q = select(Run).order_by(Run.created_at.desc())
        if status:
            q = q.where(Run.status == status)
        if method:
            q = q.where(Run.method == method)
        if sweep_id:
            q = q.where(Run.sweep_id == sweep_id)
        if limit:
            q = q.limit(limit)
        with self.session() as s:
            return [_row(r) for r in s.scalars(q)]

    def update_run(self, run_id: str, **fields) -> None:
        with self.session() as s:
            s.execute(update(Run).where(Run.id == run_id).values(**fields))

    def set_status(self, run_id: str, status: str, error: str | None = None) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {RUN_STATUSES}")
        fields: dict[str, Any] = {"status": status, "heartbeat_at": utcnow()}
        if status == "running":
            fields.update(started_at=utcnow(), error=None, finished_at=None, pid=os.getpid())
        if status in TERMINAL:
            fields["finished_at"] = utcnow()
        if error is not None:
            fields["error"] = error
        self.update_run(run_id, **fields)

    def heartbeat(self, run_id: str, step: int | None = None) -> None:
        fields: dict[str, Any] = {"heartbeat_at": utcnow()}
        if step is not None:
            fields["step"] = step
        self.update_run(run_id, **fields)

    def mark_stale_failed(self, grace_s: float | None = None) -> list[str]:
        """Runs whose process stopped sending heartbeats (killed, machine restarted) become 'failed', metrics kept.

        ``grace_s`` defaults to :func:`heartbeat_grace_s` ($PAMA_HEARTBEAT_GRACE_S, else 120 s)."""
        grace_s = heartbeat_grace_s() if grace_s is None else float(grace_s)
        cutoff = utcnow() - dt.timedelta(seconds=grace_s)
        stale = []
        for run in self.list_runs(status="running"):
            hb = run["heartbeat_at"] or run["started_at"] or run["created_at"]
            if hb < cutoff:
                stale.append(run["id"])
                with self.session() as s:
                    s.execute(update(Run).where(Run.id == run["id"], Run.status == "running").values(
                        status="failed", finished_at=utcnow(),
                        error=f"No heartbeat for more than {grace_s:g} s (the process died or was killed) at step "
                              f"{run['step']}. Resume with `python -m pama train --resume {run['id']}`."))
        return stale

    def delete_run(self, run_id: str) -> None:
        """Delete a run, its metrics, its points and the mixtures that used it (the caller removes its files)."""
        with self.session() as s:
            for p in s.scalars(select(Point).where(Point.kind == "mixture")):
                if p.mixture and run_id in p.mixture:
                    s.delete(p)
            s.execute(delete(Run).where(Run.id == run_id))

    # -- metrics ------------------------------------------------------------------------------------------------
    def log_metrics(self, run_id: str, step: int, values: dict[str, float]) -> None:
        """Idempotent per (run, key, step): a resumed run that repeats a step overwrites instead of failing."""
        rows = {k: _finite(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        with self.session() as s:
            s.execute(delete(Metric).where(Metric.run_id == run_id, Metric.step == step, Metric.key.in_(list(rows))))
            s.add_all([Metric(run_id=run_id, step=step, key=k, value=v) for k, v in rows.items()])
            s.execute(update(Run).where(Run.id == run_id).values(step=step, heartbeat_at=utcnow()))

    def metrics(self, run_id: str, keys: Iterable[str] | None = None) -> list[dict]:
        q = select(Metric.step, Metric.key, Metric.value).where(Metric.run_id == run_id)
        if keys is not None:
            q = q.where(Metric.key.in_(list(keys)))
        with self.session() as s:
            return [dict(step=r.step, key=r.key, value=r.value) for r in s.execute(q.order_by(Metric.step, Metric.key))]

    def count_metrics(self, run_id: str | None = None) -> int:
        q = select(func.count(Metric.id))
        if run_id:
            q = q.where(Metric.run_id == run_id)
        with self.session() as s:
            return int(s.scalar(q))

    # -- sweeps -------------------------------------------------------------------------------------------------
    def create_sweep(self, *, name: str, method: str, model: str, objectives: list[str], config: dict,
                     sweep_id: str | None = None) -> str:
        sweep_id = sweep_id or new_id("s")
        with self.session() as s:
            s.add(Sweep(id=sweep_id, name=name, method=method, model=model, objectives=list(objectives),
                        config=config, status="running"))
        return sweep_id

    def get_sweep(self, sweep_id: str) -> dict | None:
        with self.session() as s:
            sw = s.get(Sweep, sweep_id)
            return _row(sw) if sw else None

    def list_sweeps(self) -> list[dict]:
        with self.session() as s:
            return [_row(x) for x in s.scalars(select(Sweep).order_by(Sweep.created_at))]

    def update_sweep(self, sweep_id: str, **fields) -> None:
        with self.session() as s:
            s.execute(update(Sweep).where(Sweep.id == sweep_id).values(**fields))

    def delete_sweep(self, sweep_id: str) -> None:
        with self.session() as s:
            s.execute(delete(Sweep).where(Sweep.id == sweep_id))

    # -- queue jobs (pama.jobs) ---------------------------------------------------------------------------------
    def add_job(self, *, kind: str, target_id: str, argv: list[str], status: str = "queued", point: int | None = None,
                log: str | None = None, job_id: str | None = None) -> str:
        job_id = job_id or new_id("j")
        with self.session() as s:
            s.add(Job(id=job_id, kind=kind, target_id=target_id, argv=list(argv), status=status, point=point,
                      log=log, attempts=0))
        return job_id

    def get_job(self, job_id: str) -> dict | None:
        with self.session() as s:
            job = s.get(Job, job_id)
            return _row(job) if job else None

    def list_jobs(self, *, status: str | Iterable[str] | None = None, target_id: str | None = None) -> list[dict]:
        """Jobs, oldest first (``status``: one or several)."""
        q = select(Job).order_by(Job.created_at, Job.id)
        if status is not None:
            q = q.where(Job.status.in_([status] if isinstance(status, str) else list(status)))
        if target_id is not None:
            q = q.where(Job.target_id == target_id)
        with self.session() as s:
            return [_row(x) for x in s.scalars(q)]

    def update_job(self, job_id: str, **fields) -> None:
        with self.session() as s:
            s.execute(update(Job).where(Job.id == job_id).values(**fields))

    def move_job(self, job_id: str, from_status: str | Iterable[str], to_status: str, **fields) -> bool:
        """Change a job's status only if it is still ``from_status``: one UPDATE, so of two workers (or a worker and
        a cancel) racing for the same job exactly one wins. True for the winner."""
        olds = [from_status] if isinstance(from_status, str) else list(from_status)
        if to_status not in JOB_STATUSES:
            raise StoreError(f"unknown job status '{to_status}'")
        now = utcnow()
        values: dict[str, Any] = dict(status=to_status, **fields)
        if to_status == "running":
            values.setdefault("started_at", now)
            values.setdefault("heartbeat_at", now)
        if to_status in TERMINAL:
            values.setdefault("finished_at", now)
        with self.session() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.status.in_(olds)).values(**values))
            return res.rowcount == 1

    def claim_job(self, job_id: str, *, worker: str, device: str | None = None) -> bool:
        """Take a queued job for ``worker`` ('host:pid'), counting the start in ``attempts``; False when another
        worker took it first or it was cancelled meanwhile."""
        return self.move_job(job_id, "queued", "running", worker=worker, device=device, pid=None, error=None,
                             attempts=Job.attempts + 1, finished_at=None)

    def job_heartbeat(self, job_id: str) -> None:
        self.update_job(job_id, heartbeat_at=utcnow())

    def stale_jobs(self, grace_s: float) -> list[dict]:
        """Running jobs whose worker has not written a heartbeat for ``grace_s`` (killed, machine lost)."""
        cutoff = utcnow() - dt.timedelta(seconds=float(grace_s))
        return [j for j in self.list_jobs(status="running") if (j["heartbeat_at"] or j["created_at"]) < cutoff]

    def release_job(self, job_id: str, grace_s: float, **fields) -> bool:
        """Put a stale running job back in 'queued', if it is still running and still stale: the UPDATE's
        condition, so two workers releasing at once release it once (``attempts`` counts its starts)."""
        cutoff = utcnow() - dt.timedelta(seconds=float(grace_s))
        with self.session() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.status == "running", Job.heartbeat_at < cutoff)
                            .values(status="queued", worker=None, pid=None, device=None, heartbeat_at=None,
                                    **fields))
            return res.rowcount == 1

    # -- points, values, generations ----------------------------------------------------------------------------
    def add_point(self, *, kind: str, label: str, model: str, values: dict[str, tuple[float, float, float]],
                  sweep_id: str | None = None, run_id: str | None = None, method: str | None = None,
                  preference: list[float] | None = None, mixture: dict[str, float] | None = None,
                  eval_config: dict | None = None, kl: float | None = None, mean_length: float | None = None,
                  distinct_1: float | None = None, distinct_2: float | None = None,
                  eos_fraction: float | None = None, generations: list[dict] | None = None, point_id: str | None = None) -> str:
        """Store one evaluated point with its per-objective (mean, ci_low, ci_high) and generations, atomically."""
        if kind not in POINT_KINDS:
            raise ValueError(f"unknown point kind {kind!r}; expected one of {POINT_KINDS}")
        point_id = point_id or new_id("p")
        with self.session() as s:
            s.add(Point(id=point_id, kind=kind, label=label, model=model, sweep_id=sweep_id, run_id=run_id,
                        method=method, preference=preference, mixture=mixture, eval_config=eval_config or {},
                        kl=kl, mean_length=mean_length, distinct_1=distinct_1, distinct_2=distinct_2,
                        eos_fraction=eos_fraction))
            s.flush()
            for name, (mean, lo, hi) in values.items():
                s.add(PointValue(point_id=point_id, objective=name, mean=_finite(mean), ci_low=_finite(lo),
                                 ci_high=_finite(hi)))
            for g in generations or []:
                s.add(Generation(point_id=point_id, prompt_index=int(g["prompt_index"]), prompt=g["prompt"],
                                 text=g["text"], scores=g.get("scores", {})))
        return point_id

    def points(self, *, sweep_id: str | None = None, run_id: str | None = None, kind: str | None = None,
               ids: Iterable[str] | None = None) -> list[dict]:
        """Points with their values as {objective: {mean, ci_low, ci_high, lc_mean, lc_low, lc_high}} (the lc_*
        length-controlled score is None where not computed or where the objective is length itself)."""
        q = select(Point).order_by(Point.created_at)
        if sweep_id:
            q = q.where(Point.sweep_id == sweep_id)
        if run_id:
            q = q.where(Point.run_id == run_id)
        if kind:
            q = q.where(Point.kind == kind)
        if ids is not None:
            q = q.where(Point.id.in_(list(ids)))
        with self.session() as s:
            pts = [_row(p) for p in s.scalars(q)]
            if not pts:
                return []
            vals = s.scalars(select(PointValue).where(PointValue.point_id.in_([p["id"] for p in pts])))
            by_point: dict[str, dict] = {}
            for v in vals:
                by_point.setdefault(v.point_id, {})[v.objective] = dict(mean=v.mean, ci_low=v.ci_low, ci_high=v.ci_high,
                                                                        lc_mean=v.lc_mean, lc_low=v.lc_low,
                                                                        lc_high=v.lc_high)
        for p in pts:
            p["values"] = by_point.get(p["id"], {})
        return pts

    def set_controlled(self, point_id: str, values: dict[str, tuple[float, float, float] | None]) -> None:
        """Write a point's length-controlled (mean, low, high) per objective (pama.lengthcontrol); None clears it
        (an objective that is length itself). Objectives the point has no value for are refused: nothing is
        written."""
        with self.session() as s:
            rows = {v.objective: v for v in s.scalars(select(PointValue).where(PointValue.point_id == point_id))}
            unknown = [o for o in values if o not in rows]
            if unknown:
                raise ValueError(f"point {point_id!r} has no value for {', '.join(map(repr, unknown))}")
            for name, triple in values.items():
                lc = (None, None, None) if triple is None else tuple(_finite(x) for x in triple)
                rows[name].lc_mean, rows[name].lc_low, rows[name].lc_high = lc

    def get_point(self, point_id: str) -> dict | None:
        found = self.points(ids=[point_id])
        return found[0] if found else None

    def delete_point(self, point_id: str) -> None:
        with self.session() as s:
            s.execute(delete(Point).where(Point.id == point_id))

    def generations(self, point_id: str, limit: int | None = None) -> list[dict]:
        q = select(Generation).where(Generation.point_id == point_id).order_by(Generation.prompt_index, Generation.id)
        if limit:
            q = q.limit(limit)
        with self.session() as s:
            return [_row(g) for g in s.scalars(q)]

    # -- blind votes --------------------------------------------------------------------------------------------
    def add_vote(self, *, token: str, point_a: str, point_b: str, prompt: str, text_a: str, text_b: str, vote: str,
                 voter: str | None = None, sweep_id: str | None = None, prompt_index: int | None = None,
                 source: str | None = None) -> dict:
        """Record one ballot; returns {id, duplicate}. The same ``token`` twice is counted once (the first wins).

        Refused (``VoteRefused``, nothing stored) when a point no longer exists or the choice is unknown. The row is
        inserted before the points are checked, so on SQLite the check runs under the write lock."""
        if vote not in VOTE_CHOICES:
            raise VoteRefused(f"unknown vote {vote!r}; expected one of {', '.join(VOTE_CHOICES)}")
        token = (token or "").strip()
        if not token or len(token) > 64:
            raise VoteRefused("a vote needs a ballot token of 1-64 characters (it makes double submits count once)")
        if point_a == point_b:
            raise VoteRefused("a vote compares two different points")
        voter = (voter or "").strip()[:200] or None
        existing = self.get_vote(token)
        if existing is not None:
            return dict(id=existing["id"], duplicate=True)
        try:
            with self.session() as s:
                row = Vote(token=token, voter=voter, sweep_id=sweep_id, prompt_index=prompt_index, prompt=prompt,
                           point_a=point_a, point_b=point_b, text_a=text_a, text_b=text_b, vote=vote, source=source)
                s.add(row)
                s.flush()
                found = set(s.scalars(select(Point.id).where(Point.id.in_([point_a, point_b]))))
                missing = [p for p in (point_a, point_b) if p not in found]
                if missing:
                    raise VoteRefused(f"point {', '.join(missing)} was deleted after this pair was drawn, so the vote "
                                      "was not recorded. Draw a new pair.")
                vote_id = row.id
        except IntegrityError:
            existing = self.get_vote(token)   # a concurrent submit of the same ballot got there first
            if existing is None:
                raise
            return dict(id=existing["id"], duplicate=True)
        return dict(id=vote_id, duplicate=False)

    def get_vote(self, token: str) -> dict | None:
        with self.session() as s:
            v = s.scalar(select(Vote).where(Vote.token == token))
            return _row(v) if v else None

    def votes(self, *, sweep_id: str | None = None, point_ids: Iterable[str] | None = None) -> list[dict]:
        """Votes in order of arrival: of one sweep, and/or between two of ``point_ids`` (both must be in it)."""
        q = select(Vote).order_by(Vote.id)
        if sweep_id:
            q = q.where(Vote.sweep_id == sweep_id)
        if point_ids is not None:
            ids = list(point_ids)
            q = q.where(Vote.point_a.in_(ids), Vote.point_b.in_(ids))
        with self.session() as s:
            return [_row(v) for v in s.scalars(q)]

    def counts(self) -> dict[str, int]:
        with self.session() as s:
            return {
                "runs": int(s.scalar(select(func.count(Run.id)))),
                "sweeps": int(s.scalar(select(func.count(Sweep.id)))),
                "points": int(s.scalar(select(func.count(Point.id)))),
            }

    # -- typed records (pama.records): frozen, read-only; the dict methods above stay for the callers not moved ---
    def run_record(self, run_id: str) -> RunRecord | None:
        run = self.get_run(run_id)
        return None if run is None else RunRecord.from_dict(run)

    def run_records(self, *, status: str | None = None, method: str | None = None, sweep_id: str | None = None,
                    limit: int | None = None) -> list[RunRecord]:
        """``list_runs`` as records, each with its objectives (one more query for all of them)."""
        runs = self.list_runs(status=status, method=method, sweep_id=sweep_id, limit=limit)
        if not runs:
            return []
        objectives: dict[str, list[dict]] = {}
        with self.session() as s:
            q = (select(RunObjective).where(RunObjective.run_id.in_([r["id"] for r in runs]))
                 .order_by(RunObjective.run_id, RunObjective.position))
            for o in s.scalars(q):
                objectives.setdefault(o.run_id, []).append(_row(o))
        return [RunRecord.from_dict({**r, "objectives": objectives.get(r["id"], [])}) for r in runs]

    def sweep_record(self, sweep_id: str) -> SweepRecord | None:
        sweep = self.get_sweep(sweep_id)
        return None if sweep is None else SweepRecord.from_dict(sweep)

    def sweep_records(self) -> list[SweepRecord]:
        return [SweepRecord.from_dict(x) for x in self.list_sweeps()]

    def point_record(self, point_id: str) -> PointRecord | None:
        point = self.get_point(point_id)
        return None if point is None else PointRecord.from_dict(point)

    def point_records(self, *, sweep_id: str | None = None, run_id: str | None = None, kind: str | None = None,
                      ids: Iterable[str] | None = None) -> list[PointRecord]:
        return [PointRecord.from_dict(p) for p in self.points(sweep_id=sweep_id, run_id=run_id, kind=kind, ids=ids)]
