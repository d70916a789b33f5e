"""Your trade-off from blind votes (pama.votefit, issue 27): a simulated voter's known weights are recovered, a voter
who only likes long answers is put down to length, the accuracies and the disagreement list, the active rule, the
placement on the front, the CLI (`votes SWEEP --fit`) and the Blind vote page's part (AppTest)."""
from __future__ import annotations

from pathlib import Path

import pama  # noqa: F401  (before torch)

import numpy as np
import pytest

from pama import votefit as F
from pama.store import Store
from test_app import empty_store  # noqa: F401  (a fixture)
from test_app_conditioned import spy  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parent.parent
OBJS = ["sentiment", "informativeness"]
SPECS = {o: dict(lower=0.0, upper=1.0, direction="maximize", measures_length=False) for o in OBJS}
N_PROMPTS = 16
N_BOOT = 100          # half the default: the intervals are checked, not their last digit


def synthetic_front(n_points: int = 6, seed: int = 0) -> tuple[list[dict], dict[str, list[dict]]]:
    """Points along a concave trade-off of two objectives, each with 16 stored responses whose scores scatter around
    the point's mean (so pairs differ in many directions) and whose lengths are drawn independently of the scores."""
    rng = np.random.default_rng(seed)
    pts, gens = [], {}
    for i in range(n_points):
        t = i / (n_points - 1)
        mean = np.array([0.2 + 0.6 * t, 0.8 - 0.6 * t ** 1.3])
        pid = f"p{i}"
        pts.append(dict(id=pid, sweep_id="s", kind="adapter", method="pama", label=pid, preference=[t, 1 - t],
                        values={o: dict(mean=m, ci_low=m - 0.02, ci_high=m + 0.02) for o, m in zip(OBJS, mean)}))
        gens[pid] = [dict(prompt_index=k, prompt=f"prompt {k}",
                          text=" ".join(["word"] * int(rng.integers(5, 120))) + f" ({pid})",
                          scores=dict(zip(OBJS, map(float, np.clip(mean + rng.normal(0, 0.15, 2), 0, 1)))))
                     for k in range(N_PROMPTS)]
    return pts, gens


def simulate(pts, gens, n: int, w, *, kappa: float = 20.0, gamma: float = 0.0, seed: int = 1,
             voter: str = "sim") -> list[dict]:
    """Votes of a voter with P(A) = σ(κ w·(s_A − s_B) + γ Δlog-length) on random pairs and prompts."""
    rng = np.random.default_rng(seed)
    ids = [p["id"] for p in pts]
    out = []
    for j in range(n):
        a, b = rng.choice(ids, 2, replace=False)
        k = int(rng.integers(N_PROMPTS))
        ga, gb = gens[a][k], gens[b][k]
        ds = np.array([ga["scores"][o] - gb["scores"][o] for o in OBJS])
        dl = np.log1p(len(ga["text"].split())) - np.log1p(len(gb["text"].split()))
        p = 1 / (1 + np.exp(-(kappa * np.dot(w, ds) + gamma * dl)))
        out.append(dict(id=j, voter=voter, point_a=a, point_b=b, prompt_index=k, prompt=ga["prompt"],
                        text_a=ga["text"], text_b=gb["text"], vote="a" if rng.random() < p else "b"))
    return out


# ------------------------------------------------------------------------------------------------ the fit

def test_a_voter_with_known_weights_is_recovered_after_60_votes():
    pts, gens = synthetic_front()
    votes = simulate(pts, gens, 60, np.array([0.7, 0.3]))
    a = F.analyse(votes, gens, OBJS, SPECS, n_boot=N_BOOT)
    f = a.fit
    assert f is not None and f.n_votes == 60 and f.length
    assert np.all(np.abs(f.w - [0.7, 0.3]) <= 0.1), f.w
    assert f.w.sum() == pytest.approx(1.0) and (f.w >= 0).all()
    assert np.all(f.w_low <= f.w) and np.all(f.w <= f.w_high)
    assert f.w_low[0] <= 0.7 <= f.w_high[0]                   # the interval covers the truth
    assert 0 <= f.gamma_interval[0] or f.gamma_interval[0] <= 0 <= f.gamma_interval[1]
    assert f.length_share() < 0.25                            # not mistaken for a length preference
    acc = a.accuracy
    assert acc["n"] == 60 and acc["model"] >= 0.7 and acc["model"] > acc["length"] + 0.1
    # the same votes and seed give the same intervals
    again = F.fit(a.rows, SPECS, n_boot=N_BOOT)
    assert np.array_equal(again.w_low, f.w_low) and again.kappa_interval == f.kappa_interval


