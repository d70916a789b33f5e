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


def test_a_cpu_worker_with_several_slots_splits_the_cores_between_its_jobs():
    """Two jobs at once on 2 cores: one thread each, not two each fighting over two cores; a thread count the user
    set (in the job's or the worker's environment) wins, and one slot or a GPU job is left alone."""
    assert jobs.cpu_share_env({"A": "1"}, slots=2, cores=2, inherited={}) == {"A": "1", "OMP_NUM_THREADS": "1"}
    assert jobs.cpu_share_env({}, slots=3, cores=16, inherited={})["OMP_NUM_THREADS"] == "5"
    assert jobs.cpu_share_env({}, slots=4, cores=2, inherited={})["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in jobs.cpu_share_env({}, slots=1, cores=2, inherited={})
    assert jobs.cpu_share_env({"OMP_NUM_THREADS": "2"}, slots=2, cores=2, inherited={})["OMP_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in jobs.cpu_share_env({}, slots=2, cores=2, inherited={"OMP_NUM_THREADS": "2"})


def test_a_two_slot_cpu_worker_runs_its_jobs_with_half_the_threads_each(store, monkeypatch):
    """`python -m pama worker --slots 2` on a CPU machine: the job's process gets OMP_NUM_THREADS = cores // 2 (torch
    takes it for its thread count: the job's own `threads` is left at 0 here) and the worker says so."""
    import os
    import subprocess
    import sys

    monkeypatch.setattr(jobs, "ensure_local_worker", lambda url: None)
    job = jobs.start_train(TrainConfig(steps=2, **dict(TINY, threads=0)).validate(), store=store)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PAMA_DB_URL"] = store.url
    worker = subprocess.Popen([sys.executable, "-m", "pama", "worker", "--slots", "2", "--idle-exit", "3"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    share = str(max(1, len(os.sched_getaffinity(0)) // 2))
    try:
        pid = jobs.wait_started(job, timeout_s=180)
        with open(f"/proc/{pid}/environ", "rb") as f:
            child_env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        assert child_env[b"OMP_NUM_THREADS"] == share.encode()
        assert jobs.wait(store, job.id, timeout_s=180)["status"] == "finished", jobs.tail(job.log)
        out, _ = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0 and f"with 2 slot(s), {share} CPU thread(s) per job" in out, out


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


# ------------------------------------------------------------------------------------------------ job rows

def test_a_job_is_claimed_once_released_once_and_a_waiting_one_promoted_once(any_store):
    """The store's conditional UPDATEs (SQLite and PostgreSQL): of two workers racing for a job one wins; a stale
    running job goes back to the queue once; a sweep's waiting evaluation is enqueued once."""
    s = any_store
    jid = s.add_job(kind="point", target_id="s1", point=0, argv=["-m", "pama"])
    assert s.claim_job(jid, worker="a:1") is True
    assert s.claim_job(jid, worker="b:2") is False
    job = s.get_job(jid)
    assert job["status"] == "running" and job["worker"] == "a:1" and job["attempts"] == 1
    assert s.stale_jobs(3600) == [] and not s.release_job(jid, 3600)  # fresh heartbeat: not stale
    time.sleep(1.2)
    assert [j["id"] for j in s.stale_jobs(1.0)] == [jid]
    assert s.release_job(jid, 1.0, error="lost") is True and s.release_job(jid, 1.0) is False
    job = s.get_job(jid)
    assert job["status"] == "queued" and job["worker"] is None and job["attempts"] == 1 and job["error"] == "lost"
    assert s.claim_job(jid, worker="b:2") and s.get_job(jid)["attempts"] == 2
    ev = s.add_job(kind="evaluate", target_id="s1", argv=[], status="waiting")
    assert s.move_job(ev, "waiting", "queued") and not s.move_job(ev, "waiting", "queued")
    assert [j["id"] for j in s.list_jobs(target_id="s1", status=("queued", "running"))] == [jid, ev]


def test_a_job_released_twice_fails_with_the_reason(store, monkeypatch):
    """A job whose worker died after its second start is not retried again: failed, with why."""
    monkeypatch.setattr(jobs, "enqueue", lambda store, jid, env=None: None)
    jid = store.add_job(kind="train", target_id="r-none", argv=[])
    for expected in ("queued", "failed"):
        assert store.claim_job(jid, worker="gone:1")
        time.sleep(1.1)
        assert jobs.release_stale(store, grace_s=1.0) == [jid]
        assert store.get_job(jid)["status"] == expected
    assert "started 2 times" in store.get_job(jid)["error"]


def _sweep_cfg(**kw):
    from pama.config import SweepConfig, from_dict

    return from_dict(SweepConfig, dict(TINY, method="pama", eval_samples=4, eval_max_new_tokens=4, **kw),
                     source="test").validate()


def test_a_sweep_runs_as_one_job_per_point_then_its_evaluation(store):
    """On the app's SQLite queue: a 2-point sweep is 2 point jobs and an evaluation that waits for both; the
    sweep finishes with its front, each point trained once."""
    job = jobs.start_sweep(_sweep_cfg(points=2, steps=2), store=store)
    rows = store.list_jobs(target_id=job.id)
    assert [(j["kind"], j["point"], j["status"]) for j in rows] == [
        ("point", 0, "queued"), ("point", 1, "queued"), ("evaluate", None, "waiting")]
    assert jobs.queue_position(store, job.id) == 1
    _until(lambda: not store.list_jobs(target_id=job.id, status=("waiting", "queued", "running")), 400,
           "the sweep's jobs to end", 1.0)
    assert store.get_sweep(job.id)["status"] == "finished", jobs.tail(job.log, lines=30)
    rows = store.list_jobs(target_id=job.id)
    assert [j["status"] for j in rows] == ["finished"] * 3 and all(j["attempts"] == 1 for j in rows)
    evaluation = rows[2]
    assert evaluation["started_at"] >= max(j["finished_at"] for j in rows[:2])
    runs = store.list_runs(sweep_id=job.id)
    assert len(runs) == 2 and all(r["status"] == "finished" and r["step"] == 2 for r in runs)
    assert len(store.points(sweep_id=job.id, kind="adapter")) == 2


def test_postgres_sweep_on_two_workers_survives_a_worker_killed_mid_point(pg_url, pama_home, monkeypatch):
    """The shared queue on PostgreSQL: a 4-point sweep on two `python -m pama worker` processes; one is killed with
    SIGKILL while it trains a point (its point's process dies with it); the other releases the job once its
    heartbeat is stale and resumes the point from its checkpoint; every point is trained once and the front is
    complete."""
    import os
    import signal
    import subprocess
    import sys

    from pama.store import Store

    monkeypatch.setenv("PAMA_DB_URL", pg_url)
    monkeypatch.setenv("PAMA_LOCAL_WORKER", "0")      # the two workers below serve the queue, no app worker
    monkeypatch.setenv("PAMA_HEARTBEAT_S", "1")
    monkeypatch.setenv("PAMA_HEARTBEAT_GRACE_S", "6")
    store = Store(pg_url)
    # 48 steps a point: worker 0's point must still be training when the poll below sees it past step 5
    job = jobs.start_sweep(_sweep_cfg(points=4, steps=48, save_every=4), store=store)
    workers = [subprocess.Popen([sys.executable, "-m", "pama", "worker", "--slots", "1"], env=dict(os.environ),
                                stdout=open(pama_home / f"worker{i}.log", "wb"), stderr=subprocess.STDOUT)
               for i in range(2)]
    try:
        def victim():
            for j in store.list_jobs(target_id=job.id, status="running"):
                run = next((r for r in store.list_runs(sweep_id=job.id) if r.get("pid") == j["pid"]), None)
                if j["worker"].endswith(f":{workers[0].pid}") and run and run["step"] >= 5:
                    return j
            return None

        _until(lambda: victim() is not None, 300, "worker 0 to be 5 steps into a point", 0.2)
        killed = victim()
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=30)
        _until(lambda: not store.list_jobs(target_id=job.id, status=("waiting", "queued", "running")), 600,
               "the sweep's jobs to end", 1.0)
        log = (pama_home / "worker1.log").read_text() + jobs.tail(job.log, lines=30)
        assert store.get_sweep(job.id)["status"] == "finished", log
        again = store.get_job(killed["id"])
        assert again["status"] == "finished" and again["attempts"] == 2, again
        assert again["worker"].endswith(f":{workers[1].pid}")
        runs = store.list_runs(sweep_id=job.id)
        assert len(runs) == 4 and all(r["status"] == "finished" and r["step"] == 48 for r in runs)
        assert len({tuple(r["config"]["preference"]) for r in runs}) == 4   # each point trained once
        assert len(store.points(sweep_id=job.id, kind="adapter")) == 4       # the front is complete
        assert [j["status"] for j in store.list_jobs(target_id=job.id)] == ["finished"] * 5
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=30)
        store.close()


def test_the_queue_page_shows_places_in_line_and_cancels_a_queued_run(pama_home, monkeypatch):
    """Two runs wait (no worker serves the queue): the Queue page lists them 1st and 2nd in line; cancelling the
    second from the page cancels its run, and the first stays 1st."""
    from streamlit.testing.v1 import AppTest

    from pama.store import Store
    from test_app import APP, TIMEOUT

    monkeypatch.setenv("PAMA_NO_DEMO", "1")
    monkeypatch.setenv("PAMA_LOCAL_WORKER", "0")
    store = Store()
    a = jobs.start_train(TrainConfig(steps=2, **TINY).validate(), store=store)
    b = jobs.start_train(TrainConfig(steps=2, **TINY).validate(), store=store)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("views/queue.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["status"]) == ["queued, 1st in line", "queued, 2nd in line"]
    assert list(table["what"]) == ["train a run"] * 2
    jb = next(j for j in store.list_jobs() if j["target_id"] == b.id)
    at.selectbox(key="queue_pick").set_value(jb["id"]).run()
    at.button(key="queue_cancel").click().run()
    assert not at.exception, at.exception
    assert store.get_run(b.id)["status"] == "cancelled" and store.get_job(jb["id"])["status"] == "cancelled"
    assert store.get_run(a.id)["status"] == "queued" and jobs.queue_position(store, a.id) == 1
    at.run()
    table = at.dataframe[0].value
    assert list(table["status"]) == ["queued, 1st in line", "cancelled"]
