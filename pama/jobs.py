"""Background jobs for the app: training (and sweeps) run as detached subprocesses that report to the store.

``start_train(cfg)`` checks the config, creates the run row, writes the config to a YAML file and starts
``python -m pama train --config FILE --run-id ID --quiet`` in its own process group (so it outlives the Streamlit
session that started it), logging to ``logs/<run id>.log``; it returns a :class:`Job` at once (sweeps likewise).
Everything the app shows afterwards (status, step, ETA, curves) comes from the store, so progress survives page
reloads and closed tabs. ``cancel`` sets the status to 'cancelled' (the trainer stops at its next step) and sends
SIGTERM. ``reap`` marks a run whose process is gone (or silent for longer than a
grace period) as failed, with the tail of its log as the message.

Jobs go through a queue (Huey: SqliteHuey on a file beside a SQLite store, SqlHuey on tables of a PostgreSQL
store's database; docs/deployment.md says why Huey): ``start_train`` / ``start_sweep`` write a job row (the store's
``jobs`` table) per job (a run; a sweep's points, then its evaluation, which waits for them), put its id in the queue
and make sure a local worker (``python -m pama worker --local``, one slot; not with PAMA_LOCAL_WORKER=0) serves it,
so two runs started together run one after the other, the second 'queued, 1st in line' (``queue_position``), and a
queued job survives a server restart (``reap`` starts a worker again when jobs wait). A worker claims a job with one
conditional UPDATE, writes its heartbeat while its process lives, and releases the jobs of workers that died
(``release_stale``: started once more from the last checkpoint, then failed). An in-memory store starts each job's
process at once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import queue as queue_mod
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from . import paths
from .config import ConfigError, TrainConfig, from_dict
from .procs import pid_alive, track, worker_lock_path
from .records import ACTIVE_STATUSES as ACTIVE  # queued or running: a process may still own the run
from .runs import default_sweep_name, sweep_shape
from .store import Store, heartbeat_grace_s, heartbeat_interval_s

GRACE_S = 120.0

class JobError(RuntimeError):
    """A job could not be started; the message says why (with the end of its log) and what to do."""


@dataclass
class Job:
    kind: str           # 'train' or 'sweep'
    id: str             # run id or sweep id
    pid: int | None
    log: str
    config_file: str
    command: list[str]
    queued: bool = False  # True: enqueued, a worker starts the process later (QueuedJob)


class QueuedJob(Job):
    """A job waiting in the queue: its ``pid`` is the process a worker started for it, read from its job file
    (None while it waits), so a caller holding the Job can still signal the process once it runs."""

    @property
    def pid(self) -> int | None:  # type: ignore[override]
        job = read_job(self.id)
        return int(job["pid"]) if job and job.get("pid") else None

    @pid.setter
    def pid(self, value) -> None:  # the dataclass __init__ assigns it; the job file is the truth
        pass


def logs_dir() -> Path:
    return paths.home() / "logs"


def log_path(job_id: str) -> Path:
    return logs_dir() / f"{job_id}.log"


def job_file(job_id: str) -> Path:
    return logs_dir() / f"{job_id}.json"


def _config_dict(cfg) -> dict:
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) \
        else dict(cfg)


def tail(path: str | Path, lines: int = 12, max_chars: int = 3000) -> str:
    """The last lines of a log file, without progress-bar noise ('' when there is none)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    keep = [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip() and "it/s]" not in ln
            and "s/step]" not in ln]
    return "\n".join(keep[-lines:])[-max_chars:]


def _launch(kind: str, cfg, target_id: str, *, store, extra_args: Sequence[str] = (),
            env: Mapping[str, str] | None = None, header: str = "", queued_argv: Sequence[str] | None = None) -> Job:
    """Run ``python -m pama KIND --config FILE ...`` for a row that already exists (``target_id``), logging to
    ``logs/<target_id>.log`` (after ``header``): through the queue where the store has one (a QueuedJob: a job row
    and its id in the queue; ``queued_argv``, when given, is what the worker runs: arguments that read the config
    from the store, so that a worker on another machine needs no file of this one), else started at once."""
    logs_dir().mkdir(parents=True, exist_ok=True)
    cfg_file = logs_dir() / f"{kind}-{target_id}.yaml"
    cfg_file.write_text(yaml.safe_dump(_config_dict(cfg), sort_keys=False))
    log_file = log_path(target_id)
    with open(log_file, "ab") as log:
        log.write(header.encode())
    argv = ["-m", "pama", kind, "--config", str(cfg_file), *extra_args]
    if not has_queue(store.url):
        return _spawn(kind, target_id, argv, db_url=store.url, env=env)
    jid = store.add_job(kind=kind, target_id=target_id, argv=list(queued_argv or argv), log=str(log_file))
    enqueue(store, jid, env=env)
    return QueuedJob(kind=kind, id=target_id, pid=None, log=str(log_file), config_file=str(cfg_file),
                     command=[sys.executable, *(queued_argv or argv)], queued=True)


