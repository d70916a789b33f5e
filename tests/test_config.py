"""Configs per concern (docs/config.md): flat YAML / flags / stored dicts map onto the settings parts, a method's own
setting is refused on another method, configs are fixed once made, and each setting has one default."""
from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from pama import algorithm as alg
from pama.config import (ConditioningSettings, ConfigError, EvalSettings, GridSettings, MgdaSettings, MorlhfSettings,
                         PamaSettings, SweepConfig, TrainConfig, add_dataclass_arguments, build, from_dict, load_yaml)

REPO = Path(__file__).resolve().parents[1]
OBJS = ["sentiment", "conciseness"]

# a run config as the store held it before the split (TrainConfig.to_dict() of an MGDA run at commit bca4894): every
# method's settings, PAMA's anchor and granularity included, at their defaults
STORED_MGDA = {
    'name': '', 'model': 'tiny-random', 'objectives': ['sentiment', 'conciseness'], 'preference': [0.3, 0.7],
    'method': 'mgda', 'anchor': 0.5, 'granularity': 'token', 'conditioned': False, 'conditioning': 'svd',
    'preference_sampling': 'dirichlet', 'preference_alpha': 1.0, 'steps': 2, 'batch_size': 4, 'ppo_epochs': 1,
    'mini_batches': 1, 'max_new_tokens': 64, 'temperature': 1.0, 'top_p': 1.0, 'learning_rate': 0.001, 'lora_r': 8,
    'lora_alpha': 16, 'lora_dropout': 0.0, 'target_modules': ['all-linear'], 'kl_coef': 0.1, 'target_kl': 4.0,
    'kl_horizon': 100, 'gamma': 1.0, 'lam': 0.95, 'cliprange': 0.2, 'cliprange_value': 0.2, 'vf_coef': 0.1,
    'whiten_advantages': True, 'noon': 'auto', 'samples_per_prompt': 4, 'max_grad_norm': 1.0,
    'missing_eos_penalty': 0.5, 'prompts': 'builtin:train', 'seed': 0, 'save_every': 10, 'threads': 0,
    'device': 'auto', 'dtype': 'float32'}


# ------------------------------------------------------------------------------------------------ old flat forms load

@pytest.mark.parametrize("path", ["demo/front/sweep.yaml", "demo/conditioned/sweep.yaml"])
def test_the_demos_flat_sweep_yaml_loads_onto_the_settings_parts(path):
    flat = load_yaml(REPO / path)
    cfg = build(SweepConfig, {}, str(REPO / path)).validate()
    assert isinstance(cfg.run, TrainConfig) and cfg.run.method_settings == PamaSettings(anchor=0.3)
    assert cfg.anchor == 0.3 and cfg.steps == flat["steps"] and cfg.eval_max_new_tokens == 256
    assert cfg.evaluation == EvalSettings(eval_prompts=flat["eval_prompts"], eval_samples=128, eval_max_new_tokens=256,
                                          eval_seed=1234, eval_temperature=0.7)
    assert cfg.grid == GridSettings(points=flat.get("points", GridSettings().points))
    want = ConditioningSettings(conditioned=True, conditioning="svd", preference_alpha=flat["preference_alpha"]) \
        if flat.get("conditioned") else ConditioningSettings()
    assert cfg.run.conditioning_settings == want
    out = cfg.to_dict()  # the flat form again: every key the file set, as it set it
    assert {k: out[k] for k in flat} == flat
    assert from_dict(SweepConfig, out) == cfg


def test_a_stored_run_config_of_before_the_split_loads_to_the_same_settings(store):
    from pama.sweep import sweep_config

    cfg = from_dict(TrainConfig, dict(STORED_MGDA), source="stored run", stored=True).validate(check_objectives=False)
    assert cfg.method_settings == MgdaSettings() and "anchor" not in cfg.to_dict()
    assert cfg == TrainConfig(model="tiny-random", objectives=OBJS, preference=[0.3, 0.7], method="mgda", steps=2,
                              batch_size=4)
    assert {k: v for k, v in cfg.to_dict().items() if k in STORED_MGDA} == \
        {k: v for k, v in STORED_MGDA.items() if k not in ("anchor", "granularity")}
    # the trainer's resume and a sweep read their configs back this way
    rid = store.create_run(name="old", method="mgda", model="tiny-random", config=dict(STORED_MGDA), objectives=[])
    assert from_dict(TrainConfig, store.get_run(rid)["config"], stored=True) == cfg
    old_sweep = dict(STORED_MGDA, preference=[], method="morlhf", anchor=0.7, points=3, eval_prompts="builtin:heldout",
                     eval_samples=8, eval_max_new_tokens=16, eval_seed=1234)  # no eval_temperature: older still
    sid = store.create_sweep(name="old", method="morlhf", model="tiny-random", objectives=OBJS, config=old_sweep)
    sweep = sweep_config(store, sid)[1].validate(check_objectives=False)
    assert sweep.run.method_settings == MorlhfSettings() and sweep.points == 3 and sweep.eval_samples == 8
    assert sweep.eval_temperature == 0.7
    # a stored PAMA run keeps its anchor
    pama = from_dict(TrainConfig, dict(STORED_MGDA, method="pama", anchor=0.25), stored=True)
    assert pama.method_settings == PamaSettings(anchor=0.25, granularity="token")


