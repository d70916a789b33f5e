"""The preference-conditioned adapter (pama.conditioning, docs/conditioned.md) on the tiny model: the gates change the
logits with p, materialize equals the gated forward, save + load is exact, per-row preferences in one batch equal
each row alone (sampling and the shared prompt prefix included), and bad preferences are refused with a fix."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch

from pama import conditioning as cond
from pama import models, sampling

N = 2          # objectives
R = 4          # learnable singular values
OBJECTIVES = ["informativeness", "conciseness"]
PROMPTS = ["Describe a rainy day.", "Name three fruits.", "What is a prime number?"]


def _randomise(model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_A" in n or "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif n.endswith("sigma"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif n.endswith("scale"):
                p.copy_(torch.rand(p.shape, generator=g) * 2 + 0.5)


@pytest.fixture
def conditioned(tiny):
    """A factory: the tiny model under an svd-conditioned LoRA (rank R + N on q/v) with random A, B, σ and s."""
    from peft import LoraConfig, get_peft_model

    def make(seed: int = 0):
        model = get_peft_model(copy.deepcopy(tiny[0]), LoraConfig(
            r=R + N, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM"))
        cond.attach_gates(model, N, objectives=OBJECTIVES, model_spec=models.TINY_MODEL)
        _randomise(model, seed)
        return model.eval()

    return make


def _logits(model, tok, prompts=PROMPTS):
    enc = models.encode(tok, list(prompts))
    with torch.no_grad():
        return model(**enc).logits


def test_gates_start_at_zero_update_and_train(tiny):
    """σ = 1, s = 1 and PEFT's B = 0: a fresh conditioned adapter computes the base model at every p; σ, s train."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(tiny[0]), LoraConfig(r=R + N, target_modules=["q_proj"],
                                                              task_type="CAUSAL_LM"))
    info = cond.attach_gates(model, N, objectives=OBJECTIVES)
    assert (info.r, info.n, info.form) == (R, N, "svd")
    gates = [p for n, p in model.named_parameters() if "pama_gates" in n]
    assert gates and all(p.requires_grad for p in gates)
    base = _logits(tiny[0], tiny[1])
    for p in ([1.0, 0.0], [0.3, 0.7]):
        with cond.preference(model, p):
            torch.testing.assert_close(_logits(model, tiny[1]), base)


def test_conditioning_changes_the_logits_as_p_changes(conditioned, tiny):
    model = conditioned()
    outs = []
    for p in ([1.0, 0.0], [0.5, 0.5], [0.0, 1.0]):
        with cond.preference(model, p):
            outs.append(_logits(model, tiny[1]))
    assert not torch.allclose(outs[0], outs[1], atol=1e-4) and not torch.allclose(outs[1], outs[2], atol=1e-4)
    with pytest.raises(cond.ConditioningError, match="preference"):
        _logits(model, tiny[1])   # no preference set: refused, not silently computed