def _spawn(kind: str, job_id: str, argv: Sequence[str], *, db_url: str | None,
           env: Mapping[str, str] | None = None, info: Mapping | None = None, log_id: str | None = None) -> Job:
    """Start ``python ARGV`` in its own process group (it outlives whoever started it), appending to its log
    (``logs/<log_id or job_id>.log``), and write the job file (pid, host) that cancel and reap read; the Job holds
    the Popen as ``proc``."""
    logs_dir().mkdir(parents=True, exist_ok=True)
    log_file = log_path(log_id or job_id)
    cmd = [sys.executable, *argv]
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env["PYTHONUNBUFFERED"] = "1"
    if db_url:  # through the environment, not argv: a password in argv is visible to every user in `ps`
        child_env["PAMA_DB_URL"] = db_url
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(paths.REPO), env=child_env, start_new_session=True)
    track(proc)
    cfg_file = argv[argv.index("--config") + 1] if "--config" in argv else ""
    job = Job(kind=kind, id=job_id, pid=proc.pid, log=str(log_file), config_file=cfg_file, command=cmd)
    job_file(job_id).write_text(json.dumps(dict(dataclasses.asdict(job), host=socket.gethostname(),
                                                started=time.time(), **(info or {})), indent=2))
    job.proc = proc  # not a field: the job file above is the dataclass's fields
    return job


def _refusal(kind: str, err: BaseException) -> JobError:
    """A config, prompt source or model the job would refuse, as the one-line JobError the app shows."""
    lines = [ln.strip().removeprefix("- ") for ln in str(err).splitlines() if ln.strip()]
    return JobError(f"The {kind} job refused to start: " + " ".join(lines or [type(err).__name__]))


def start_train(cfg, *, store=None, db_url: str | None = None, timeout_s: float | None = None,
                env: Mapping[str, str] | None = None) -> Job:
    """Start ``python -m pama train`` on ``cfg`` (a TrainConfig or a dict of its fields) in the background.

    As for sweeps, the run row is created here first and its id passed in (``--run-id``): a config the trainer
    would refuse, a missing prompt source or an unknown model raise JobError before any row exists; the pid is
    written to the row at once so the app can cancel the run and spot a dead process. ``timeout_s`` is accepted for
    older callers; nothing is waited for."""
    from . import runs  # heavy (torch, via models and methods): loaded only when the app starts a run

    store = store if store is not None else Store(db_url)
    data = _config_dict(cfg)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the child prints its own warnings to its log
            checked = from_dict(TrainConfig, dict(data), source="the train job").validate()
        runs.preflight(checked)
    except (ConfigError, ValueError, OSError) as err:  # ModelNotFoundError and PromptError are ValueErrors
        raise _refusal("train", err) from None
    run_id = runs.create_run_record(store, checked)
    try:
        job = _launch("train", data, run_id, store=store, extra_args=["--run-id", run_id, "--quiet"], env=env,
                      header=f"run id: {run_id}\n",  # the log's first line, as `python -m pama train` prints it
                      queued_argv=["-m", "pama", "train", "--run-id", run_id, "--quiet"])
    except OSError as err:
        store.set_status(run_id, "failed", error=f"could not start the training process: {err}")
        raise JobError(f"could not start the training process: {err}") from None
    if not job.queued:
        store.update_run(run_id, pid=job.pid)
    return job


def start_sweep(cfg, *, store, timeout_s: float | None = None, env: Mapping[str, str] | None = None,
                name: str | None = None) -> Job:
    """Start a sweep (pama.sweep) in the background on a validated SweepConfig; returns once it is started.

    The sweep record is created here first (so its id is known at once and the app can show it), then
    ``python -m pama sweep --resume <id>`` trains and evaluates every grid point of it. ``timeout_s`` is accepted
    for older callers; nothing is waited for."""
    data = _config_dict(cfg)
    sweep_id = store.create_sweep(
        name=name or data.get("name") or default_sweep_name(data),
        method=data["method"], model=data["model"], objectives=list(data["objectives"]), config=data)
    if not has_queue(store.url):
        try:
            return _launch("sweep", data, sweep_id, store=store, extra_args=["--resume", sweep_id, "--quiet"],
                           env=env)
        except OSError as err:
            store.update_sweep(sweep_id, status="failed")
            raise JobError(f"could not start the sweep process: {err}") from None
    # through the queue: one job per grid point (N workers train N points at once) and the evaluation, which waits
    # until the last point is trained (``_after``); the sweep's status follows its jobs
    store.update_sweep(sweep_id, status="queued")  # a point's process sets 'running' when a worker starts it
    logs_dir().mkdir(parents=True, exist_ok=True)
    log_file = log_path(sweep_id)
    (logs_dir() / f"sweep-{sweep_id}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    base = ["-m", "pama", "sweep", "--resume", sweep_id, "--quiet"]
    points = sweep_shape({**data, "objectives": list(data["objectives"])})[0]
    jids = [store.add_job(kind="point", target_id=sweep_id, point=i, argv=[*base, "--point", str(i)],
                          log=str(log_file)) for i in range(points)]
    store.add_job(kind="evaluate", target_id=sweep_id, argv=base, status="waiting", log=str(log_file))
    for jid in jids:
        enqueue(store, jid, env=env)
    return QueuedJob(kind="sweep", id=sweep_id, pid=None, log=str(log_file),
                     config_file=str(logs_dir() / f"sweep-{sweep_id}.yaml"), command=[sys.executable, *base],
                     queued=True)


def cancel_sweep(store, sweep_id: str) -> bool:
    """Stop a sweep: cancel its active run (the trainer stops at its next step) and SIGTERM the sweep process."""
    sweep = store.get_sweep(sweep_id)
    if sweep is None or sweep["status"] not in ACTIVE:
        return False
    for run in store.list_runs(sweep_id=sweep_id):
        if run["status"] in ACTIVE:
            store.set_status(run["id"], "cancelled", error="cancelled by the user (sweep cancelled)")
    for queued in store.list_jobs(target_id=sweep_id, status=("waiting", "queued", "running")):
        cancel_job(store, queued["id"], reason="cancelled by the user (sweep cancelled)")
    job = read_job(sweep_id)
    if job and job.get("host") == socket.gethostname() and pid_alive(int(job["pid"])):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(job["pid"]), signal.SIGTERM)
    store.update_sweep(sweep_id, status="cancelled")
    return True


