"""Trainer on the tiny model: losses logged, LoRA changes and the base does not, reload, resume, validation."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from pama import models, sampling, trainer
from pama.config import ConfigError, TrainConfig

TINY = dict(model="tiny-random", objectives=["sentiment", "conciseness"], preference=[0.7, 0.3], steps=3,
            batch_size=4, max_new_tokens=6, save_every=2, learning_rate=1e-2, seed=0, threads=1)


def _cfg(**kw) -> TrainConfig:
    d = dict(TINY)
    d.update(kw)
    return TrainConfig(**d)


@pytest.mark.parametrize("method", ["pama", "morlhf", "mgda"])
def test_few_steps_log_losses_change_every_lora_parameter_and_keep_base(method, store):
    model, tok = models.load("tiny-random", seed=0)
    base_before = {k: v.clone() for k, v in model.state_dict().items()}
    t = trainer.Trainer(_cfg(method=method).validate(), store, model=model, tokenizer=tok, progress=False)
    lora_before = {n: p.detach().clone() for n, p in t.model.named_parameters() if p.requires_grad}
    assert lora_before and all("lora_" in n for n in lora_before)
    run_id = t.train()

    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["step"] == 3
    keys = {m["key"] for m in store.metrics(run_id)}
    for k in ("loss/policy", "loss/value", "kl", "beta", "rewards/sentiment/mean", "rewards/conciseness/mean",
              "time/generate", "time/score", "time/update"):
        assert k in keys, k
    if method == "pama":
        assert {"pama/weight/sentiment", "pama/weight/conciseness", "advantage/positive_share"} <= keys
    if method == "mgda":
        assert {"mgda/weight/sentiment", "mgda/weight/conciseness"} <= keys
    assert len([m for m in store.metrics(run_id) if m["key"] == "loss/policy"]) == 3

    changed = {n: not torch.equal(p.detach(), lora_before[n]) for n, p in t.model.named_parameters() if p.requires_grad}
    assert all(changed.values()), [n for n, c in changed.items() if not c]
    base = t.model.get_base_model()
    for k, v in base.state_dict().items():
        if "lora_" not in k:
            assert torch.equal(v, base_before[k.replace(".base_layer", "")]), k


def test_saved_adapter_reloads_to_identical_outputs(store):
    from peft import PeftModel

    t = trainer.Trainer(_cfg(steps=2).validate(), store, progress=False)
    run_id = t.train()
    path = store.get_run(run_id)["adapter_path"]
    assert path and (trainer.latest_checkpoint(t.run_dir) / "adapter") .samefile(path)
    fresh, tok = models.load("tiny-random", seed=0)
    reloaded = PeftModel.from_pretrained(fresh, path)
    ids = tok(["Describe a rainy day."], return_tensors="pt")
    t.model.eval()
    with torch.no_grad():
        assert torch.allclose(t.model(**ids).logits, reloaded(**ids).logits, atol=1e-6)


def test_resume_continues_the_step_count(store):
    cfg = _cfg(steps=2, save_every=1)
    run_id = trainer.train(cfg, store, progress=False)
    before = store.count_metrics(run_id)
    run_id2 = trainer.resume(run_id, store, steps=4, progress=False)
    assert run_id2 == run_id
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["step"] == 4 and run["total_steps"] == 4
    steps = sorted({m["step"] for m in store.metrics(run_id, keys=["loss/policy"])})
    assert steps == [1, 2, 3, 4] and store.count_metrics(run_id) == 2 * before
    assert trainer.latest_checkpoint(trainer.paths.run_dir(run_id)).name == "step-000004"


def test_resume_restores_adapter_optimizer_and_kl_controller(store):
    cfg = _cfg(steps=2, save_every=1, target_kl=0.01)
    t = trainer.Trainer(copy.deepcopy(cfg).validate(), store, progress=False)
    run_id = t.train()
    t2 = trainer.Trainer(copy.deepcopy(cfg).validate(), store, run_id=run_id, progress=False)
    assert t2.step == 2 and t2.kl_ctl.value == pytest.approx(t.kl_ctl.value)
    for (n, a), (_, b) in zip(t.model.named_parameters(), t2.model.named_parameters()):
        if a.requires_grad:
            assert torch.equal(a.detach(), b.detach()), n
    saved, restored = t.optimizer.state_dict(), t2.optimizer.state_dict()
    assert saved["state"].keys() == restored["state"].keys() and saved["state"]
    for key, moments in saved["state"].items():
        assert moments.keys() == restored["state"][key].keys()
        for name, value in moments.items():  # Adam's step count and both moments, value for value
            assert torch.equal(torch.as_tensor(restored["state"][key][name]), torch.as_tensor(value)), (key, name)
    assert restored["param_groups"] == saved["param_groups"]


def test_cancel_request_stops_the_run(store):
    seen = []

    def cancel_after_first(step, metrics):
        seen.append(step)
        store.set_status(run_holder[0], "cancelled")

    t = trainer.Trainer(_cfg(steps=5).validate(), store, progress=False, on_step=cancel_after_first)
    run_holder = [t.run_id]
    with pytest.raises(trainer.RunCancelled):
        t.train()
    assert seen == [1] and store.get_run(t.run_id)["status"] == "cancelled"


def test_noon_batch_granularity_and_no_kl_run(store):
    run_id = trainer.train(_cfg(steps=1, granularity="batch", kl_coef=0.0, target_kl=0.0), store, progress=False)
    m = {x["key"]: x["value"] for x in store.metrics(run_id)}
    assert m["beta"] == 0.0 and "pama/weight/sentiment" in m


def test_response_mask_includes_first_eos_only():
    ids = torch.tensor([[5, 6, 2, 2, 2], [5, 6, 7, 8, 9], [2, 2, 2, 2, 2]])
    m = trainer.response_mask(ids, {2})
    assert m.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


@pytest.mark.parametrize("change, fragment", [
    (dict(preference=[0.5, 0.3, 0.2]), "preference has 3 entries"),
    (dict(preference=[-0.5, 1.5]), "non-negative"),
    (dict(preference=[0.0, 0.0]), "positive entry"),
    (dict(anchor=1.5), "anchor must lie in [0, 1]"),
    (dict(anchor=-0.1), "anchor"),
    (dict(method="ppo"), "method must be one of"),
    (dict(objectives=["sentiment", "nonsense"]), "unknown objective"),
    (dict(objectives=[]), "at least one objective"),
    (dict(steps=0), "steps must be a positive integer"),
    (dict(batch_size=-2), "batch_size must be a positive integer"),
    (dict(granularity="sequence"), "granularity"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(dtype="float16"), "dtype must be float32 or bfloat16"),
])
def test_invalid_config_is_refused_and_nothing_is_stored(change, fragment, store):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        trainer.train(_cfg(**change), store, progress=False)
    assert store.list_runs() == []


def test_preference_not_summing_to_one_is_normalised_with_a_warning():
    with pytest.warns(UserWarning, match="does not sum to 1"):
        cfg = _cfg(preference=[3, 1]).validate()
    assert cfg.preference == pytest.approx([0.75, 0.25])


def test_cli_train_prints_run_id_first_and_refuses_bad_flags(pama_home, capsys):
    from pama.cli import main
    from pama.store import Store

    assert main(["train", "--model", "tiny-random", "--steps", "1", "--batch-size", "4", "--max-new-tokens", "4",
                 "--quiet", "--threads", "1"]) == 0  # 4 = one prompt × the default samples_per_prompt (4)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("run id: r")
    rid = out[0].split(": ")[1]
    assert Store().get_run(rid)["status"] == "finished"
    assert main(["train", "--model", "tiny-random", "--preference", "0.2,0.3,0.5"]) == 2
    assert "preference has 3 entries" in capsys.readouterr().err
    assert main(["train", "--steps", "abc"]) == 2
    assert len(Store().list_runs()) == 1


def test_cli_train_reads_yaml_config_and_flags_override(pama_home, tmp_path, capsys):
    from pama.cli import main
    from pama.store import Store

    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: tiny-random\nsteps: 5\nbatch_size: 2\nsamples_per_prompt: 1\nmax_new_tokens: 4\n"
                   "method: morlhf\nthreads: 1\n")
    assert main(["train", "--config", str(cfg), "--steps", "1", "--quiet"]) == 0
    (run,) = Store().list_runs()
    assert run["method"] == "morlhf" and run["total_steps"] == 1 and run["config"]["batch_size"] == 2
    assert run["config"]["samples_per_prompt"] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_one_update_raises_log_probs_in_proportion_to_the_combined_advantage(store):
    """The update's direction: Σ_t A_t·Δlog π(y_t) > 0 for the tokens of the rollout it learned from."""
    torch.manual_seed(0)
    t = trainer.Trainer(_cfg(steps=1, batch_size=8, kl_coef=0.0, target_kl=0.0).validate(), store, progress=False)
    ro = t.rollout(1)
    scores = t.score(ro)
    mask = ro.response_mask
    ref, _ = t._forward(ro, adapter=False, grad=False)
    before, values = t._forward(ro, grad=False)
    adv, _, _ = t._advantages(scores, before, ref, values, mask)
    combined, _ = t._combine(adv, mask)
    assert (combined >= 0).all() and combined.sum() > 0  # Noon: only non-negative advantages
    t._update(ro, scores)
    after, _ = t._forward(ro, grad=False)
    assert float((combined * (after - before) * mask).sum()) > 0