@pytest.mark.parametrize("p", [[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]])
def test_materialize_equals_the_gated_forward(conditioned, tiny, p):
    """At one-hot e_i the adapter is the plain LoRA ΔW = B·diag(σ, s·e_i)·A; at any p, materialize folds g(p) into A."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    model = conditioned(seed=1)
    with cond.preference(model, p):
        gated = _logits(model, tiny[1])
    state = cond.materialize(model, p)
    plain = get_peft_model(copy.deepcopy(tiny[0]), LoraConfig(
        r=R + N, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")).eval()
    set_peft_model_state_dict(plain, state)
    torch.testing.assert_close(_logits(plain, tiny[1]), gated, atol=1e-5, rtol=1e-5)
    # by hand for one layer: ΔW = scaling · B · diag(σ_1..σ_r, s·p) · A
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    gate = layer.pama_gates["default"]
    g = torch.cat([gate.sigma, gate.scale * torch.tensor(p)])
    with cond.preference(model, p):
        torch.testing.assert_close(gate.delta_weight(layer, "default"), layer.scaling["default"]
                                   * layer.lora_B["default"].weight @ torch.diag(g) @ layer.lora_A["default"].weight)


def test_save_and_load_give_identical_logits_at_three_preferences(conditioned, tiny, pama_home):
    model = conditioned(seed=2)
    folder = pama_home / "runs" / "r_cond" / "step-000001" / "adapter"
    model.save_pretrained(folder)
    cond.save_gates(model, folder)
    assert (folder / cond.CONFIG_FILE).is_file() and (folder / cond.GATES_FILE).is_file()
    data = cond.read_conditioning(folder)
    assert data["form"] == "svd" and data["objectives"] == OBJECTIVES and data["r"] == R and data["n"] == N
    loaded, tok, objectives = cond.load_conditioned(folder)
    assert objectives == OBJECTIVES
    for p in ([1.0, 0.0], [0.5, 0.5], [0.2, 0.8]):
        with cond.preference(model, p):
            want = _logits(model, tiny[1])
        with cond.preference(loaded, p):
            torch.testing.assert_close(_logits(loaded, tok), want)
    # materialize from the folder equals materialize from the model
    for k, v in cond.materialize(model, [0.4, 0.6]).items():
        torch.testing.assert_close(cond.materialize(folder, [0.4, 0.6])[k], v)


def test_per_row_preferences_equal_each_row_alone(conditioned, tiny):
    """One batch, one preference per row: the forward and greedy generation equal each row run alone with its own p
    (the chat template's shared system prefix is not shared then: the guard is what makes this pass)."""
    model = conditioned(seed=3)
    tok = tiny[1]
    prefs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.1, 0.9]])
    enc = models.encode(tok, PROMPTS)
    assert sampling.shared_prefix_length(enc["input_ids"], enc["attention_mask"], enc["input_ids"].shape[1]) > 0
    with cond.preference(model, prefs):
        assert sampling.rows_differ(model)
        batch = _logits(model, tok)
        texts = models.generate(model, tok, PROMPTS, max_new_tokens=8, temperature=0)
    assert not sampling.rows_differ(model)  # restored on exit
    for i, prompt in enumerate(PROMPTS):
        with cond.preference(model, prefs[i]):
            alone = _logits(model, tok, [prompt])
            assert models.generate(model, tok, [prompt], max_new_tokens=8, temperature=0) == [texts[i]]
        n = alone.shape[1]
        torch.testing.assert_close(batch[i, -n:], alone[0], atol=1e-4, rtol=1e-4)
    # the same prompt at three preferences in one batch: the preference changes what is written
    same = [PROMPTS[0]] * 3
    with cond.preference(model, prefs):
        rows = models.generate(model, tok, same, max_new_tokens=8, temperature=0)
    assert len(set(rows)) > 1


def test_one_preference_merges_the_gated_update_exactly(conditioned, tiny):
    model = conditioned(seed=4)
    tok = tiny[1]
    enc = models.encode(tok, PROMPTS)
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    with cond.preference(model, [0.3, 0.7]):
        kw = dict(max_new_tokens=8, eos_ids=models.eos_ids(model, tok), pad_id=tok.pad_token_id, temperature=0)
        merged = sampling.sample(model, enc["input_ids"], enc["attention_mask"], merge_lora=True, **kw)
        unmerged = sampling.sample(model, enc["input_ids"], enc["attention_mask"], merge_lora=False, **kw)
    assert torch.equal(merged, unmerged)
    for n, p in model.named_parameters():
        if n in weights:
            assert torch.equal(p, weights[n]), n


def test_generate_at_prefix_form_writes_the_preference_before_the_prompt(tiny):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(tiny[0]), LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    cond.register_prefix(model, OBJECTIVES)
    assert cond.prompts_at(model, ["Hi."], [0.3, 0.7]) == [
        "Preference weights: informativeness 0.30, conciseness 0.70\n\nHi."]
    with pytest.warns(UserWarning, match="does not sum to 1"):  # normalised, as every preference (pama.preference)
        assert cond.prompt_prefix(model, [1, 3]) == "Preference weights: informativeness 0.25, conciseness 0.75\n\n"
    texts = cond.generate_at(model, tiny[1], ["Hi.", "Bye."], [0.3, 0.7], max_new_tokens=4, temperature=0)
    assert len(texts) == 2


