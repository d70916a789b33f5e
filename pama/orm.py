"""The store's tables as SQLAlchemy 2 declarative models, with the values their columns allow.

The schema in Python: ``pama.store`` reads and writes through these classes and hands out dicts and records
(``pama.records``), never ORM objects; ``pama.migrate`` creates the tables from ``Base.metadata`` and the Alembic
environment (``pama/migrations/env.py``) compares against it. A change here needs a migration in
``pama/migrations/versions/`` and a new ``pama.migrate.SCHEMA_HEAD``.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from sqlalchemy import (
    JSON, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, inspect,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RUN_STATUSES = ("queued", "running", "finished", "failed", "cancelled")
POINT_KINDS = ("base", "adapter", "mixture", "conditioned")  # conditioned: one conditioned run at one preference
VOTE_CHOICES = ("a", "b", "tie", "both_bad")
# a queue job: waiting = a sweep's evaluation, enqueued when its last point is trained (pama.jobs)
JOB_STATUSES = ("waiting", "queued", "running", "finished", "failed", "cancelled")
JOB_KINDS = ("train", "sweep", "point", "evaluate")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _in(values: Iterable[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON, Any: JSON}


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    pid: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    adapter_path: Mapped[str | None] = mapped_column(String(1000))
    sweep_id: Mapped[str | None] = mapped_column(ForeignKey("sweeps.id", ondelete="SET NULL"), index=True)
    __table_args__ = (CheckConstraint(f"status IN ({_in(RUN_STATUSES)})", name="ck_runs_status"),)


class RunObjective(Base):
    __tablename__ = "run_objectives"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(500))
    direction: Mapped[str] = mapped_column(String(8), default="maximize")
    lower: Mapped[float] = mapped_column(Float)
    upper: Mapped[float] = mapped_column(Float)
    __table_args__ = (CheckConstraint("direction IN ('maximize', 'minimize')", name="ck_objective_direction"),)


class Metric(Base):
    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)
    __table_args__ = (
        UniqueConstraint("run_id", "key", "step", name="uq_metric_run_key_step"),
        Index("ix_metrics_run_step", "run_id", "step"),
    )


class Sweep(Base):
    __tablename__ = "sweeps"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(500))
    objectives: Mapped[list] = mapped_column(JSON)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    summary: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (CheckConstraint(f"status IN ({_in(RUN_STATUSES)})", name="ck_sweeps_status"),)


class Point(Base):
    __tablename__ = "points"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sweep_id: Mapped[str | None] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(300))
    method: Mapped[str | None] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(500))
    preference: Mapped[list | None] = mapped_column(JSON)
    mixture: Mapped[dict | None] = mapped_column(JSON)
    eval_config: Mapped[dict] = mapped_column(JSON, default=dict)
    kl: Mapped[float | None] = mapped_column(Float)
    mean_length: Mapped[float | None] = mapped_column(Float)
    distinct_1: Mapped[float | None] = mapped_column(Float)
    distinct_2: Mapped[float | None] = mapped_column(Float)
    eos_fraction: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (CheckConstraint(f"kind IN ({_in(POINT_KINDS)})", name="ck_points_kind"),)


class PointValue(Base):
    __tablename__ = "point_values"
    point_id: Mapped[str] = mapped_column(ForeignKey("points.id", ondelete="CASCADE"), primary_key=True)
    objective: Mapped[str] = mapped_column(String(500), primary_key=True)
    mean: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float] = mapped_column(Float)
    ci_high: Mapped[float] = mapped_column(Float)
    # the length-controlled score and its interval (pama.lengthcontrol, migration 0006): NULL when not computed yet
    # or when the objective is length itself
    lc_mean: Mapped[float | None] = mapped_column(Float)
    lc_low: Mapped[float | None] = mapped_column(Float)
    lc_high: Mapped[float | None] = mapped_column(Float)


class Generation(Base):
    __tablename__ = "generations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    point_id: Mapped[str] = mapped_column(ForeignKey("points.id", ondelete="CASCADE"), index=True)
    prompt_index: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    scores: Mapped[dict] = mapped_column(JSON, default=dict)


class Vote(Base):
    """One blind pairwise judgement between two points on one prompt (see docs/votes.md).

    point_a / point_b are plain ids, not foreign keys: a vote outlives the points it judged, so deleting a run keeps
    the record of what people said (new votes on a deleted point are refused by ``Store.add_vote``). ``token`` is the
    ballot's client nonce: a double submit of the same ballot is stored once."""
    __tablename__ = "votes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token: Mapped[str] = mapped_column(String(64))
    voter: Mapped[str | None] = mapped_column(String(200))
    sweep_id: Mapped[str | None] = mapped_column(String(32), index=True)
    prompt_index: Mapped[int | None] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    point_a: Mapped[str] = mapped_column(String(32), index=True)
    point_b: Mapped[str] = mapped_column(String(32), index=True)
    text_a: Mapped[str] = mapped_column(Text)
    text_b: Mapped[str] = mapped_column(Text)
    vote: Mapped[str] = mapped_column(String(8))
    source: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (
        UniqueConstraint("token", name="uq_votes_token"),
        CheckConstraint(f"vote IN ({_in(VOTE_CHOICES)})", name="ck_votes_vote"),
        CheckConstraint("point_a <> point_b", name="ck_votes_two_points"),
    )


class Job(Base):
    """One job of the queue (pama.jobs): what a worker runs (``argv``), who runs it (worker, host, device, pid), its
    heartbeat (written by the worker while the job's process lives) and how often it was started (``attempts``: a
    job whose worker died is released and started once more, docs/deployment.md). ``target_id`` is the run a train
    job trains or the sweep a point / evaluate job belongs to; the queue engine (Huey) holds only the job's id."""
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(32), index=True)
    point: Mapped[int | None] = mapped_column(Integer)
    argv: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(300))
    device: Mapped[str | None] = mapped_column(String(32))
    pid: Mapped[int | None] = mapped_column(Integer)
    log: Mapped[str | None] = mapped_column(String(1000))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(JOB_STATUSES)})", name="ck_jobs_status"),
        CheckConstraint(f"kind IN ({_in(JOB_KINDS)})", name="ck_jobs_kind"),
    )


def row(obj) -> dict:
    """A mapped object as a plain dict of its columns, datetimes in UTC (SQLite hands them back naive)."""
    out = {c.key: getattr(obj, c.key) for c in inspect(obj).mapper.column_attrs}
    for k, v in out.items():
        if isinstance(v, dt.datetime) and v.tzinfo is None:
            out[k] = v.replace(tzinfo=dt.timezone.utc)
    return out