def test_library_train_with_an_unknown_model_leaves_no_run(store):
    from pama.models import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        trainer.train(_cfg(model="/tmp/pama-no-such-model-folder"), store, progress=False)
    assert store.list_runs() == []


def test_samples_per_prompt_groups_prompts_and_centres_rewards_per_prompt(store):
    t = trainer.Trainer(_cfg(steps=1, batch_size=4, samples_per_prompt=2).validate(), store, progress=False)
    ro = t.rollout(1)
    assert ro.prompts[0] == ro.prompts[1] and ro.prompts[2] == ro.prompts[3] and ro.prompts[0] != ro.prompts[2]
    scores = torch.tensor([[1.0, 3.0, 5.0, 5.0], [0.0, 2.0, 1.0, 1.0]])
    mask = torch.ones(4, 3)
    zeros = torch.zeros(4, 3)
    t.cfg, t.kl_ctl.value = dataclasses.replace(t.cfg, whiten_advantages=False, noon=False), 0.0  # a config is fixed
    adv, _, _ = t._advantages(scores, zeros, zeros, torch.zeros(2, 4, 3), mask)
    # the last token's advantage is the centred reward: each prompt's pair sums to zero
    assert adv[:, :, -1].tolist() == [[-1.0, 1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0]]
    with pytest.raises(ConfigError, match="multiple of samples_per_prompt"):
        _cfg(batch_size=4, samples_per_prompt=3).validate()


