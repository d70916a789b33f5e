"""Our decode loop: the same tokens as transformers' generate where that is deterministic, the right distribution
where it samples, and LoRA weights merged only for the loop and restored bit for bit."""
from __future__ import annotations

import copy
import sys

import pytest
import torch

import pama
from pama import adapters as adp
from pama import models, sampling

PROMPTS = ["Tell me a story.", "x " * 30, "What is the capital of France? Answer briefly please."]


def _assert_greedy_matches_generate(model, tok, prompts, max_new_tokens: int) -> None:
    enc = models.encode(tok, prompts)
    hf = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    ours = sampling.sample(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=max_new_tokens,
                           eos_ids=models.eos_ids(model, tok), pad_id=tok.pad_token_id, temperature=0)
    assert torch.equal(ours, hf[:, enc["input_ids"].shape[1]:])


def test_greedy_matches_transformers_generate_with_left_padding_and_lora(tiny, random_lora):
    _assert_greedy_matches_generate(random_lora(seed=1), tiny[1], PROMPTS, 12)


def test_rows_stop_at_their_first_eos_and_are_padded_after(tiny):
    base, tok = tiny
    enc = models.encode(tok, PROMPTS)
    free = sampling.sample(base, enc["input_ids"], enc["attention_mask"], max_new_tokens=10, eos_ids=set(),
                           pad_id=tok.pad_token_id, temperature=0)
    stop = int(free[0, 3])  # pretend row 0's 4th token ends a response
    new = sampling.sample(base, enc["input_ids"], enc["attention_mask"], max_new_tokens=10, eos_ids={stop},
                          pad_id=tok.pad_token_id, temperature=0)
    first = int((free[0] == stop).nonzero()[0])
    assert torch.equal(new[0, :first + 1], free[0, :first + 1])
    assert (new[0, first + 1:] == tok.pad_token_id).all()
    for row in range(1, len(PROMPTS)):  # rows that never produce it run on unchanged
        if stop not in free[row].tolist():
            assert torch.equal(new[row, :new.shape[1]], free[row, :new.shape[1]])
    assert not new.is_inference()  # the loop runs in inference mode; its ids must still feed a training forward
    emb = torch.nn.Embedding(tok.vocab_size + 8, 4)
    emb(new).sum().backward()  # an inference tensor could not be saved for backward


def test_draw_follows_the_softmax_at_the_temperature():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0]]).repeat(20_000, 1)
    g = torch.Generator().manual_seed(0)
    for temperature in (1.0, 0.5):
        tokens = sampling.draw(logits, temperature=temperature, generator=g)
        freq = torch.bincount(tokens, minlength=5).float() / len(tokens)
        expected = torch.softmax(logits[0] / temperature, -1)
        # 20,000 draws: the standard error of each frequency is below 0.0036; 5 of them is a loose bound
        assert (freq - expected).abs().max() < 0.018, (freq, expected)
        assert freq[4] == 0


def test_zero_probability_and_out_of_nucleus_tokens_are_never_drawn():
    probs = torch.tensor([0.0, 0.5, 0.3, 0.15, 0.05, 0.0])
    logits = probs.log().unsqueeze(0).repeat(5_000, 1)
    g = torch.Generator().manual_seed(1)
    tokens = sampling.draw(logits, temperature=1.0, top_p=0.75, generator=g)
    assert set(tokens.tolist()) == {1, 2}  # 0.5 < 0.75 needs the second most likely token; 0.8 ≥ 0.75 stops
    share = (tokens == 1).float().mean()
    assert abs(share - 0.5 / 0.8) < 0.03
    filtered = sampling.filter_top_p(torch.softmax(logits[:1], -1), 0.01)
    assert filtered.nonzero()[:, 1].tolist() == [1]  # the most likely token always survives
    assert torch.equal(sampling.draw(logits[:3], temperature=0), torch.tensor([1, 1, 1]))


def test_seeded_sampling_is_reproducible_and_seeds_differ(tiny):
    base, tok = tiny
    a = models.generate(base, tok, PROMPTS, max_new_tokens=8, temperature=1.0, seed=5)
    b = models.generate(base, tok, PROMPTS, max_new_tokens=8, temperature=1.0, seed=5)
    c = models.generate(base, tok, PROMPTS, max_new_tokens=8, temperature=1.0, seed=6)
    assert a == b and a != c


