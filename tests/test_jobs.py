"""Background jobs (start / cancel / reap / progress) and the app's pure helpers for forms, deletion and exports."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time

import pama  # noqa: F401  (before torch)

import pytest

from pama import jobs, paths
from pama.app import deletion, exports, forms
from pama.app.settings import UIError
from pama.config import ConfigError, SweepConfig, TrainConfig

OBJS = [dict(name="sentiment", lower=-1.0, upper=1.0), dict(name="conciseness", lower=0.0, upper=1.0)]
TINY = dict(model="tiny-random", objectives=["sentiment", "conciseness"], batch_size=2, samples_per_prompt=1,
            max_new_tokens=4)
UTC = dt.timezone.utc


# ------------------------------------------------------------------------------------------ pure: ETA and progress

def test_eta_uses_the_mean_of_recent_step_times():
    assert jobs.eta_seconds(0, 10, []) is None
    assert jobs.eta_seconds(4, 10, [2.0, 4.0]) == pytest.approx(18.0)
    assert jobs.eta_seconds(10, 10, [1.0]) == 0.0
    assert jobs.eta_seconds(3, 0, [1.0]) is None
    assert jobs.eta_seconds(18, 20, [100.0] * 5 + [1.0] * 10) == pytest.approx(2.0)  # window of the last 10


def test_format_duration():
    assert jobs.format_duration(None) == "–"
    assert jobs.format_duration(4.4) == "4 s"
    assert jobs.format_duration(125) == "2 min 05 s"
    assert jobs.format_duration(3 * 3600 + 61) == "3 h 01 min"


def _run(**kw):
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    base = dict(id="r1", status="running", step=3, total_steps=10, started_at=now - dt.timedelta(seconds=30),
                heartbeat_at=now - dt.timedelta(seconds=5), finished_at=None, error=None)
    base.update(kw)
    return base, now


def test_progress_of_a_running_run():
    run, now = _run()
    metrics = [dict(step=s, key="time/step", value=2.0) for s in (1, 2, 3)] + [dict(step=1, key="kl", value=9)]
    p = jobs.progress(run, metrics, now=now)
    assert p["phase"] == "training" and p["active"] and not p["terminal"] and not p["stale"]
    assert p["fraction"] == pytest.approx(0.3)
    assert p["eta_s"] == pytest.approx(14.0) and p["eta"] == "14 s"
    assert p["elapsed_s"] == pytest.approx(30.0) and p["seconds_per_step"] == pytest.approx(2.0)


def test_progress_flags_a_silent_run_and_shows_failures():
    run, now = _run(heartbeat_at=dt.datetime(2026, 1, 1, 11, 50, tzinfo=UTC))
    p = jobs.progress(run, [], now=now, grace_s=120)
    assert p["stale"] and "no heartbeat" in p["phase"] and p["eta"] == "–"
    run, now = _run(status="failed", error="ObjectiveError: boom")
    p = jobs.progress(run, [], now=now)
    assert p["terminal"] and not p["active"] and p["error"] == "ObjectiveError: boom" and p["eta_s"] is None
    run, now = _run(status="queued", step=0, started_at=None)
    assert jobs.progress(run, [], now=now)["phase"].startswith("starting")


def test_sweep_progress():
    sweep = dict(status="running", objectives=["a", "b"], config=dict(points=3))
    runs = [dict(id="r1", status="finished"), dict(id="r2", status="running")]
    p = jobs.sweep_progress(sweep, runs)
    assert (p["done"], p["total"], p["current"]["id"]) == (1, 3, "r2")
    assert p["phase"] == "training point 2/3" and p["fraction"] == pytest.approx(1 / 3)
    assert p["evaluation"] is None   # training: the sweep's evaluation has not started


def test_sweep_progress_while_evaluating_shows_points_prompts_elapsed_and_eta():
    """Issue 24: after training, the phase and a second bar come from the summary["evaluation"] the sweep process
    writes (pama.sweep.EvalProgress): points done of total, prompts of the current point(s), elapsed, ETA (the
    sweep's estimate less the time since it wrote it)."""
    now = time.time()
    state = dict(points_done=4, points_total=12, prompts_done=64, prompts_total=128, current="r1 at (0.30, 0.70)",
                 group=2, started=now - 300, updated=now - 20, elapsed_s=280.0, eta_s=500.0)
    sweep = dict(status="running", objectives=["a", "b"], config=dict(points=5, conditioned=True),
                 summary=dict(evaluation=state))
    p = jobs.sweep_progress(sweep, [dict(id="r1", status="finished")])
    ev = p["evaluation"]
    assert (ev["points_done"], ev["points_total"], ev["prompts_done"], ev["prompts_total"]) == (4, 12, 64, 128)
    assert ev["fraction"] == pytest.approx((4 * 128 + 2 * 64) / (12 * 128))
    assert ev["elapsed_s"] == pytest.approx(300, abs=5) and ev["eta_s"] == pytest.approx(480, abs=5)
    assert p["phase"].startswith("evaluating: 4/12 points · r1 at (0.30, 0.70): 64/128 prompts · elapsed 5 min")
    assert "ETA 8 min" in p["phase"]
    # no evaluation state yet (an older sweep process), or a training sweep: the plain phase
    assert jobs.sweep_progress(dict(sweep, summary={}), [dict(id="r1", status="finished")])["phase"] == \
        "evaluating the points on held-out prompts"
    assert jobs.evaluation_progress(None) is None and jobs.evaluation_progress({"points_total": 0}) is None


# ------------------------------------------------------------------------------------------ pure: the train form

def test_build_train_config_accepts_a_valid_form_and_normalises():
    cfg = forms.build_train_config(dict(TINY, preference="3, 1", steps=2, method="pama", anchor=0.5))
    assert isinstance(cfg, TrainConfig) and cfg.preference == pytest.approx([0.75, 0.25])
    sweep = forms.build_train_config(dict(TINY, preference="1,2", points=3, steps=1), sweep=True)
    assert isinstance(sweep, SweepConfig) and sweep.points == 3 and sweep.preference == []


@pytest.mark.parametrize("form,message", [
    (dict(preference="1"), "preference has 1 entries"),
    (dict(anchor=2.0), "anchor must lie in [0, 1]"),
    (dict(preference="0.5, x"), "'x' is not a number"),
    (dict(objectives=["py:os:system"]), "py: objectives run arbitrary Python code"),
    (dict(objectives=[]), "at least one objective"),
    (dict(steps=0, lora_r=-1), "steps must be a positive integer"),
])
def test_build_train_config_refuses_bad_forms(form, message):
    with pytest.raises((ConfigError, UIError), match=None) as err:
        forms.build_train_config(dict(TINY, **form))
    assert message in str(err.value)


def test_split_objectives_and_parse_floats():
    assert forms.split_objectives(["sentiment"], "length:target=20,unit=words\n\n  safety ") == \
        ["sentiment", "length:target=20,unit=words", "safety"]
    assert forms.parse_floats("") == [] and forms.parse_floats("0.2; 0.8") == [0.2, 0.8]
    with pytest.raises(UIError, match="finite"):
        forms.parse_floats("nan, 1")


# ------------------------------------------------------------------------------------------ deletion and exports

def test_deletable_paths_stay_inside_the_checkpoints_root(pama_home, tmp_path):
    run_dir = paths.run_dir("r1")
    (run_dir / "step-000002" / "adapter").mkdir(parents=True)
    run = dict(id="r1", adapter_path=str(run_dir / "step-000002" / "adapter"))
    assert deletion.deletable_paths(run) == [run_dir.resolve()]
    outside = tmp_path / "elsewhere" / "adapter"
    outside.mkdir(parents=True)
    demo = paths.REPO / "demo" / "front" / "adapters" / "x"
    for ap in (str(outside), str(demo), str(pama_home), "/", str(pama_home / ".." / "..")):
        assert deletion.deletable_paths(dict(id="zz", adapter_path=ap)) == [], ap
    assert outside.exists()


def test_delete_run_removes_run_files_and_log(store, pama_home):
    rid = store.create_run(name="x", method="pama", model="tiny-random", config={}, objectives=OBJS)
    store.set_status(rid, "finished")
    adapter = paths.run_dir(rid) / "step-000001" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"0")
    store.update_run(rid, adapter_path=str(adapter))
    jobs.logs_dir().mkdir(parents=True)
    jobs.log_path(rid).write_text("log")
    removed = deletion.delete_run(store, rid)
    assert removed == [str(paths.run_dir(rid).resolve())]
    assert store.get_run(rid) is None and not paths.run_dir(rid).exists() and not jobs.log_path(rid).exists()
    with pytest.raises(UIError, match="already deleted"):
        deletion.delete_run(store, rid)