def test_bfloat16_base_trains_a_float32_adapter_and_leaves_the_base_untouched(store):
    t = trainer.Trainer(_cfg(dtype="bfloat16", steps=2).validate(), store, progress=False)
    base = t.model.get_base_model()
    frozen = {k: v.clone() for k, v in base.state_dict().items() if "lora_" not in k}
    lora = {n: p.detach().clone() for n, p in t.model.named_parameters() if p.requires_grad}
    assert {p.dtype for p in lora.values()} == {torch.float32}
    assert next(base.get_input_embeddings().parameters()).dtype == torch.bfloat16
    run_id = t.train()
    assert store.get_run(run_id)["status"] == "finished"
    losses = [m["value"] for m in store.metrics(run_id, keys=["loss/total"])]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert all(not torch.equal(p.detach(), lora[n]) for n, p in t.model.named_parameters() if p.requires_grad)
    assert all(torch.equal(v, frozen[k]) for k, v in base.state_dict().items() if "lora_" not in k)


def test_shared_prefix_forward_gives_the_same_log_probs_values_and_gradients(tiny, random_lora):
    tok = tiny[1]
    model = random_lora(seed=0)
    prompts = ["Tell me a story.", "x " * 30, "What is the capital of France?", "Hi"]
    _, enc, new = models.generate(model, tok, prompts, max_new_tokens=10, temperature=1.0, seed=1, return_ids=True)
    rmask = trainer.response_mask(new, models.eos_ids(model, tok))
    ids = torch.cat([enc["input_ids"], new], 1)
    attn = torch.cat([enc["attention_mask"], rmask.long()], 1)
    q = enc["input_ids"].shape[1]
    # the chat template's system part is common to every row; the shortest prompt bounds it
    assert sampling.shared_prefix_length(ids, attn, q) >= sampling.MIN_SHARED_PREFIX
    assert sampling.shared_prefix_length(ids[:1], attn[:1], q) == 0
    model.train()
    results = []
    for share in (False, True):
        model.zero_grad()
        logp, h = trainer.seq_logprobs_and_hidden(model, ids, attn, q, share_prefix=share)
        ((logp * rmask).sum() + 1e-3 * h.sum()).backward()
        results.append((logp.detach(), h.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (lp0, h0, g0), (lp1, h1, g1) = results
    assert lp0.shape == lp1.shape and h0.shape == h1.shape
    torch.testing.assert_close(lp1, lp0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h1, h0, atol=1e-5, rtol=1e-5)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_symmetric_objectives_log_equal_pama_weights(store):
    """Tied advantages (identical objectives; all zero after Noon) must not give objective 0 the weight."""
    t = trainer.Trainer(_cfg(steps=1, preference=[0.5, 0.5]).validate(), store, progress=False)
    ro = t.rollout(1)
    row = torch.linspace(-1.0, 1.0, len(ro.prompts))
    stats = t._update(ro, torch.stack([row, row]))
    assert stats["pama/weight/sentiment"] == pytest.approx(0.5)
    assert stats["pama/weight/conciseness"] == pytest.approx(0.5)


def _with_dropout(p: float = 0.5):
    model, tok = models.load("tiny-random", seed=0)
    for m in model.modules():
        if hasattr(m, "attention_dropout"):
            m.attention_dropout = p  # Llama applies it in training mode only
    return model, tok


def test_rl_forwards_run_without_dropout(store, monkeypatch):
    """π_ref, π_old and π_θ see the same network: with dropout on they would each draw their own masks."""
    model, tok = _with_dropout()
    t = trainer.Trainer(_cfg(steps=1, lora_dropout=0.5, ppo_epochs=2).validate(), store, model=model,
                        tokenizer=tok, progress=False)
    calls = []
    forward = t._forward

    def recording(ro, **kw):
        out = forward(ro, **kw)
        calls.append(out[0].detach().clone())
        return out

    monkeypatch.setattr(t, "_forward", recording)
    ro = t.rollout(1)
    t._update(ro, t.score(ro))
    ref, old, first = calls[:3]  # reference, π_old, then π_θ's first forward, before any optimiser step
    mask = ro.response_mask.bool()
    torch.testing.assert_close(first[mask], old[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref[mask], old[mask], atol=1e-5, rtol=1e-5)  # LoRA's B starts at 0: π_θ = π_ref


def test_log_probs_come_from_the_tempered_logits_the_sampler_used(store):
    t = trainer.Trainer(_cfg(steps=1, temperature=0.5).validate(), store, progress=False)
    ro = t.rollout(1)
    logp, _ = t._forward(ro, grad=False)
    with torch.no_grad():
        logits = t.model(input_ids=ro.input_ids, attention_mask=ro.attention_mask).logits[:, ro.query_len - 1:-1]
    targets = ro.input_ids[:, ro.query_len:].unsqueeze(-1)
    sampled = torch.log_softmax(logits.float() / 0.5, -1).gather(-1, targets).squeeze(-1)
    untempered = torch.log_softmax(logits.float(), -1).gather(-1, targets).squeeze(-1)
    mask = ro.response_mask.bool()
    torch.testing.assert_close(logp[mask], sampled[mask], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logp[mask], untempered[mask], atol=1e-2)


@pytest.mark.parametrize("method, noon, expected", [
    ("pama", "auto", True), ("morlhf", "auto", False), ("mgda", "auto", False),
    ("morlhf", "true", True), ("pama", "false", False),
    ("morlhf", True, True), ("pama", False, False),  # configs stored as booleans before noon became per method
])
def test_noon_defaults_to_the_papers_choice_per_method(method, noon, expected, store):
    from pama.config import from_dict

    cfg = from_dict(TrainConfig, {**TINY, "method": method, "noon": noon}).validate()
    assert cfg.uses_noon() is expected
    assert from_dict(TrainConfig, cfg.to_dict()).uses_noon() is expected  # a resumed run keeps it
    t = trainer.Trainer(cfg, store, progress=False)
    scores = torch.tensor([[1.0, 3.0, 5.0, 0.0], [0.0, 2.0, 1.0, 4.0]])
    mask = torch.ones(4, 3)
    zeros = torch.zeros(4, 3)
    adv, _, _ = t._advantages(scores, zeros, zeros, torch.zeros(1 if method == "morlhf" else 2, 4, 3), mask)
    assert bool((adv < 0).any()) is not expected


def test_value_loss_coefficient_is_per_head(store):
    """Each head's clipped loss is weighted by vf_coef (the spec's 0.1 per head), not vf_coef / n."""
    t = trainer.Trainer(_cfg(steps=1).validate(), store, progress=False)
    ro = t.rollout(1)
    logp, values = t._forward(ro)
    returns = values.detach().clone()
    returns[0] += 1.0  # head 0 is off by 1 on every token (clipped loss 0.5 per token), head 1 exact
    mask = ro.response_mask
    s = t._loss_and_step(logp, values, logp.detach(), values.detach(), returns, torch.zeros_like(values),
                         torch.zeros_like(logp), mask)
    assert s["loss/value"] == pytest.approx(0.5, rel=1e-4)  # 0.5 + 0 summed over heads (the mean would be 0.25)
    assert s["loss/total"] == pytest.approx(t.cfg.vf_coef * 0.5, rel=1e-4)


def test_resume_is_reproducible(store):
    """4 steps in one go equal 2 steps + a resumed 2: the RNG states are saved with the checkpoint and restored
    (mini-batch order draws from the global torch RNG)."""
    cfg = _cfg(steps=4, save_every=1, ppo_epochs=2, mini_batches=2, samples_per_prompt=1)
    whole = trainer.Trainer(copy.deepcopy(cfg).validate(), store, progress=False)
    whole.train()
    half = trainer.Trainer(_cfg(steps=2, save_every=1, ppo_epochs=2, mini_batches=2, samples_per_prompt=1).validate(),
                           store, progress=False)
    half.train()
    torch.manual_seed(12345)  # whatever ran in between must not matter
    resumed = trainer.Trainer(copy.deepcopy(cfg).validate(), store, run_id=half.run_id, progress=False)
    assert resumed.step == 2
    resumed.train()
    for (n, a), (_, b) in zip(whole.model.named_parameters(), resumed.model.named_parameters()):
        if a.requires_grad:
            torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6, msg=n)


def test_end_advantage_is_the_group_centred_standardised_ending():
    from pama.algorithm import end_advantage

    a = end_advantage(torch.tensor([True, False, True, True]), k=2)
    # group (T, F) → (+0.5, −0.5); group (T, T) → (0, 0); std over the batch = sqrt(0.125)
    assert torch.allclose(a, torch.tensor([1.0, -1.0, 0.0, 0.0]) / (2 * 0.125 ** 0.5))
    assert end_advantage(torch.tensor([True, False, False, False])).tolist()[0] > 0          # batch mean for k = 1
    for same in ([True] * 4, [False] * 4):                                                  # nothing to prefer
        assert end_advantage(torch.tensor(same), k=2).tolist() == [0.0] * 4


def test_eos_weight_pushes_ended_answers_up_and_needs_mixed_endings(store):
    """The separate end-of-answer term (eos_weight): from the same state and rollout, it raises the log-probs of the
    answers that ended relative to those that did not; when every answer ended it changes nothing."""
    torch.manual_seed(0)
    t = trainer.Trainer(_cfg(steps=1, batch_size=8, samples_per_prompt=1, kl_coef=0.0, target_kl=0.0,
                             missing_eos_penalty=0.0).validate(), store, progress=False)
    ro = t.rollout(1)
    scores = t.score(ro)
    start = [copy.deepcopy(x.state_dict()) for x in (t.model, t.value_heads, t.optimizer, t.kl_ctl)]
    before, _ = t._forward(ro, grad=False)

    def gain(weight: float, ended: list[bool]) -> float:
        for x, state in zip((t.model, t.value_heads, t.optimizer, t.kl_ctl), start):
            x.load_state_dict(copy.deepcopy(state))
        t.cfg = dataclasses.replace(t.cfg, eos_weight=weight)
        ro.ended = torch.tensor(ended)
        stats = t._update(ro, scores)
        assert ("loss/eos" in stats) == bool(weight)
        after, _ = t._forward(ro, grad=False)
        delta = ((after - before) * ro.response_mask).sum(1)       # Δ log π(answer) per answer
        e = ro.ended
        return float(delta[e].mean() - delta[~e].mean()) if e.any() and (~e).any() else float(delta.sum())

    mixed = [True, False] * 4
    assert gain(5.0, mixed) > gain(0.0, mixed) + 1e-3
    assert gain(5.0, [True] * 8) == pytest.approx(gain(0.0, [True] * 8), abs=1e-6)


def test_end_credit_on_eos_credits_only_the_last_token_of_the_answers_that_ended():
    from pama.algorithm import end_advantage, end_credit

    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1.]])
    ended = torch.tensor([True, False, True, False])
    adv = end_advantage(ended, k=2)
    assert torch.equal(end_credit(ended, mask, 2, "answer"), adv.unsqueeze(1) * mask)
    eos = end_credit(ended, mask, 2, "eos")
    where = torch.zeros_like(mask)
    where[0, 2] = where[2, 1] = 1.0            # the EOS tokens: each ended row's last response token
    assert torch.equal(eos, adv.unsqueeze(1) * where)
    assert eos[~ended].abs().sum() == 0       # an answer cut at the limit has no decision to stop to credit
    with pytest.raises(ValueError, match="credit"):
        end_credit(ended, mask, 2, "prompt")