def sweep_progress(sweep: Mapping, runs: Sequence[Mapping], *, position: int | None = None) -> dict:
    """Trained / total runs of a sweep (one for a conditioned sweep) and its current run, from the store's dicts
    (``position``: its place in the queue while it waits there)."""
    cfg = sweep.get("config") or {}
    try:
        total = sweep_shape({**cfg, "objectives": sweep.get("objectives") or []})[0]
    except Exception:  # noqa: BLE001 - an old or foreign config: show what there is
        total = len(runs)
    done = sum(1 for r in runs if r.get("status") == "finished")
    current = next((r for r in runs if r.get("status") in ACTIVE), None)
    phase = sweep.get("status", "queued")
    if phase == "queued" and position:
        phase = f"queued, {ordinal(position)} in line"
    evaluation = None
    if phase == "running":
        training = current is not None or done < total
        phase = (f"training point {min(done + 1, total)}/{total}" if training
                 else "evaluating the points on held-out prompts")
        evaluation = None if training else evaluation_progress((sweep.get("summary") or {}).get("evaluation"))
        if evaluation is not None:
            phase = "evaluating: " + evaluation["text"]
    return dict(status=sweep.get("status"), total=total, done=done, current=current, phase=phase,
                fraction=min(1.0, done / total) if total else 0.0, active=sweep.get("status") in ACTIVE,
                evaluation=evaluation)


def evaluation_progress(state: Mapping | None, *, now: float | None = None) -> dict | None:
    """What the pages show of a sweep's evaluation, from the ``summary["evaluation"]`` the sweep process writes
    (``pama.sweep.EvalProgress``): points done of total, prompts done for the current point(s), elapsed time (to now)
    and the ETA (the sweep's estimate less the time since it wrote it); None when there is none. ``fraction`` counts
    prompt-evaluations, so the bar moves within a point."""
    if not isinstance(state, Mapping) or not state.get("points_total"):
        return None
    now = time.time() if now is None else now
    pts, total = int(state.get("points_done") or 0), int(state["points_total"])
    pd, pt = int(state.get("prompts_done") or 0), int(state.get("prompts_total") or 0)
    group = max(1, int(state.get("group") or 1))
    since = max(0.0, now - float(state.get("updated") or now))
    started = state.get("started")
    elapsed = now - float(started) if started else state.get("elapsed_s")
    eta = state.get("eta_s")
    eta = None if eta is None else max(0.0, float(eta) - since)
    work = total * pt
    fraction = min(1.0, (pts * pt + group * pd) / work) if work else (pts / total)
    current = state.get("current") or ""
    text = f"{pts}/{total} points" + (f" · {current}: {pd}/{pt} prompts" if current and pts < total else "")
    text += f" · elapsed {format_duration(elapsed)} · ETA {format_duration(eta) if eta is not None else '–'}"
    return dict(points_done=pts, points_total=total, prompts_done=pd, prompts_total=pt, current=current,
                elapsed_s=elapsed, eta_s=eta, eta=format_duration(eta) if eta is not None else "–",
                fraction=fraction, text=text)


def sweep_available() -> bool:
    """Whether pama.sweep ships with this installation (found, not imported: jobs sits below the sweep workflow)."""
    return importlib.util.find_spec("pama.sweep") is not None


# ------------------------------------------------------------------------------------------------ the queue

LOCAL_WORKER_IDLE_S = 300.0  # an auto-started local worker exits after this long with nothing to do
MAX_ATTEMPTS = 2             # a job whose worker died is started once more, then failed (docs/deployment.md)
_QUEUES: dict[str, tuple] = {}
_QUEUES_LOCK = threading.Lock()
_running = 0                  # jobs this process's worker threads are running now
_running_lock = threading.Lock()
_devices: "queue_mod.Queue[str] | None" = None  # the worker's free GPUs (--gpus), one taken per running job
_slots = 1                    # jobs this process's worker runs at once (--slots)
_last_start: dict[str, float] = {}  # queue → when this process last started a local worker for it


def queue_path(db_url: str | None) -> Path | None:
    """The queue file of a SQLite store (``<database>.queue`` beside it); None for other stores (PostgreSQL keeps
    its queue in tables of its own database) and for an in-memory database."""
    from sqlalchemy.engine import make_url  # the URL parser only; the store module loads SQLAlchemy anyway

    url = make_url(db_url or paths.default_db_url())
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    db = Path(url.database).expanduser()
    return db.with_name(db.name + ".queue")


def _is_postgres(db_url: str | None) -> bool:
    return (db_url or paths.default_db_url()).startswith("postgresql")


def has_queue(db_url: str | None) -> bool:
    """Whether jobs on this store go through the queue: a SQLite file (its queue file beside it) or PostgreSQL (the
    shared queue every worker that reaches the server takes jobs from)."""
    return queue_path(db_url) is not None or _is_postgres(db_url)


