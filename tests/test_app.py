"""Every page of the Streamlit app, headless (streamlit.testing.v1.AppTest), on an empty and on a populated store."""
from __future__ import annotations

import time
from pathlib import Path

import pama  # noqa: F401  (before torch)

import pytest
from streamlit.testing.v1 import AppTest

from pama.store import Store

PAGES = ["views/home.py", "views/front.py", "views/compare.py", "views/vote.py", "views/train.py", "views/runs.py",
         "views/queue.py"]
OBJS = [dict(name="sentiment", lower=-1.0, upper=1.0), dict(name="conciseness", lower=0.0, upper=1.0)]
TIMEOUT = 120
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def train_tiny(store: Store, *, seed: int = 0, preference=(0.5, 0.5)) -> str:
    """A real tiny-random adapter (a couple of seconds): one PPO step, saved checkpoint."""
    from pama.config import TrainConfig
    from pama.trainer import train

    cfg = TrainConfig(model="tiny-random", steps=1, batch_size=2, samples_per_prompt=1, max_new_tokens=4, seed=seed,
                      preference=list(preference), save_every=1, learning_rate=0.05)  # large: visibly different
    return train(cfg, store, progress=False)


def make_front(store: Store, *, real_runs: list[str] = (), model: str = "tiny-random", n: int = 5) -> dict:
    """A small synthetic front: PAMA and MORLHF adapters on sentiment × conciseness, a base point, generations.
    The first points reuse ``real_runs`` (trained adapters) so that they can generate."""
    sweep = store.create_sweep(name="synthetic front", method="pama", model=model,
                               objectives=["sentiment", "conciseness"], config={"points": n})
    ids = {"sweep": sweep, "adapters": [], "base": None}
    real = list(real_runs)
    for method, shift in (("pama", 0.0), ("morlhf", -0.08)):
        for i in range(n):
            w = i / (n - 1)
            s = -0.2 + 0.9 * w + shift
            c = 0.9 - 0.6 * w ** 1.5 + shift
            if method == "morlhf" and i == 2:
                s, c = s - 0.3, c - 0.25  # a dominated point
            if real and method == "pama":
                run_id = real.pop(0)
                store.update_run(run_id, sweep_id=sweep)
            else:
                run_id = store.create_run(name=f"{method} [{w:.2f},{1 - w:.2f}]", method=method, model=model,
                                          config={"preference": [w, 1 - w]}, objectives=OBJS, total_steps=2,
                                          sweep_id=sweep)
                store.set_status(run_id, "finished")
            gens = [dict(prompt_index=k, prompt=f"Prompt number {k}: describe a <b>tea</b> shop.",
                         text=f"<script>alert('x')</script> {method} answer {i}-{k}",
                         scores={"sentiment": s, "conciseness": c}) for k in range(3)]
            pid = store.add_point(kind="adapter", label=f"{method} w={w:.2f}", model=model, sweep_id=sweep,
                                  run_id=run_id, method=method, preference=[w, 1 - w],
                                  values={"sentiment": (s, s - 0.05, s + 0.05), "conciseness": (c, c - 0.04, c + 0.04)},
                                  kl=0.1 * i, mean_length=20 - i, generations=gens)
            ids["adapters"].append(pid)
    ids["base"] = store.add_point(kind="base", label="base", model=model, sweep_id=sweep,
                                  values={"sentiment": (0.1, 0.05, 0.15), "conciseness": (0.4, 0.35, 0.45)},
                                  generations=[dict(prompt_index=0, prompt="Prompt number 0", text="base text",
                                                    scores={"sentiment": 0.1})])
    store.update_sweep(sweep, status="finished")
    return ids


@pytest.fixture
def empty_store(pama_home, monkeypatch):
    monkeypatch.setenv("PAMA_NO_DEMO", "1")
    monkeypatch.setenv("PAMA_APP_MODEL", "tiny-random")
    s = Store()
    yield s
    s.close()