def test_end_credit_with_min_tokens_discourages_stopping_early_and_credits_finishing():
    """eos_min_tokens: an answer that ended too short counts as unfinished, so its EOS gets the negative side of the
    end advantage; a long enough end gets the positive side; without the floor both stops are credited alike."""
    from pama.algorithm import end_credit

    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1.]])
    ended = torch.tensor([True, True, False])                  # 5 tokens and ended, 2 and ended, cut at the limit
    plain = end_credit(ended, mask, 1, "eos")
    assert plain[0, 4] > 0 and plain[1, 1] > 0 and plain[0, 4] == plain[1, 1]
    floor = end_credit(ended, mask, 1, "eos", min_tokens=4)
    assert floor[0, 4] > 0 > floor[1, 1]                       # finishing credited, stopping at 2 tokens discouraged
    assert floor.ne(0).sum() == 2 and floor[2].abs().sum() == 0
    answer = end_credit(ended, mask, 1, "answer", min_tokens=4)
    assert (answer[1, :2] < 0).all() and (answer[0, :5] > 0).all()
    assert torch.equal(end_credit(ended, mask, 1, "eos", min_tokens=2), plain)   # both long enough: as without


def test_eos_min_tokens_lowers_an_early_stop_and_raises_a_late_one(store):
    """Through the trainer: with eos_min_tokens above the short answers' length, one update lowers log π of their EOS
    tokens and raises that of the long answers' EOS; without it, both go up."""
    torch.manual_seed(0)
    t = trainer.Trainer(_cfg(steps=1, batch_size=8, samples_per_prompt=1, kl_coef=0.0, target_kl=0.0,
                             missing_eos_penalty=0.0).validate(), store, progress=False)
    ro = t.rollout(1)
    scores = t.score(ro)
    start = [copy.deepcopy(x.state_dict()) for x in (t.model, t.value_heads, t.optimizer, t.kl_ctl)]
    before, _ = t._forward(ro, grad=False)
    mask = ro.response_mask.clone()
    T = mask.shape[1]
    assert T >= 4
    short = torch.tensor([True, False] * 4)
    mask[short, 2:] = 0                                         # the short answers end at their 2nd token
    ro.response_mask = mask
    ro.ended = torch.tensor([True] * 6 + [False] * 2)
    last = mask.cumsum(1).eq(mask.sum(1, keepdim=True)) & mask.bool() & ro.ended.unsqueeze(1)

    def update(weight: float, min_tokens: int) -> torch.Tensor:
        for x, state in zip((t.model, t.value_heads, t.optimizer, t.kl_ctl), start):
            x.load_state_dict(copy.deepcopy(state))
        t.cfg = dataclasses.replace(t.cfg, eos_weight=weight, eos_credit="eos", eos_min_tokens=min_tokens)
        t._update(ro, scores)
        after, _ = t._forward(ro, grad=False)
        return after - before

    off, floor = update(0.0, 0), update(5.0, 3)
    early = last & short.unsqueeze(1)
    late = last & ~short.unsqueeze(1)
    assert float((floor - off)[early].mean()) < -1e-3
    assert float((floor - off)[late].mean()) > 1e-3