def _pg_database(db_url: str):
    """A peewee database on the store's PostgreSQL server (psycopg 3, as the store), for Huey's SqlHuey."""
    from playhouse.psycopg3_ext import Psycopg3Database  # the queue engine's driver: only for a PostgreSQL store
    from sqlalchemy.engine import make_url  # (as above)

    url = make_url(db_url)
    kw = {k: v for k, v in dict(host=url.host, port=url.port, user=url.username, password=url.password).items()
          if v is not None}
    return Psycopg3Database(url.database, autoconnect=True, **kw, **dict(url.query))


def _queue(db_url_or_path) -> tuple:
    """(the Huey instance on the store's queue, its ``run_job`` task), one per queue in this process: SqliteHuey
    on the file beside a SQLite store, SqlHuey on tables ``pama_queue_*`` of a PostgreSQL store's database."""
    key = str(db_url_or_path)
    with _QUEUES_LOCK:
        if key not in _QUEUES:
            if isinstance(db_url_or_path, Path) or not _is_postgres(key):
                from huey import SqliteHuey  # the queue engine: loaded only where a queue is used

                path = db_url_or_path if isinstance(db_url_or_path, Path) else queue_path(key)
                path.parent.mkdir(parents=True, exist_ok=True)
                huey = SqliteHuey(name="pama-jobs", filename=str(path), results=False, utc=True)
            else:
                from huey import Huey  # the PostgreSQL queue (peewee): loaded only for such a store
                from huey.contrib.sql_huey import BytesBlobField, SqlStorage  # (as above)
                from peewee import CharField, CompositeKey, FloatField, Model, TimestampField  # (as above)

                class _Storage(SqlStorage):
                    """Huey's SQL storage (its own models, as huey.contrib.sql_huey defines them) with tables
                    named for us: the store's own tables share the database."""

                    def create_models(self):
                        class Base(Model):
                            class Meta:
                                database = self.database

                        class KV(Base):
                            queue = CharField()
                            key = CharField()
                            value = BytesBlobField()

                            class Meta:
                                primary_key = CompositeKey("queue", "key")
                                table_name = "pama_queue_kv"

                        class Schedule(Base):
                            queue = CharField()
                            data = BytesBlobField()
                            timestamp = TimestampField(resolution=1000)

                            class Meta:
                                indexes = ((("queue", "timestamp"), False),)
                                table_name = "pama_queue_schedule"

                        class Task(Base):
                            queue = CharField()
                            data = BytesBlobField()
                            priority = FloatField(default=0.0)

                            class Meta:
                                table_name = "pama_queue_task"

                        Task.add_index(Task.priority.desc(), Task.id)
                        return KV, Schedule, Task

                huey = Huey(name="pama-jobs", storage_class=_Storage, database=_pg_database(key), results=False,
                            utc=True)
            _QUEUES[key] = (huey, huey.task(name="run_job")(_run_queued))
        return _QUEUES[key]


def enqueue(store, job_id: str, *, env: Mapping[str, str] | None = None) -> None:
    """Put a job row's id in the store's queue and make sure a local worker serves it (unless
    PAMA_LOCAL_WORKER=0: dedicated workers serve a shared queue, docs/deployment.md)."""
    job = store.get_job(job_id)
    _queue(store.url)[1](job["kind"], job["target_id"], list(job["argv"]), store.url, dict(env or {}), job_id)
    if os.environ.get("PAMA_LOCAL_WORKER", "1") != "0":
        ensure_local_worker(store.url)


def _row_status(store, kind: str, job_id: str) -> str | None:
    row = store.get_run(job_id) if kind == "train" else store.get_sweep(job_id)
    return row["status"] if row else None


def _waiting(store, task) -> bool:
    """Whether a task in the queue still waits for a worker (its job row is queued; legacy tasks without one: the
    run's or sweep's row)."""
    args = task.args
    if len(args) > 5 and args[5]:
        job = store.get_job(args[5])
        return bool(job and job["status"] == "queued")
    return _row_status(store, args[0], args[1]) == "queued"


