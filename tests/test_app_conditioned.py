"""The app's preference-conditioned parts (issue 16): the preference slider on the Pareto front page (generates at
the slider's preference from a conditioned adapter loaded once, shows and scores the text, puts it on the plot), the
Train form's third mode, and Compare with several preferences of one conditioned adapter. Headless (AppTest) on a
tiny conditioned run trained in-process."""
from __future__ import annotations

import pama  # noqa: F401  (before torch)

import pytest

from pama.app import forms, steering
from pama.app.settings import UIError
from test_app import app, empty_store, texts  # noqa: F401  (empty_store: a fixture)

OBJECTIVES = ["sentiment", "conciseness"]
TINY_RUN = dict(model="tiny-random", objectives=OBJECTIVES, conditioned=True, steps=1, batch_size=2,
                samples_per_prompt=1, max_new_tokens=4, save_every=1, learning_rate=1e-2, seed=0, threads=1,
                target_modules=["q_proj", "v_proj"])


def conditioned_front(store, objectives=OBJECTIVES) -> dict:
    """A trained tiny conditioned run and a sweep holding five of its points (kind conditioned) and a base point.
    With a third objective, its weight stays 0 at the points and its values are made up."""
    from pama.config import TrainConfig
    from pama.trainer import train

    objectives = list(objectives)
    sweep = store.create_sweep(name="conditioned front", method="pama", model="tiny-random", objectives=objectives,
                               config={"conditioned": True})
    run_id = train(TrainConfig(**{**TINY_RUN, "objectives": objectives}).validate(), store, progress=False)
    store.update_run(run_id, sweep_id=sweep)
    points = []
    for i, w in enumerate((1.0, 0.75, 0.5, 0.25, 0.0)):
        s, c = 0.8 - 0.7 * i / 4, 0.2 + 0.6 * i / 4
        values = {"sentiment": (s, s - 0.05, s + 0.05), "conciseness": (c, c - 0.05, c + 0.05)}
        values.update({o: (0.5, 0.45, 0.55) for o in objectives[2:]})
        pref = [w, 1 - w] + [0.0] * (len(objectives) - 2)
        points.append(store.add_point(kind="conditioned", model="tiny-random", sweep_id=sweep, run_id=run_id,
                                      label=f"cond run @ ({', '.join(f'{x:.2f}' for x in pref)})", method="pama",
                                      preference=pref, values=values))
    store.add_point(kind="base", label="base", model="tiny-random", sweep_id=sweep,
                    values={"sentiment": (0.1, 0.05, 0.15), "conciseness": (0.4, 0.35, 0.45),
                            **{o: (0.5, 0.45, 0.55) for o in objectives[2:]}})
    store.update_sweep(sweep, status="finished")
    return dict(sweep=sweep, run=run_id, points=points)


@pytest.fixture
def spy(monkeypatch):
    """Wraps pama.conditioning's load_conditioned and generate_at: counts loads, records each preference, and marks
    the real text with the preference it was generated at (the tiny adapter barely moves with p). ``calls["gate"]``
    (an Event, open by default) holds every generation until it is set: a test can look at the page meanwhile."""
    import threading

    from pama import conditioning as cond

    calls = dict(loads=0, prefs=[], gate=threading.Event())
    calls["gate"].set()
    real_load, real_gen = cond.load_conditioned, cond.generate_at

    def load(*a, **kw):
        calls["loads"] += 1
        return real_load(*a, **kw)

    def gen(model, tok, prompts, p, **kw):
        assert calls["gate"].wait(120), "the test never let the generation run"
        calls["prefs"].append([round(float(x), 4) for x in p])
        return [f"[p={float(p[0]):.2f}] {t}" for t in real_gen(model, tok, prompts, p, **kw)]

    monkeypatch.setattr(cond, "load_conditioned", load)
    monkeypatch.setattr(cond, "generate_at", gen)
    return calls


def settle(at, timeout: float = 300.0):
    """Wait for the slider's background generations (views/front.py runs them in a thread), then rerun, as the page's
    polling fragment does in a browser: the text and the × appear."""
    for _ in range(5):
        try:
            pending = dict(at.session_state["cond_pending"])
        except KeyError:
            return at
        if not pending:
            return at
        for fut in pending.values():
            fut.exception(timeout=timeout)   # done (its error, if any, is the page's to show)
        at.run()
    return at