def test_eos_credit_on_eos_raises_the_stopping_token_and_leaves_the_rest_of_the_answer(store):
    """eos_credit: eos pushes up log π of the token that ended each answer that ended, more than eos_credit: answer
    does from the same state and rollout, and does not push up the rest of those answers as answer does."""
    torch.manual_seed(0)
    t = trainer.Trainer(_cfg(steps=1, batch_size=8, samples_per_prompt=1, kl_coef=0.0, target_kl=0.0,
                             missing_eos_penalty=0.0).validate(), store, progress=False)
    ro = t.rollout(1)
    scores = t.score(ro)
    start = [copy.deepcopy(x.state_dict()) for x in (t.model, t.value_heads, t.optimizer, t.kl_ctl)]
    before, _ = t._forward(ro, grad=False)
    ro.ended = torch.tensor([True, False] * 4)
    mask = ro.response_mask
    last = mask.cumsum(1).eq(mask.sum(1, keepdim=True)) & mask.bool() & ro.ended.unsqueeze(1)

    def update(weight: float, credit: str) -> torch.Tensor:
        for x, state in zip((t.model, t.value_heads, t.optimizer, t.kl_ctl), start):
            x.load_state_dict(copy.deepcopy(state))
        t.cfg = dataclasses.replace(t.cfg, eos_weight=weight, eos_credit=credit)
        t._update(ro, scores)
        after, _ = t._forward(ro, grad=False)
        return after - before

    off, eos, answer = update(0.0, "eos"), update(5.0, "eos"), update(5.0, "answer")
    assert float((eos - off)[last].mean()) > 1e-3                      # the stopping tokens went up...
    rest = mask.bool() & ~last & ro.ended.unsqueeze(1)                  # the other tokens of the answers that ended
    # crediting the answer pushes its other tokens up (what short answers say); crediting the EOS token does not
    assert float((answer - off)[rest].mean()) > float((eos - off)[rest].mean()) + 0.03
    assert float((eos - off)[last].mean()) > float((answer - off)[last].mean()) + 0.05