def test_exports(store):
    rid = store.create_run(name="x", method="pama", model="tiny-random", config={"seed": 1}, objectives=OBJS)
    store.log_metrics(rid, 1, {"kl": 0.5, "rewards/sentiment/mean": 0.25})
    csv_text = exports.metrics_csv(store.metrics(rid))
    assert csv_text.splitlines() == ["step,key,value", "1,kl,0.5", "1,rewards/sentiment/mean,0.25"]
    doc = json.loads(exports.run_json(store, rid))
    assert doc["run"]["id"] == rid and doc["run"]["config"] == {"seed": 1} and len(doc["metrics"]) == 2
    assert doc["points"] == []


# ------------------------------------------------------------------------------------------ real subprocesses

def test_start_train_runs_in_the_background_to_the_end(store):
    t = time.time()
    job = jobs.start_train(TrainConfig(steps=2, **TINY).validate(), store=store)
    started = time.time() - t
    assert store.get_run(job.id) is not None and job.queued  # a SQLite store: through the queue
    assert job.log.endswith(f"{job.id}.log") and os.path.exists(job.log)
    final = jobs.wait(store, job.id, timeout_s=120)
    assert final["status"] == "finished", jobs.tail(job.log)
    assert final["pid"] == job.pid == jobs.read_job(job.id)["pid"]  # the worker started it and wrote its pid
    deadline = time.time() + 30
    while jobs.pid_alive(job.pid):  # the process exits shortly after writing its final status
        assert time.time() < deadline
        time.sleep(0.2)
    assert store.count_metrics(job.id) > 0
    print(f"start_train returned after {started:.1f} s; finished after {time.time() - t:.1f} s")


