"""method trl-grpo (TRL's GRPOTrainer through pama.trl_grpo) and the paper-exp1 preset, on the tiny model."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pama import models, trainer, trl_grpo
from pama.app import forms
from pama.cli import main
from pama.config import ConfigError, SweepConfig, TrainConfig, from_dict
from pama.prompts import PromptError, load_prompts

TINY = dict(model="tiny-random", method="trl-grpo", objectives=["sentiment", "conciseness"], preference=[0.7, 0.3],
            steps=2, batch_size=4, samples_per_prompt=2, max_new_tokens=4, save_every=1, learning_rate=1e-2,
            threads=1, live_eval_every=0)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY, **kw}).validate()


def test_trains_and_stores_a_run_whose_adapter_evaluate_loads(store):
    from pama import adapters
    from pama.evaluate import evaluate_point
    from pama.objectives import get

    run_id = trainer.train(_cfg(), store, progress=False)
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["step"] == 2 and run["method"] == "trl-grpo"
    assert "sum_then_normalize" in run["name"]
    metrics = store.metrics(run_id)
    keys = {m["key"] for m in metrics}
    for k in ("rewards/sentiment/mean", "rewards/conciseness/mean", "rewards/sentiment/std", "kl", "beta",
              "loss/policy", "response_length", "eos_fraction", "time/step", "trl/reward"):
        assert k in keys, k
    assert sorted(m["step"] for m in metrics if m["key"] == "rewards/conciseness/mean") == [1, 2]
    # our reward keys are the raw scores (TRL's own, with the missing-EOS penalty, are kept under trl/)
    raw = [m["value"] for m in metrics if m["key"] == "rewards/conciseness/mean"]
    penalised = [m["value"] for m in metrics if m["key"] == "trl/rewards/conciseness/mean"]
    assert all(0 <= v <= 1 for v in raw) and all(p < r for p, r in zip(penalised, raw))  # 4 tokens never end

    path = Path(run["adapter_path"])
    assert path == store_run_dir(run_id) / "step-000002" / "adapter"
    weights = load_file(path / "adapter_model.safetensors")
    assert any(float(v.abs().max()) > 0 for k, v in weights.items() if "lora_B" in k)  # LoRA B starts at 0: trained
    base, tok = models.load("tiny-random", seed=0)
    model = adapters.load_adapters(base, {"a": str(path)})
    result = evaluate_point(model, tok, [get("sentiment"), get("conciseness")], load_prompts("builtin:heldout")[:2],
                            max_new_tokens=4, batch_size=2)
    assert set(result.values) == {"sentiment", "conciseness"}


def store_run_dir(run_id: str) -> Path:
    from pama import paths

    return paths.run_dir(run_id)


def test_settings_reach_grpo_config(tmp_path):
    cfg = _cfg(aggregation="normalize_then_sum", kl_coef=0.3, ppo_epochs=3, mini_batches=2, cliprange=0.15,
               steps=5, save_every=2, seed=7)
    args = trl_grpo.grpo_config(cfg, tmp_path)
    assert args.multi_objective_aggregation == "normalize_then_sum"
    assert args.reward_weights == pytest.approx([0.7, 0.3])
    assert (args.beta, args.num_iterations, args.epsilon, args.seed) == (0.3, 3, 0.15, 7)
    assert (args.num_generations, args.max_completion_length) == (2, 4)
    assert (args.per_device_train_batch_size, args.steps_per_generation) == (2, 2)   # 2 mini-batches of 4
    assert (args.max_steps, args.logging_steps, args.save_steps) == (5 * 6, 6, 2 * 6)  # 6 optimizer steps a rollout
    assert _cfg().aggregation == "sum_then_normalize"
    assert trl_grpo.grpo_config(_cfg(), tmp_path).multi_objective_aggregation == "sum_then_normalize"
    assert any("target_kl" in line for line in trl_grpo.unsupported(cfg))


def test_reward_functions_penalise_a_completion_without_eos():
    from pama.objectives import get

    objs = [get("conciseness")]
    raw: dict = {}
    (fn,) = trl_grpo.reward_functions(objs, _cfg(missing_eos_penalty=0.5), {0}, raw)
    out = fn(prompts=["p", "p"], completions=["a b", "a b"], completion_ids=[[5, 6, 0], [5, 6]])
    assert fn.__name__ == "conciseness"
    assert out[0] == pytest.approx(raw["conciseness"][0]) and out[1] == pytest.approx(raw["conciseness"][1] - 0.5)
    assert raw["ended"] == [True, False]


def test_refusals_say_why():
    with pytest.raises(ConfigError, match="reward_weights for the whole run"):
        _cfg(conditioned=True)
    with pytest.raises(ConfigError, match="samples_per_prompt ≥ 2"):
        _cfg(samples_per_prompt=1)
    with pytest.raises(ConfigError, match="noon"):
        _cfg(noon="true")
    with pytest.raises(ConfigError, match="aggregation must be"):
        _cfg(aggregation="mean")
    with pytest.raises(ConfigError, match="anchor is a setting of method pama only"):
        TrainConfig(**TINY, anchor=0.3)
    with pytest.raises(ConfigError, match="aggregation is a setting of method trl-grpo only"):
        TrainConfig(**{**TINY, "method": "pama"}, aggregation="normalize_then_sum")


def test_resume_continues_exactly_from_the_checkpoint(store):
    """A run stopped after step 1 and resumed to 3 ends with the weights and metrics of an uninterrupted 3-step run
    (TRL restores optimizer, scheduler and RNG; checkpoints fall on rollout boundaries), with ppo_epochs 2."""
    whole = trainer.train(_cfg(steps=3, ppo_epochs=2), store, progress=False)
    half = trainer.train(_cfg(steps=1, ppo_epochs=2), store, progress=False)
    assert (trl_grpo.last_trl_checkpoint(store_run_dir(half)) / "optimizer.pt").is_file()
    trainer.resume(half, store, steps=3, progress=False)
    a, b = store.get_run(whole), store.get_run(half)
    assert b["status"] == "finished" and b["step"] == 3 and b["adapter_path"].endswith("step-000003/adapter")
    wa = load_file(Path(a["adapter_path"]) / "adapter_model.safetensors")
    wb = load_file(Path(b["adapter_path"]) / "adapter_model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ma = {(m["step"], m["key"]): m["value"] for m in store.metrics(whole) if m["key"] == "loss/policy"}
    mb = {(m["step"], m["key"]): m["value"] for m in store.metrics(half) if m["key"] == "loss/policy"}
    assert ma == mb and len(ma) == 3


def test_sweep_of_two_points_makes_a_front_with_the_base(store, capsys):
    args = ["--method", "trl-grpo", "--model", "tiny-random", "--objectives", "sentiment,conciseness", "--points", "2",
            "--steps", "1", "--batch-size", "2", "--samples-per-prompt", "2", "--max-new-tokens", "4",
            "--eval-samples", "2", "--eval-max-new-tokens", "4", "--save-every", "1", "--threads", "1",
            "--live-eval-every", "0", "--quiet"]
    assert main(["sweep", *args]) == 0
    out = capsys.readouterr()
    sweep_id = out.out.strip().splitlines()[-1].split()[-1]
    assert "note (trl-grpo): target_kl" in out.err
    sweep = store.get_sweep(sweep_id)
    assert sweep["status"] == "finished" and sweep["method"] == "trl-grpo"
    runs = store.list_runs(sweep_id=sweep_id)
    assert len(runs) == 2 and all(r["method"] == "trl-grpo" and r["status"] == "finished" for r in runs)
    assert sorted(p["kind"] for p in store.points(sweep_id=sweep_id)) == ["adapter", "adapter", "base"]
    assert sweep["summary"]["front_point_ids"]

    # beside a PAMA sweep on the front page: one series per method (the page draws plots.front_figure of both)
    from pama import plots

    assert main(["sweep", *[a if a != "trl-grpo" else "pama" for a in args]]) == 0
    points = store.points()
    assert {p["method"] for p in points if p["kind"] == "adapter"} == {"pama", "trl-grpo"}
    data = plots.front_data(points, ["sentiment", "conciseness"])
    assert {"pama", "trl-grpo", "base model"} <= set(data)
    names = {t.name for t in plots.front_figure(points, ["sentiment", "conciseness"]).data}
    assert any("trl-grpo" in (n or "") for n in names) and any((n or "").startswith("pama") for n in names)


def test_preset_paper_exp1_is_printed_and_stored_and_flags_win(store, capsys):
    assert main(["train", "--preset", "paper-exp1", "--model", "tiny-random", "--steps", "1", "--batch-size", "2",
                 "--max-new-tokens", "4", "--kl-coef", "0.5", "--threads", "1", "--live-eval-every", "0",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "preset paper-exp1" in out and "anchor: 1.0" in out and "ppo_epochs: 4" in out
    assert "kl_coef: 0.5   (preset: 0.2" in out
    run_id = next(line.split()[-1] for line in out.splitlines() if line.startswith("run id:"))
    run = store.get_run(run_id)
    cfg = run["config"]
    assert run["status"] == "finished" and run["method"] == "pama"
    assert cfg["preset"] == "paper-exp1" and cfg["objectives"] == ["sentiment", "length"]
    assert (cfg["anchor"], cfg["target_kl"], cfg["ppo_epochs"], cfg["kl_coef"]) == (1.0, 3.0, 4, 0.5)
    assert cfg["prompts"] == "builtin:train:review"
    # a stored config reads back as it was (every key is there, so the preset fills nothing)
    assert from_dict(TrainConfig, cfg, stored=True).to_dict() == cfg


def test_preset_with_another_method_keeps_the_experiment_and_drops_pama_only_settings():
    cfg = from_dict(TrainConfig, {"preset": "paper-exp1", "method": "trl-grpo"}).validate()
    assert cfg.samples_per_prompt == 4 and cfg.objectives == ["sentiment", "length"]
    sweep = from_dict(SweepConfig, {"preset": "paper-exp1"}).validate()
    assert sweep.eval_prompts == "builtin:heldout:review" and sweep.anchor == 1.0
    with pytest.raises(ConfigError, match="preset must be one of paper-exp1"):
        from_dict(TrainConfig, {"preset": "paper-exp9"})


def test_train_form_builds_trl_grpo_with_its_aggregation_and_a_preset():
    form = dict(model="tiny-random", method="trl-grpo", objectives=["informativeness", "conciseness"],
                preference="0.3, 0.7", anchor=0.5, aggregation="normalize_then_sum", preset="(none)", steps=2,
                batch_size=4)
    cfg = forms.build_train_config(form)
    assert (cfg.method, cfg.aggregation, cfg.preset) == ("trl-grpo", "normalize_then_sum", "")
    assert "anchor" not in cfg.to_dict()
    cfg = forms.build_train_config({**form, "preset": "paper-exp1"})
    assert cfg.objectives == ["sentiment", "length"] and cfg.samples_per_prompt == 4 and cfg.preset == "paper-exp1"
    pama = forms.build_train_config({**form, "method": "pama", "preset": "paper-exp1"})
    assert pama.anchor == 1.0 and pama.ppo_epochs == 4 and "aggregation" not in pama.to_dict()
    assert dataclasses.replace(cfg, steps=3).aggregation == "normalize_then_sum"


def test_builtin_task_filter_gives_the_review_prompts():
    reviews = load_prompts("builtin:train:review")
    assert 20 <= len(reviews) < len(load_prompts("builtin:train"))
    from pama.prompts import builtin_records

    assert reviews == [r["prompt"] for r in builtin_records("train") if r["task"] == "review"]
    assert not set(reviews) & set(load_prompts("builtin:heldout:review"))
    with pytest.raises(PromptError, match="no task 'reviews'.*review"):
        load_prompts("builtin:train:reviews")


def test_json_of_the_stored_trl_config_round_trips():
    cfg = _cfg(aggregation="normalize_then_sum")
    again = from_dict(TrainConfig, json.loads(json.dumps(cfg.to_dict())), stored=True)
    assert again.to_dict() == cfg.to_dict() and again.method_settings == cfg.method_settings


def test_a_cancelled_run_stops_at_the_next_step_and_resumes(store):
    """The store's 'cancelled' status (the app's Cancel button) stops TRL before its next rollout."""
    ids = []

    def cancel_after_first(step, metrics):
        if step == 1:
            store.set_status(ids[0], "cancelled", error="test")

    run_id = trainer.create_run_record(store, _cfg(steps=3))
    ids.append(run_id)
    with pytest.raises(trainer.RunCancelled):
        trainer.train(_cfg(steps=3), store, run_id=run_id, progress=False, on_step=cancel_after_first)
    run = store.get_run(run_id)
    assert run["status"] == "cancelled" and run["step"] == 1
    trainer.resume(run_id, store, progress=False)
    assert store.get_run(run_id)["status"] == "finished" and store.get_run(run_id)["step"] == 3