def test_front_draws_the_conditioned_curve_and_the_slider_generates_at_its_preference(empty_store, spy):
    """The page draws first (issue 24): while the slider's generation is held, the plot, the points table and the
    controls are there and the slider's box says it is generating; then the text and the × follow."""
    store = empty_store
    ids = conditioned_front(store)
    spy["gate"].clear()
    at = app("views/front.py")
    assert not at.exception, at.exception
    # the curve: one series of the five conditioned points joined in preference order, drawn without the model
    fig = at.get("plotly_chart")[0].proto.spec
    assert "pama conditioned" in fig and "live generation" not in fig
    assert any("Generating at sentiment 0.50, conciseness 0.50" in c for c in texts(at, "caption"))
    assert not [c for c in texts(at, "code") if c.startswith("[p=")] and spy["prefs"] == []
    assert any("Points (" in e.label for e in at.expander) and at.multiselect(key="front_pick") is not None
    spy["gate"].set()
    settle(at)
    assert not at.exception, at.exception
    assert spy["prefs"] == [[0.5, 0.5]]   # at once: the first held-out prompt at the middle preference
    assert "live generation" in at.get("plotly_chart")[0].proto.spec
    assert at.selectbox(key="cond_run").value == ids["run"]
    at.radio(key="cond_source").set_value("my own").run()
    at.text_area(key="cond_prompt_text").set_value("Describe a rainy day.").run()
    at.number_input(key="cond_max_new").set_value(4).run()
    settle(at)
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    assert spy["prefs"][-1] == [0.5, 0.5]
    first = [c for c in texts(at, "code") if c.startswith("[p=")]
    assert first and first[-1].startswith("[p=0.50]")
    assert any("Scores: sentiment" in c and "conciseness" in c for c in texts(at, "caption"))
    assert "live generation" in at.get("plotly_chart")[0].proto.spec

    at.slider(key="cond_p").set_value(0.9).run()   # move the slider: new preference, new text, no reload
    settle(at)
    assert not at.exception, at.exception
    assert spy["prefs"][-1] == [0.9, 0.1]
    second = [c for c in texts(at, "code") if c.startswith("[p=")]
    assert second[-1].startswith("[p=0.90]") and second[-1] != first[-1]
    assert any("sentiment 0.90, conciseness 0.10" in c for c in texts(at, "caption"))
    assert spy["loads"] == 1


def test_the_tiny_conditioned_adapter_writes_other_text_at_other_preferences(empty_store):
    """What the browser test of the slider relies on (tests/test_browser.py): the app's own generation
    (hosting.ConditionedHost: the first held-out prompt, seed 0, the app's default length and temperature) from the
    tiny conditioned run differs between the slider's start (0.5, 0.5) and its ends (1, 0) and (0, 1), and is the same
    when asked again, so a browser that moves the slider must see the text change, and cannot see it by chance."""
    from pama.app import hosting
    from pama.prompts import load_prompts

    ids = conditioned_front(empty_store)
    host = hosting.ConditionedHost(ids["run"], "tiny-random")
    prompt = load_prompts("builtin:heldout")[0]
    at = {p: host.generate_at(empty_store, prompt, p, seed=0)["text"] for p in [(0.5, 0.5), (1.0, 0.0), (0.0, 1.0)]}
    assert all(t.strip() for t in at.values())
    assert len(set(at.values())) == 3, at
    assert host.generate_at(empty_store, prompt, (1.0, 0.0), seed=0)["text"] == at[(1.0, 0.0)]
    assert host.generate_at(empty_store, prompt, (0.5, 0.5), seed=0)["text"] == at[(0.5, 0.5)]
    assert host.loads == 1


