"""Reliability: a killed training process, half-written checkpoints, several writers and readers at once.

Real subprocesses (`python -m pama train --model tiny-random ...`) with tiny settings; the heartbeat interval and grace
are shortened through PAMA_HEARTBEAT_S / PAMA_HEARTBEAT_GRACE_S so that a dead run is spotted within seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pama import paths
from pama.store import SCHEMA_HEAD, Store

REPO = Path(__file__).resolve().parent.parent
TINY_FLAGS = ["--model", "tiny-random", "--objectives", "sentiment,conciseness", "--batch-size", "2",
              "--samples-per-prompt", "1", "--max-new-tokens", "4", "--threads", "1", "--quiet",
              "--live-eval-every", "0"]  # the rows counted here are the steps' own (no live front's at step 0)
HEARTBEAT_S = 0.5
GRACE_S = 3.0


def _env(home: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update(PAMA_HOME=str(home), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
               HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", PAMA_HEARTBEAT_S=str(HEARTBEAT_S),
               PAMA_HEARTBEAT_GRACE_S=str(GRACE_S))
    env.pop("PAMA_DB_URL", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _start_train(home: Path, *args: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pama", "train", *args], cwd=REPO, env=_env(home, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_run_id(proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("run id: "):
            return line.split()[2]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no run id printed; stderr:\n{proc.stderr.read()[-3000:]}")


def _wait_for(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _metric_table(store: Store, run_id: str) -> dict[tuple[int, str], float]:
    return {(m["step"], m["key"]): m["value"] for m in store.metrics(run_id)}


def _assert_complete(table: dict, steps: int) -> set[str]:
    """Every step 1..steps carries the same set of keys: no lost row."""
    keys = {k for s, k in table if s == 1}
    assert keys and "loss/policy" in keys
    missing = [(s, k) for s in range(1, steps + 1) for k in keys if (s, k) not in table]
    assert not missing, f"{len(missing)} metric rows missing, e.g. {missing[:5]}"
    assert {s for s, _ in table} == set(range(1, steps + 1))
    return keys


# ---------------------------------------------------------------------------------------------------- kill -9

def test_kill9_run_is_marked_failed_with_metrics_kept_and_resumes_from_its_checkpoint(pama_home, monkeypatch,
                                                                                     capsys):
    """A SIGKILLed run: still 'running' in the store, failed after the heartbeat grace (CLI and app), rows intact;
    `train --resume` continues from the last checkpoint (steps before it untouched) to the requested count."""
    from pama import cli, trainer

    monkeypatch.setenv("PAMA_HEARTBEAT_GRACE_S", str(GRACE_S))
    proc = _start_train(pama_home, *TINY_FLAGS, "--steps", "200", "--save-every", "3")
    run_id = _read_run_id(proc)
    store = Store()
    run_dir = paths.run_dir(run_id)
    try:
        _wait_for(lambda: (store.get_run(run_id)["step"] >= 7 and trainer.latest_checkpoint(run_dir)),
                  120, "step 7 and a checkpoint")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    killed_at = time.monotonic()
    assert proc.returncode == -signal.SIGKILL

    run = store.get_run(run_id)
    killed_step = run["step"]
    assert run["status"] == "running" and killed_step < 200
    before = _metric_table(store, run_id)
    keys = _assert_complete(before, killed_step)
    rows_before = store.count_metrics(run_id)
    assert rows_before == killed_step * len(keys)
    ckpt = trainer.latest_checkpoint(run_dir)
    ckpt_step = int(ckpt.name.split("-")[1])
    assert ckpt_step % 3 == 0 and 6 <= ckpt_step <= killed_step

    # after the grace the app's reaper (mark_stale_failed, as jobs.reap calls it) and the CLI show it failed
    failed = _wait_for(lambda: store.mark_stale_failed(), GRACE_S + 10, "the run to be marked failed", poll=0.25)
    marked_after = time.monotonic() - killed_at
    assert failed == [run_id] and marked_after < GRACE_S + 5
    assert cli.main(["runs", "--json"]) == 0
    shown = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert shown[run_id]["status"] == "failed" and f"--resume {run_id}" in shown[run_id]["error"]
    assert store.count_metrics(run_id) == rows_before  # marking failed keeps every row
    print(f"\nkilled at step {killed_step} (checkpoint step-{ckpt_step}); {rows_before} rows kept; marked failed "
          f"{marked_after:.1f} s after the kill (grace {GRACE_S} s, heartbeat {HEARTBEAT_S} s)")

    # resume to a few steps past the kill: steps up to the checkpoint are not redone, the rest are re-run
    target = killed_step + 2
    res = subprocess.run([sys.executable, "-m", "pama", "train", "--resume", run_id, "--steps", str(target),
                          "--quiet"], cwd=REPO, env=_env(pama_home), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith(f"run id: {run_id} (resuming)")
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["step"] == target and run["total_steps"] == target
    assert run["error"] is None
    after = _metric_table(store, run_id)
    _assert_complete(after, target)
    assert store.count_metrics(run_id) == target * len(keys)
    kept = {k: v for k, v in before.items() if k[0] <= ckpt_step}
    assert {k: after[k] for k in kept} == kept, "steps up to the checkpoint must not be re-run"
    redone = [k for k in before if k[0] > ckpt_step and k[1] == "time/step"]
    assert all(after[k] != before[k] for k in redone)  # steps after the checkpoint were trained again
    assert trainer.latest_checkpoint(run_dir).name == f"step-{target:06d}"
    assert not list(run_dir.glob(".step-*.tmp-*")) and [p.name for p in run_dir.glob("step-*")] == [
        f"step-{target:06d}"]
    assert Path(run["adapter_path"]) == run_dir / f"step-{target:06d}" / "adapter"


def test_app_job_killed_is_shown_failed_at_once(store, monkeypatch):
    """A job started from the app (pama.jobs) whose process is SIGKILLed: the app knows its pid, so the next reap
    marks it failed without waiting for the heartbeat grace, metrics kept."""
    from pama import jobs

    monkeypatch.setenv("PAMA_HEARTBEAT_GRACE_S", "600")
    job = jobs.start_train(dict(model="tiny-random", objectives=["sentiment", "conciseness"], steps=200,
                                batch_size=2, samples_per_prompt=1, max_new_tokens=4, threads=1, save_every=50),
                           store=store)
    try:
        _wait_for(lambda: store.get_run(job.id)["step"] >= 2, 120, "step 2")
    finally:
        os.kill(job.pid, signal.SIGKILL)
    t0 = time.monotonic()
    rows = store.count_metrics(job.id)
    _wait_for(lambda: job.id in jobs.reap(store), 10, "the reaper to mark the job failed", poll=0.2)
    run = store.get_run(job.id)
    assert run["status"] == "failed" and f"pid {job.pid}" in run["error"] and time.monotonic() - t0 < 5
    assert store.count_metrics(job.id) >= rows > 0
    assert jobs.progress(run)["terminal"]


# ---------------------------------------------------------------------------------------------------- half-written

TINY = dict(model="tiny-random", objectives=["sentiment", "conciseness"], batch_size=2, samples_per_prompt=1,
            max_new_tokens=4, save_every=1, seed=0, threads=1, learning_rate=1e-2)


@pytest.fixture(scope="module")
def _checkpoint_template(tmp_path_factory):
    """Built once: a store with a run holding complete checkpoints step-000002 and step-000004 (LATEST → 4)."""
    from pama import trainer
    from pama.config import TrainConfig

    home = tmp_path_factory.mktemp("ckpt-template")
    saved = {k: os.environ.pop(k, None) for k in ("PAMA_HOME", "PAMA_DB_URL")}
    os.environ["PAMA_HOME"] = str(home)
    try:
        store = Store()
        run_id = trainer.train(TrainConfig(steps=2, **TINY), store, progress=False)
        run_dir = paths.run_dir(run_id)
        keep = run_dir.parent / "keep-step-2"
        shutil.copytree(run_dir / "step-000002", keep)
        trainer.resume(run_id, store, steps=4, progress=False)
        shutil.move(keep, run_dir / "step-000002")
        assert (run_dir / "LATEST").read_text() == "step-000004"
        store.close()
    finally:
        os.environ.pop("PAMA_HOME", None)
        os.environ.update({k: v for k, v in saved.items() if v is not None})
    return home, run_id


@pytest.fixture
def two_checkpoints(_checkpoint_template, pama_home):
    """A copy of the template in this test's PAMA_HOME: (run id, run folder)."""
    home, run_id = _checkpoint_template
    for f in home.glob("pama.db*"):
        shutil.copy(f, pama_home / f.name)
    shutil.copytree(home / "runs", pama_home / "runs")
    return run_id, paths.run_dir(run_id)