def _run_queued(kind: str, target_id: str, argv: list[str], db_url: str | None, env: dict,
                job_id: str | None = None) -> str:
    """The queue's task, run in a worker thread: claim the job (one UPDATE: a job cancelled meanwhile, or taken
    by another worker, is skipped), start its process on a free GPU of the worker's ``--gpus``
    (CUDA_VISIBLE_DEVICES) when it has some, write the job's heartbeat while the process lives, record how it
    ended and start what waited for it (``_after``). The process reports to the store itself."""
    global _running
    store = Store(db_url)
    device = None
    with _running_lock:
        _running += 1
    try:
        if job_id is None:  # a task enqueued by a version without job rows
            if _row_status(store, kind, target_id) != "queued":
                return "skipped"
        elif kind == "train" and _row_status(store, kind, target_id) not in ACTIVE:
            store.move_job(job_id, ("queued",), "cancelled", error="its run was cancelled or deleted while queued")
            return "skipped"
        device = _devices.get() if _devices is not None else None  # never waits: slots <= devices
        worker = f"{socket.gethostname()}:{os.getpid()}"
        if job_id is not None and not store.claim_job(job_id, worker=worker, device=device):
            return "skipped"
        attempt = (store.get_job(job_id) or {}).get("attempts", 1) if job_id else 1
        if attempt > 1 and kind == "train":  # started again after its worker died: from the run's checkpoint
            argv = ["-m", "pama", "train", "--resume", target_id, "--quiet"]
        env = dict(env, PAMA_DIE_WITH_PARENT=str(os.getpid()))
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        else:
            env = cpu_share_env(env, slots=_slots)
        # the job file of a run (or of a sweep started by an older version) is named by its id, as reap and
        # cancel read it; a sweep's point and evaluation jobs by the job's id (the sweep's own log is shared)
        file_id = target_id if kind in ("train", "sweep") or job_id is None else job_id
        job = _spawn(kind, file_id, argv, db_url=db_url, env=env, log_id=target_id,
                     info=dict(worker=worker, device=device, target=target_id, attempt=attempt))
        if kind == "train":
            store.update_run(target_id, pid=job.pid)
        if job_id is not None:
            store.update_job(job_id, pid=job.pid)
        beat = min(heartbeat_interval_s(), 5.0)
        last = time.monotonic()
        while job.proc.poll() is None:
            time.sleep(0.25)
            if job_id is not None and time.monotonic() - last >= beat:
                last = time.monotonic()
                with contextlib.suppress(Exception):  # a store hiccup must not stop the wait
                    store.job_heartbeat(job_id)
        if job_id is not None:
            _finished(store, job_id, job.proc.returncode)
        return "done"
    finally:
        if device is not None:
            _devices.put(device)
        with _running_lock:
            _running -= 1
        store.close()