def test_eos_weight_is_refused_for_trl_grpo_and_below_zero():
    with pytest.raises(ConfigError, match="eos_weight.*trl-grpo"):
        _cfg(method="trl-grpo", samples_per_prompt=2, eos_weight=0.5).validate()
    with pytest.raises(ConfigError, match="eos_weight must be ≥ 0"):
        _cfg(eos_weight=-1.0).validate()
    with pytest.raises(ConfigError, match="eos_credit must be 'answer' or 'eos'"):
        _cfg(eos_credit="prompt").validate()
    with pytest.raises(ConfigError, match="eos_min_tokens = 64 must be ≥ 0 and below max_new_tokens"):
        _cfg(eos_min_tokens=64, max_new_tokens=64).validate()
    with pytest.raises(ConfigError, match="eos_min_tokens = -1"):
        _cfg(eos_min_tokens=-1).validate()


def test_kl_penalty_answer_mean_does_not_pay_for_brevity():
    """token: an answer's KL penalty grows with its length; answer-mean: two answers with the same per-token KL pay
    the same, on their last token, and the batch pays the same in total as with token."""
    from pama.algorithm import kl_penalty

    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.float32)
    kl = torch.full((2, 6), 0.5) * mask
    token, mean = kl_penalty(kl, mask, 0.1, "token"), kl_penalty(kl, mask, 0.1, "answer-mean")
    assert token.sum(1).tolist() == pytest.approx([-0.1, -0.3])
    assert mean.sum(1).tolist() == pytest.approx([-0.2, -0.2])
    assert float(mean.sum()) == pytest.approx(float(token.sum()))
    assert mean[0, 1] == pytest.approx(-0.2) and mean[1, 5] == pytest.approx(-0.2)   # on each last token only
    assert int((mean != 0).sum()) == 2
    assert not kl_penalty(kl, mask, 0.1, "loss").any()          # loss: no KL in the rewards (kl_loss instead)
    with pytest.raises(ValueError, match="shaping must be 'token' or 'answer-mean' or 'loss'"):
        kl_penalty(kl, mask, 0.1, "sum")
    with pytest.raises(ConfigError, match="kl_shaping must be 'token' or 'answer-mean' or 'loss'"):
        _cfg(kl_shaping="sum").validate()
    with pytest.raises(ConfigError, match="kl_shaping: answer-mean is not available with method trl-grpo"):
        _cfg(method="trl-grpo", samples_per_prompt=2, kl_shaping="answer-mean").validate()


@pytest.mark.parametrize("shaping", ["token", "answer-mean", "loss"])
def test_trainer_returns_follow_kl_shaping(shaping, store):
    """Through the trainer (γ = λ = 1, no reward spread): the first token's return is the answer's whole KL penalty,
    longer for a longer answer under token shaping, the same for both under answer-mean, none under loss."""
    t = trainer.Trainer(_cfg(steps=1, batch_size=2, samples_per_prompt=1, lam=1.0, kl_shaping=shaping,
                             missing_eos_penalty=0.0).validate(), store, progress=False)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float32)
    ref = torch.zeros(2, 4)
    old = torch.full((2, 4), 0.5)
    values = torch.zeros(2, 2, 4)
    _, returns, _ = t._advantages(torch.zeros(2, 2), old, ref, values, mask)
    beta = t.kl_ctl.value
    first = returns[0, :, 0].tolist()
    if shaping == "token":
        assert first == pytest.approx([-beta * 1.0, -beta * 2.0])
    elif shaping == "answer-mean":
        assert first == pytest.approx([-beta * 1.5, -beta * 1.5])
    else:
        assert first == pytest.approx([0.0, 0.0])