@pytest.fixture
def front_store(empty_store):
    ids = make_front(empty_store)
    return empty_store, ids


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page and page != "views/home.py":
        at.switch_page(page).run()
    return at


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_loads_with_an_empty_store(empty_store, page):
    at = app(page)
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    if page in ("views/front.py", "views/runs.py"):
        assert any("No fronts yet" in t or "No runs yet" in t for t in texts(at, "info"))
    if page == "views/vote.py":   # registered in app.py's navigation (else switch_page shows another page)
        assert [t.value for t in at.title] == ["Blind vote"]
        assert any("Blind votes need at least two evaluated points" in t for t in texts(at, "info"))
    if page == "views/home.py":
        assert any("The store is empty" in t for t in texts(at, "info"))
        assert [(m.label, m.value) for m in at.sidebar.metric] == [("runs", "0"), ("fronts", "0"), ("points", "0")]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_loads_with_a_front(front_store, page):
    store, ids = front_store
    at = app(page)
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    if page == "views/front.py":
        assert at.get("plotly_chart"), "the front plot is drawn"
        assert any(m.label == "Selected points (up to four)" for m in at.multiselect)
    if page == "views/vote.py":   # a ballot of two unnamed stored responses, the vote buttons
        ballot = at.session_state["blind_ballot"]
        assert [c.value for c in at.code] == [ballot["text_a"], ballot["text_b"]]
        assert {b.key for b in at.button} >= {"blind_vote_a", "blind_vote_b", "blind_vote_tie", "blind_next"}
    if page == "views/compare.py":   # side by side only: the blind vote is its own page
        assert [t.value for t in at.title] == ["Compare generations"]
        assert not [w.key for w in (*at.button, *at.text_input) if (w.key or "").startswith("blind_")]
    if page == "views/home.py":
        assert not any("The store is empty" in t for t in texts(at, "info"))


def test_empty_store_imports_the_demo_front_on_home(empty_store, tmp_path, monkeypatch):
    """An empty store shows the demo front: Home imports it (pama.demo.import_if_empty) and says so."""
    from pama import demo

    if not demo.available():  # build a demo folder the way the shipped one is made, from a synthetic front
        other = Store(f"sqlite:///{tmp_path / 'other.db'}")
        sid = make_front(other)["sweep"]
        demo.export_sweep(other, sid, tmp_path / "demo")
        other.close()
        monkeypatch.setattr(demo, "DEMO_DIR", tmp_path / "demo")
    monkeypatch.delenv("PAMA_NO_DEMO")
    at = app()
    assert not at.exception, at.exception
    assert any("demo front was imported" in s for s in texts(at, "success"))
    assert empty_store.counts()["points"] > 0
    values = {m.label: m.value for m in at.metric}
    assert values["Evaluated points"] != "0"
    at = app("views/front.py")
    assert not at.exception and at.get("plotly_chart")
    at = app()  # idempotent: a second visit imports nothing
    assert not any("demo front was imported" in s for s in texts(at, "success"))


def test_home_shows_counts_and_store_url(front_store):
    at = app()
    caption = " ".join(texts(at, "caption"))
    assert "sqlite:///" in caption
    values = {m.label: m.value for m in at.metric}
    assert values["Training runs"] == "10" and values["Fronts (sweeps)"] == "1" and values["Evaluated points"] == "11"


def test_front_selection_goes_to_compare_with_two_columns(front_store):
    store, ids = front_store
    at = app("views/front.py")
    two = ids["adapters"][:2]
    at.multiselect(key="front_pick").set_value(two).run()
    assert not at.exception
    at.button(key="front_compare").click().run()
    assert not at.exception, at.exception
    assert at.multiselect(key="compare_pick").value == two
    labels = [p["label"] for p in store.points(ids=two)]
    heads = texts(at, "subheader")
    assert sum(h in labels for h in heads) >= 2
    # the generate tab and the stored-samples tab each show one column per point
    assert sorted(h for h in heads if h in labels) == sorted(labels * 2)
    # stored samples are shown as text, never rendered as HTML
    codes = texts(at, "code")
    assert any("<script>alert('x')</script>" in c for c in codes)
    assert not at.get("html")