def cpu_share_env(env: Mapping[str, str], *, slots: int, cores: int | None = None,
                  inherited: Mapping[str, str] | None = None) -> dict:
    """The environment of a CPU job of a worker with ``slots`` > 1: the cores split evenly between the slots
    (OMP_NUM_THREADS, which torch takes for its thread count), so that two jobs on 2 cores run one thread each
    instead of four threads fighting over two cores. A thread count set anywhere wins: OMP_NUM_THREADS in the
    job's or the worker's environment, or the job's own ``threads`` setting (torch.set_num_threads in the job)."""
    inherited = os.environ if inherited is None else inherited
    if slots <= 1 or "OMP_NUM_THREADS" in env or "OMP_NUM_THREADS" in inherited:
        return dict(env)
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return dict(env, OMP_NUM_THREADS=str(max(1, cores // slots)))


def _finished(store, job_id: str, returncode: int) -> None:
    """Record how a job's process ended (a cancelled job stays cancelled) and start what waited for it."""
    job = store.get_job(job_id)
    if returncode != 0 and job["kind"] == "train" and _row_status(store, "train", job["target_id"]) == "cancelled":
        store.move_job(job_id, "running", "cancelled", error="its run was cancelled")
    elif returncode == 0:
        store.move_job(job_id, "running", "finished")
    else:
        store.move_job(job_id, "running", "failed", error=(
            f"exit code {returncode}; last lines of its log ({job['log']}):\n" + tail(job["log"] or "", lines=6)))
    _after(store, store.get_job(job_id))


def _after(store, job: Mapping) -> None:
    """A sweep's jobs after one of them ended: the last trained point enqueues the evaluation (one UPDATE from
    'waiting', so of two points ending together one does it); a point that failed fails the sweep and cancels its
    other jobs; a sweep whose jobs all ended without finishing is failed with the reason."""
    if job["kind"] not in ("point", "evaluate"):
        return
    sweep_id = job["target_id"]
    siblings = store.list_jobs(target_id=sweep_id)
    points = [j for j in siblings if j["kind"] == "point"]
    if job["status"] == "failed":
        for other in siblings:
            if other["status"] in ("waiting", "queued"):
                store.move_job(other["id"], ("waiting", "queued"), "cancelled",
                               error=f"job {job['id']} of the sweep failed")
        sweep = store.get_sweep(sweep_id)
        if sweep and sweep["status"] in ACTIVE:
            store.update_sweep(sweep_id, status="failed", summary=dict(sweep.get("summary") or {}, error=(
                f"{'point ' + str(job['point']) if job['kind'] == 'point' else 'the evaluation'} failed: "
                f"{job.get('error') or ''}")))
        return
    if job["kind"] == "point" and all(p["status"] == "finished" for p in points):
        for ev in siblings:
            if ev["kind"] == "evaluate" and store.move_job(ev["id"], "waiting", "queued"):
                enqueue(store, ev["id"])


def release_stale(store, *, grace_s: float | None = None) -> list[str]:
    """Jobs whose worker stopped writing heartbeats (killed, machine lost) for ``grace_s`` (default: the runs'
    heartbeat grace): started once more (``MAX_ATTEMPTS``) on any worker, from the run's last checkpoint, else failed
    with the reason. Every worker calls it now and then; the store's conditional UPDATE releases a job once."""
    grace_s = heartbeat_grace_s() if grace_s is None else float(grace_s)
    done = []
    for job in store.stale_jobs(grace_s):
        lost = (f"its worker {job['worker']} stopped sending heartbeats for more than {grace_s:g} s "
                f"(killed, or its machine was lost)")
        if int(job["attempts"] or 0) < MAX_ATTEMPTS:
            if store.release_job(job["id"], grace_s, error=lost + "; started again"):
                enqueue(store, job["id"])
                done.append(job["id"])
        elif store.move_job(job["id"], "running", "failed",
                            error=lost + f"; it had been started {job['attempts']} times, so it is not retried"):
            if job["kind"] == "train":
                store.set_status(job["target_id"], "failed", error=lost)
            _after(store, store.get_job(job["id"]))
            done.append(job["id"])
    return done


def cancel_job(store, job_id: str, *, reason: str = "cancelled by the user") -> bool:
    """Cancel one job: a waiting or queued one never starts; a running one's process is asked to stop (SIGTERM
    when it runs on this machine; elsewhere its run, cancelled in the store, stops at its next step)."""
    job = store.get_job(job_id)
    if job is None:
        return False
    if job["kind"] == "train":  # the run's status is what its trainer and the pages read
        store.move_job(job_id, "running", "cancelled", error=reason)
        return cancel(store, job["target_id"])
    if store.move_job(job_id, ("waiting", "queued"), "cancelled", error=reason):
        return True
    if job["status"] != "running" or not store.move_job(job_id, "running", "cancelled", error=reason):
        return False
    if job["kind"] == "point":
        for run in store.list_runs(sweep_id=job["target_id"]):
            if run["status"] in ACTIVE and run.get("pid") == job.get("pid"):
                store.set_status(run["id"], "cancelled", error=reason)
    host = (job.get("worker") or "").split(":")[0]
    if job.get("pid") and host == socket.gethostname() and pid_alive(int(job["pid"])):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(job["pid"]), signal.SIGTERM)
    return True


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def queue_position(store, job_id: str) -> int | None:
    """1 for the next job a worker takes, 2 for the one after, ...; None when the job is not waiting in the queue
    (started, finished, cancelled, or a store without a queue). Jobs cancelled while they wait do not count.
    ``job_id``: a run's or sweep's id (a sweep's place is that of its first waiting point) or a job row's."""
    if not has_queue(store.url):
        return None
    path = queue_path(store.url)
    if path is not None and not path.exists():
        return None
    try:
        pending = _queue(store.url)[0].pending()
    except Exception:  # noqa: BLE001 - a queue file being written or foreign: no position rather than a crash
        return None
    ahead = 0
    for task in pending:
        if not _waiting(store, task):
            continue
        if job_id in (task.args[1], task.args[5] if len(task.args) > 5 else None):
            return ahead + 1
        ahead += 1
    return None


def queue_phase(store, job_id: str) -> str | None:
    """'queued, 1st in line' for a job waiting in the queue, else None."""
    pos = queue_position(store, job_id)
    return None if pos is None else f"queued, {ordinal(pos)} in line"


def _lock_path(db_url: str | None) -> Path | None:
    return worker_lock_path(db_url or paths.default_db_url(), paths.home())


def ensure_local_worker(db_url: str | None) -> int | None:
    """Start ``python -m pama worker --local`` (one slot) for the store's queue unless one already holds this
    machine's worker lock for it; returns the new worker's pid, or None (one is running, or the store has no
    queue)."""
    import fcntl  # POSIX only

    url = db_url or paths.default_db_url()
    lock_file = _lock_path(url) if has_queue(url) else None
    if lock_file is None:
        return None
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    logs_dir().mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PAMA_DB_URL=url)
    env.pop("PAMA_DIE_WITH_PARENT", None)
    idle = os.environ.get("PAMA_WORKER_IDLE_S") or str(LOCAL_WORKER_IDLE_S)
    if time.monotonic() - _last_start.get(str(lock_file), -1e9) < 5.0:
        return None  # started one a moment ago: a worker that fails at start is not restarted in a tight loop
    with open(lock_file, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a local worker serves this queue (or is starting: it holds the lock from its start)
        _last_start[str(lock_file)] = time.monotonic()
        # the worker inherits the locked file: the lock passes to it with no gap while it imports (many seconds),
        # so no second worker is started meanwhile
        fd = lock.fileno()
        with open(logs_dir() / "worker.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "pama", "worker", "--local", "--lock-fd", str(fd),
                                     "--slots", "1", "--idle-exit", idle], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=str(paths.REPO), env=env, start_new_session=True,
                                    pass_fds=(fd,))
    track(proc)
    return proc.pid


def resume_queue(store) -> int | None:
    """Start a local worker when jobs wait in the queue and none serves it (after a restart of the machine or of
    the app: the queue is a file or tables, the worker is not)."""
    if not has_queue(store.url) or os.environ.get("PAMA_LOCAL_WORKER", "1") == "0":
        return None
    path = queue_path(store.url)
    if path is not None and not path.exists():
        return None
    try:
        if not _queue(store.url)[0].pending_count():
            return None
    except Exception:  # noqa: BLE001
        return None
    return ensure_local_worker(store.url)


def run_worker(db_url: str | None = None, *, slots: int | None = None, local: bool = False,
               idle_exit_s: float | None = None, lock_fd: int | None = None, gpus: Sequence[str] = ()) -> int:
    """Serve the store's queue: ``slots`` jobs at once (Huey's consumer, one thread per slot, each waiting on the
    job's process), releasing the jobs of dead workers now and then (``release_stale``). ``local``: the worker the
    app starts, one per queue and machine (a file lock; a second exits at once; ``lock_fd``: the lock already taken
    for it by ``ensure_local_worker``). ``idle_exit_s``: exit after that long with nothing queued or running.
    ``gpus``: device ids, one per running job (its CUDA_VISIBLE_DEVICES); ``slots`` defaults to their number, else
    1."""
    global _devices, _slots
    import fcntl  # POSIX only
    import logging

    url = db_url or paths.default_db_url()
    if not has_queue(url):
        raise JobError("The job queue needs a store in a file (SQLite) or on a server (PostgreSQL, PAMA_DB_URL); "
                       "an in-memory store has nothing a worker could share.")
    lock = None
    if local and lock_fd is not None:
        lock = os.fdopen(lock_fd, "a+")  # noqa: SIM115 - locked by our starter, held for the worker's life
    elif local:
        lock_file = _lock_path(url)
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_file, "a+")  # noqa: SIM115 - held for the worker's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("a local worker already serves this queue", flush=True)
            return 0
    if lock is not None:  # for a person who wonders which process serves the queue
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    huey = _queue(url)[0]
    gpus = [str(g).strip() for g in gpus if str(g).strip()]
    slots = int(slots) if slots else max(1, len(gpus))
    if gpus and slots > len(gpus):
        raise JobError(f"--slots {slots} is more than the {len(gpus)} GPU(s) of --gpus: one job per GPU")
    _slots = slots
    if gpus:
        _devices = queue_mod.Queue()
        for g in gpus:
            _devices.put(g)
    where = queue_path(url) or Store(url).safe_url
    split = cpu_share_env({}, slots=slots).get("OMP_NUM_THREADS")
    print(f"worker {socket.gethostname()}:{os.getpid()} serving {where} with {slots} slot(s)"
          + (f" on GPU(s) {','.join(gpus)}" if gpus else "")
          + (f", {split} CPU thread(s) per job" if split and not gpus else ""), flush=True)
    consumer = huey.create_consumer(workers=slots, worker_type="thread", periodic=False,
                                    initial_delay=0.1, backoff=1.15, max_delay=1.0)
    threading.Thread(target=_release_loop, args=(url,), daemon=True, name="release-stale").start()
    if idle_exit_s:
        threading.Thread(target=_exit_when_idle, args=(huey, lock, float(idle_exit_s), queue_path(url)),
                         daemon=True, name="idle-exit").start()
    consumer.run()
    return 0


