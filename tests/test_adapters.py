"""Exact adapter mixing: Σ w_i ΔW_i through per-adapter scalings equals weights merged by hand; validation."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch

from pama import adapters as adp


def _make_adapter(base, folder, *, r, alpha, seed):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=r, lora_alpha=alpha, target_modules=["q_proj", "v_proj"],
                                                           lora_dropout=0.0, task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:  # random non-zero A and B (B is zero at initialisation)
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model.save_pretrained(folder)
    return folder / "default" if (folder / "default").exists() else folder


def _delta(folder, r, alpha):
    """{module name: ΔW = (alpha/r)·B A} from the saved state dict."""
    from safetensors.torch import load_file

    sd = load_file(folder / "adapter_model.safetensors")
    out = {}
    for k, a in sd.items():
        if k.endswith("lora_A.weight"):
            b = sd[k.replace("lora_A", "lora_B")]
            mod = k.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            out[mod] = (alpha / r) * b @ a
    return out


def _merged(base, deltas_weights):
    m = copy.deepcopy(base)
    mods = dict(m.named_modules())
    with torch.no_grad():
        for delta, w in deltas_weights:
            for name, d in delta.items():
                mods[name].weight += w * d
    return m


@pytest.fixture
def two(tiny, pama_home):
    base, tok = tiny
    pa = _make_adapter(base, pama_home / "runs" / "ra" / "adapter", r=4, alpha=8, seed=1)
    pb = _make_adapter(base, pama_home / "runs" / "rb" / "adapter", r=2, alpha=6, seed=2)
    model = adp.load_adapters(copy.deepcopy(base), {"a": pa, "b": pb})
    ids = tok(["Hello there, how are you?", "Write a short poem"], return_tensors="pt", padding=True)
    return dict(base=base, model=model, ids=ids, da=_delta(pa, 4, 8), db=_delta(pb, 2, 6), pa=pa, pb=pb)


def _logits(model, ids):
    with torch.no_grad():
        return model(**ids).logits


def test_mixing_is_exact_against_hand_merged_weights(two):
    model, ids = two["model"], two["ids"]
    assert two["da"] and two["db"]
    for wa, wb in [(0.3, 0.7), (0.5, 0.5), (1.0, 0.0), (0.0, 1.0), (0.25, 0.9)]:
        adp.mix(model, {"a": wa, "b": wb})
        ref = _merged(two["base"], [(two["da"], wa), (two["db"], wb)])
        torch.testing.assert_close(_logits(model, ids), _logits(ref, ids), atol=2e-5, rtol=1e-4)
    # the effect is real: the mixture differs from both ends and from the base
    adp.mix(model, {"a": 0.5, "b": 0.5})
    mid = _logits(model, ids)
    assert (mid - _logits(two["base"], ids)).abs().max() > 1e-3


def test_weight_one_zero_reproduces_the_single_adapter(two, tiny):
    from peft import PeftModel

    model, ids = two["model"], two["ids"]
    single = PeftModel.from_pretrained(copy.deepcopy(tiny[0]), str(two["pa"]))
    adp.mix(model, {"a": 1.0, "b": 0.0})
    torch.testing.assert_close(_logits(model, ids), _logits(single, ids), atol=1e-6, rtol=1e-6)


def test_switching_back_and_forth_is_stable_and_does_not_compound(two):
    model, ids = two["model"], two["ids"]
    adp.mix(model, {"a": 0.3, "b": 0.7})
    first = _logits(model, ids)
    for _ in range(3):
        adp.mix(model, {"a": 0.9, "b": 0.1})
        adp.use_base(model)
        adp.mix(model, {"a": 0.3, "b": 0.7})
    torch.testing.assert_close(_logits(model, ids), first, atol=0, rtol=0)
    adp.unmix(model, "b")
    torch.testing.assert_close(_logits(model, ids), _logits(_merged(two["base"], [(two["db"], 1.0)]), ids),
                               atol=2e-5, rtol=1e-4)


def test_base_and_reference_and_context_manager(two):
    model, ids, base = two["model"], two["ids"], two["base"]
    base_logits = _logits(base, ids)
    adp.use_base(model)
    torch.testing.assert_close(_logits(model, ids), base_logits, atol=1e-6, rtol=1e-6)
    adp.mix(model, {"a": 0.4, "b": 0.6})
    mixed = _logits(model, ids)
    with adp.reference(model):
        torch.testing.assert_close(_logits(model, ids), base_logits, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(_logits(model, ids), mixed)
    with adp.mixed(model, {"a": 1.0}):
        assert adp.current_mixture(model) == {"a": 1.0}
    torch.testing.assert_close(_logits(model, ids), mixed)
    with adp.mixed(model, None):
        torch.testing.assert_close(_logits(model, ids), base_logits, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(_logits(model, ids), mixed)


def test_extrapolation_warns_and_is_still_exact(two):
    model, ids = two["model"], two["ids"]
    with pytest.warns(UserWarning, match="extrapolate"):
        adp.mix(model, {"a": 1.5, "b": -0.5})
    ref = _merged(two["base"], [(two["da"], 1.5), (two["db"], -0.5)])
    torch.testing.assert_close(_logits(model, ids), _logits(ref, ids), atol=5e-5, rtol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adp.mix(model, {"a": 0.2, "b": 0.8})  # inside [0, 1]: no warning


def test_unknown_adapter_and_bad_weights_are_refused(two):
    with pytest.raises(adp.AdapterError, match="unknown adapter.*'c'"):
        adp.mix(two["model"], {"a": 0.5, "c": 0.5})
    with pytest.raises(adp.AdapterError, match="finite"):
        adp.mix(two["model"], {"a": float("nan")})


def test_paths_outside_the_roots_missing_or_corrupt_are_refused(tiny, pama_home, tmp_path):
    base = tiny[0]
    outside = _make_adapter(base, tmp_path / "elsewhere", r=2, alpha=4, seed=3)
    with pytest.raises(adp.AdapterError, match="refusing to load"):
        adp.load_adapters(copy.deepcopy(base), {"x": outside})
    with pytest.raises(adp.AdapterError, match="does not exist"):
        adp.load_adapters(copy.deepcopy(base), {"x": pama_home / "runs" / "nope" / "adapter"})
    good = _make_adapter(base, pama_home / "runs" / "rc" / "adapter", r=2, alpha=4, seed=3)
    weights = good / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(adp.AdapterError, match="adapter_model.safetensors is corrupt or truncated"):
        adp.load_adapters(copy.deepcopy(base), {"x": good})
    weights.write_bytes(data)
    (good / "adapter_config.json").write_text("{not json")
    with pytest.raises(adp.AdapterError, match="adapter_config.json is corrupt"):
        adp.load_adapters(copy.deepcopy(base), {"x": good})


# ------------------------------------------------------------------------------------------------ CLI generate

def _cli_generate(capsys, *flags) -> tuple[int, str, str]:
    from pama.cli import main

    rc = main(["generate", "Describe a rainy day.", "--max-new-tokens", "6", "--seed", "3", *flags])
    out, err = capsys.readouterr()
    return rc, out.split("\n", 1)[1].rstrip("\n") if rc == 0 else out, err


def _expected(model, tok, weights):
    from pama import models

    with adp.mixed(model, weights):
        return models.generate(model, tok, ["Describe a rainy day."], max_new_tokens=6, temperature=0.7, seed=3)[0]


@pytest.fixture
def two_runs(tiny, store, pama_home):
    ids = {}
    for name, seed in (("a", 11), ("b", 12)):
        folder = _make_adapter(tiny[0], pama_home / "adapters" / name, r=4, alpha=8, seed=seed)
        rid = store.create_run(name=name, method="pama", model="tiny-random", config={}, total_steps=1,
                               objectives=[dict(name="sentiment", lower=-1.0, upper=1.0)])
        store.update_run(rid, adapter_path=str(folder))
        ids[name] = (rid, folder)
    ids["c"] = (store.create_run(name="c", method="pama", model="tiny-random", config={}, total_steps=1,
                                 objectives=[dict(name="sentiment", lower=-1.0, upper=1.0)]), None)  # no checkpoint
    return ids


def test_cli_generate_with_a_run_an_adapter_folder_and_an_exact_mixture(tiny, two_runs, capsys):
    from pama import models

    (ra, fa), (rb, fb) = two_runs["a"], two_runs["b"]
    base, tok = models.load("tiny-random")
    model = adp.load_adapters(base, {ra: fa, rb: fb})
    expect = {"base": _expected(model, tok, None), "a": _expected(model, tok, {ra: 1.0}),
              "mix": _expected(model, tok, {ra: 0.3, rb: 0.7})}
    assert len(set(expect.values())) == 3  # the three really differ, so the comparisons below can fail
    assert _cli_generate(capsys, "--model", "tiny-random")[1] == expect["base"]
    assert _cli_generate(capsys, "--run", ra)[1] == expect["a"]  # the run's model (tiny-random) by default
    assert _cli_generate(capsys, "--model", "tiny-random", "--adapter", str(fa))[1] == expect["a"]
    assert _cli_generate(capsys, "--mix", f"{ra}=0.3,{rb}=0.7")[1] == expect["mix"]


@pytest.mark.parametrize("flags, fragment", [
    (["--run", "r-nope"], "run r-nope is not in the store"),
    (["--run", "{c}"], "has no saved adapter yet"),
    (["--mix", "{a}=1"], "needs two different adapters"),
    (["--mix", "{a}=0.5,{a}=0.5"], "appears twice"),
    (["--mix", "{a}:0.5,{b}=0.5"], "must read RUN_ID=weight"),
    (["--mix", "{a}=x,{b}=0.5"], "must be a number"),
    (["--mix", "{a}=nan,{b}=0.5"], "must be finite"),
    (["--mix", "{a}=0.5,r-nope=0.5"], "run r-nope is not in the store"),
    (["--adapter", "/tmp"], "refusing to load"),
])
def test_cli_generate_refuses_what_the_app_refuses(two_runs, capsys, flags, fragment):
    flags = [f.format(a=two_runs["a"][0], b=two_runs["b"][0], c=two_runs["c"][0]) for f in flags]
    rc, _, err = _cli_generate(capsys, "--model", "tiny-random", *flags)
    assert rc == 2 and fragment in err, err


def test_cli_generate_takes_one_source_only(two_runs, capsys):
    with pytest.raises(SystemExit):
        _cli_generate(capsys, "--run", two_runs["a"][0], "--adapter", str(two_runs["a"][1]))
    assert "not allowed with" in capsys.readouterr().err