def test_front_three_objectives_and_filters(front_store):
    store, ids = front_store
    extra = store.add_point(kind="adapter", label="three", model="tiny-random", sweep_id=ids["sweep"],
                            method="pama", values={"sentiment": (0.1, 0, 0.2), "conciseness": (0.5, 0.4, 0.6),
                                                   "safety": (0.9, 0.8, 1.0)})
    at = app("views/front.py")
    at.multiselect(key="front_objectives").set_value(["sentiment", "conciseness", "safety"]).run()
    assert not at.exception
    at.radio(key="front_view").set_value("3-D").run()
    assert not at.exception

    def picker_ids() -> list[str]:
        """The point ids behind the picker's options (AppTest returns the formatted labels '... [<id>]')."""
        return [o.rsplit("[", 1)[-1].rstrip("]") for o in at.multiselect(key="front_pick").options]

    assert extra in picker_ids()  # the pama point is offered before the filter ...
    at.multiselect(key="front_methods").set_value(["morlhf"]).run()
    assert not at.exception
    shown = picker_ids()
    assert shown and extra not in shown  # ... and gone once only morlhf is shown
    assert {p["method"] for p in map(store.get_point, shown) if p["kind"] != "base"} == {"morlhf"}


def test_front_mixture_slider_evaluates_and_plots_mixtures(empty_store):
    store = empty_store
    r1, r2 = train_tiny(store, seed=0), train_tiny(store, seed=1, preference=(0.9, 0.1))
    ids = make_front(store, real_runs=[r1, r2])
    a, b = (store.points(run_id=r)[0]["id"] for r in (r1, r2))
    at = app("views/front.py")
    at.multiselect(key="front_pick").set_value([a, b]).run()
    at.slider(key="mix_t").set_value(0.3).run()
    at.number_input(key="mix_n").set_value(3).run()
    t = time.time()
    at.button(key="mix_one").click().run()
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    mixes = store.points(kind="mixture")
    assert len(mixes) == 1 and mixes[0]["mixture"] == {r1: 0.7, r2: 0.3}
    assert mixes[0]["sweep_id"] == ids["sweep"] and mixes[0]["eval_config"]["n_prompts"] == 3
    assert set(mixes[0]["values"]) == {"sentiment", "conciseness"}
    # the path queues three more, evaluated one per rerun so that each appears on the plot as it lands
    at.button(key="mix_path").click().run()
    assert not at.exception, at.exception
    assert len(store.points(kind="mixture")) == 4
    print(f"4 mixtures evaluated in {time.time() - t:.1f} s")
    chart = at.get("plotly_chart")[0]
    # evaluated on 3 prompts, unlike the sweep's points: drawn apart, outside the sweep's front and hypervolume
    assert "quick mixture (other eval config)" in chart.proto.spec


def test_compare_generates_with_base_and_adapter(empty_store):
    store = empty_store
    run_id = train_tiny(store)
    ids = make_front(store, real_runs=[run_id])
    real_point = store.points(run_id=run_id)[0]["id"]
    fake_point = ids["adapters"][1]  # its run never saved an adapter
    at = app("views/compare.py")
    at.multiselect(key="compare_pick").set_value(["base", real_point, fake_point]).run()
    at.radio(key="cmp_source").set_value("my own").run()
    at.text_area(key="cmp_prompt_text").input("Describe a quiet library.").run()
    at.number_input(key="cmp_max_new").set_value(6).run()
    t = time.time()
    at.button(key="cmp_generate").click().run()
    assert not at.exception, at.exception
    assert time.time() - t < 60
    codes = texts(at, "code")
    assert len([c for c in codes if "answer" not in c]) >= 2, codes  # base + the real adapter generated
    errs = texts(at, "error")
    assert len(errs) == 1 and "no saved adapter" in errs[0]