# ------------------------------------------------------------------------------------------------ refused, by name

def test_a_setting_of_another_method_is_refused_naming_it():
    with pytest.raises(ConfigError, match="anchor is a setting of method pama only.*method is mgda"):
        TrainConfig(method="mgda", anchor=0.3)
    with pytest.raises(ConfigError, match="yaml: granularity is a setting of method pama only.*morlhf"):
        from_dict(TrainConfig, {"method": "morlhf", "granularity": "batch"}, source="yaml")
    with pytest.raises(ConfigError, match="anchor is a setting of method pama only"):  # the store's form, unstored
        from_dict(TrainConfig, dict(STORED_MGDA))
    with pytest.raises(ConfigError, match="anchor is a setting of method pama only"):
        SweepConfig(method="mgda", anchor=0.5, points=2)
    with pytest.raises(ConfigError, match="anchor is a setting of method pama only"):  # not carried by replace
        dataclasses.replace(TrainConfig(anchor=0.3), method="morlhf")
    assert dataclasses.replace(TrainConfig(), method="morlhf").method_settings == MorlhfSettings()
    with pytest.raises(AttributeError, match="anchor is a setting of method pama only; this config's method is mgda"):
        TrainConfig(method="mgda").anchor


def test_the_cli_refuses_anchor_with_mgda_and_the_form_leaves_it_out():
    import argparse

    from pama.app import forms

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, TrainConfig)
    args = parser.parse_args(["--method", "mgda", "--anchor", "0.3", "--objectives", "sentiment,conciseness"])
    with pytest.raises(ConfigError, match="flags: anchor is a setting of method pama only.*drop anchor \\(--anchor\\)"):
        build(TrainConfig, args)
    assert "Method pama only." in " ".join(parser.format_help().split())
    # the Train form shows the anchor box whatever the method: it is left out of an MGDA run, kept for PAMA
    form = dict(model="tiny-random", objectives=OBJS, steps=2, batch_size=4, anchor=0.3)
    assert forms.build_train_config(dict(form, method="mgda")).method_settings == MgdaSettings()
    assert forms.build_train_config(dict(form, method="pama")).anchor == 0.3


def test_validate_reports_every_concerns_errors_together():
    cfg = TrainConfig(objectives=OBJS, anchor=1.5, granularity="word", preference_alpha=0.0, steps=0)
    with pytest.raises(ConfigError) as err:
        cfg.validate(check_objectives=False)
    for text in ("anchor must lie in [0, 1]", "granularity must be 'token' or 'batch'", "preference_alpha must be > 0",
                 "steps must be a positive integer"):
        assert text in str(err.value), text
    with pytest.raises(ConfigError, match="anchor must be of type float"):
        TrainConfig(objectives=OBJS, anchor="high").validate(check_objectives=False)
    with pytest.raises(ConfigError, match="(?s)Invalid sweep configuration:\n  - points must be a positive integer.*"
                                          "eval_seed must lie"):
        SweepConfig(objectives=OBJS, points=0, eval_seed=-1).validate(check_objectives=False)


# ------------------------------------------------------------------------------------------------ fixed once made

@pytest.mark.parametrize("make, name", [(lambda: TrainConfig(), "steps"), (lambda: TrainConfig(), "anchor"),
                                        (lambda: TrainConfig(), "method_settings"),
                                        (lambda: SweepConfig(), "points"), (lambda: SweepConfig(), "steps"),
                                        (lambda: SweepConfig(), "run")])