@pytest.mark.parametrize("p, fragment", [
    ([0.2, 0.3, 0.5], "3 entries but there are 2 objectives .informativeness, conciseness."),
    ([0.5, -0.5], "finite and non-negative"),
    ([0.0, 0.0], "positive entry"),
    ("abc", "write one weight per objective"),
])
def test_bad_preferences_say_what_to_give(conditioned, p, fragment):
    model = conditioned()
    with pytest.raises(cond.ConditioningError, match=fragment):
        with cond.preference(model, p):
            pass


def test_a_plain_adapter_takes_no_preference(random_lora):
    with pytest.raises(cond.ConditioningError, match="no preference-conditioned adapter"):
        with cond.preference(random_lora(seed=0), [0.5, 0.5]):
            pass


# ------------------------------------------------------------------------------------------------ the store

def test_migration_0005_keeps_the_demo_front_and_admits_conditioned_points(tmp_path):
    """0004 → 0005 rewrites the points table (SQLite): the demo front's values and generations must survive (with
    SQLite's foreign keys on, dropping the old table would cascade-delete them), and conditioned points fit after."""
    import subprocess
    import sys

    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.exc import IntegrityError

    from pama import demo
    from pama.store import SCHEMA_HEAD, SchemaOutOfDateError, Store, alembic_config

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    s = Store(url)
    sweep_id = demo.import_demo(s)
    def raw(p):   # the raw values (the length-controlled lc_* are dropped by the downgrade, recomputed on demand)
        return {o: {k: v[k] for k in ("mean", "ci_low", "ci_high")} for o, v in p["values"].items()}

    before = {p["id"]: (p["kind"], raw(p)) for p in s.points()}
    gens = {p: len(s.generations(p)) for p in before}
    s.close()
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    with engine.begin() as conn, pytest.raises(IntegrityError):   # 0004's CHECK refuses the new kind
        conn.exec_driver_sql("UPDATE points SET kind = 'conditioned'")
    engine.dispose()
    with pytest.raises(SchemaOutOfDateError, match="python -m pama db upgrade"):
        Store(url)
    out = subprocess.run([sys.executable, "-m", "pama", "db", "upgrade", "--db", url], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    s = Store(url)
    assert s.schema_version() == SCHEMA_HEAD == "0007"
    assert {p["id"]: (p["kind"], raw(p)) for p in s.points()} == before
    assert {p: len(s.generations(p)) for p in before} == gens and sum(gens.values()) > 0
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    run_id = next(p["run_id"] for p in s.points() if p["run_id"])
    pid = s.add_point(kind="conditioned", label="c @ (0.30, 0.70)", model="tiny-random", sweep_id=sweep_id,
                      run_id=run_id, preference=[0.3, 0.7], values={"a": (0.1, 0.0, 0.2)})
    assert s.get_point(pid)["kind"] == "conditioned"
    with pytest.raises(ValueError, match="unknown point kind"):
        s.add_point(kind="nonsense", label="x", model="m", values={})
    s.close()


# ------------------------------------------------------------------------------------------------ training

TINY_RUN = dict(model="tiny-random", objectives=["sentiment", "conciseness"], conditioned=True, steps=2, batch_size=4,
                samples_per_prompt=2, max_new_tokens=6, save_every=1, learning_rate=1e-2, seed=0, threads=1,
                target_modules=["q_proj", "v_proj"])


def _run_cfg(**kw):
    from pama.config import TrainConfig

    return TrainConfig(**{**TINY_RUN, **kw})


@pytest.mark.parametrize("method, form", [("pama", "svd"), ("morlhf", "svd"), ("pama", "prefix")])
def test_a_conditioned_run_trains_draws_a_preference_per_group_and_saves_it(method, form, store):
    from pama import trainer

    t = trainer.Trainer(_run_cfg(method=method, conditioning=form).validate(), store, progress=False)
    ro = t.rollout(1)
    assert ro.preference.shape == (4, 2) and torch.allclose(ro.preference.sum(1), torch.ones(4))
    assert torch.equal(ro.preference[0], ro.preference[1]) and not torch.equal(ro.preference[1], ro.preference[2])
    assert t.value_heads.linear.in_features == t.model.config.hidden_size + 2
    if form == "svd":
        assert t.model.peft_config["default"].r == t.cfg.lora_r + 2
        assert ro.prompts[0] == ro.prompts[1] and "Preference weights" not in ro.prompts[0]
    else:  # the rollout read the preference line; the objectives scored the prompt as the user wrote it
        text = t.tokenizer.decode(ro.input_ids[0, :ro.query_len])
        assert "Preference weights: sentiment" in text and "Preference weights" not in ro.prompts[0]
    gates = {n: p.detach().clone() for n, p in t.model.named_parameters() if "pama_gates" in n}
    assert bool(gates) == (form == "svd")
    run_id = t.train()
    keys = {m["key"] for m in store.metrics(run_id)}
    assert {"preference/sentiment/mean", "preference/conciseness/mean", "loss/policy"} <= keys
    folder = Path(store.get_run(run_id)["adapter_path"])
    data = cond.read_conditioning(folder)
    assert data["form"] == form and data["objectives"] == ["sentiment", "conciseness"]
    if form == "svd":  # σ and s learn once B is non-zero (after the first step)
        assert any(not torch.equal(p.detach(), gates[n]) for n, p in t.model.named_parameters() if n in gates)
    if form == "svd":  # a changed preference changes the trained policy's log-probs (prefix: p is in the tokens)
        flipped = dataclasses.replace(ro, preference=ro.preference.flip(1))
        assert not torch.allclose(t._forward(ro, grad=False)[0], t._forward(flipped, grad=False)[0])


def test_a_conditioned_run_resumes_exactly_with_its_gates(store):
    """2 steps + a resumed 2 equal 4 in one go: the gates are saved and restored, the preferences redrawn alike."""
    import copy as cp

    from pama import trainer

    cfg = _run_cfg(steps=4)
    whole = trainer.Trainer(cp.deepcopy(cfg).validate(), store, progress=False)
    whole.train()
    half = trainer.Trainer(_run_cfg(steps=2).validate(), store, progress=False)
    half.train()
    torch.manual_seed(12345)
    resumed = trainer.Trainer(cp.deepcopy(cfg).validate(), store, run_id=half.run_id, progress=False)
    assert resumed.step == 2
    resumed.train()
    names = [n for n, p in whole.model.named_parameters() if p.requires_grad]
    assert any("pama_gates" in n for n in names)
    for (n, a), (_, b) in zip(whole.model.named_parameters(), resumed.model.named_parameters()):
        if a.requires_grad:
            torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6, msg=n)
    # a checkpoint without its gates is refused with what to do
    ckpt = trainer.latest_checkpoint(trainer.paths.run_dir(half.run_id))
    (ckpt / "adapter" / cond.GATES_FILE).unlink()
    with pytest.raises(trainer.CheckpointError, match="no loadable checkpoint"), \
            pytest.warns(UserWarning, match="corrupt or truncated"):
        trainer.Trainer(cp.deepcopy(cfg).validate(), store, run_id=half.run_id, progress=False)