def test_merged_lora_computes_the_same_and_restores_the_weights_exactly(tiny, random_lora):
    base, tok = tiny
    model = random_lora(seed=2)
    ids = tok(PROMPTS, return_tensors="pt", padding=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        unmerged = model(**ids).logits
        with sampling.merged_lora(model):
            merged = model(**ids).logits
            changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
        after = model(**ids).logits
    assert changed and all("base_layer" in n for n in changed)  # the base weights really held the update
    torch.testing.assert_close(merged, unmerged, atol=2e-5, rtol=1e-4)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert torch.equal(after, unmerged)
    base_before = {n: p.detach().clone() for n, p in base.named_parameters()}
    with torch.no_grad():
        plain = base(**ids).logits
        with sampling.merged_lora(base):  # a model without LoRA passes through: same weights, same logits
            assert all(torch.equal(p, base_before[n]) for n, p in base.named_parameters())
            assert torch.equal(base(**ids).logits, plain)
        assert torch.equal(base(**ids).logits, plain)


def test_merged_lora_respects_mixtures_and_the_disabled_reference(tiny, random_lora, pama_home):
    base, tok = tiny
    folders = {}
    for name, seed in (("a", 3), ("b", 4)):
        folders[name] = pama_home / name
        random_lora(seed=seed).save_pretrained(folders[name])
    model = adp.load_adapters(copy.deepcopy(base), folders)
    ids = tok(PROMPTS, return_tensors="pt", padding=True)
    adp.mix(model, {"a": 0.3, "b": 0.7})
    with torch.no_grad():
        mixed = model(**ids).logits
        with sampling.merged_lora(model):
            torch.testing.assert_close(model(**ids).logits, mixed, atol=2e-5, rtol=1e-4)
        with adp.reference(model):
            ref = model(**ids).logits
            with sampling.merged_lora(model):
                assert torch.equal(model(**ids).logits, ref)
        assert torch.equal(model(**ids).logits, mixed)


@pytest.mark.parametrize("argv, env, expected", [
    (["-m", "train", "--steps", "3"], {}, None),
    (["-m", "sweep"], {}, None),
    (["-m", "front"], {}, "PASSIVE"),
    (["app.py"], {}, "PASSIVE"),
    (["-m", "train"], {"PAMA_OMP_WAIT": "passive"}, "PASSIVE"),
    (["app.py"], {"PAMA_OMP_WAIT": "default"}, None),
    (["app.py"], {"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
    # a child of a pama process that chose PASSIVE for itself decides afresh
    (["-m", "train"], {"OMP_WAIT_POLICY": "PASSIVE", "PAMA_OMP_WAIT_SET": "1"}, None),
])
def test_openmp_wait_policy_by_process_role(monkeypatch, argv, env, expected):
    for key in ("OMP_WAIT_POLICY", "PAMA_OMP_WAIT", "PAMA_OMP_WAIT_SET"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", argv)
    pama._set_omp_wait_policy()
    import os

    assert os.environ.get("OMP_WAIT_POLICY") == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_onednn_linears_give_the_same_logits_and_are_removed_after(tiny, dtype):
    base, tok = tiny
    base = base if dtype == torch.float32 else copy.deepcopy(base).to(dtype)
    ids = tok(PROMPTS, return_tensors="pt", padding=True)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    head = base.get_output_embeddings()
    assert sampling._onednn_linear() is not None  # the op exists in the pinned torch: the fast path is really tested
    routed = dtype in sampling.onednn_dtypes()  # bfloat16 is not on a CPU without AVX512 (or PAMA_ONEDNN_BF16=0)
    assert torch.float32 in sampling.onednn_dtypes()
    with torch.no_grad():
        plain = base(**ids).logits
        with sampling.onednn_linears(base, min_numel=0):
            assert ("forward" in vars(head)) == routed  # every Linear is rerouted, or none where the dtype can't be
            fast = base(**ids).logits
        assert not any("forward" in vars(m) for m in base.modules())
        torch.testing.assert_close(fast, plain, atol=tol, rtol=tol)
        with sampling.onednn_linears(base):  # layers below the size where oneDNN pays are left alone
            patched = {type(m) is torch.nn.Linear and m.weight.numel() >= 300_000
                       for m in base.modules() if "forward" in vars(m)}
            assert patched == ({True} if routed else set())  # the tiny model's 49,152-word head only


def _avx2_only_op(monkeypatch):
    """oneDNN's op as it behaves on an AVX2-only x86: float32 works, bfloat16 raises."""
    real = sampling._onednn_linear()

    def op(x, weight, *rest):
        if weight.dtype == torch.bfloat16:
            raise RuntimeError("could not create a primitive descriptor for the inner product forward propagation")
        return real(x, weight, *rest)

    monkeypatch.setattr(sampling, "_onednn_linear", lambda: op)


def test_bf16_layers_stay_on_f_linear_where_onednn_has_no_bf16_kernel(tiny, monkeypatch):
    base, tok = tiny
    _avx2_only_op(monkeypatch)
    model = copy.deepcopy(base).to(torch.bfloat16)
    ids = tok(PROMPTS, return_tensors="pt", padding=True)
    assert sampling.onednn_dtypes() == (torch.float32,)  # the per-dtype probe caught the failing kernel
    assert not sampling.bf16_native()
    with torch.no_grad():
        plain = model(**ids).logits
        with sampling.onednn_linears(model, min_numel=0):
            assert not any("forward" in vars(m) for m in model.modules())
            fallback = model(**ids).logits
        with sampling.onednn_linears(base, min_numel=0):  # float32 keeps its fast path
            assert "forward" in vars(base.get_output_embeddings())
    assert torch.equal(fallback, plain)


def test_pama_onednn_bf16_0_behaves_as_a_cpu_without_bf16(tiny, monkeypatch):
    base, tok = tiny
    model = copy.deepcopy(base).to(torch.bfloat16)
    ids = tok(PROMPTS, return_tensors="pt", padding=True)
    monkeypatch.setenv("PAMA_ONEDNN_BF16", "0")
    assert torch.bfloat16 not in sampling.onednn_dtypes() and not sampling.bf16_native()
    with torch.no_grad():
        plain = model(**ids).logits
        with sampling.onednn_linears(model, min_numel=0):
            assert not any("forward" in vars(m) for m in model.modules())
            assert torch.equal(model(**ids).logits, plain)
    enc = models.encode(tok, PROMPTS)  # the decode loop runs on F.linear (it raised here on an AVX2-only CPU)
    out = sampling.sample(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=4,
                          eos_ids=models.eos_ids(model, tok), pad_id=tok.pad_token_id, temperature=0)
    assert out.shape[0] == len(PROMPTS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prepacked_onednn_weights_give_the_same_logits_and_follow_in_place_changes(tiny, dtype, monkeypatch):
    """The prepacked path (the default; PAMA_ONEDNN_PREPACK=0 turns it off): weights packed once into oneDNN's layout for this CPU's ISA (AVX-512 or AVX2)."""
    base, tok = tiny
    model = base if dtype == torch.float32 else copy.deepcopy(base).to(dtype)
    ids = tok(PROMPTS, return_tensors="pt", padding=True)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert sampling._reorder_op() is not None  # the pinned torch has the op: the packed path is really tested
    assert torch.float32 in sampling.prepack_dtypes()  # any x86-64 with AVX2 packs float32
    packable = dtype in sampling.prepack_dtypes()  # bfloat16 only where oneDNN has bf16 kernels (not AVX2-only)
    head = model.get_output_embeddings()
    packed_calls = []
    real = sampling._onednn_linear()
    monkeypatch.setattr(sampling, "_onednn_linear",
                        lambda: lambda x, w, *rest: packed_calls.append(w.is_mkldnn) or real(x, w, *rest))
    with torch.no_grad():
        plain = model(**ids).logits
        original = head.weight.detach().clone()
        head.weight.mul_(2)
        doubled_plain = model(**ids).logits
        head.weight.copy_(original)
        with sampling.onednn_linears(model, min_numel=0, prepack=True, rows=len(PROMPTS)):
            packed = model(**ids).logits
            assert any(packed_calls) == packable
            head.weight.mul_(2)  # changed in place after packing: the current plain weight must be used
            doubled = model(**ids).logits
            head.weight.copy_(original)
        assert not any("forward" in vars(m) for m in model.modules())
    torch.testing.assert_close(packed, plain, atol=tol, rtol=tol)
    torch.testing.assert_close(doubled, doubled_plain, atol=tol, rtol=tol)


def test_prepack_falls_back_to_plain_weights_where_it_cannot_pack(tiny, monkeypatch):
    """Without the packing op (another torch build), or where packing fails for a dtype (bfloat16 on an AVX2-only
    x86), the layers keep oneDNN with plain weights, or F.linear: same results, nothing packed."""
    base, tok = tiny
    ids = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        plain = base(**ids).logits
    seen = []
    real = sampling._onednn_linear()

    def op(x, weight, *rest):
        seen.append(weight.is_mkldnn)
        return real(x, weight, *rest)

    monkeypatch.setattr(sampling, "_onednn_linear", lambda: op)
    monkeypatch.setattr(sampling, "_reorder_op", lambda: None)
    assert sampling.prepack_dtypes() == ()
    with torch.no_grad(), sampling.onednn_linears(base, min_numel=0, prepack=True):
        torch.testing.assert_close(base(**ids).logits, plain, atol=1e-5, rtol=1e-5)
    assert seen and not any(seen)  # oneDNN still ran, with the plain weights
    monkeypatch.undo()
    _avx2_only_op(monkeypatch)
    assert sampling.prepack_dtypes() == (torch.float32,)  # as on an AVX2-only CPU: bfloat16 neither runs nor packs


def test_prepacked_decoding_samples_the_same_tokens_as_plain_weights(tiny, random_lora, monkeypatch):
    tok = tiny[1]
    model = random_lora(seed=2)
    enc = models.encode(tok, PROMPTS)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def run():
        return sampling.sample(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=8, eos_ids=set(),
                               pad_id=tok.pad_token_id, temperature=0)

    monkeypatch.setenv("PAMA_ONEDNN_PREPACK", "0")
    assert not sampling.prepack_requested()
    plain = run()
    packs = []
    reorder = sampling._reorder_op()
    counting = lambda w, rows: packs.append(rows) or reorder(w, rows)
    monkeypatch.setattr(sampling, "_reorder_op", lambda: counting)
    monkeypatch.delenv("PAMA_ONEDNN_PREPACK")  # the default: on
    assert sampling.prepack_requested()
    sampling.prepack_dtypes()  # the probe packs a small weight of its own once per op and dtype
    packs.clear()
    assert torch.equal(run(), plain)
    assert packs == [len(PROMPTS)]  # the tiny model's head, packed once per rollout for the batch's rows
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_onednn_linears_leave_autocast_and_mixed_dtypes_to_f_linear(tiny):
    base, tok = tiny
    ids = tok(PROMPTS, return_tensors="pt", padding=True)
    head = base.get_output_embeddings()
    with torch.no_grad(), sampling.onednn_linears(base, min_numel=0):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert base(**ids).logits.dtype == torch.bfloat16  # autocast still casts (oneDNN would fail here)
        with pytest.raises(RuntimeError):  # a bf16 input to a float32 layer errors exactly as F.linear does
            head(torch.randn(2, head.in_features, dtype=torch.bfloat16))


def test_onednn_linears_keep_lora_gradients_exact(random_lora, tiny, monkeypatch):
    """Frozen base layers on the gradient path go through _FrozenLinear; the adapter's gradients must not change."""
    tok = tiny[1]
    model = random_lora(seed=3)
    ids = tok(PROMPTS, return_tensors="pt", padding=True)

    def lora_grads():
        model.zero_grad(set_to_none=True)
        logits = model(**ids).logits
        (logits.log_softmax(-1)[..., :5].sum() + logits.pow(2).mean()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    plain = lora_grads()
    calls = []
    apply = sampling._FrozenLinear.apply
    monkeypatch.setattr(sampling._FrozenLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    with sampling.onednn_linears(model, min_numel=0):
        fast = lora_grads()
    assert calls  # the base layers above the first adapter really took the oneDNN path with a gradient
    assert plain.keys() == fast.keys() and len(plain) > 0
    for name in plain:
        torch.testing.assert_close(fast[name], plain[name], atol=1e-5, rtol=1e-4)


def test_dora_adapters_are_not_merged_but_still_sample_correctly(tiny, random_lora):
    tok = tiny[1]
    model = random_lora(seed=6, use_dora=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with sampling.merged_lora(model):  # ΔW alone would miss DoRA's magnitude: left unmerged
        assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    _assert_greedy_matches_generate(model, tok, PROMPTS[:2], 6)


def test_sharing_the_prompt_prefix_does_not_change_what_is_sampled(tiny, random_lora):
    tok = tiny[1]
    model = random_lora(seed=5)
    enc = models.encode(tok, PROMPTS)
    assert sampling.shared_prefix_length(enc["input_ids"], enc["attention_mask"], enc["input_ids"].shape[1]) > 0
    runs = [sampling.sample(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=12,
                            eos_ids=models.eos_ids(model, tok), pad_id=tok.pad_token_id, temperature=t, seed=3,
                            share_prefix=share)
            for t in (0, 1.0) for share in (False, True)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[2], runs[3])


# ------------------------------------------------------------------------------------- finished rows leave the batch

def _rows_per_call(model):
    """A forward pre-hook recording how many rows each model call computes."""
    calls = []
    handle = model.register_forward_pre_hook(lambda mod, args, kw: calls.append(kw["input_ids"].shape[0]),
                                             with_kwargs=True)
    return calls, handle


def test_finished_rows_leave_the_batch_and_draw_what_they_drew_in_it(tiny):
    """Issue 24: a row that ends stops costing compute (later decode steps run fewer rows), and every row samples
    exactly what it samples when finished rows stay in the batch: each keeps its uniform of the full batch's stream."""
    base, tok = tiny
    prompts = PROMPTS + ["Name a colour.", "Count to three."]
    enc = models.encode(tok, prompts)
    kw = dict(max_new_tokens=12, pad_id=tok.pad_token_id, temperature=1.0, seed=11, share_prefix=False)
    free = sampling.sample(base, enc["input_ids"], enc["attention_mask"], eos_ids=set(), **kw)
    stops = {int(free[0, 2]), int(free[1, 5])}   # rows 0 and 1 end early (and any row that writes these tokens)
    calls, handle = _rows_per_call(base)
    try:
        kept = sampling.sample(base, enc["input_ids"], enc["attention_mask"], eos_ids=stops, compact=False, **kw)
        n_kept = list(calls)
        calls.clear()
        left = sampling.sample(base, enc["input_ids"], enc["attention_mask"], eos_ids=stops, compact=True, **kw)
        n_left = list(calls)
    finally:
        handle.remove()
    assert torch.equal(left, kept)
    assert kept.shape[1] > 3 and (kept[0, 3:] == tok.pad_token_id).all()
    assert set(n_kept) == {len(prompts)} and n_left[0] == len(prompts)
    assert min(n_left) < len(prompts) and n_left == sorted(n_left, reverse=True)
    with sampling.compaction(False):   # the switch the benchmark's old way uses
        calls, handle = _rows_per_call(base)
        try:
            assert torch.equal(sampling.sample(base, enc["input_ids"], enc["attention_mask"], eos_ids=stops, **kw),
                               kept)
        finally:
            handle.remove()
        assert set(calls) == {len(prompts)}


def test_row_noise_is_what_a_seeded_batch_draws_for_each_row(tiny):
    """A row given its uniforms (row_noise) samples what it samples in its own seeded batch, in any batch: the rows
    of two differently seeded batches decoded together each draw what they drew alone."""
    base, tok = tiny
    a_prompts, b_prompts = PROMPTS[:2], PROMPTS[1:]
    kw = dict(max_new_tokens=8, eos_ids=models.eos_ids(base, tok), pad_id=tok.pad_token_id, temperature=1.0)

    def run(prompts, **extra):
        enc = models.encode(tok, prompts)
        return sampling.sample(base, enc["input_ids"], enc["attention_mask"], **kw, **extra)

    a, b = run(a_prompts, seed=3), run(b_prompts, seed=4)
    assert torch.equal(run(a_prompts, noise=sampling.row_noise(3, 2, 8)), a)
    noise = torch.cat([sampling.row_noise(3, 2, 8), sampling.row_noise(4, 2, 8)])
    together = run(a_prompts + b_prompts, noise=noise)
    # each row's response up to its width in its own batch (the joint batch runs as long as its longest row)
    for i, row in enumerate(list(a) + list(b)):
        assert torch.equal(together[i, :row.shape[0]], row)
    with pytest.raises(ValueError, match="noise must be"):
        run(a_prompts, noise=sampling.row_noise(3, 2, 4))


# ------------------------------------------------------------------------------------- KV cache written in place

def test_the_in_place_kv_cache_samples_what_the_growing_cache_samples(tiny, random_lora, monkeypatch):
    """Issue 24: the decode loop's preallocated KV cache (PAMA_DECODE_SLAB, default on) draws the same tokens as
    transformers' growing cache, with the shared prompt prefix, finished rows leaving the batch, and greedy decoding;
    it is really used (the cache's layers are SlabLayers during the loop)."""
    tok = tiny[1]
    model = random_lora(seed=4)
    prompts = PROMPTS + ["Name a colour."]
    enc = models.encode(tok, prompts)
    kw = dict(max_new_tokens=12, pad_id=tok.pad_token_id, seed=7)
    free = sampling.sample(model, enc["input_ids"], enc["attention_mask"], eos_ids=set(), temperature=1.0, **kw)
    stops = {int(free[0, 2]), int(free[2, 6])}   # rows end early: the batch shrinks mid-loop

    def run(temperature):
        return sampling.sample(model, enc["input_ids"], enc["attention_mask"], eos_ids=stops, temperature=temperature,
                               **kw)

    monkeypatch.setenv("PAMA_DECODE_SLAB", "0")
    assert not sampling.slab_cache_enabled()
    plain = [run(t) for t in (0, 1.0)]
    monkeypatch.delenv("PAMA_DECODE_SLAB")
    assert sampling.slab_cache_enabled()
    seen = []
    to_slab = sampling._to_slab
    monkeypatch.setattr(sampling, "_to_slab", lambda cache, cap: (to_slab(cache, cap), seen.append(
        {type(layer).__name__ for layer in cache.layers})))
    slab = [run(t) for t in (0, 1.0)]
    assert seen and all(kinds == {"SlabLayer"} for kinds in seen)
    assert all(torch.equal(a, b) for a, b in zip(plain, slab))
    assert plain[1].shape[1] > 3 and (plain[1][0, 3:] == tok.pad_token_id).all()


def test_slab_layer_keeps_what_a_growing_layer_keeps():
    """Past its capacity the in-place layer grows; selecting and repeating rows and cropping match DynamicLayer's."""
    from transformers.cache_utils import DynamicLayer

    g = torch.Generator().manual_seed(0)
    k0, v0 = torch.randn(3, 2, 4, 5, generator=g), torch.randn(3, 2, 4, 5, generator=g)
    ref = DynamicLayer()
    ref.update(k0, v0)
    slab = sampling.slab_layer_class()(k0, v0, 5)
    for step in range(4):   # capacity 5, 8 columns: it grows once
        rows = ref.keys.shape[0]
        k, v = torch.randn(rows, 2, 1, 5, generator=g), torch.randn(rows, 2, 1, 5, generator=g)
        for layer in (ref, slab):
            out = layer.update(k, v)
        assert torch.equal(out[0], ref.keys) and torch.equal(out[1], ref.values)
        if step == 1:
            for layer in (ref, slab):
                layer.batch_select_indices(torch.tensor([0, 2]))
        if step == 2:
            for layer in (ref, slab):
                layer.batch_repeat_interleave(2)
    assert slab.get_seq_length() == ref.get_seq_length() == 8 and slab.keys.shape == (4, 2, 8, 5)
    for layer in (ref, slab):
        layer.crop(-3)
    assert torch.equal(slab.keys, ref.keys) and torch.equal(slab.values, ref.values)


def test_fused_gate_up_matmul_gives_the_same_logits_bit_for_bit(tiny, monkeypatch):
    """Issue 24: with prepacked weights each gated MLP's gate and up projections run as one oneDNN matmul
    (PAMA_FUSED_MLP, default on): one call fewer per layer, and the logits are equal to the two-call ones exactly;
    an active LoRA adapter on those projections (not merged) makes the MLP compute as its own class does."""
    from peft import LoraConfig, get_peft_model

    base, tok = tiny
    ids = tok(PROMPTS, return_tensors="pt", padding=True)
    n_layers = base.config.num_hidden_layers
    real, calls = sampling._onednn_linear(), []
    counting = lambda *a: calls.append(1) or real(*a)   # noqa: E731  one object: the exactness probe is cached per op
    monkeypatch.setattr(sampling, "_onednn_linear", lambda: counting)

    def logits(model, fused: bool):
        monkeypatch.setenv("PAMA_FUSED_MLP", "1" if fused else "0")
        calls.clear()
        with torch.inference_mode(), sampling.onednn_linears(model, min_numel=0, prepack=True, rows=len(PROMPTS)):
            out = model(**ids).logits
        assert not any("forward" in vars(m) for m in model.modules())
        return out, len(calls)

    logits(base, True)   # the first context probes whether fusing is exact here (cached afterwards)
    (apart, n_apart), (fused, n_fused) = logits(base, False), logits(base, True)
    assert torch.equal(fused, apart)
    assert n_apart - n_fused == n_layers

    lora = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj"],
                                                          init_lora_weights=False)).eval()
    with torch.inference_mode():
        reference = lora(**ids).logits
    (active_apart, _), (active_fused, _) = logits(lora, False), logits(lora, True)
    assert torch.equal(active_fused, active_apart)   # the adapters are on: nothing is fused
    assert not torch.allclose(reference, base(**ids).logits.detach(), atol=1e-3)   # and they do change the logits
    torch.testing.assert_close(active_fused, reference, atol=1e-5, rtol=1e-5)