def test_a_config_cannot_be_changed_once_made(make, name):
    cfg = make()
    before = cfg.to_dict()
    with pytest.raises(AttributeError, match=f"fixed once it is made.*dataclasses.replace\\(cfg, {name}="):
        setattr(cfg, name, 3)
    with pytest.raises(AttributeError, match="fixed once it is made"):
        delattr(cfg, name)
    assert cfg.to_dict() == before
    changed = dataclasses.replace(cfg, steps=7)
    assert changed.steps == 7 and cfg.steps == before["steps"]


def test_the_settings_parts_are_frozen_too():
    cfg = SweepConfig(objectives=OBJS)
    for part, name in ((cfg.run.method_settings, "anchor"), (cfg.run.conditioning_settings, "conditioned"),
                       (cfg.grid, "points"), (cfg.evaluation, "eval_seed")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(part, name, 1)


# ------------------------------------------------------------------------------------------------ one default each

def test_the_anchor_has_one_default_the_pama_settings():
    for fn in (alg.pama_combine, alg.pama_combine_batch_mean):
        assert inspect.signature(fn).parameters["anchor"].default is inspect.Parameter.empty, fn.__name__
    assert TrainConfig().anchor == SweepConfig().anchor == PamaSettings().anchor
    # no function of pama/ gives a parameter named anchor a default of its own
    found = []
    for path in sorted((REPO / "pama").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                pos = a.posonlyargs + a.args
                with_default = pos[len(pos) - len(a.defaults):] + [k for k, d in zip(a.kwonlyargs, a.kw_defaults) if d]
                found += [f"{path.relative_to(REPO)}:{node.lineno} {node.name}" for x in with_default
                          if x.arg == "anchor"]
    assert not found, found


def test_every_flat_field_has_one_home_and_the_flat_form_round_trips():
    names = [n for cls in (TrainConfig, PamaSettings, MorlhfSettings, MgdaSettings, ConditioningSettings, GridSettings,
                           EvalSettings) for n in (f.name for f in dataclasses.fields(cls))
             if n not in ("method_settings", "conditioning_settings")]
    assert len(names) == len(set(names)), "a flat name is defined twice"
    sweep = SweepConfig(objectives=OBJS, anchor=0.2, conditioned=True, points=2, eval_seed=9, steps=3)
    assert from_dict(SweepConfig, sweep.to_dict()) == sweep
    assert dataclasses.replace(sweep, anchor=0.4).run.method_settings == PamaSettings(anchor=0.4)


def test_the_forms_conditioned_adapter_starts_from_the_quick_front_preset_keeping_changed_fields():
    """Issue 24: 'one conditioned adapter' with every field at its default trains the quick-front recipe; a field
    the user changed keeps its value; a plain sweep does not take the preset."""
    from pama.app import forms
    from pama.config import PRESETS, SweepConfig

    plain = SweepConfig()
    form = dict(model="tiny-random", objectives=["sentiment", "conciseness"], method="pama", preset="(none)",
                steps=plain.steps, max_new_tokens=plain.max_new_tokens, anchor=plain.anchor, batch_size=8,
                eval_samples=plain.eval_samples, conditioned=True)
    cfg = forms.build_train_config(form, sweep=True)
    quick = PRESETS["quick-front"]
    assert cfg.preset == "quick-front" and cfg.steps == quick["steps"] and cfg.anchor == quick["anchor"]
    assert cfg.max_new_tokens == quick["max_new_tokens"] and cfg.eval_round == quick["eval_round"]
    assert cfg.batch_size == 8                        # changed on the form: kept
    grid = forms.build_train_config(dict(form, conditioned=False, points=2), sweep=True)
    assert not grid.preset and grid.steps == plain.steps and grid.eval_round == 0


def test_the_complaints_preset_is_the_demo_fronts_recipe():
    """`--preset complaints` trains what demo/front/sweep.yaml trained (issue 23's trade-off that is not length):
    every setting the preset names has the demo's value, and a sweep from the preset and the demo's grid equals the
    demo's config."""
    from pama.config import PRESETS, SweepConfig
    from test_demo import _demo_config

    shipped = _demo_config("front")
    preset = PRESETS["complaints"]
    assert {k: shipped[k] for k in preset} == preset
    from_preset = from_dict(SweepConfig, dict(preset="complaints", points=2)).validate().to_dict()
    # threads: the demo's sweep.yaml pins one thread per end (its trajectory: summation order), the preset does not
    assert {k for k in shipped if shipped[k] != from_preset[k]} == {"preset", "threads"}
    assert shipped["threads"] == 1 and shipped["target_kl"] == 0 and shipped["kl_coef"] == 0.05