def _release_loop(url: str) -> None:
    """Every few seconds: release the jobs of workers that died (``release_stale``)."""
    store = Store(url)
    every = max(1.0, min(30.0, heartbeat_grace_s() / 4))
    while True:
        time.sleep(every)
        with contextlib.suppress(Exception):  # a store hiccup: try again next time
            release_stale(store)


def _exit_when_idle(huey, lock, idle_s: float, queue: Path | None) -> None:
    """Stop this worker (SIGINT: Huey's graceful stop) after ``idle_s`` with nothing queued or running, or at once
    when its queue file is gone or unreadable (its PAMA_HOME was deleted). The lock is let go before the last look
    at the queue, so a job enqueued meanwhile finds either this worker still serving or the lock free (and its
    enqueuer starts a new worker)."""
    import fcntl  # POSIX only

    since = time.monotonic()
    while True:
        time.sleep(min(1.0, idle_s / 4))
        try:
            busy = bool(_running or huey.pending_count())
            gone = queue is not None and not queue.exists()
        except Exception:  # noqa: BLE001 - the queue's database is gone or broken: nothing left to serve
            busy, gone = False, True
        if gone and not _running:
            os.kill(os.getpid(), signal.SIGINT)
            return
        if busy:
            since = time.monotonic()
            continue
        if time.monotonic() - since < idle_s:
            continue
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_UN)
        try:
            left = huey.pending_count()
        except Exception:  # noqa: BLE001 - as above: gone
            left = 0
        if not _running and not left:
            os.kill(os.getpid(), signal.SIGINT)
            return
        if lock is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a new worker took the queue: leave it to it once our jobs end
                os.kill(os.getpid(), signal.SIGINT)
                return
        since = time.monotonic()


def where_running(job_id: str) -> str | None:
    """'on HOST · GPU 1' for a job a queue worker started (from its job file), else None."""
    info = read_job(job_id) or {}
    if not info.get("worker"):
        return None
    return f"on {info.get('host') or info['worker'].split(':')[0]}" + (
        f" · GPU {info['device']}" if info.get("device") is not None else "")


def wait_started(job: Job, *, timeout_s: float = 120.0, poll_s: float = 0.2) -> int:
    """The pid of a job's process, waiting until a worker has started it (a queued job)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid = job.pid
        if pid:
            return pid
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job.id} was not started within {timeout_s:.0f} s")
        time.sleep(poll_s)


# ------------------------------------------------------------------------------------------------ process state

def read_job(job_id: str) -> dict | None:
    try:
        return json.loads(job_file(job_id).read_text())
    except (OSError, ValueError):
        return None


def local_pid(run: Mapping) -> int | None:
    """The run's pid when its process was started on this machine (else None: a pid means nothing elsewhere)."""
    job = read_job(run["id"])
    if job is not None and job.get("host") == socket.gethostname():
        return int(job["pid"])
    return None


def cancel(store, run_id: str) -> bool:
    """Ask a run to stop: status 'cancelled' (the trainer checks it every step) and SIGTERM to its process.

    Returns False when the run had already ended (nothing to cancel)."""
    run = store.get_run(run_id)
    if run is None or run["status"] not in ACTIVE:
        return False
    store.set_status(run_id, "cancelled", error="cancelled by the user")
    for queued in store.list_jobs(target_id=run_id, status="queued"):
        store.move_job(queued["id"], "queued", "cancelled", error="cancelled by the user")
    pid = local_pid(run)
    if pid and pid_alive(pid):
        try:
            os.killpg(pid, signal.SIGTERM)   # its own process group (start_new_session)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
    return True