@pytest.fixture
def store(pama_home, request):
    """The test's store, opened after two_checkpoints (when a test uses it) has copied the template in."""
    if "two_checkpoints" in request.fixturenames:
        request.getfixturevalue("two_checkpoints")
    s = Store()
    yield s
    s.close()


def _resumed_step(store, run_id) -> int:
    from pama import trainer
    from pama.config import TrainConfig, from_dict

    cfg = from_dict(TrainConfig, store.get_run(run_id)["config"])
    return trainer.Trainer(cfg.validate(), store, run_id=run_id, progress=False).step


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_leftover_temp_folder_is_never_loaded_and_is_cleaned_at_the_next_save(two_checkpoints, store):
    run_id, run_dir = two_checkpoints
    tmp = run_dir / ".step-000005.tmp-4242"
    (tmp / "adapter").mkdir(parents=True)
    (tmp / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00" * 10)   # a save killed half-way
    assert _resumed_step(store, run_id) == 4
    from pama import trainer

    trainer.resume(run_id, store, steps=5, progress=False)
    assert not tmp.exists() and trainer.latest_checkpoint(run_dir).name == "step-000005"


@pytest.mark.parametrize("damage, expected", [
    ("latest_missing_folder", 4),       # LATEST → a folder that does not exist: the newest complete one
    ("latest_garbage", 4),              # LATEST holds junk / a path outside the run folder
    ("no_latest", 4),                   # pointer lost: newest complete step folder
    ("incomplete_latest", 2),           # step-4 lacks state.pt: skipped
    ("truncated_adapter", 2),           # step-4's safetensors cut in half: refused, step-2 used (with a warning)
    ("truncated_state", 2),             # step-4's state.pt cut in half
])
def test_damaged_latest_checkpoint_falls_back_to_a_complete_one(two_checkpoints, store, damage, expected):
    run_id, run_dir = two_checkpoints
    latest = run_dir / "step-000004"
    if damage == "latest_missing_folder":
        (run_dir / "LATEST").write_text("step-000009")
    elif damage == "latest_garbage":
        (run_dir / "LATEST").write_text("../../../etc")
    elif damage == "no_latest":
        (run_dir / "LATEST").unlink()
    elif damage == "incomplete_latest":
        (latest / "state.pt").unlink()
    elif damage == "truncated_adapter":
        _truncate(latest / "adapter" / "adapter_model.safetensors")
    elif damage == "truncated_state":
        _truncate(latest / "state.pt")
    if damage.startswith("truncated"):
        with pytest.warns(UserWarning, match="corrupt or truncated"):
            assert _resumed_step(store, run_id) == expected
    else:
        assert _resumed_step(store, run_id) == expected


def test_resumed_weights_are_the_checkpoints(two_checkpoints, store):
    """The fallback loads step-2's LoRA weights exactly, not a mix with the damaged step-4."""
    import torch
    from safetensors.torch import load_file

    from pama import trainer
    from pama.config import TrainConfig, from_dict

    run_id, run_dir = two_checkpoints
    _truncate(run_dir / "step-000004" / "adapter" / "adapter_model.safetensors", 0.9)
    saved = load_file(run_dir / "step-000002" / "adapter" / "adapter_model.safetensors")
    cfg = from_dict(TrainConfig, store.get_run(run_id)["config"]).validate()
    with pytest.warns(UserWarning):
        t = trainer.Trainer(cfg, store, run_id=run_id, progress=False)
    from peft import get_peft_model_state_dict

    now = get_peft_model_state_dict(t.accelerator.unwrap_model(t.model))
    assert set(now) == set(saved) and all(torch.equal(now[k], saved[k]) for k in saved)


def _snapshot(store) -> dict:
    return {"runs": [{k: v for k, v in r.items()} for r in store.list_runs()],
            "metrics": {r["id"]: store.count_metrics(r["id"]) for r in store.list_runs()}, "counts": store.counts()}


def test_no_loadable_checkpoint_is_a_clear_error_and_changes_nothing(two_checkpoints, store, capsys):
    from pama.cli import main

    run_id, run_dir = two_checkpoints
    for step in ("step-000002", "step-000004"):
        _truncate(run_dir / step / "adapter" / "adapter_model.safetensors", 0.3)
    store.set_status(run_id, "failed", error="killed")
    before = _snapshot(store)
    with pytest.warns(UserWarning):
        assert main(["train", "--resume", run_id, "--steps", "6", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot resume run") and "Traceback" not in err[0]
    assert "step-000004" in err[0] and "Delete the corrupt folder" in err[0]
    assert _snapshot(store) == before


# ---------------------------------------------------------------------------------------------------- concurrency

_READER = r"""
import sys, time
import pama
from pama.store import Store
s = Store()
n = errors = 0
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        for r in s.list_runs():
            s.metrics(r["id"]); s.get_run(r["id"])
        s.mark_stale_failed()
        n += 1
    except Exception as e:
        errors += 1; print(f"{type(e).__name__}: {e}", file=sys.stderr)
    time.sleep(0.1)
print(n, errors)
"""


def test_four_writers_and_readers_on_one_sqlite_store_lose_nothing(pama_home, monkeypatch):
    """(The slowest test here: four Python+torch start-ups on the CPU, ~30-60 s on 2 busy cores.)
    Four training processes (heartbeat every 0.2 s) on one SQLite file, two reader threads and a reader process
    polling list_runs/metrics like the app: no 'database is locked', every (run, step, key) row present."""
    monkeypatch.setenv("PAMA_HEARTBEAT_GRACE_S", "120")
    steps = 6
    store = Store()   # the app creates the store first
    t0 = time.monotonic()
    procs = [_start_train(pama_home, *TINY_FLAGS, "--steps", str(steps), "--save-every", "4", "--seed", str(i),
                          PAMA_HEARTBEAT_S="0.2") for i in range(4)]
    reader_proc = subprocess.Popen([sys.executable, "-c", _READER, "25"], cwd=REPO,
                                   env=_env(pama_home, PAMA_HEARTBEAT_GRACE_S="120"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    reads, errors = [0, 0], []

    def reader(i):
        s = Store()
        while not stop.is_set():
            try:
                for r in s.list_runs():
                    s.metrics(r["id"])
                    s.count_metrics(r["id"])
                reads[i] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(f"{type(e).__name__}: {e}")
            stop.wait(0.1)

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    try:
        outs = [p.communicate(timeout=170) for p in procs]
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
        for t in threads:
            t.join(5)
    elapsed = time.monotonic() - t0
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "locked" not in err.lower()
    r_out, r_err = reader_proc.communicate(timeout=60)
    assert reader_proc.returncode == 0 and "locked" not in r_err.lower(), r_err[-2000:]
    proc_loops, proc_errors = map(int, r_out.split())
    assert not errors and proc_errors == 0, (errors[:3], r_err[-2000:])
    assert min(reads) > 0 and proc_loops > 0

    run_ids = [o.splitlines()[0].split()[2] for o, _ in outs]
    assert len(set(run_ids)) == 4
    total = 0
    for rid in run_ids:
        run = store.get_run(rid)
        assert run["status"] == "finished" and run["step"] == steps
        keys = _assert_complete(_metric_table(store, rid), steps)
        assert store.count_metrics(rid) == steps * len(keys)
        total += store.count_metrics(rid)
    assert store.count_metrics() == total
    print(f"\n4 writers × {steps} steps: {total} metric rows, all present; reader loops: threads {reads}, "
          f"process {proc_loops}; {elapsed:.1f} s")


def test_concurrent_first_use_of_an_empty_store(tmp_path):
    """Several processes opening a store that does not exist yet: one creates it, the others use it."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = ("import sys; import pama; from pama.store import Store; s = Store(sys.argv[1]); "
            "s.create_run(name='x', method='pama', model='m', config={}, objectives=[]); print(s.schema_version())")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == SCHEMA_HEAD
    assert len(Store(url).list_runs()) == 4


# ---------------------------------------------------------------------------------------------------- settings

def test_heartbeat_settings_from_the_environment(monkeypatch):
    from pama import jobs
    from pama.store import heartbeat_grace_s, heartbeat_interval_s

    monkeypatch.delenv("PAMA_HEARTBEAT_S", raising=False)
    monkeypatch.delenv("PAMA_HEARTBEAT_GRACE_S", raising=False)
    assert heartbeat_interval_s() == 10.0 and heartbeat_grace_s() == 120.0
    monkeypatch.setenv("PAMA_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("PAMA_HEARTBEAT_GRACE_S", "4")
    assert heartbeat_interval_s() == 0.5 and heartbeat_grace_s() == 4.0
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    run = dict(status="running", step=3, total_steps=10, heartbeat_at=now - dt.timedelta(seconds=5),
               started_at=now - dt.timedelta(seconds=30))
    assert jobs.progress(run, now=now)["stale"] is True
    assert jobs.progress(run, now=now, grace_s=60)["stale"] is False
    for bad in ("abc", "-1", "0", "nan"):
        monkeypatch.setenv("PAMA_HEARTBEAT_GRACE_S", bad)
        with pytest.warns(UserWarning, match="PAMA_HEARTBEAT_GRACE_S"):
            assert heartbeat_grace_s() == 120.0


# ---------------------------------------------------------------------------------------------------- PostgreSQL

def test_training_resume_and_the_app_paths_on_postgresql(pama_home, pg_url, monkeypatch, capsys):
    """The trainer, resume, stale-run reaping, progress and the CLI listing work with PAMA_DB_URL on PostgreSQL."""
    import datetime as dt

    from pama import cli, jobs, trainer
    from pama.config import TrainConfig

    monkeypatch.setenv("PAMA_DB_URL", pg_url)
    store = Store()
    assert store.engine.dialect.name == "postgresql"
    run_id = trainer.train(TrainConfig(steps=2, **TINY), store, progress=False)
    trainer.resume(run_id, store, steps=3, progress=False)
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["step"] == 3 and run["config"]["steps"] == 3
    keys = _assert_complete(_metric_table(store, run_id), 3)
    assert store.count_metrics(run_id) == 3 * len(keys)
    assert jobs.progress(run, store.metrics(run_id, keys=["time/step"]))["terminal"]

    other = store.create_run(name="dead", method="pama", model="tiny-random", config={}, objectives=[])
    store.set_status(other, "running")
    store.update_run(other, heartbeat_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=600))
    assert jobs.reap(store, grace_s=60) == [other]
    assert cli.main(["runs", "--json"]) == 0
    shown = {r["id"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert shown == {run_id: "finished", other: "failed"}
    store.close()