def test_another_voter_gets_other_weights_and_voters_are_kept_apart():
    pts, gens = synthetic_front()
    votes = simulate(pts, gens, 60, np.array([0.7, 0.3]), voter="ann") + \
        simulate(pts, gens, 60, np.array([0.25, 0.75]), seed=7, voter="bob")
    assert F.voters(votes) == ["ann", "bob"]
    bob = F.analyse(votes, gens, OBJS, SPECS, voter="bob", n_boot=N_BOOT).fit
    ann = F.analyse(votes, gens, OBJS, SPECS, voter=" ann ", n_boot=N_BOOT).fit
    assert bob.n_votes == ann.n_votes == 60
    assert abs(bob.w[0] - 0.25) <= 0.1 and abs(ann.w[0] - 0.7) <= 0.1


def test_a_length_loving_voter_is_attributed_to_length_not_to_an_objective():
    pts, gens = synthetic_front()
    votes = simulate(pts, gens, 60, np.array([0.5, 0.5]), kappa=0.0, gamma=3.0)
    a = F.analyse(votes, gens, OBJS, SPECS, n_boot=N_BOOT)
    f = a.fit
    assert f.gamma_interval[0] > 0.5                          # longer wins, clearly
    assert f.length_share() > 0.8                             # the fitted preference is length
    assert f.kappa_interval[0] < 1.0                          # the objectives may explain nothing
    assert a.accuracy["length"] >= a.accuracy["objectives"] + 0.15
    # without the length term the same votes would be read as objective weights: the term is what separates them
    off = F.fit(a.rows, SPECS, length="off", n_boot=20)
    assert off.gamma is None and "off" in off.length_note


def test_ties_count_half_and_both_bad_and_unscored_votes_are_left_out():
    pts, gens = synthetic_front()
    votes = simulate(pts, gens, 20, np.array([0.7, 0.3]))
    extra = [dict(votes[0], id=100, vote="tie"), dict(votes[1], id=101, vote="both_bad"),
             dict(votes[2], id=102, text_a="a response generated for the ballot, never scored")]
    rows = F.vote_rows(votes + extra, gens, OBJS, SPECS)
    assert len(rows) == 21 and rows.unscored == 1 and rows.both_bad == 1
    assert sorted(set(rows.y)) == [0.0, 0.5, 1.0] and rows.y[-1] == 0.5
    # with a scorer the generated response gets scores now (here: a fixed one), so the vote counts
    calls = []

    def score_texts(prompts, texts):
        calls.append(len(texts))
        return np.full((2, len(texts)), 0.5)

    rows = F.vote_rows(votes + extra, gens, OBJS, SPECS, score_texts=score_texts)
    assert len(rows) == 22 and rows.unscored == 0 and calls == [2]
    assert rows.votes[-1]["score_source"] == "scored" and rows.votes[0]["score_source"] == "stored"
    v0 = votes[0]
    stored = next(g for g in gens[v0["point_a"]] if g["prompt_index"] == v0["prompt_index"])
    assert rows.votes[0]["scores_a"] == stored["scores"]


def test_length_term_is_off_when_an_objective_measures_length():
    specs = F.objective_specs(["informativeness", "conciseness"])
    assert specs["conciseness"]["measures_length"] and not specs["informativeness"]["measures_length"]
    use, why = F.length_term(["informativeness", "conciseness"], specs)
    assert not use and "conciseness" in why
    assert F.length_term(["informativeness", "conciseness"], specs, "on")[0]
    flip = F.normalised(np.array([[0.25]]), ["x"], {"x": dict(lower=0, upper=1, direction="minimize")})
    assert flip[0, 0] == pytest.approx(0.75)


def test_the_disagreement_list_names_the_votes_the_scores_got_wrong():
    pts, gens = synthetic_front()
    votes = simulate(pts, gens, 60, np.array([0.7, 0.3]), kappa=40.0)
    # one vote flipped against large score gaps: p5 has much more sentiment than p0 on every prompt
    k = next(k for k in range(N_PROMPTS) if gens["p5"][k]["scores"]["sentiment"]
             - gens["p0"][k]["scores"]["sentiment"] > 0.5)
    votes.append(dict(id=999, voter="sim", point_a="p5", point_b="p0", prompt_index=k, prompt=f"prompt {k}",
                      text_a=gens["p5"][k]["text"], text_b=gens["p0"][k]["text"], vote="b"))
    a = F.analyse(votes, gens, OBJS, SPECS, n_boot=20, top=3)
    d = a.disagreements
    assert 1 <= len(d) <= 3 and d[0]["vote_id"] == 999
    assert d[0]["chosen"] == "b" and d[0]["p_scores"] < 0.2
    assert d[0]["text_a"] == gens["p5"][k]["text"] and d[0]["text_b"] == gens["p0"][k]["text"]
    assert d[0]["scores_a"]["sentiment"] > d[0]["scores_b"]["sentiment"]
    assert all(x["p_scores"] < 0.5 for x in d) and [x["p_scores"] for x in d] == sorted(x["p_scores"] for x in d)