def test_compare_mixture_column(empty_store):
    store = empty_store
    r1, r2 = train_tiny(store, seed=0), train_tiny(store, seed=1, preference=(0.9, 0.1))
    make_front(store, real_runs=[r1, r2])
    at = app("views/compare.py")
    at.slider(key="cmp_mix_t").set_value(0.3).run()
    at.button(key="cmp_mix_add").click().run()
    assert not at.exception, at.exception
    assert len(at.multiselect(key="compare_pick").value) == 1
    at.number_input(key="cmp_max_new").set_value(4).run()
    at.button(key="cmp_generate").click().run()
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    assert any("×0.70" in h for h in texts(at, "subheader"))


def _submit(at: AppTest, **values) -> AppTest:
    for key, v in values.items():
        widget = at.get_by_key(key) if hasattr(at, "get_by_key") else None
        if widget is None:
            raise KeyError(key)
        widget.set_value(v)
    at.button[[b.label for b in at.button].index("Start training")].click().run()
    return at


def test_train_form_starts_a_run_that_finishes(empty_store):
    store = empty_store
    at = app("views/train.py")
    t = time.time()
    # the form has no samples_per_prompt field: a batch of 4 is one prompt × the default 4 samples
    _submit(at, tf_model="tiny-random", tf_steps=2, tf_batch=4, tf_tokens=4, tf_preference="0.7, 0.3",
            tf_dtype="bfloat16")
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    runs = store.list_runs()
    assert len(runs) == 1
    run_id = runs[0]["id"]
    assert any(run_id in s for s in texts(at, "success"))
    deadline = time.time() + TIMEOUT
    while store.get_run(run_id)["status"] in ("queued", "running"):
        assert time.time() < deadline, "the background run did not finish in time"
        time.sleep(0.5)
    run = store.get_run(run_id)
    assert run["status"] == "finished", run["error"]
    assert run["config"]["preference"] == pytest.approx([0.7, 0.3])
    assert run["config"]["dtype"] == "bfloat16"
    assert store.count_metrics(run_id) > 0
    print(f"train form → finished run in {time.time() - t:.1f} s")
    # the progress panel (read from the store, so it survives reloads) shows the finished run
    at2 = app("views/train.py")
    assert not at2.exception
    at2.run()
    at3 = app("views/runs.py")
    assert not at3.exception and not at3.error
    assert any("status **finished**" in c for c in texts(at3, "caption"))


def test_train_form_defaults_submit_as_the_default_config(empty_store):
    """Submitted as it opens (only the step count cut), the form gives TrainConfig's defaults: a batch that is a
    multiple of samples_per_prompt, the default objectives and preference. The run really trains."""
    from pama.config import DEFAULT_OBJECTIVES, DEFAULT_PREFERENCE, TrainConfig

    store = empty_store
    at = app("views/train.py")
    _submit(at, tf_steps=1)
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    (run,) = store.list_runs()
    cfg, defaults = run["config"], TrainConfig()
    assert run["model"] == "tiny-random"  # PAMA_APP_MODEL
    for key in ("batch_size", "samples_per_prompt", "max_new_tokens", "learning_rate", "lora_r", "anchor",
                "method", "dtype", "missing_eos_penalty", "target_modules"):
        assert cfg[key] == defaults.to_dict()[key], key
    assert cfg["objectives"] == DEFAULT_OBJECTIVES
    assert cfg["preference"] == pytest.approx([p / sum(DEFAULT_PREFERENCE) for p in DEFAULT_PREFERENCE])
    deadline = time.time() + TIMEOUT
    while store.get_run(run["id"])["status"] in ("queued", "running"):
        assert time.time() < deadline, "the background run did not finish in time"
        time.sleep(0.5)
    assert store.get_run(run["id"])["status"] == "finished", store.get_run(run["id"])["error"]


