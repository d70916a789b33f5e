"""What makes a front visible per CPU minute: the informativeness objective, the missing-EOS penalty, LoRA on every
linear layer, a KL controller that acts at small batches, and eos_fraction on every evaluated point."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pama import algorithm as alg
from pama import evaluate, models, objectives, trainer
from pama.config import TrainConfig

TINY = dict(model="tiny-random", objectives=["informativeness", "conciseness"], preference=[0.5, 0.5], steps=2,
            batch_size=4, max_new_tokens=6, save_every=2, learning_rate=1e-2, seed=0, threads=1)


def test_informativeness_counts_distinct_content_words_and_saturates():
    inf = objectives.get("informativeness")
    dense = "Volcanoes erupt when magma, gas and pressure push molten rock through cracks in the crust."
    filler = "Well, it is what it is, and that is that, you know, so there it is."
    repeated = "magma " * 40
    scores = inf.score(None, [dense, filler, repeated, "", "magma"])
    assert scores[0] > scores[1] > 0  # content words, not words, count
    assert scores[2] == pytest.approx(scores[4]) == pytest.approx(1 - math.exp(-1 / 20))  # repetition adds nothing
    assert scores[3] == 0.0
    long = " ".join(f"word{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(200))
    assert 0.99 < inf.score(None, [long])[0] <= 1.0  # saturates at the upper bound
    assert objectives.get("informativeness:scale=5").score(None, [dense])[0] > scores[0]
    with pytest.raises(objectives.ObjectiveError, match="scale must be > 0"):
        objectives.get("informativeness:scale=0")


def test_informativeness_and_conciseness_conflict():
    inf, conc = objectives.get("informativeness"), objectives.get("conciseness")
    short, full = "Rain.", "Rain forms when water vapour cools, condenses into droplets and they grow heavy enough to fall."
    assert inf.score(None, [full])[0] > inf.score(None, [short])[0]
    assert conc.score(None, [short])[0] > conc.score(None, [full])[0]


def test_missing_eos_penalty_lowers_only_unfinished_responses_by_each_objectives_range(store):
    cfg = TrainConfig(**dict(TINY, objectives=["conciseness", "sentiment"], missing_eos_penalty=0.5)).validate()
    t = trainer.Trainer(cfg, store, progress=False)
    scores = torch.tensor([[0.2, 0.4, 0.6, 0.8], [0.0, 0.1, -0.1, 0.5]])
    ended = torch.tensor([True, False, True, False])
    out = t.penalise_unfinished(scores, ended)
    # conciseness spans [0, 1], sentiment [-1, 1]: the penalty is 0.5 and 1.0 in their own units
    assert torch.allclose(out, torch.tensor([[0.2, -0.1, 0.6, 0.3], [0.0, -0.9, -0.1, -0.5]]))
    t.cfg = dataclasses.replace(t.cfg, missing_eos_penalty=0.0)  # a config is fixed once made
    assert torch.equal(t.penalise_unfinished(scores, ended), scores)


def test_rollout_marks_responses_that_end_and_training_logs_the_eos_fraction(store):
    cfg = TrainConfig(**TINY).validate()
    t = trainer.Trainer(cfg, store, progress=False)
    ro = t.rollout(1)
    eos = torch.tensor(sorted(t.eos_ids))
    new = ro.input_ids[:, ro.query_len:]
    expected = torch.isin(new, eos).any(1)
    assert torch.equal(ro.ended.cpu(), expected)
    run_id = t.train()
    fractions = [m["value"] for m in store.metrics(run_id, keys=["eos_fraction"])]
    assert len(fractions) == 2 and all(0.0 <= f <= 1.0 for f in fractions)


def test_all_linear_puts_lora_on_every_linear_layer_but_the_head(store):
    cfg = TrainConfig(**dict(TINY, target_modules=["all-linear"])).validate()
    t = trainer.Trainer(cfg, store, progress=False)
    fresh, _ = models.load("tiny-random", seed=0)
    linears = {n for n, m in fresh.named_modules() if isinstance(m, torch.nn.Linear)}
    adapted = {n for n, m in t.model.get_base_model().named_modules() if hasattr(m, "lora_A")}
    assert adapted == linears - {"lm_head"}
    assert {n.rsplit(".", 1)[-1] for n in adapted} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                       "down_proj"}


def test_default_kl_controller_acts_within_tens_of_steps_at_the_default_batch():
    cfg = TrainConfig()
    ctl = alg.AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon)
    for _ in range(20):
        ctl.update(3 * cfg.target_kl, cfg.batch_size)  # a policy drifting well past the target
    assert ctl.value > 1.5 * cfg.kl_coef
    slow = alg.AdaptiveKLController(cfg.kl_coef, cfg.target_kl, 10000)  # TRL's horizon: β barely moves
    for _ in range(20):
        slow.update(3 * cfg.target_kl, cfg.batch_size)
    assert slow.value < 1.01 * cfg.kl_coef


def test_evaluated_points_carry_their_eos_fraction_into_the_store(tiny, store):
    model, tok = tiny
    prompts = ["Say hi.", "Name a colour.", "Count to three.", "Why is the sky blue?"]
    res = evaluate.evaluate_point(model, tok, ["conciseness"], prompts, max_new_tokens=5, batch_size=2)
    eos = models.eos_ids(model, tok)
    assert 0.0 <= res.eos_fraction <= 1.0
    # every response shorter than the limit ended on EOS; one at the limit only if its last token is EOS
    assert res.eos_fraction >= sum(n < 5 for n in res.lengths) / len(prompts)
    assert eos  # the tiny model has an EOS id, so the fraction is meaningful
    pid = evaluate.store_point(store, res, kind="base", label="base", model="tiny-random")
    assert store.get_point(pid)["eos_fraction"] == pytest.approx(res.eos_fraction)


def test_once_no_sample_ends_the_rewards_cannot_favour_ending(store):
    """The conciseness run that grew to the token limit (issue 14): with every response cut at the limit, the
    per-prompt-centred conciseness rewards of a group are all equal, so Noon leaves no advantage that could favour
    stopping; one finished sample in a group gets a clear positive advantage, more so with the missing-EOS penalty."""
    cfg = TrainConfig(**dict(TINY, objectives=["conciseness"], preference=[1.0])).validate()
    t = trainer.Trainer(cfg, store, progress=False)
    t.kl_ctl.value = 0.0
    B, T = 4, 6
    mask = torch.ones(B, T)
    zeros = torch.zeros(B, T)
    capped = torch.full((1, B), 0.38)  # every response at the limit: same word count, same conciseness
    adv, _, _ = t._advantages(capped, zeros, zeros, torch.zeros(1, B, T), mask)
    assert torch.count_nonzero(adv) == 0
    one_ended = torch.tensor([[0.6, 0.38, 0.38, 0.38]])
    short_mask = mask.clone()
    short_mask[0, 3:] = 0
    adv, _, _ = t._advantages(one_ended, zeros, zeros, torch.zeros(1, B, T), short_mask)
    penalised = t.penalise_unfinished(one_ended, torch.tensor([True, False, False, False]))
    adv_p, _, _ = t._advantages(penalised, zeros, zeros, torch.zeros(1, B, T), short_mask)
    assert adv[0, 0, :3].min() > 0 and adv[0, 1:].max() == 0  # only the finished sample is reinforced
    assert adv_p[0, 0, :3].min() >= adv[0, 0, :3].min() - 1e-6


def test_the_shipped_demo_front_meets_the_trade_off_bar():
    """The trade-offs issue's bar, read from demo/front/store.json: >= 128 held-out prompts for every point; every
    trained point within 10 nats of the base and ending >= 80% of its answers on EOS; the two extreme points' 95%
    intervals apart on both objectives, raw and length-controlled, each end higher on its own (docs/learnability.md,
    section 15)."""
    import json

    from pama import demo

    data = json.loads((demo.DEMO_DIR / demo.RECORDS).read_text())
    objs = data["sweep"]["objectives"]
    points = data["points"]
    assert all(p["eval_config"]["n_prompts"] >= 128 for p in points)
    assert_trade_off_bar([p for p in points if p["kind"] == "adapter"], objs)


def assert_trade_off_bar(trained: list[dict], objs: list[str], length_controlled: bool = True,
                         apart: set[str] | None = None) -> None:
    """The trade-offs issue's bar on a shipped front's trained points (store.json records): each within 10 nats of
    the base and ending >= 80% of its answers on EOS; each objective's own end (preference 1) above its other end
    (preference 0), their 95% intervals apart, and with ``length_controlled`` apart on the length-controlled score
    too, for every objective that is not length itself (pama.lengthcontrol; exported as lc_mean / lc_low / lc_high).
    ``apart``: the objectives whose ends must be apart (default all); for the others the records must say the ends are
    NOT apart (raw), so that a shipped shortfall is stated where it is tested and the statement cannot go stale."""
    from pama import objectives as objmod

    for p in trained:
        assert p["kl"] <= 10, p["id"]
        assert p["eos_fraction"] >= 0.8, (p["id"], p["eos_fraction"])
    for i, o in enumerate(objs):
        own = max(trained, key=lambda p: p["preference"][i])
        other = min(trained, key=lambda p: p["preference"][i])
        assert own["preference"][i] == 1.0 and other["preference"][i] == 0.0
        a, b = own["values"][o], other["values"][o]
        controlled = length_controlled and not objmod.get(o).measures_length
        assert a["mean"] > b["mean"], (o, a, b)
        if controlled:
            assert a.get("lc_low") is not None and b.get("lc_high") is not None, (o, "no length-controlled score")
            assert a["lc_mean"] > b["lc_mean"], (o, "length-controlled", a, b)
        if apart is not None and o not in apart:
            assert a["ci_low"] <= b["ci_high"], (o, "apart now: add it to `apart`", a, b)
            continue
        assert a["ci_low"] > b["ci_high"], (o, a, b)
        if controlled:
            assert a["lc_low"] > b["lc_high"], (o, "length-controlled", a, b)


def test_a_demo_exported_in_bfloat16_is_half_the_size_and_loads_to_the_same_outputs(store):
    from pama import adapters as adp
    from pama import paths
    from pama import demo
    from pama.config import SweepConfig
    from pama.sweep import run_sweep

    cfg = SweepConfig(**dict(TINY, preference=[], steps=1, points=2, eval_samples=2, eval_max_new_tokens=3,
                             save_every=1))  # a sweep's grid sets each run's preference
    sid = run_sweep(cfg, store, progress=False)
    tmp_path = paths.home()  # adapters load only from under the checkpoints root or the demo folder
    demo.export_sweep(store, sid, tmp_path / "f32")
    demo.export_sweep(store, sid, tmp_path / "bf16", adapter_dtype="bfloat16")
    run = store.list_runs(sweep_id=sid)[0]["id"]
    f32 = tmp_path / "f32" / "adapters" / run / "adapter_model.safetensors"
    bf16 = tmp_path / "bf16" / "adapters" / run / "adapter_model.safetensors"
    assert bf16.stat().st_size < 0.6 * f32.stat().st_size
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    outs = []
    for folder in (f32.parent, bf16.parent):
        base, _ = models.load("tiny-random", seed=0)
        model = adp.load_adapters(base, {run: folder})
        adp.mix(model, {run: 1.0})
        with torch.no_grad():
            outs.append(model(input_ids=ids).logits)
    assert torch.allclose(outs[0], outs[1], atol=1e-2)


def test_sweeps_evaluate_at_their_eval_temperature_and_old_sweeps_keep_0_7(store):
    """eval_temperature reaches every point; sweeps stored before the option keep the 0.7 they were evaluated at."""
    from pama.config import SweepConfig
    from pama.sweep import run_sweep, sweep_config

    cfg = SweepConfig(**dict(TINY, preference=[], steps=1, points=2, eval_samples=2, eval_max_new_tokens=3,
                             save_every=1, eval_temperature=1.0))
    sid = run_sweep(cfg, store, progress=False)
    assert {p["eval_config"]["temperature"] for p in store.points(sweep_id=sid)} == {1.0}
    sweep = store.get_sweep(sid)
    old = {k: v for k, v in sweep["config"].items() if k != "eval_temperature"}
    store.update_sweep(sid, config=old)
    assert sweep_config(store, sid)[1].eval_temperature == 0.7