def test_lora_r_0_trains_only_the_preference_directions_and_reloads(store, tiny):
    """lora_r 0 (svd form): no direction shared by every preference. At one-hot e_i the update is objective i's
    rank-1 direction alone, so the two ends share no LoRA weights; the run saves, reloads and materialises."""
    from pama import trainer
    from pama.config import ConfigError

    t = trainer.Trainer(_run_cfg(lora_r=0, lora_alpha=4).validate(), store, progress=False)
    assert t.model.peft_config["default"].r == 2
    run_id = t.train()
    layer = t.model.base_model.model.model.layers[0].self_attn.q_proj
    gate = layer.pama_gates["default"]
    assert gate.sigma.numel() == 0
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert B.abs().sum() > 0  # it trained
    for i, p in enumerate(([1.0, 0.0], [0.0, 1.0])):
        with cond.preference(t.model, p):
            delta = gate.delta_weight(layer, "default")
        own = layer.scaling["default"] * gate.scale * B[:, i:i + 1] @ A[i:i + 1]
        torch.testing.assert_close(delta, own.detach())
        assert torch.linalg.matrix_rank(delta).item() == 1
    folder = Path(store.get_run(run_id)["adapter_path"])
    assert cond.read_conditioning(folder)["r"] == 0
    resumed = trainer.Trainer(_run_cfg(lora_r=0, lora_alpha=4, steps=3).validate(), store, run_id=run_id,
                              progress=False)
    for (n, a), (_, b) in zip(t.model.named_parameters(), resumed.model.named_parameters()):
        if a.requires_grad:
            torch.testing.assert_close(b, a, msg=n)
    with pytest.raises(ConfigError, match="0 only for an svd-conditioned run"):
        _run_cfg(lora_r=0, conditioning="prefix").validate()
    with pytest.raises(ConfigError, match="lora_r must be a positive integer"):
        _run_cfg(lora_r=0, conditioned=False).validate()