# ------------------------------------------------------------------------------------------------ the active rule

def test_the_active_rule_asks_where_the_weights_are_uncertain_and_learns_faster():
    """Active pairs are those where the fitted weights' draws disagree; the same seed gives the same ballot."""
    pts, gens = synthetic_front()
    cands = F.candidates(pts, gens, OBJS, SPECS)
    assert len(cands) == 15 * N_PROMPTS
    # draws split between two weight vectors: a pair along the objectives' trade-off splits them, a pair where one
    # response is better on both does not
    draws = np.array([[16.0, 4.0]] * 50 + [[4.0, 16.0]] * 50)
    x = np.array([[0.3, -0.3], [0.3, 0.3]])
    info = F.information(x, np.zeros(2), draws, 2)
    assert info[0] > info[1]
    b1 = F.active_ballot(pts, [], gens, OBJS, SPECS, seed=3, draw=0)
    b2 = F.active_ballot(pts, [], gens, OBJS, SPECS, seed=3, draw=0)
    assert b1["rule"] == "active" and b1["source"] == "stored" and b1["token"] != b2["token"]
    assert {k: b1[k] for k in ("point_a", "point_b", "prompt_index")} == \
        {k: b2[k] for k in ("point_a", "point_b", "prompt_index")}
    assert b1["text_a"] in [g["text"] for g in gens[b1["point_a"]]]
    assert F.active_ballot(pts, [], {}, OBJS, SPECS) is None          # nothing stored: today's rule is used

    # a voter asked by the active rule is learned at least as well as with random pairs (40 votes, 3 seeds)
    truth = np.array([0.8, 0.2])
    rng = np.random.default_rng(0)

    def answer(b):
        ds = np.array([b_s - c_s for b_s, c_s in zip(*(
            [next(g for g in gens[b[f"point_{s}"]] if g["prompt_index"] == b["prompt_index"])["scores"][o]
             for o in OBJS] for s in "ab"))])
        return "a" if rng.random() < 1 / (1 + np.exp(-20 * truth @ ds)) else "b"

    errs_active, errs_random = [], []
    for seed in range(3):
        votes = []
        fit = None
        for n in range(40):
            b = F.active_ballot(pts, votes, gens, OBJS, SPECS, fit, seed=seed, draw=n)
            votes.append(dict(b, id=n, vote=answer(b)))
            if n >= F.MIN_VOTES and n % 10 == 0:
                fit = F.fit(F.vote_rows(votes, gens, OBJS, SPECS), SPECS, n_boot=20)
        errs_active.append(abs(F.fit(F.vote_rows(votes, gens, OBJS, SPECS), SPECS, n_boot=2).w[0] - 0.8))
        rand = simulate(pts, gens, 40, truth, seed=seed)
        errs_random.append(abs(F.fit(F.vote_rows(rand, gens, OBJS, SPECS), SPECS, n_boot=2).w[0] - 0.8))
    assert np.mean(errs_active) <= np.mean(errs_random) + 0.02, (errs_active, errs_random)


# ------------------------------------------------------------------------------------------------ on the front

