"""The job queue (pama.jobs over Huey's SqliteHuey): jobs started together run one after the other on the local
worker, a queued job shows its place in line, is skipped when cancelled and survives a restart of the app."""
from __future__ import annotations

import time

import pama  # noqa: F401  (before torch)

import pytest

from pama import jobs
from pama.config import TrainConfig

TINY = dict(model="tiny-random", objectives=["sentiment", "conciseness"], batch_size=2, samples_per_prompt=1,
            max_new_tokens=4, threads=1)


def _until(cond, timeout_s: float, what: str, poll: float = 0.3):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


# ------------------------------------------------------------------------------------------------ pure

@pytest.mark.parametrize("n,text", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"),
                                    (13, "13th"), (21, "21st"), (22, "22nd"), (101, "101st")])
def test_ordinal(n, text):
    assert jobs.ordinal(n) == text


def test_progress_shows_the_place_in_line_of_a_queued_run():
    run = dict(id="r", status="queued", step=0, total_steps=5)
    assert jobs.progress(run, position=1)["phase"] == "queued, 1st in line"
    assert jobs.progress(run, position=2)["position"] == 2
    assert jobs.progress(run)["phase"].startswith("starting")  # taken by a worker, loading the model
    sweep = dict(status="queued", objectives=["a", "b"], config=dict(points=3))
    assert jobs.sweep_progress(sweep, [], position=3)["phase"] == "queued, 3rd in line"


def test_the_queue_lives_beside_a_sqlite_store_only(tmp_path):
    assert jobs.queue_path(f"sqlite:///{tmp_path}/x.db") == tmp_path / "x.db.queue"
    assert jobs.queue_path("sqlite://") is None and jobs.queue_path("sqlite:///:memory:") is None
    assert jobs.queue_path("postgresql+psycopg://u:p@host/db") is None


# ------------------------------------------------------------------------------------------------ real worker

def test_two_runs_started_together_run_one_after_the_other(store):
    a = jobs.start_train(TrainConfig(steps=6, **TINY).validate(), store=store)
    b = jobs.start_train(TrainConfig(steps=2, **TINY).validate(), store=store)
    assert a.queued and b.queued
    assert jobs.queue_position(store, b.id) == 2 and jobs.queue_position(store, a.id) == 1
    # the local worker (one slot) takes the first; the second waits, 1st in line
    _until(lambda: store.get_run(a.id)["status"] == "running", 120, "the first run to start")
    assert store.get_run(b.id)["status"] == "queued"
    assert jobs.queue_phase(store, b.id) == "queued, 1st in line" and jobs.queue_position(store, a.id) is None
    assert jobs.wait(store, a.id, timeout_s=180)["status"] == "finished", jobs.tail(a.log)
    assert jobs.wait(store, b.id, timeout_s=180)["status"] == "finished", jobs.tail(b.log)
    ra, rb = store.get_run(a.id), store.get_run(b.id)
    assert rb["started_at"] >= ra["finished_at"]  # one after the other, never both at once
    assert ra["pid"] != rb["pid"] and ra["pid"] == a.pid and rb["pid"] == b.pid


def test_a_run_cancelled_while_queued_never_starts(store):
    a = jobs.start_train(TrainConfig(steps=4, **TINY).validate(), store=store)
    b = jobs.start_train(TrainConfig(steps=2, **TINY).validate(), store=store)
    c = jobs.start_train(TrainConfig(steps=2, **TINY).validate(), store=store)
    assert jobs.cancel(store, b.id)
    assert jobs.queue_position(store, c.id) == 2  # b no longer counts: a, then c
    assert jobs.wait(store, c.id, timeout_s=240)["status"] == "finished", jobs.tail(c.log)
    rb = store.get_run(b.id)
    assert rb["status"] == "cancelled" and rb["started_at"] is None and rb["pid"] is None
    assert jobs.read_job(b.id) is None and b.pid is None  # no process was ever started for it
    assert store.get_run(a.id)["status"] == "finished"


def test_a_queued_job_survives_a_restart(store, monkeypatch):
    """Enqueued while no worker can start (the app stopped at once), the job waits in the queue file; the next
    app (a new Store, its first reap) starts a worker and the job runs."""
    from pama.store import Store

    with monkeypatch.context() as m:
        m.setattr(jobs, "ensure_local_worker", lambda url: None)  # the app dies before starting a worker
        job = jobs.start_train(TrainConfig(steps=2, **TINY).validate(), store=store)
        time.sleep(1.0)
        assert store.get_run(job.id)["status"] == "queued" and job.pid is None
    restarted = Store()
    assert jobs.queue_position(restarted, job.id) == 1
    jobs.reap(restarted)  # what the Train and Runs pages do on every load
    assert jobs.wait(restarted, job.id, timeout_s=180)["status"] == "finished", jobs.tail(job.log)