@pytest.mark.parametrize("change, fragment", [
    (dict(method="mgda"), "conditioned: true works with method pama or morlhf, not mgda"),
    (dict(objectives=["sentiment"]), "at least two objectives"),
    (dict(conditioning="lora"), "conditioning must be svd or prefix"),
    (dict(preference_alpha=0.0), "preference_alpha must be > 0"),
    (dict(preference_sampling="random"), "preference_sampling must be dirichlet or grid"),
])
def test_bad_conditioned_configs_say_what_to_do(change, fragment, store):
    from pama import trainer
    from pama.config import ConfigError

    with pytest.raises(ConfigError, match=fragment):
        trainer.train(_run_cfg(**change), store, progress=False)
    assert store.list_runs() == []


def test_methods_that_take_a_preference_per_sample_are_the_configs():
    from pama.config import CONDITIONED_METHODS
    from pama.methods import METHODS

    assert {name for name, m in METHODS.items() if m.conditionable} == set(CONDITIONED_METHODS)


def test_grid_sampling_cycles_the_simplex_grid_with_noise():
    from pama.config import TrainConfig

    c = cond.make_conditioner(TrainConfig(objectives=["a", "b"], conditioned=True, preference_sampling="grid"),
                              ["a", "b"])
    p = c.draw(1, 11, 1)
    assert p.shape == (11, 2) and torch.allclose(p.sum(1), torch.ones(11))
    assert torch.allclose(p[:, 0], torch.linspace(1, 0, 11), atol=0.1)
    assert torch.equal(c.draw(3, 4, 2), c.draw(3, 4, 2))   # from (seed, step, rank) alone: resumable


# ------------------------------------------------------------------------------------------------ plots

def _point(pid, kind, pref, x, y, method="pama"):
    v = {"a": dict(mean=x, ci_low=x - 0.01, ci_high=x + 0.01), "b": dict(mean=y, ci_low=y - 0.01, ci_high=y + 0.01)}
    return dict(id=pid, kind=kind, label=pid, method=method, preference=pref, mixture=None, values=v, sweep_id="s",
                eval_config={})


def test_conditioned_points_are_one_series_joined_in_preference_order():
    from pama import plots

    pts = [_point("c3", "conditioned", [0.0, 1.0], 0.1, 0.9), _point("c1", "conditioned", [1.0, 0.0], 0.9, 0.1),
           _point("c2", "conditioned", [0.5, 0.5], 0.05, 0.05),   # dominated, still on the curve
           _point("a1", "adapter", [0.5, 0.5], 0.5, 0.6), _point("b", "base", None, 0.3, 0.3)]
    assert plots.preference_order(pts[:3]) == [0, 2, 1]      # p_1 = 0, 0.5, 1
    assert plots.group_of(pts[0]) == "pama conditioned" and plots.group_of(pts[3]) == "pama"
    data = plots.front_data(pts, ["a", "b"], bounds={o: dict(lower=0, upper=1) for o in "ab"})
    d = data["pama conditioned"]
    assert [d["points"][i]["id"] for i in d["order"]] == ["c3", "c2", "c1"]
    assert d["mask"].tolist() == [True, True, False] and d["hv"] > 0
    fig = plots.front_figure(pts, ["a", "b"], bounds={o: dict(lower=0, upper=1) for o in "ab"})
    line = next(t for t in fig.data if t.name == "pama conditioned front")
    assert list(line.x) == [0.1, 0.05, 0.9]
    assert any(t.marker.symbol == "square" for t in fig.data if t.mode == "markers")