def test_cancel_stops_a_running_job(store):
    job = jobs.start_train(TrainConfig(steps=500, save_every=500, **TINY).validate(), store=store)
    deadline = time.time() + 90
    while store.get_run(job.id)["step"] < 1:
        assert time.time() < deadline, jobs.tail(job.log)
        time.sleep(0.2)
    assert jobs.cancel(store, job.id)
    final = jobs.wait(store, job.id, timeout_s=60)
    assert final["status"] == "cancelled" and final["step"] < 500
    deadline = time.time() + 20
    while jobs.pid_alive(job.pid):
        assert time.time() < deadline, "the process did not stop after SIGTERM"
        time.sleep(0.2)
    assert not jobs.cancel(store, job.id)  # nothing left to cancel


def test_a_missing_prompt_file_is_refused_before_a_run_exists(store):
    cfg = dict(TrainConfig(steps=2, **TINY).to_dict(), prompts="/no/such/prompts.jsonl")
    with pytest.raises(jobs.JobError, match="/no/such/prompts.jsonl"):
        jobs.start_train(cfg, store=store)
    assert store.list_runs() == []


def test_a_job_that_dies_before_running_is_reaped_with_its_log(store):
    """A process killed outright (kill -9, out-of-memory killer) after its run record exists cannot report its end:
    reaping marks the run failed, quoting the last lines of its log."""
    import signal

    job = jobs.start_train(TrainConfig(steps=50, **TINY).to_dict(), store=store)
    assert store.get_run(job.id)["status"] in jobs.ACTIVE
    os.kill(jobs.wait_started(job, timeout_s=60), signal.SIGKILL)  # the process this test started, by its id
    deadline = time.time() + 20
    while jobs.pid_alive(job.pid):
        assert time.time() < deadline, "the killed process is still alive"
        time.sleep(0.1)
    assert store.get_run(job.id)["status"] in jobs.ACTIVE  # nobody has reported anything yet
    final = jobs.wait(store, job.id, timeout_s=30)
    assert final["status"] == "failed" and final["step"] < 50
    assert f"(pid {job.pid}) exited" in final["error"] and "without reporting an end" in final["error"]
    assert f"run id: {job.id}" in final["error"]  # the log's last lines


def test_a_config_the_cli_refuses_raises_joberror_and_creates_no_run(store):
    with pytest.raises(jobs.JobError, match="refused to start: .*unknown objective"):
        jobs.start_train(dict(TrainConfig(steps=2, **TINY).to_dict(), objectives=["sentimnt"]), store=store)
    assert store.list_runs() == []


def test_reap_marks_dead_and_silent_runs_failed(store):
    rid = store.create_run(name="dead", method="pama", model="tiny-random", config={}, objectives=OBJS)
    store.set_status(rid, "running")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    jobs.logs_dir().mkdir(parents=True, exist_ok=True)
    jobs.log_path(rid).write_text("step 1\nRuntimeError: out of memory\n")
    import socket

    jobs.job_file(rid).write_text(json.dumps(dict(pid=proc.pid, host=socket.gethostname(),
                                                  log=str(jobs.log_path(rid)))))
    silent = store.create_run(name="silent", method="pama", model="tiny-random", config={}, objectives=OBJS)
    store.set_status(silent, "running")
    store.update_run(silent, heartbeat_at=dt.datetime.now(UTC) - dt.timedelta(minutes=10))
    alive = store.create_run(name="alive", method="pama", model="tiny-random", config={}, objectives=OBJS)
    store.set_status(alive, "running")
    failed = jobs.reap(store, grace_s=120)
    assert set(failed) == {rid, silent}
    assert "out of memory" in store.get_run(rid)["error"]
    assert "No heartbeat" in store.get_run(silent)["error"]
    assert store.get_run(alive)["status"] == "running"