def test_one_local_worker_per_queue_and_it_exits_when_idle(store, monkeypatch):
    """However often the app asks (every page load reaps), one local worker serves a queue: the lock is taken for
    it before it starts, so none is started while it imports. With nothing to do it exits."""
    monkeypatch.setenv("PAMA_WORKER_IDLE_S", "2")
    pid = jobs.ensure_local_worker(store.url)
    assert pid
    jobs._last_start.clear()  # not the rate limit: the lock refuses the next ones
    assert [jobs.ensure_local_worker(store.url) for _ in range(5)] == [None] * 5
    _until(lambda: not jobs.pid_alive(pid), 180, "the idle worker to exit")
    assert "serving" in (jobs.logs_dir() / "worker.log").read_text()
    jobs._last_start.clear()
    again = jobs.ensure_local_worker(store.url)  # the lock is free again: a new one starts
    assert again and again != pid
    _until(lambda: not jobs.pid_alive(again), 180, "the second idle worker to exit")


def test_a_worker_with_gpus_runs_each_job_on_one_of_them(store, monkeypatch):
    """`python -m pama worker --gpus 7` (started by hand, not the app's local worker) runs the job with
    CUDA_VISIBLE_DEVICES=7 and records the device and the worker in the job file. (A CPU machine: the tiny model
    ignores the variable.)"""
    import os
    import subprocess
    import sys

    monkeypatch.setattr(jobs, "ensure_local_worker", lambda url: None)
    job = jobs.start_train(TrainConfig(steps=2, **TINY).validate(), store=store)
    env = dict(os.environ, PAMA_DB_URL=store.url)
    worker = subprocess.Popen([sys.executable, "-m", "pama", "worker", "--gpus", "7", "--idle-exit", "3"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pid = jobs.wait_started(job, timeout_s=180)
        with open(f"/proc/{pid}/environ", "rb") as f:
            child_env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        assert child_env[b"CUDA_VISIBLE_DEVICES"] == b"7"
        info = jobs.read_job(job.id)
        assert info["device"] == "7" and info["worker"].endswith(f":{worker.pid}")
        assert jobs.where_running(job.id).endswith(" · GPU 7")
        assert jobs.wait(store, job.id, timeout_s=180)["status"] == "finished", jobs.tail(job.log)
        out, _ = worker.communicate(timeout=120)  # idle for 3 s: it exits by itself
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0 and "with 1 slot(s) on GPU(s) 7" in out, out


# ------------------------------------------------------------------------------------------------ the app

def test_two_runs_started_from_the_form_run_one_after_the_other(pama_home, monkeypatch):
    """Two clicks on 'Start training' in quick succession: the first run trains, the second waits and the Train
    page shows it 'queued, 1st in line'; then it runs, after the first."""
    from streamlit.testing.v1 import AppTest

    from pama.store import Store
    from test_app import APP, TIMEOUT, _submit, texts

    monkeypatch.setenv("PAMA_NO_DEMO", "1")
    monkeypatch.setenv("PAMA_APP_MODEL", "tiny-random")
    store = Store()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("views/train.py").run()
    _submit(at, tf_model="tiny-random", tf_steps=6, tf_batch=4, tf_tokens=4)
    _submit(at, tf_model="tiny-random", tf_steps=2, tf_batch=4, tf_tokens=4)
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    first, second = sorted(store.list_runs(), key=lambda r: r["created_at"])
    assert any(second["id"] in s and "in line" in s for s in texts(at, "success")), texts(at, "success")
    _until(lambda: store.get_run(first["id"])["status"] == "running", 120, "the first run to start")
    at.run()
    shown = [m for m in texts(at, "markdown") if second["id"] in m]
    assert any("queued, 1st in line" in m for m in shown), shown
    running = [m for m in texts(at, "markdown") if first["id"] in m]
    assert any("training" in m or "starting" in m for m in running), running
    assert any(" · on " in m for m in running) or store.get_run(first["id"])["status"] != "running", running
    assert jobs.wait(store, second["id"], timeout_s=240)["status"] == "finished"
    a, b = store.get_run(first["id"]), store.get_run(second["id"])
    assert a["status"] == "finished" and b["started_at"] >= a["finished_at"]