# ------------------------------------------------------------------------------------------------ sweep and CLI

TINY_COND_SWEEP = ["--model", "tiny-random", "--objectives", "sentiment,conciseness", "--steps", "2",
                   "--batch-size", "2", "--samples-per-prompt", "1", "--max-new-tokens", "5", "--eval-samples", "3",
                   "--eval-max-new-tokens", "4", "--learning-rate", "0.01", "--save-every", "1", "--threads", "1",
                   "--target-modules", "q_proj,v_proj", "--quiet",
                   "--preset", ""]   # the plain defaults: every point on all its prompts (rounds: test_eval_rounds.py)


def test_a_conditioned_sweep_trains_one_run_and_stores_eleven_conditioned_points(store, capsys):
    from pama import fronts
    from pama.cli import main

    assert main(["sweep", "--conditioned", *TINY_COND_SWEEP]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # --quiet still logs the evaluation's progress (issue 24): 12 points (the base and 11 preferences)
    assert "evaluation: 1/12 points" in captured.err and "evaluation: 12/12 points · elapsed" in captured.err
    sweep_id = out.strip().splitlines()[-1].split()[-1]
    sweep = store.get_sweep(sweep_id)
    assert sweep["status"] == "finished" and sweep["name"].startswith("pama conditioned ×11")
    (run,) = store.list_runs(sweep_id=sweep_id)
    assert run["config"]["conditioned"] and run["status"] == "finished"
    points = store.points(sweep_id=sweep_id)
    cpts = [p for p in points if p["kind"] == "conditioned"]
    assert sorted(p["kind"] for p in points if p["kind"] != "conditioned") == ["base"] and len(cpts) == 11
    assert sorted(round(p["preference"][0], 2) for p in cpts) == [round(i / 10, 2) for i in range(11)]
    assert all(p["run_id"] == run["id"] and len(store.generations(p["id"])) == 3 for p in cpts)
    assert {p["eval_config"]["n_prompts"] for p in points} == {3}          # the sweep's own eval config
    assert {p["eval_config"]["conditioning"] for p in cpts} == {"svd"}
    summary = sweep["summary"]
    assert summary["n_points"]["conditioned"] == 11 and summary["hypervolume_conditioned"] > 0
    assert summary["hypervolume"] >= summary["hypervolume_conditioned"] and not summary["other_eval_point_ids"]
    rows, _ = fronts.front_table(store, sweep_id)
    assert len(rows) == 12 and "conditioned" in out and "conditioned " in fronts.format_table(rows, summary)

    # resuming is a no-op; a lost point is evaluated again, to the same values (same prompts, seeds, gates)
    before = (store.counts(), store.count_metrics())
    assert main(["sweep", "--resume", sweep_id, "--quiet"]) == 0
    assert (store.counts(), store.count_metrics()) == before
    lost = cpts[4]
    store.delete_point(lost["id"])
    assert main(["sweep", "--resume", sweep_id, "--quiet"]) == 0
    again = next(p for p in store.points(sweep_id=sweep_id, kind="conditioned")
                 if p["preference"] == lost["preference"])
    assert again["values"] == lost["values"]
    capsys.readouterr()

    # one preference from the CLI: the same point as the sweep's at that preference (same eval settings)
    args = ["evaluate", "--run", run["id"], "--preference", ",".join(map(str, lost["preference"])), "--samples", "3",
            "--max-new-tokens", "4", "--seed", "1234", "--quiet"]
    assert main(args) == 0
    single = store.points(run_id=run["id"], kind="conditioned")
    assert len(single) == 12 and any(p["sweep_id"] is None for p in single)
    assert main(["generate", "--run", run["id"], "--preference", "0.3,0.7", "--max-new-tokens", "4",
                 "Say hi."]) == 0
    assert "preference: sentiment 0.30, conciseness 0.70" in capsys.readouterr().out
    for bad, fragment in ((["--preference", "0.2,0.3,0.5"], "3 entries but there are 2 objectives"),
                          (["--preference=-1,2"], "finite and non-negative"),
                          (["--preference", "a,b"], "is not a number")):
        assert main(["generate", "--run", run["id"], *bad, "Say hi."]) == 2
        assert fragment in capsys.readouterr().err


def test_preferences_evaluated_together_equal_one_at_a_time(conditioned, tiny, monkeypatch):
    """Issue 24: evaluate_at_many (rows of several preferences in one decode batch, finished rows leaving it, the KL
    forwards on length-sorted rows) gives each preference the texts, lengths and values that evaluate_at gives it
    alone at the same seeds, and its KL to rounding; a short last seed batch and an odd preference out included."""
    from pama import evaluate as ev

    model, tok = conditioned(seed=5), tiny[1]
    prompts = PROMPTS + ["Say hi.", "Explain tides."]
    prefs = [[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]]
    kw = dict(seed=7, max_new_tokens=10, batch_size=2, temperature=0.7)
    # every 7th token id ends a response (the tiny model's next token is near uniform): rows end at different steps
    # and leave the batch
    stops = set(range(3, model.config.vocab_size, 7))
    real = models.eos_ids
    monkeypatch.setattr(models, "eos_ids", lambda m, t: real(m, t) | stops)
    objs = ["sentiment", "conciseness"]
    alone = [ev.evaluate_at(model, tok, objs, prompts, p, **kw) for p in prefs]
    seen = []
    together = ev.evaluate_at_many(model, tok, objs, prompts, prefs, rows=4, on_progress=lambda *a: seen.append(a),
                                   **kw)
    assert any(n < 10 for a in alone for n in a.lengths) and any(n > 1 for a in alone for n in a.lengths)
    assert seen == [(2, 5), (4, 5), (5, 5)]
    for a, t in zip(alone, together):
        assert t.texts == a.texts and t.lengths == a.lengths and t.eos_fraction == a.eos_fraction
        assert t.values == a.values
        assert t.kl_per_response == pytest.approx(a.kl_per_response, abs=1e-4) and abs(a.kl) > 0
        assert t.eval_config["preference"] == a.eval_config["preference"]
        assert {k: t.eval_config[k] for k in ("n_prompts", "seed", "max_new_tokens", "temperature", "batch_size")} == \
            {k: a.eval_config[k] for k in ("n_prompts", "seed", "max_new_tokens", "temperature", "batch_size")}
    assert len({tuple(t.texts) for t in together}) > 1   # the preferences did write differently


def test_preference_on_a_plain_run_is_refused(store, capsys):
    from pama import trainer
    from pama.cli import main

    run_id = trainer.train(_run_cfg(conditioned=False, steps=1), store, progress=False)
    assert main(["evaluate", "--run", run_id, "--preference", "0.5,0.5", "--quiet"]) == 2
    assert "--preference applies to conditioned runs only" in capsys.readouterr().err
    assert main(["generate", "--run", run_id, "--preference", "0.5,0.5", "Hi."]) == 2
    assert "drop --preference" in capsys.readouterr().err
    with pytest.raises(cond.ConditioningError, match="plain adapter"):
        cond.load_conditioned(run_id, store=store)


def test_a_conditioned_sweeps_progress_and_name_count_one_run():
    from pama import jobs, runs

    cfg = dict(method="pama", objectives=["a", "b"], points=5, conditioned=True)
    assert runs.sweep_shape(cfg) == (1, 11) and runs.default_sweep_name(cfg) == "pama conditioned ×11 a/b"
    assert runs.sweep_shape(dict(cfg, conditioned=False)) == (5, 5)
    assert runs.sweep_shape(dict(cfg, objectives=["a", "b", "c"])) == (1, 15)
    sweep = dict(config=cfg, objectives=["a", "b"], status="running")
    assert jobs.sweep_progress(sweep, [])["total"] == 1
    assert jobs.sweep_progress(sweep, [dict(status="finished")])["fraction"] == 1.0