def test_three_objectives_have_linked_weights_and_generate_at_them(empty_store, spy):
    """Three objectives: one slider per weight, linked (steering.rebalance): moving one keeps its value and shares
    the rest among the others in proportion, so the sliders always show the preference used, and that is what
    generate_at receives."""
    objectives = OBJECTIVES + ["length"]
    ids = conditioned_front(empty_store, objectives)
    at = settle(app("views/front.py"))
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    sliders = [at.slider(key=f"cond_w_{k}") for k in range(3)]
    assert [s.label for s in sliders] == objectives
    assert [s.value for s in sliders] == [0.34, 0.33, 0.33]
    assert spy["prefs"] == [[0.34, 0.33, 0.33]]   # at once, at the equal split on the sliders' grid

    at.slider(key="cond_w_0").set_value(0.6).run()   # the others share 0.4 in proportion 33:33
    settle(at)
    assert not at.exception, at.exception
    assert [at.slider(key=f"cond_w_{k}").value for k in range(3)] == [0.6, 0.2, 0.2]
    assert spy["prefs"][-1] == [0.6, 0.2, 0.2]
    at.slider(key="cond_w_2").set_value(0.5).run()   # 0.5 left for 0.6 : 0.2 → 0.375 : 0.125, on the grid
    settle(at)
    assert not at.exception and not at.error, texts(at, "error")
    assert [at.slider(key=f"cond_w_{k}").value for k in range(3)] == [0.38, 0.12, 0.5]
    assert spy["prefs"][-1] == [0.38, 0.12, 0.5]
    assert any("sentiment 0.38, conciseness 0.12, length 0.50" in c for c in texts(at, "caption"))
    assert any(c.startswith("[p=0.38]") for c in texts(at, "code"))
    at.slider(key="cond_w_1").set_value(1.0).run()   # all to one objective: the others go to 0
    settle(at)
    assert [at.slider(key=f"cond_w_{k}").value for k in range(3)] == [0.0, 1.0, 0.0]
    assert spy["prefs"][-1] == [0.0, 1.0, 0.0]
    at.slider(key="cond_w_1").set_value(0.7).run()   # from 0 : 0 the rest is shared equally
    settle(at)
    assert [at.slider(key=f"cond_w_{k}").value for k in range(3)] == [0.15, 0.7, 0.15]
    assert spy["prefs"][-1] == [0.15, 0.7, 0.15] and spy["loads"] == 1
    assert ids["run"] == at.selectbox(key="cond_run").value


def test_compare_several_preferences_of_one_conditioned_adapter(empty_store, spy):
    store = empty_store
    ids = conditioned_front(store)
    at = app("views/compare.py")
    at.selectbox(key="cmp_cond_run").set_value(ids["run"])
    at.text_area(key="cmp_cond_prefs").set_value("1, 0\n0.2, 0.8\n0, 1").run()
    at.button(key="cmp_cond_add").click().run()
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    assert len(at.multiselect(key="compare_pick").value) == 3
    at.radio(key="cmp_source").set_value("my own").run()
    at.text_area(key="cmp_prompt_text").set_value("Name three fruits.").run()
    at.number_input(key="cmp_max_new").set_value(4).run()
    at.button(key="cmp_generate").click().run()
    assert not at.exception, at.exception
    assert not at.error, texts(at, "error")
    assert spy["prefs"][-3:] == [[1.0, 0.0], [0.2, 0.8], [0.0, 1.0]]
    codes = [c for c in texts(at, "code") if c.startswith("[p=")]
    assert [c[:8] for c in codes] == ["[p=1.00]", "[p=0.20]", "[p=0.00]"]
    assert any("@ (0.20, 0.80)" in h for h in texts(at, "subheader"))
    # a stored conditioned point also generates, at its own preference
    at.multiselect(key="compare_pick").set_value([ids["points"][1]]).run()
    at.button(key="cmp_generate").click().run()
    assert not at.exception and not at.error, texts(at, "error")
    assert spy["prefs"][-1] == [0.75, 0.25] and spy["loads"] == 1


def test_train_form_third_mode_starts_a_conditioned_sweep(empty_store, monkeypatch):
    from pama import jobs

    started = []

    def start_sweep(cfg, *, store, **kw):
        started.append(cfg)
        return jobs.Job(kind="sweep", id="sw-test", pid=0, log="log", config_file="cfg", command=[])

    monkeypatch.setattr(jobs, "start_sweep", start_sweep)
    monkeypatch.setattr(jobs, "start_train", lambda *a, **k: pytest.fail("a conditioned adapter is a sweep"))
    at = app("views/train.py")
    for key, v in dict(tf_model="tiny-random", tf_mode=forms.MODES[2], tf_objectives=OBJECTIVES,
                       tf_steps=1, tf_points=2).items():
        at.get_by_key(key).set_value(v)
    at.button[[b.label for b in at.button].index("Start training")].click().run()
    assert not at.exception, at.exception
    (cfg,) = started
    assert type(cfg).__name__ == "SweepConfig" and cfg.conditioned and cfg.method == "pama"
    assert cfg.points == 5 and cfg.objectives == OBJECTIVES   # the grid comes from conditioned_grid, not the form