@pytest.mark.parametrize("native", [True, False])
def test_train_form_says_when_bfloat16_is_slow_on_this_cpu(empty_store, monkeypatch, native):
    from pama import sampling

    monkeypatch.setattr(sampling, "bf16_native", lambda: native)
    at = app("views/train.py")
    slow = [c for c in texts(at, "caption") if "no bfloat16 instructions" in c]
    assert bool(slow) == (not native), texts(at, "caption")


def test_train_form_starts_a_sweep_that_finishes(empty_store):
    store = empty_store
    at = app("views/train.py")
    t = time.time()
    _submit(at, tf_model="tiny-random", tf_mode="a sweep grid (a whole front)", tf_points=2, tf_steps=1, tf_batch=4,
            tf_tokens=4, tf_eval_samples=2, tf_objectives=["sentiment", "conciseness"])
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    sweeps = store.list_sweeps()
    assert len(sweeps) == 1
    sid = sweeps[0]["id"]
    deadline = time.time() + 3 * TIMEOUT
    while store.get_sweep(sid)["status"] in ("queued", "running"):
        assert time.time() < deadline, "the background sweep did not finish in time"
        time.sleep(1)
    assert store.get_sweep(sid)["status"] == "finished", open(__import__("pama.jobs").jobs.log_path(sid)).read()
    kinds = sorted(p["kind"] for p in store.points(sweep_id=sid))
    assert kinds == ["adapter", "adapter", "base"]
    print(f"train form → finished sweep in {time.time() - t:.1f} s")
    at = app("views/front.py")
    assert not at.exception and at.get("plotly_chart")


@pytest.mark.parametrize("values,expected", [
    (dict(tf_preference="1"), "preference has 1 entries but there are 2 objectives"),
    (dict(tf_anchor=2.0), "anchor must lie in [0, 1]"),
    (dict(tf_preference="a, b"), "is not a number"),
    (dict(tf_steps=0), "steps must be a positive integer"),
    (dict(tf_batch=6), "batch_size (6) must be a multiple of samples_per_prompt"),  # the form has no k field
    (dict(tf_extra="py:os:system"), "py: objectives run arbitrary Python code"),
    (dict(tf_extra="sentimnt"), "unknown objective"),
])
def test_invalid_train_form_shows_an_error_and_creates_nothing(empty_store, values, expected):
    store = empty_store
    at = app("views/train.py")
    _submit(at, tf_model="tiny-random", **values)
    assert not at.exception, at.exception
    errs = texts(at, "error")
    assert errs and expected in errs[0], errs
    assert "Nothing was started" in errs[0]
    assert store.list_runs() == []
    assert not (store.url and any((__import__("pama").paths.home() / "logs").glob("*.yaml")))


def test_runs_page_details_export_and_delete(empty_store):
    store = empty_store
    run_id = train_tiny(store)
    make_front(store, real_runs=[run_id])
    from pama import paths

    assert paths.run_dir(run_id).exists()
    at = app("views/runs.py")
    at.selectbox(key="runs_pick").set_value(run_id).run()
    assert not at.exception, at.exception
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"Metrics (CSV)", "Run, metrics and evaluations (JSON)"} <= labels, labels
    assert at.button(key="runs_delete").disabled
    at.checkbox(key=f"runs_confirm_{run_id}").check().run()
    at.button(key="runs_delete").click().run()
    assert not at.exception, at.exception
    assert store.get_run(run_id) is None
    assert not paths.run_dir(run_id).exists()
    assert any(f"Deleted run {run_id}" in s for s in texts(at, "success"))


def test_runs_filters_and_failed_message(front_store):
    store, ids = front_store
    rid = store.create_run(name="broken", method="pama", model="tiny-random", config={}, objectives=OBJS)
    store.set_status(rid, "failed", error="ObjectiveError: the reward model exploded")
    at = app("views/runs.py")
    at.multiselect(key="runs_status").set_value(["failed"]).run()
    assert not at.exception
    assert at.selectbox(key="runs_pick").options == [f"broken · failed · {rid}"]
    assert any("the reward model exploded" in e for e in texts(at, "error"))