def test_the_trade_off_lands_between_the_points_trained_nearest_it():
    from pama.app import tradeoff

    pts, gens = synthetic_front()
    orders = {"s": OBJS}
    at = F.at_preference(pts, [0.7, 0.3], OBJS, orders, OBJS)
    p3, p4 = pts[3], pts[4]                                   # trained at 0.6 and 0.8
    want = [(p3["values"][o]["mean"] + p4["values"][o]["mean"]) / 2 for o in OBJS]
    assert [at["values"][o] for o in OBJS] == pytest.approx(want)
    assert at["nearest"]["id"] in ("p3", "p4") and at["distance"] == pytest.approx(0.2)
    # objective order of the sweep differs from the fit's: read by name
    at2 = F.at_preference(pts, [0.3, 0.7], OBJS[::-1], orders, OBJS)
    assert [at2["values"][o] for o in OBJS] == pytest.approx(want)

    votes = simulate(pts, gens, 60, np.array([0.7, 0.3]))
    f = F.analyse(votes, gens, OBJS, SPECS, n_boot=N_BOOT).fit
    mk = tradeoff.marker(f, tradeoff.marker_points(pts), orders, OBJS)
    for o in OBJS:
        v = mk["values"][o]
        assert v["ci_low"] <= v["mean"] <= v["ci_high"] and v["ci_low"] < v["ci_high"]
    assert tradeoff.preference_for(f, OBJS[::-1]) == pytest.approx(list(f.w[::-1]))
    assert tradeoff.preference_for(f, ["sentiment", "safety"]) is None
    assert tradeoff.slider_state([0.712, 0.288]) == {"cond_p": 0.7}
    three = tradeoff.slider_state([0.333, 0.333, 0.334])
    assert sum(three.values()) == pytest.approx(1.0) and len(three) == 3

    from pama import plots
    fig = plots.front_figure(pts, OBJS)
    n = len(fig.data)
    assert plots.add_tradeoff(fig, mk, OBJS, nearest=mk["nearest"])
    star = fig.data[-1]
    assert len(fig.data) == n + 2 and star.marker.symbol == "star" and star.error_x.array[0] >= 0
    assert not plots.add_tradeoff(fig, mk, ["sentiment", "safety"])


# ------------------------------------------------------------------------------------------------ the CLI

def _store_with_votes(store: Store, n: int = 40) -> tuple[str, list[dict]]:
    """The synthetic front stored as a sweep (sentiment × informativeness, built-in bounds 0..1 assumed by the
    specs of the runs) with a simulated voter's votes."""
    pts, gens = synthetic_front()
    objectives = [dict(name=o, lower=0.0, upper=1.0, direction="maximize") for o in OBJS]
    sid = store.create_sweep(name="votefit front", method="pama", model="tiny-random", objectives=OBJS, config={})
    ids = {}
    for p in pts:
        run = store.create_run(name=p["id"], method="pama", model="tiny-random", config={}, objectives=objectives,
                               sweep_id=sid)
        ids[p["id"]] = store.add_point(kind="adapter", label=f"pama w={p['preference'][0]:.1f}", model="tiny-random",
                                       sweep_id=sid, run_id=run, method="pama", preference=p["preference"],
                                       values={o: (v["mean"], v["ci_low"], v["ci_high"]) for o, v in
                                               p["values"].items()}, generations=gens[p["id"]])
    votes = simulate(pts, gens, n, np.array([0.7, 0.3]))
    for k, v in enumerate(votes):
        store.add_vote(token=f"t{k}", point_a=ids[v["point_a"]], point_b=ids[v["point_b"]], prompt=v["prompt"],
                       text_a=v["text_a"], text_b=v["text_b"], vote=v["vote"], voter="sim", sweep_id=sid,
                       prompt_index=v["prompt_index"], source="stored")
    store.add_vote(token="gen", point_a=ids["p0"], point_b=ids["p1"], prompt="a fresh prompt", text_a="fresh A",
                   text_b="fresh B", vote="a", voter="sim", sweep_id=sid, prompt_index=None, source="generated")
    return sid, votes