def test_kl_loss_is_k3_and_its_gradient_pulls_the_policy_back_toward_the_reference():
    """k3 = exp(r) − r − 1 (r = log π_ref − log π_θ) per answer token, masked mean: 0 where the policy is the
    reference, positive elsewhere; a gradient step on it moves every log-prob toward the reference's, from above
    and from below (what the rewards' penalty cannot do under Noon PPO)."""
    from pama.algorithm import kl_loss

    ref = torch.log(torch.tensor([[0.5, 0.2, 0.3], [0.4, 0.4, 0.9]]))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.float32)
    assert float(kl_loss(ref.clone(), ref, mask)) == pytest.approx(0.0, abs=1e-7)
    logp = (ref + torch.tensor([[0.3, -0.4, 0.0], [-0.2, 0.5, 5.0]])).requires_grad_()
    r = (ref - logp).detach()
    expected = ((torch.exp(r) - r - 1) * mask).sum() / mask.sum()
    value = kl_loss(logp, ref, mask)
    assert float(value) == pytest.approx(float(expected)) and float(value) > 0
    value.backward()
    moved = logp.detach() - 0.1 * logp.grad
    before, after = (logp.detach() - ref).abs(), (moved - ref).abs()
    assert bool((after[mask.bool()] < before[mask.bool()])[[0, 1, 3, 4]].all())   # every token off the reference
    assert logp.grad[1, 2] == 0 and logp.grad[0, 2] == 0                          # masked / on the reference


def test_kl_shaping_loss_pulls_a_drifted_policy_back_with_no_reward_signal(store):
    """Through the trainer: a policy moved away from the base (LoRA B weights set at random), all scores zero (no
    reward spread): with kl_shaping: loss and a large β one update lowers the KL to the base on the same answers and
    logs loss/kl; with kl_shaping: token the penalty is in the rewards, Noon drops the answers it makes negative, and
    the same update does not bring the policy back (measured: the KL rose by a tenth)."""
    ro_kl = {}
    for shaping in ("loss", "token"):
        t = trainer.Trainer(_cfg(steps=1, kl_coef=5.0, target_kl=0.0, kl_shaping=shaping, learning_rate=0.01,
                                 missing_eos_penalty=0.0).validate(), store, progress=False)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in t.model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        ro = t.rollout(1)

        def kl_now(t=t, ro=ro):
            pol, _ = t._forward(ro, grad=False)
            ref, _ = t._forward(ro, adapter=False, grad=False)
            return float(((pol - ref) * ro.response_mask).sum() / ro.response_mask.sum())

        before = kl_now()
        stats = t._update(ro, torch.zeros(2, len(ro.prompts)))
        ro_kl[shaping] = (before, kl_now(), stats)
    before, after, stats = ro_kl["loss"]
    assert before > 0.01 and after < 0.9 * before and stats["loss/kl"] > 0
    before, after, stats = ro_kl["token"]
    assert "loss/kl" not in stats and after > 0.95 * before


