"""The trainer reports through callbacks (pama.callbacks): no store unless asked for, the store writer as one callback,
``report_to`` adding TensorBoard (event files) and MLflow (its file store), the live front (pama.livefront)."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pama import callbacks, trainer
from pama.config import ConfigError, TrainConfig

TINY = dict(model="tiny-random", objectives=["sentiment", "conciseness"], preference=[0.7, 0.3], steps=2,
            batch_size=4, max_new_tokens=6, save_every=2, learning_rate=1e-2, seed=0, threads=1)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY, **kw}).validate()


def _events(folder: Path) -> list:
    """Every Event record of the TensorBoard event files under ``folder`` (TFRecord framing, read by hand: length,
    its CRC, the proto, its CRC), parsed with tensorboardX's own proto."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            ev = event_pb2.Event()
            ev.ParseFromString(data[i + 12:i + 12 + n])
            out.append(ev)
            i += 12 + n + 4
    return out


def test_trainer_without_callbacks_keeps_no_store(pama_home):
    """The trainer works with no store: nothing written under PAMA_HOME but the run's checkpoints."""
    t = trainer.Trainer(_cfg(), progress=False, callbacks=[])
    assert t.store is None
    run_id = t.train()
    assert run_id.startswith("r") and t.step == 2
    assert not list(pama_home.rglob("*.db")), list(pama_home.rglob("*.db"))
    assert trainer.latest_checkpoint(t.run_dir) is not None   # the checkpoints are the trainer's own


def test_store_callback_writes_what_the_trainer_reported(store):
    seen = []

    class Spy(callbacks.TrainerCallback):
        def on_log(self, tr, step, metrics):
            seen.append((step, dict(metrics)))

        def on_save(self, tr, checkpoint):
            seen.append(("save", Path(checkpoint).name))

    run_id = trainer.train(_cfg(), progress=False, callbacks=[callbacks.StoreCallback(store), Spy()])
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["step"] == 2 and run["adapter_path"].endswith("step-000002/adapter")
    stored = {(m["step"], m["key"]): m["value"] for m in store.metrics(run_id)}
    logged = [(s, m) for s, m in seen if s != "save"]
    assert [s for s, _ in logged] == [1, 2] and ("save", "step-000002") in seen
    for step, metrics in logged:
        for k in ("kl", "rewards/sentiment/mean"):
            assert stored[(step, k)] == pytest.approx(metrics[k])


def test_a_cancel_seen_by_the_store_callback_stops_the_run(store):
    def cancel(step, metrics):
        store.set_status(run_holder[0], "cancelled")

    run_holder = []
    t = trainer.Trainer(_cfg(steps=4), progress=False, callbacks=[callbacks.StoreCallback(store)], on_step=cancel)
    run_holder.append(t.run_id)
    with pytest.raises(trainer.RunCancelled):
        t.train()
    assert t.step == 1 and store.get_run(t.run_id)["status"] == "cancelled"


def test_a_callback_failing_before_the_first_step_marks_the_run_failed(store):
    class Broken(callbacks.TrainerCallback):
        def on_train_begin(self, tr):
            raise RuntimeError("the tracking server is down")

    t = trainer.Trainer(_cfg(), store, progress=False, callbacks=[Broken()])
    with pytest.raises(RuntimeError, match="tracking server"):
        t.train()
    run = store.get_run(t.run_id)
    assert run["status"] == "failed" and "tracking server" in run["error"]


def test_report_to_is_checked_and_none_adds_nothing():
    with pytest.raises(ConfigError, match="report_to"):
        TrainConfig(**{**TINY, "report_to": ["wandb"]}).validate()
    assert callbacks.integrations(["none"]) == [] and callbacks.integrations([]) == []
    with pytest.raises(ValueError, match="unknown"):
        callbacks.integrations(["comet"])


