"""Evaluation that stops early: prompts in rounds, each keeping its one-pass seed, stopping once the ends are apart."""
from __future__ import annotations

import numpy as np
import pytest

from pama import evaluate as ev

PROMPTS = [f"Describe thing number {i} in a few words." for i in range(12)]


def _result(values: dict[str, tuple[float, float, float]]) -> ev.EvalResult:
    names = list(values)
    return ev.EvalResult(objectives=names, values=values, scores=np.zeros((len(names), 1)), prompts=["p"],
                         texts=["t"], kl=0.0, kl_per_response=[0.0], lengths=[1], mean_length=1.0, distinct_1=1.0,
                         distinct_2=0.0, eos_fraction=1.0)


def test_ends_apart_needs_each_end_above_the_other_on_its_own_objective():
    a = _result({"x": (0.8, 0.7, 0.9), "y": (0.2, 0.1, 0.3)})
    b = _result({"x": (0.3, 0.2, 0.4), "y": (0.7, 0.6, 0.8)})
    assert ev.ends_apart([a, b])
    touching = _result({"x": (0.6, 0.5, 0.7), "y": (0.7, 0.6, 0.8)})        # x: 0.7 (a's low) <= 0.7 (its high)
    assert not ev.ends_apart([a, touching])
    swapped = [b, a]                                                      # each end loses on its own objective
    assert not ev.ends_apart(swapped)


def test_rounds_equal_the_one_pass_evaluation_of_the_prompts_used(tiny):
    model, tok = tiny
    kw = dict(seed=3, max_new_tokens=4, batch_size=2)
    whole = ev.evaluate_point(model, tok, ["sentiment", "conciseness"], PROMPTS, **kw)

    def one_end(chunk, first_batch):
        return [ev.evaluate_point(model, tok, ["sentiment", "conciseness"], chunk, first_batch=first_batch, **kw)]

    calls = []
    # one end is never "apart" from nothing else -> ends_apart([x]) is vacuously true; use two copies instead
    joined, used = ev.evaluate_in_rounds(lambda c, f: one_end(c, f) * 2, PROMPTS, 2, ev.Rounds(size=4, minimum=12),
                                         on_round=lambda u, n, r: calls.append(u))
    assert used == 12 and calls == [4, 8, 12]                      # identical ends are never apart: all prompts
    assert joined[0].texts == whole.texts and joined[0].lengths == whole.lengths
    assert joined[0].values == whole.values and joined[0].eval_config["n_prompts"] == 12
    np.testing.assert_allclose(joined[0].scores, whole.scores)
    assert joined[0].distinct_2 == pytest.approx(whole.distinct_2)


def test_rounds_stop_once_the_ends_are_apart_and_not_before_the_minimum():
    hi = {"x": (0.9, 0.85, 0.95), "y": (0.1, 0.05, 0.15)}
    lo = {"x": (0.1, 0.05, 0.15), "y": (0.9, 0.85, 0.95)}
    seen = []

    def ends(chunk, first_batch):
        seen.append((len(chunk), first_batch))
        a, b = _result(hi), _result(lo)
        a.scores = np.array([[0.9] * len(chunk), [0.1] * len(chunk)])
        b.scores = np.array([[0.1] * len(chunk), [0.9] * len(chunk)])
        for r in (a, b):
            r.texts, r.lengths, r.kl_per_response = ["t"] * len(chunk), [1] * len(chunk), [0.0] * len(chunk)
            r.prompts = list(chunk)
        return [a, b]

    joined, used = ev.evaluate_in_rounds(ends, [f"p{i}" for i in range(40)], 4, ev.Rounds(size=8, minimum=16))
    assert used == 16 and seen == [(8, 0), (8, 2)]                 # apart from the first round, but 16 is the floor
    assert joined[0].eval_config["n_prompts"] == 16 and len(joined[1].texts) == 16
    with pytest.raises(ValueError, match="multiple of the batch size"):
        ev.evaluate_in_rounds(ends, ["p"] * 8, 4, ev.Rounds(size=6))


COND_SWEEP = ["sweep", "--conditioned", "--model", "tiny-random", "--objectives", "sentiment,conciseness", "--steps",
              "1", "--batch-size", "2", "--samples-per-prompt", "1", "--max-new-tokens", "3", "--eval-samples", "64",
              "--eval-max-new-tokens", "3", "--threads", "1", "--target-modules", "q_proj,v_proj", "--quiet",
              "--eval-round", "32", "--eval-min-prompts", "32"]


@pytest.mark.parametrize("apart", [True, False])
def test_a_sweep_stops_at_the_round_its_ends_came_apart_and_evaluates_every_point_there(store, monkeypatch, capsys,
                                                                                       apart):
    from pama import sweep as sw
    from pama.cli import main

    calls = []

    def fake_apart(ends):
        calls.append(len(ends[0].texts))
        return apart
    monkeypatch.setattr(sw, "ends_apart", fake_apart)
    monkeypatch.setattr(ev, "ends_apart", fake_apart)
    assert main(COND_SWEEP) == 0
    captured = capsys.readouterr()
    err = captured.err
    sweep = store.list_sweeps()[-1]
    # --conditioned without --config/--preset starts from the quick-front preset; the flags given still win
    assert "the quick-front preset" in captured.out
    (run,) = store.list_runs(sweep_id=sweep["id"])
    assert run["config"]["preset"] == "quick-front" and run["config"]["anchor"] == 0.3
    assert run["config"]["steps"] == 1 and run["config"]["target_modules"] == ["q_proj", "v_proj"]
    points = store.points(sweep_id=sweep["id"])
    used = 32 if apart else 64
    assert len(points) == 12 and {p["eval_config"]["n_prompts"] for p in points} == {used}
    ends = [p for p in points if (p["eval_config"].get("early_stop") or {})]
    assert sorted(tuple(p["preference"]) for p in ends) == [(0.0, 1.0), (1.0, 0.0)]
    assert all(p["eval_config"]["early_stop"]["apart"] is apart and p["eval_config"]["early_stop"]["cap"] == 64
               for p in ends)
    assert calls[0] == 32 and (calls[-1] == 64) is (not apart)
    assert f"after {used} of 64 prompts" in err
    # a lost point is evaluated again on the M prompts the ends settled on, not on all 64
    lost = next(p for p in points if p["kind"] == "conditioned" and not p["eval_config"].get("early_stop"))
    store.delete_point(lost["id"])
    calls.clear()
    assert main(["sweep", "--resume", sweep["id"], "--quiet"]) == 0
    again = next(p for p in store.points(sweep_id=sweep["id"]) if p["preference"] == lost["preference"]
                 and p["kind"] == "conditioned")
    assert again["eval_config"]["n_prompts"] == used and calls == []
    # same prompts and seeds; another decode-batch shape may flip a rare token (evaluate_at_many's docstring)
    for o, v in lost["values"].items():
        assert again["values"][o]["mean"] == pytest.approx(v["mean"], abs=0.01)