def test_scale_by_spread_gives_each_objective_unit_spread_without_shifting_it():
    from pama.algorithm import scale_by_spread

    scores = torch.tensor([[0.1, -0.1, 0.3, -0.3], [2.0, -6.0, 4.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    out = scale_by_spread(scores)
    assert out[:2].std(dim=1, unbiased=False).tolist() == pytest.approx([1.0, 1.0])
    assert torch.equal(torch.sign(out), torch.sign(scores))          # scaled, never shifted
    assert torch.equal(out[2], scores[2])                             # no spread: left as it is


@pytest.mark.parametrize("scale", ["none", "batch"])
def test_scale_rewards_batch_makes_an_objectives_advantages_independent_of_its_reward_scale(scale, store):
    """With the KL penalty in every objective's rewards, an objective on a small scale is mostly penalty once
    whitened (scale_rewards: none): shrinking its rewards ×10 changes its advantages. With batch scaling it does
    not: the objective meets the penalty at unit spread whatever its units."""
    t = trainer.Trainer(_cfg(steps=1, batch_size=4, samples_per_prompt=1, lam=1.0, kl_coef=0.5, target_kl=0.0,
                             missing_eos_penalty=0.0, scale_rewards=scale).validate(), store, progress=False)
    mask = torch.ones(4, 3)
    ref = torch.zeros(4, 3)
    old = torch.tensor([[0.1, 0.4, 0.2], [0.9, 0.3, 0.0], [0.2, 0.2, 0.7], [0.0, 0.5, 0.1]])
    values = torch.zeros(2, 4, 3)
    scores = torch.tensor([[1.0, -1.0, 0.5, -0.5], [0.2, 0.1, -0.2, -0.1]])
    small = scores * torch.tensor([[1.0], [0.1]])
    adv, _, _ = t._advantages(scores, old, ref, values, mask)
    adv_small, _, _ = t._advantages(small, old, ref, values, mask)
    assert torch.allclose(adv[0], adv_small[0])                       # the other objective is untouched either way
    if scale == "batch":
        assert torch.allclose(adv[1], adv_small[1], atol=1e-6)
    else:
        assert not torch.allclose(adv[1], adv_small[1], atol=1e-3)


def test_scale_rewards_is_validated():
    with pytest.raises(ConfigError, match="scale_rewards must be 'none' or 'batch'"):
        _cfg(scale_rewards="group").validate()
    with pytest.raises(ConfigError, match="scale_rewards: batch is not available with method trl-grpo"):
        _cfg(method="trl-grpo", samples_per_prompt=2, scale_rewards="batch").validate()


def test_scheduled_lr_decays_over_the_runs_steps_and_constant_keeps_it():
    """lr_schedule (TRL's lr_scheduler_type without warm-up): full rate at step 1, toward 0 at the last step."""
    from pama.algorithm import scheduled_lr

    assert [scheduled_lr(1e-3, s, 4, "constant") for s in (1, 4, 9)] == [1e-3] * 3
    assert [round(scheduled_lr(1.0, s, 4, "linear"), 6) for s in (1, 2, 3, 4)] == [1.0, 0.75, 0.5, 0.25]
    cos = [scheduled_lr(1.0, s, 4, "cosine") for s in (1, 2, 3, 4)]
    assert cos[0] == 1.0 and abs(cos[2] - 0.5) < 1e-9 and all(a > b for a, b in zip(cos, cos[1:])) and cos[3] > 0
    assert scheduled_lr(1.0, 9, 4, "linear") == 0.0          # past the run's steps: no movement, never negative
    with pytest.raises(ValueError, match="lr_schedule"):
        scheduled_lr(1.0, 1, 4, "step")


def test_a_linear_schedule_sets_the_optimisers_rate_each_step_and_bad_names_are_refused(store):
    t = trainer.Trainer(_cfg(steps=3, lr_schedule="linear", learning_rate=3e-3).validate(), store, progress=False)
    t.train()
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)   # step 3 of 3: 3e-3 × (1 − 2/3)
    c = trainer.Trainer(_cfg(steps=3, learning_rate=3e-3).validate(), store, progress=False)
    c.train()
    assert c.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3)
    moved = [not torch.equal(a, b) for (n, a), (_, b) in zip(t.model.named_parameters(), c.model.named_parameters())
             if a.requires_grad]
    assert any(moved)                                                 # the schedule changed the updates
    with pytest.raises(ConfigError, match="lr_schedule must be"):
        _cfg(lr_schedule="step").validate()


@pytest.mark.parametrize("k", [1, 2])
def test_length_residual_leaves_no_length_trend_and_keeps_each_groups_mean(k):
    """A reward that is mostly log length loses that trend (within prompt groups), keeps its group means and the
    rest of its signal; a row marked as length itself is left as it is."""
    from pama.algorithm import length_residual

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 200, (16,), generator=g).float()
    other = torch.randn(16, generator=g)
    scores = torch.stack([0.8 * lengths.log() + 0.1 * other, lengths.log(), other])
    out, slope = length_residual(scores, lengths, k, keep=[True, False, True])
    grp = k if k > 1 else 16
    xc = lengths.log().view(-1, grp) - lengths.log().view(-1, grp).mean(-1, keepdim=True)
    for i in (0, 2):
        yc = out[i].view(-1, grp) - out[i].view(-1, grp).mean(-1, keepdim=True)
        assert abs(float((yc * xc).sum())) < 1e-4                      # no linear length trend left
        assert torch.allclose(out[i].view(-1, grp).mean(-1), scores[i].view(-1, grp).mean(-1), atol=1e-5)
    assert float(slope[0]) == pytest.approx(0.8, abs=0.1)
    assert torch.equal(out[1], scores[1]) and float(slope[1]) == 0.0  # length itself: untouched
    assert torch.corrcoef(torch.stack([out[0], other]))[0, 1] > 0.5   # what is not length survives
    with pytest.raises(ValueError, match="groups of 3"):
        length_residual(scores, lengths, 3)


@pytest.mark.parametrize("on", [False, True])
def test_length_controlled_rewards_reach_the_update_without_their_length_trend(on, store, monkeypatch):
    """With length_controlled_rewards the trainer's update gets sentiment without its length trend (a slope logged
    per objective that is not length) and conciseness untouched; without it, the scores as scored."""
    t = trainer.Trainer(_cfg(steps=1, batch_size=4, samples_per_prompt=2, missing_eos_penalty=0.0,
                             length_controlled_rewards=on).validate(), store, progress=False)
    seen = {}

    def score(ro):
        n = ro.response_mask.sum(1).float()
        seen["lengths"], seen["scores"] = n, torch.stack([n.log(), torch.exp(-n / 10)])
        return seen["scores"]

    def update(ro, scores):
        seen["update"] = scores.clone()
        return {}

    def rollout(step, original=t.rollout):  # the tiny model fills its 6 tokens: give the pairs unequal lengths
        ro = original(step)
        mask = ro.response_mask.clone()
        mask[0, 3:] = 0
        mask[2, 2:] = 0
        return dataclasses.replace(ro, response_mask=mask)

    monkeypatch.setattr(t, "rollout", rollout)
    monkeypatch.setattr(t, "score", score)
    monkeypatch.setattr(t, "_update", update)
    metrics = t.train_step(1)
    if not on:
        assert torch.equal(seen["update"], seen["scores"]) and not any(k.startswith("length_control") for k in metrics)
        return
    x = seen["lengths"].log().view(-1, 2)
    assert metrics["length_control/slope/sentiment"] == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(seen["update"][0].view(-1, 2).diff(dim=-1), torch.zeros(2, 1), atol=1e-5)
    assert torch.equal(seen["update"][1], seen["scores"][1]) and "length_control/slope/conciseness" not in metrics