def test_a_missing_integration_package_names_it(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboardx(name, *a, **k):
        if name.startswith("tensorboardX"):
            raise ImportError("No module named 'tensorboardX'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    monkeypatch.delitem(__import__("sys").modules, "tensorboardX", raising=False)
    with pytest.raises(ImportError, match="pip install tensorboardX"):
        callbacks.TensorBoardCallback()


def test_report_to_tensorboard_writes_reward_and_kl_scalars_per_step(pama_home, tmp_path, monkeypatch):
    monkeypatch.setenv("PAMA_TENSORBOARD_DIR", str(tmp_path / "tb"))
    run_id = trainer.train(_cfg(steps=3, report_to=["tensorboard"]), progress=False)
    events = _events(tmp_path / "tb" / run_id)
    scalars: dict[str, dict[int, float]] = {}
    for ev in events:
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                scalars.setdefault(v.tag, {})[ev.step] = v.simple_value
    for tag in ("kl", "rewards/sentiment/mean", "rewards/conciseness/mean"):
        assert sorted(scalars[tag]) == [1, 2, 3], (tag, scalars.get(tag))
    assert not list(pama_home.rglob("*.db"))  # report_to alone keeps no store


def test_report_to_mlflow_logs_the_runs_metrics_and_params(pama_home, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow 3 refuses its file store without it
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "pama-test")
    from pama.livefront import run_callbacks

    cfg = _cfg(**{**COND, "steps": 2, "report_to": ["mlflow"], "live_eval_every": 2})
    run_id = trainer.train(cfg, progress=False, callbacks=run_callbacks(cfg, None))   # the live front, no store
    assert not list(pama_home.rglob("pama.db"))
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("pama-test")
    (run,) = client.search_runs([exp.experiment_id], f"tags.pama_run_id = '{run_id}'")
    assert run.info.status == "FINISHED"
    assert run.data.params["method"] == "pama" and run.data.params["objectives"] == "sentiment,conciseness"
    for key in ("kl", "rewards/sentiment/mean"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2], key
    # the live front's names, made MLflow-safe ('=' and ',' are not allowed there)
    live = client.get_metric_history(run.info.run_id, "live/p_0.50_0.50/sentiment/mean")
    assert [m.step for m in live] == [2]
    assert callbacks.mlflow_key("rewards/length:target=30,unit=words/mean") == "rewards/length:target_30_unit_words/mean"


# -- the live front (pama.livefront) -----------------------------------------------------------------------------
COND = dict(TINY, conditioned=True, preference=[], samples_per_prompt=2, steps=4, save_every=4,
            target_modules=["q_proj", "v_proj"], live_eval_prompts=4, live_eval_max_new_tokens=5)


def _live_run(store, **kw):
    from pama.livefront import run_callbacks

    cfg = _cfg(**{**COND, **kw})
    return trainer.train(cfg, progress=False, callbacks=run_callbacks(cfg, store))


def test_a_conditioned_run_with_live_eval_stores_the_ends_and_middle_every_k_steps(store):
    from pama.plots import live_table

    run_id = _live_run(store, live_eval_every=2)
    table = live_table(store.metrics(run_id))
    assert set(table) == {"base", "p=1.00,0.00", "p=0.50,0.50", "p=0.00,1.00"}, set(table)
    assert list(table["base"]) == [0]
    for label in ("p=1.00,0.00", "p=0.50,0.50", "p=0.00,1.00"):
        assert sorted(table[label]) == [2, 4], (label, table[label])
        for step, values in table[label].items():
            assert set(values) == {"sentiment", "conciseness"}
            for mean, low, high in values.values():
                assert low <= mean <= high
    times = {m["step"]: m["value"] for m in store.metrics(run_id, keys=["time/live_eval"])}
    assert sorted(times) == [0, 2, 4] and all(t > 0 for t in times.values())


def test_a_run_shorter_than_k_steps_is_not_evaluated_live(store):
    run_id = _live_run(store, steps=1, live_eval_every=2)
    assert store.get_run(run_id)["status"] == "finished"
    assert not [m for m in store.metrics(run_id) if m["key"].startswith(("live/", "time/live_eval"))]


def test_the_live_front_leaves_training_unchanged(store):
    """Evaluating between steps (adapter on and off, other preferences, other prompts) leaves the model, the
    conditioner and the RNG streams (mini-batch order: mini_batches=2) as they were: the adapter trained with the
    live front is the adapter trained without it."""
    import torch

    from pama.livefront import run_callbacks

    weights = []
    for every in (0, 1):
        cfg = _cfg(**{**COND, "steps": 2, "live_eval_every": every, "mini_batches": 2})
        t = trainer.Trainer(cfg, progress=False, callbacks=run_callbacks(cfg, store))
        t.train()
        weights.append({n: p.detach().clone() for n, p in t.model.named_parameters() if p.requires_grad})
    assert weights[0].keys() == weights[1].keys()
    for name, w in weights[0].items():
        assert torch.equal(w, weights[1][name]), name


def test_a_plain_run_logs_its_own_point_and_the_base(store):
    from pama.plots import live_front_figure, live_table

    cfg = _cfg(steps=2, live_eval_every=1, live_eval_prompts=3, live_eval_max_new_tokens=4)
    from pama.livefront import run_callbacks

    run_id = trainer.train(cfg, progress=False, callbacks=run_callbacks(cfg, store))
    metrics = store.metrics(run_id)
    table = live_table(metrics)
    assert set(table) == {"base", "policy"} and sorted(table["policy"]) == [1, 2]
    fig = live_front_figure(metrics, ["sentiment", "conciseness"])
    names = [t.name for t in fig.data]
    assert "this run" in names and "base model" in names
    trajectory = next(t for t in fig.data if t.name == "this run")   # the base, then steps 1 and 2
    base = table["base"][0]
    assert len(trajectory.x) == 3 and trajectory.x[0] == pytest.approx(base["sentiment"][0])


def test_live_front_figure_draws_a_trajectory_per_preference_with_intervals():
    from pama.plots import live_front_figure, live_key

    rows = []
    for step, shift in ((0, 0.0), (2, 0.1), (4, 0.3)):
        labels = ["base"] if step == 0 else ["p=1.00,0.00", "p=0.00,1.00"]
        for label in labels:
            sign = 1 if label.startswith("p=1") else -1
            for obj, v in (("a", 0.5 + sign * shift), ("b", 0.5 - sign * shift)):
                rows += [dict(step=step, key=live_key(label, obj, "mean"), value=v),
                         dict(step=step, key=live_key(label, obj, "low"), value=v - 0.05),
                         dict(step=step, key=live_key(label, obj, "high"), value=v + 0.05)]
    fig = live_front_figure(rows, ["a", "b"])
    markers = [t for t in fig.data if t.mode == "markers" and t.name != "base model"]
    assert len(markers) == 2
    for t in markers:
        assert list(t.marker.color) == [2, 4]                       # coloured by step
        assert list(t.error_x.array) == pytest.approx([0.05, 0.05])  # the intervals as error bars
    end_a = next(t for t in fig.data if t.name == "preference (1.00, 0.00)")
    assert list(end_a.x) == pytest.approx([0.5, 0.6, 0.8])          # from the base, moving apart step by step
    assert any(t.name == "base model" for t in fig.data)
    assert "No live evaluation" in live_front_figure(rows[:6], ["a", "b"]).layout.annotations[0].text


def test_runs_page_draws_the_live_front(store, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PAMA_NO_DEMO", "1")
    monkeypatch.setenv("PAMA_APP_MODEL", "tiny-random")
    run_id = _live_run(store, live_eval_every=2)
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/runs.py").run()
    at.selectbox(key="runs_pick").set_value(run_id).run()
    assert not at.exception, at.exception
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    live = [s for s in specs if "The front forming" in s]
    assert live and "preference (0.50, 0.50)" in live[0] and "base model" in live[0]


def test_train_form_reports_to_tensorboard_and_draws_the_live_front(store, pama_home, monkeypatch):
    """The Train form's 'Also report to' and 'Live front every K steps' reach the background run (a `python -m pama
    train` job): TensorBoard event files and live points, drawn in the form's progress panel."""
    import time

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PAMA_NO_DEMO", "1")
    monkeypatch.setenv("PAMA_APP_MODEL", "tiny-random")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/train.py").run()
    for key, value in dict(tf_model="tiny-random", tf_steps=2, tf_batch=4, tf_tokens=4, tf_preference="0.7, 0.3",
                           tf_report_to=["tensorboard"], tf_live_every=1).items():
        at.get_by_key(key).set_value(value)
    at.button[[b.label for b in at.button].index("Start training")].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (run,) = store.list_runs()
    deadline = time.time() + 180
    while store.get_run(run["id"])["status"] in ("queued", "running"):
        assert time.time() < deadline, "the background run did not finish in time"
        time.sleep(0.5)
    run = store.get_run(run["id"])
    assert run["status"] == "finished", run["error"]
    assert run["config"]["report_to"] == ["tensorboard"] and run["config"]["live_eval_every"] == 1
    assert list((pama_home / "tensorboard" / run["id"]).glob("events.out.tfevents.*"))
    from pama.plots import live_table

    assert sorted(live_table(store.metrics(run["id"]))["policy"]) == [1, 2]
    at.session_state["train_watch"] = [run["id"]]
    at.run()
    assert any("The front forming" in c.proto.spec for c in at.get("plotly_chart"))