def test_cli_fit_prints_weights_intervals_accuracies_and_disagreements(store, capsys):
    """In-process (`pama.cli.main`, what `python -m pama` runs): a subprocess re-imports everything per call."""
    from pama.cli import main

    sid, _ = _store_with_votes(store)
    assert main(["votes", sid, "--db", store.url, "--fit", "--voter", "sim", "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert "Trade-off of voter 'sim': 40 scored votes (1 on responses without stored scores left out" in text
    line = next(x for x in text.splitlines() if x.startswith("weights w"))
    w = float(line.split("sentiment ")[1].split()[0])
    assert abs(w - 0.7) <= 0.15 and "informativeness" in line and "[" in line
    assert "kappa" in text and "length coefficient" in text
    assert "held-out accuracy (5-fold, 40 decisive votes" in text and "length alone" in text and "BT scores" in text
    assert "Where the objective scores and the votes disagree most" in text
    assert "   A [" in text and "   B [" in text and "word word" in text
    assert main(["votes", sid, "--db", store.url, "--fit", "--voter", "nobody"]) == 2
    assert "no votes by 'nobody'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the app (AppTest)

def test_vote_page_shows_the_trade_off_accuracies_and_disagreements(monkeypatch, pama_home):
    from streamlit.testing.v1 import AppTest

    from test_app import APP, TIMEOUT

    monkeypatch.setenv("PAMA_NO_DEMO", "1")
    monkeypatch.setenv("PAMA_APP_MODEL", "tiny-random")
    store = Store()
    sid, _ = _store_with_votes(store, n=30)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("views/vote.py").run()
    at.text_input(key="blind_voter").set_value("sim").run()
    assert not at.exception, [e.value for e in at.exception]
    page = "\n".join(str(e.value) for kind in ("markdown", "caption") for e in getattr(at, kind))
    assert "**Weights** sentiment" in page and "Held-out accuracy" in page
    frames = [d.value for d in at.dataframe]
    acc = next(d for d in frames if "predictor" in d.columns)
    assert list(acc["predictor"])[-2:] == ["length alone (longer or shorter wins)", "points' Bradley–Terry scores"]
    weights = next(d for d in frames if "weight" in d.columns)
    assert list(weights["objective"]) == OBJS and weights["weight"].sum() == pytest.approx(1.0, abs=2e-3)
    assert "Where the objective scores and the votes disagree most" in page
    # the active rule draws a stored pair; a vote on it is stored like any other
    at.radio(key="blind_rule").set_value("where my trade-off is most uncertain").run()
    at.button(key="blind_next").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ballot = at.session_state["blind_ballot"]
    assert ballot.get("rule") == "active" and ballot["source"] == "stored"
    at.button(key="blind_vote_a").click().run()
    assert store.get_vote(ballot["token"])["voter"] == "sim"


def test_front_page_marks_the_trade_off_with_its_interval_and_nearest_point(monkeypatch, pama_home):
    import json

    from streamlit.testing.v1 import AppTest

    from test_app import APP, TIMEOUT

    monkeypatch.setenv("PAMA_NO_DEMO", "1")
    monkeypatch.setenv("PAMA_APP_MODEL", "tiny-random")
    store = Store()
    _store_with_votes(store, n=30)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("views/front.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="tradeoff_voter").options == ["(all voters)", "sim"]
    page = "\n".join(str(e.value) for kind in ("markdown", "caption") for e in getattr(at, kind))
    assert "**Your trade-off**" in page and "Nearest stored point: `" in page
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    star = next(t for t in chart["data"] if t.get("name") == "your trade-off")
    assert star["marker"]["symbol"] == "star" and star["error_x"]["array"][0] >= 0


def test_front_page_button_moves_the_conditioned_slider_to_the_trade_off_and_generates(empty_store, spy):
    """A tiny conditioned run's points with stored, scored responses; a voter who weighs sentiment most: the button
    sets the slider to the fitted weight (on its 0.05 grid) and the adapter generates there."""
    from test_app import app
    from test_app_conditioned import TINY_RUN, settle

    from pama.config import TrainConfig
    from pama.trainer import train

    store = empty_store
    objs = ["sentiment", "informativeness"]
    sid = store.create_sweep(name="conditioned front", method="pama", model="tiny-random", objectives=objs,
                             config={"conditioned": True})
    run_id = train(TrainConfig(**{**TINY_RUN, "objectives": objs}).validate(), store, progress=False)
    store.update_run(run_id, sweep_id=sid)
    pts, gens = synthetic_front()
    ids = {}
    for p in pts:
        ids[p["id"]] = store.add_point(kind="conditioned", model="tiny-random", sweep_id=sid, run_id=run_id,
                                       method="pama", label=f"cond @ {p['preference'][0]:.1f}",
                                       preference=p["preference"], generations=gens[p["id"]],
                                       values={o: (v["mean"], v["ci_low"], v["ci_high"]) for o, v in
                                               p["values"].items()})
    for k, v in enumerate(simulate(pts, gens, 60, np.array([0.8, 0.2]), kappa=30.0)):
        store.add_vote(token=f"c{k}", point_a=ids[v["point_a"]], point_b=ids[v["point_b"]], prompt=v["prompt"],
                       text_a=v["text_a"], text_b=v["text_b"], vote=v["vote"], voter="sim", sweep_id=sid,
                       prompt_index=v["prompt_index"], source="stored")
    at = settle(app("views/front.py"))
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="tradeoff_to_slider").click().run()
    settle(at)
    assert not at.exception, [e.value for e in at.exception]
    p = at.session_state["cond_p"]
    # the weights are over objectives normalised by their bounds (sentiment's span -1..1 is twice the simulated
    # one), so the slider follows the fitted weight shown on the page, on the slider's 0.05 grid
    shown = next(str(m.value) for m in at.markdown if str(m.value).startswith("**Your trade-off**"))
    w0 = float(shown.split("sentiment ")[1].split()[0])
    assert w0 > 0.6 and p == pytest.approx(round(w0 / 0.05) * 0.05)
    assert [p, round(1 - p, 4)] in spy["prefs"]                 # generated at the trade-off