def test_form_refuses_a_conditioned_mgda_and_builds_a_conditioned_config():
    base = dict(model="tiny-random", objectives=OBJECTIVES, method="pama", steps=1, conditioned=True)
    cfg = forms.build_train_config(base, sweep=True)
    assert cfg.conditioned and type(cfg).__name__ == "SweepConfig"
    assert forms.build_train_config({**base, "preference": "0.3, 0.7"}).conditioned
    with pytest.raises(ValueError, match="conditioned: true works with method"):
        forms.build_train_config({**base, "method": "mgda"}, sweep=True)
    assert forms.mode_is_sweep(forms.MODES[2]) and forms.mode_is_conditioned(forms.MODES[2])
    assert not forms.mode_is_sweep(forms.MODES[0])


def test_steering_helpers():
    assert steering.two_objective_preference(0.3) == [0.3, 0.7]
    assert steering.normalise([1, 1, 2]) == [0.25, 0.25, 0.5]
    for bad in ([0, 0], [-1, 2], [float("nan"), 1]):
        with pytest.raises(UIError):
            steering.normalise(bad)
    assert steering.parse_preferences("1, 0\n\n0.2;0.8", 2) == [[1.0, 0.0], [0.2, 0.8]]
    with pytest.raises(UIError, match="line 1 has 3 entries but there are 2 objectives"):
        steering.parse_preferences("1,1,1", 2)
    # linked weights (3+ objectives)
    assert steering.linked_weights([None, None, None], 3) == [0.34, 0.33, 0.33]
    assert steering.linked_weights([0.2, 0.3, 0.5], 3) == [0.2, 0.3, 0.5]
    assert steering.linked_weights([0.2, 0.3, 0.6], 3) == [0.34, 0.33, 0.33]       # not a preference: equal split
    assert steering.linked_weights([0.5, 0.5], 3) == [0.34, 0.33, 0.33]            # another run's length
    assert steering.linked_weights([0.25] * 4, 4) == [0.25] * 4
    assert steering.rebalance([0.6000000000000001, 0.33, 0.33], 0) == [0.6, 0.2, 0.2]
    assert steering.rebalance([0.6, 0.2, 0.5], 2) == [0.38, 0.12, 0.5]             # largest remainder, ties first
    assert steering.rebalance([0.1, 0.0, 0.0, 0.9], 0) == [0.1, 0.0, 0.0, 0.9]     # in proportion: 0s stay 0
    assert steering.rebalance([0.4, 0.0, 0.0], 0) == [0.4, 0.3, 0.3]               # all others 0: equal shares
    assert steering.rebalance([1.5, 0.2, 0.3], 0) == [1.0, 0.0, 0.0]               # clamped
    assert steering.rebalance([-0.2, 0.2, 0.3], 0) == [0.0, 0.4, 0.6]
    for values in ([0.33, 0.2, 0.47], [0.01, 0.98, 0.01], [0.77, 0.1, 0.1, 0.03]):
        for k in range(len(values)):
            for v in (0.0, 0.01, 0.37, 0.5, 0.99, 1.0):
                out = steering.rebalance([*values[:k], v, *values[k + 1:]], k)
                assert out[k] == v and round(sum(out) * 100) == 100 and min(out) >= 0
    with pytest.raises(UIError):
        steering.rebalance([1.0], 0)
    item = steering.preference_item("r1", dict(label="run", model="m"), [0.25, 0.75])
    assert item["kind"] == "conditioned" and item["label"] == "run @ (0.25, 0.75)" and item["id"].startswith("pref:")
    pts = [dict(kind="conditioned", run_id="r1", label="run @ (1.00, 0.00)", values={"a": {}, "b": {}}),
           dict(kind="adapter", run_id="r2", values={"a": {}})]
    assert steering.conditioned_runs(pts) == {"r1": dict(model=None, method=None, sweep_id=None, label="run",
                                                         objectives=["a", "b"])}
