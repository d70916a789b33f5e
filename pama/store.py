"""The run store: runs, their objectives and per-step metrics, sweeps, evaluated points and generations.

SQLAlchemy 2 over SQLite (default, under checkpoints/) or any URL in ``PAMA_DB_URL`` (PostgreSQL included).
Methods return plain dicts so the CLI and the Streamlit pages never hold ORM objects across sessions.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import (
    JSON, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, create_engine,
    delete, event, func, inspect, select, update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError, DatabaseError, DataError, IntegrityError, NoSuchModuleError, OperationalError, SQLAlchemyError,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from . import paths
from .records import PointRecord, RunRecord, SweepRecord

RUN_STATUSES = ("queued", "running", "finished", "failed", "cancelled")
TERMINAL = ("finished", "failed", "cancelled")
POINT_KINDS = ("base", "adapter", "mixture", "conditioned")  # conditioned: one conditioned run at one preference
VOTE_CHOICES = ("a", "b", "tie", "both_bad")
SCHEMA_HEAD = "0006"
UPGRADE_HINT = "python -m pama db upgrade"


DEFAULT_HEARTBEAT_S = 10.0
DEFAULT_HEARTBEAT_GRACE_S = 120.0


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        warnings.warn(f"{name}={raw!r} is not a positive number of seconds; using {default:g}", stacklevel=3)
        return default
    return value


def heartbeat_interval_s() -> float:
    """How often a training process writes its heartbeat ($PAMA_HEARTBEAT_S, default 10 s)."""
    return _env_seconds("PAMA_HEARTBEAT_S", DEFAULT_HEARTBEAT_S)


def heartbeat_grace_s() -> float:
    """How long a running run may stay silent before it is marked failed ($PAMA_HEARTBEAT_GRACE_S, default 120 s).

    Keep it several heartbeat intervals long: a run is only declared dead after missing a few heartbeats."""
    return _env_seconds("PAMA_HEARTBEAT_GRACE_S", DEFAULT_HEARTBEAT_GRACE_S)


class StoreError(RuntimeError):
    """The store cannot be used as configured; the message says what to do."""


class SchemaOutOfDateError(StoreError):
    pass


class VoteRefused(StoreError):
    """A blind vote that cannot be recorded (a point was deleted, a bad choice); nothing was stored."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


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


def _row(obj) -> dict:
    out = {c.key: getattr(obj, c.key) for c in inspect(obj).mapper.column_attrs}
    for k, v in out.items():
        if isinstance(v, dt.datetime) and v.tzinfo is None:
            out[k] = v.replace(tzinfo=dt.timezone.utc)
    return out


def _finite(x: float) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"refusing to store a non-finite value ({x})")
    return x


def known_revisions() -> set[str]:
    """The schema versions this release has migrations for (file names NNNN_*.py)."""
    return {p.name.split("_")[0] for p in (Path(__file__).parent / "migrations" / "versions").glob("*.py")}


def alembic_config(url: str):
    from alembic.config import Config  # heavy: only for schema creation and upgrades

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


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
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._Session = sessionmaker(self.engine, expire_on_commit=False)
        self._check_schema(create)

    # -- schema -------------------------------------------------------------------------------------------------
    def schema_version(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                names = inspect(conn).get_table_names()
                if "alembic_version" not in names:
                    return None if "runs" not in names else "unversioned"
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except DatabaseError as err:  # operational (unreachable, locked), programming, 'file is not a database'
            raise StoreError(
                f"Cannot open the database at '{self.safe_url}': {str(err.orig).strip()}. Check that the server is running "
                "and the URL, credentials and file permissions are right (PAMA_DB_URL)."
            ) from err

    def _check_schema(self, create: bool) -> None:
        version = self.schema_version()
        if version is None:
            if not create:
                raise StoreError(f"No pama store at '{self.safe_url}'. Run `python -m pama db init` to create one.")
            try:
                version = self._create_schema()
            except DatabaseError as err:
                raise StoreError(f"Cannot create the store at '{self.safe_url}': {str(err.orig).strip()}.") from err
        if version != SCHEMA_HEAD and version not in known_revisions() and version != "unversioned":
            raise SchemaOutOfDateError(
                f"The database at '{self.safe_url}' has schema version {version}, written by a newer release of "
                f"pama (this one knows up to {SCHEMA_HEAD}). Upgrade pama, or point PAMA_DB_URL at another database."
            )
        if version != SCHEMA_HEAD:
            raise SchemaOutOfDateError(
                f"The database at '{self.safe_url}' has schema version {version}; this version of pama needs "
                f"{SCHEMA_HEAD}. Back it up, then run `{UPGRADE_HINT}` (set PAMA_DB_URL to the same URL)."
            )

    def _create_schema(self) -> str | None:
        """Create the tables and stamp the version in one transaction that holds the database's write lock, so that
        several processes opening a new store at once (four `pama train`, the app) neither race nor half-create it.
        Returns the version found under the lock (another process may have created the store meanwhile)."""
        from alembic import command  # heavy: only for schema creation and upgrades

        with self.engine.connect() as conn:
            if self.engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")   # waits (busy_timeout) for any other creator
            elif self.engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7261040)")
            names = inspect(conn).get_table_names()
            if "alembic_version" in names or "runs" in names:
                version = (conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
                           if "alembic_version" in names else "unversioned")
                conn.rollback()
                return version
            Base.metadata.create_all(conn)
            cfg = alembic_config(self.url)
            cfg.attributes["connection"] = conn
            command.stamp(cfg, "head")
            conn.commit()
        return SCHEMA_HEAD

    @staticmethod
    def upgrade(url: str | None = None) -> str:
        """Explicit upgrade to the current schema (Alembic); never done implicitly on open."""
        from alembic import command  # heavy: only for schema creation and upgrades

        url = url or paths.default_db_url()
        engine = create_engine(url)
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # foreign keys off while migrating: SQLite changes a constraint by copying the table and dropping the old
            # one, and with them on that drop would cascade-delete the rows of its child tables (0005's points)
            event.listen(engine, "connect", _sqlite_pragmas_migrating)
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() if sqlite else []
            if broken:  # roll the whole upgrade back rather than leave dangling references
                raise StoreError(f"the upgrade of '{describe_url(url)}' would leave {len(broken)} rows referring to "
                                 f"missing rows (first: {tuple(broken[0])}); nothing was changed")
        engine.dispose()
        return SCHEMA_HEAD

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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    try:
        cur.execute("PRAGMA journal_mode=WAL")
    except Exception:  # read-only media or :memory: keep their journal mode
        pass
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_pragmas_migrating(dbapi_conn, record) -> None:
    _sqlite_pragmas(dbapi_conn, record)
    dbapi_conn.execute("PRAGMA foreign_keys=OFF")


def describe_url(url: str) -> str:
    """The URL without its password, safe to show in the app."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "<invalid URL>"