def reap(store, *, grace_s: float | None = None, now: dt.datetime | None = None) -> list[str]:
    """Mark failed the active runs whose process is gone (started here) or silent for longer than ``grace_s``
    (default: $PAMA_HEARTBEAT_GRACE_S, else 120 s)."""
    failed = list(store.mark_stale_failed(grace_s))
    for run in store.list_runs(status="queued") + store.list_runs(status="running"):
        pid = local_pid(run)
        if pid is None or pid_alive(pid):
            continue
        time.sleep(0.2)  # the process may be writing its final status right now
        fresh = store.get_run(run["id"])
        if fresh is None or fresh["status"] not in ACTIVE:
            continue
        log = (read_job(run["id"]) or {}).get("log") or str(log_path(run["id"]))
        text = tail(log, lines=6)
        msg = (f"The training process (pid {pid}) exited at step {fresh['step']} without reporting an end. "
               f"Last lines of its log ({log}):\n{text}" if text else
               f"The training process (pid {pid}) exited at step {fresh['step']} without reporting an end.")
        store.set_status(run["id"], "failed", error=msg)
        failed.append(run["id"])
    for sweep in store.list_sweeps():
        if sweep["status"] not in ACTIVE:
            continue
        job = read_job(sweep["id"])
        if not job or job.get("host") != socket.gethostname() or pid_alive(int(job["pid"])):
            continue
        time.sleep(0.2)
        fresh = store.get_sweep(sweep["id"])
        if fresh and fresh["status"] in ACTIVE:
            store.update_sweep(sweep["id"], status="failed",
                               summary=dict(fresh.get("summary") or {}, error=(
                                   "The sweep process exited without finishing. Last lines of its log:\n"
                                   + tail(job.get("log") or log_path(sweep["id"]), lines=6))))
            for run in store.list_runs(sweep_id=sweep["id"]):
                if run["status"] in ACTIVE:
                    store.set_status(run["id"], "failed", error="the sweep process exited")
            failed.append(sweep["id"])
    with contextlib.suppress(OSError, JobError):
        release_stale(store, grace_s=grace_s)  # jobs of a worker that died go back in the queue (or fail)
        resume_queue(store)  # jobs left waiting by a restart get a worker again
    return failed


# ------------------------------------------------------------------------------------------------ progress

def eta_seconds(step: int, total: int, step_times: Sequence[float], *, window: int = 10) -> float | None:
    """Remaining time from the mean of the last ``window`` step durations; None before the first step."""
    if total <= 0 or step >= total:
        return 0.0 if total > 0 else None
    recent = [float(t) for t in list(step_times)[-window:] if t is not None and t >= 0]
    if not recent:
        return None
    return (total - step) * sum(recent) / len(recent)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def progress(run: Mapping, metrics: Sequence[Mapping] = (), *, now: dt.datetime | None = None,
             grace_s: float | None = None, position: int | None = None) -> dict:
    """What the progress panel shows, as a pure function of a run dict and its metrics rows (and of its place in the
    queue, ``queue_position``, while it waits there)."""
    grace_s = heartbeat_grace_s() if grace_s is None else grace_s
    now = now or dt.datetime.now(dt.timezone.utc)
    step, total = int(run.get("step") or 0), int(run.get("total_steps") or 0)
    times = [m["value"] for m in sorted(metrics, key=lambda m: m["step"]) if m["key"] == "time/step"]
    status = run.get("status", "queued")
    hb = _aware(run.get("heartbeat_at"))
    started = _aware(run.get("started_at"))
    ended = _aware(run.get("finished_at"))
    hb_age = (now - hb).total_seconds() if hb else None
    active = status in ACTIVE
    eta = eta_seconds(step, total, times) if active else None
    if status == "queued":
        phase = f"queued, {ordinal(position)} in line" if position else "starting (loading the model)"
    elif status == "running":
        phase = "training" if step < total else "saving"
        if hb_age is not None and hb_age > grace_s:
            phase = f"no heartbeat for {format_duration(hb_age)} (the process may have died)"
    else:
        phase = status
    return dict(
        status=status, phase=phase, step=step, total=total, position=position if status == "queued" else None,
        fraction=min(1.0, step / total) if total > 0 else 0.0,
        eta_s=eta, eta=format_duration(eta) if eta is not None else ("–" if active else ""),
        elapsed_s=((ended or now) - started).total_seconds() if started else None,
        heartbeat_age_s=hb_age, stale=bool(active and hb_age is not None and hb_age > grace_s),
        seconds_per_step=(sum(times[-10:]) / len(times[-10:])) if times else None,
        error=run.get("error") if status in ("failed",) else None, active=active,
        terminal=status in ("finished", "failed", "cancelled"),
    )


def wait(store, run_id: str, *, timeout_s: float = 300.0, poll_s: float = 0.5) -> dict:
    """Block until the run reaches a terminal state (or the timeout); reaps a dead process on the way."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = store.get_run(run_id)
        if run is not None and run["status"] not in ACTIVE:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {run and run['status']} after {timeout_s:.0f} s")
        reap(store)
        time.sleep(poll_s)
