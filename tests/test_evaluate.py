"""Evaluation of a point: bootstrap intervals, reproducible sampling, KL to the reference, stored points."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from pama import evaluate as ev

PROMPTS = ["Describe a quiet beach.", "Give me a tip for sleeping well.", "Review the film Jaws.",
           "Explain what a battery does.", "Write a line about autumn."]


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    small = rng.normal(0.3, 1.0, size=20)
    large = rng.normal(0.3, 1.0, size=2000)
    m1, lo1, hi1 = ev.bootstrap_ci(small)
    m2, lo2, hi2 = ev.bootstrap_ci(large)
    assert lo1 <= m1 <= hi1 and lo2 <= m2 <= hi2
    assert m1 == pytest.approx(small.mean()) and m2 == pytest.approx(large.mean())
    assert (hi2 - lo2) < (hi1 - lo1) / 3
    assert ev.bootstrap_ci(small) == (m1, lo1, hi1)          # fixed RNG seed: reproducible
    assert ev.bootstrap_ci(small, confidence=0.5)[2] - ev.bootstrap_ci(small, confidence=0.5)[1] < hi1 - lo1
    assert ev.bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)
    with pytest.raises(ValueError):
        ev.bootstrap_ci([])


def test_distinct_n():
    assert ev.distinct_n(["a b a b"], 1) == pytest.approx(0.5)
    assert ev.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert ev.distinct_n([""], 2) == 0.0


def test_evaluate_base_is_reproducible_and_has_zero_kl(tiny):
    model, tok = tiny
    kw = dict(seed=7, max_new_tokens=5, batch_size=2)
    a = ev.evaluate_point(model, tok, ["sentiment", "conciseness"], PROMPTS, **kw)
    b = ev.evaluate_point(model, tok, ["sentiment", "conciseness"], PROMPTS, **kw)
    assert a.texts == b.texts and a.values == b.values
    assert a.kl == 0.0 and a.scores.shape == (2, len(PROMPTS))
    assert set(a.values) == {"sentiment", "conciseness"}
    for m, lo, hi in a.values.values():
        assert lo <= m <= hi
    assert 0 < a.mean_length <= 5 and 0 <= a.distinct_1 <= 1
    assert a.eval_config["seed"] == 7 and a.eval_config["n_prompts"] == len(PROMPTS)


def test_evaluate_adapter_kl_and_store_point(tiny, pama_home, store):
    from peft import LoraConfig, get_peft_model

    from pama import adapters as adp

    base, tok = tiny
    peft = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                          task_type="CAUSAL_LM"))
    import torch

    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    folder = pama_home / "runs" / "r1" / "adapter"
    peft.save_pretrained(folder)
    model = adp.load_adapters(copy.deepcopy(base), {"r1": folder})
    res = ev.evaluate_point(model, tok, ["sentiment", "conciseness"], PROMPTS[:4], seed=3, max_new_tokens=5,
                            batch_size=2)
    assert res.kl != 0.0 and np.isfinite(res.kl) and len(res.kl_per_response) == 4
    adp.use_base(model)
    base_res = ev.evaluate_point(model, tok, ["sentiment", "conciseness"], PROMPTS[:4], seed=3, max_new_tokens=5,
                                 batch_size=2)
    assert base_res.kl == 0.0
    plain = ev.evaluate_point(base, tok, ["sentiment", "conciseness"], PROMPTS[:4], seed=3, max_new_tokens=5,
                              batch_size=2)
    assert plain.texts == base_res.texts   # adapter disabled == the base model, same seeds → same samples

    pid = ev.store_point(store, res, kind="adapter", label="r1", model="tiny-random", max_generations=3)
    p = store.get_point(pid)
    assert p["kl"] == pytest.approx(res.kl) and p["mean_length"] == pytest.approx(res.mean_length)
    assert p["values"]["sentiment"]["mean"] == pytest.approx(res.values["sentiment"][0])
    gens = store.generations(pid)
    assert len(gens) == 3 and set(gens[0]["scores"]) == {"sentiment", "conciseness"}
    assert gens[0]["text"] == res.texts[0] and gens[0]["prompt"] == PROMPTS[0]


def _random_lora(base, seed: int = 1):
    """The tiny model with a LoRA on q/v whose B is not zero, so that the policy differs from the reference."""
    import torch
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                          task_type="CAUSAL_LM"))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed))
    return peft.eval()


def test_kl_rows_cut_at_each_groups_longest_response_equal_the_full_width_kl(tiny):
    """The KL forwards of an evaluation take the shortest responses together and cut each group's columns at its
    longest response: per response the same KL as one forward over the batch's full width, rows back in order."""
    import torch

    from pama import adapters as adp
    from pama import models
    from pama.logprobs import response_mask, seq_logprobs_and_hidden

    base, tok = tiny
    model = _random_lora(base)
    eos = models.eos_ids(model, tok)
    stop = min(eos)
    enc = models.encode(tok, PROMPTS, None)
    width, ends = 12, [12, 3, 9, 5, 1]                # responses of very different lengths, one cut at the limit
    g = torch.Generator().manual_seed(0)
    new = torch.randint(5, tok.vocab_size - 1, (len(PROMPTS), width), generator=g)
    new[torch.isin(new, torch.tensor(sorted(eos)))] = 5
    for i, n in enumerate(ends):
        if n < width:
            new[i, n - 1] = stop
            new[i, n:] = tok.pad_token_id
    rmask = response_mask(new, eos)
    assert rmask.sum(1).tolist() == ends

    ids = torch.cat([enc["input_ids"], new], 1)
    attn = torch.cat([enc["attention_mask"], rmask.long()], 1)
    q = enc["input_ids"].shape[1]
    with torch.no_grad():
        lp, _ = seq_logprobs_and_hidden(model, ids, attn, q, hidden=False, temperature=0.7)
        with adp.reference(model):
            ref, _ = seq_logprobs_and_hidden(model, ids, attn, q, hidden=False, temperature=0.7)
    full = ((lp - ref) * rmask).sum(1).tolist()
    assert min(abs(k) for k in full) > 1e-3           # every response has a KL the cut could lose
    for chunk in (1, 2, 3, len(PROMPTS)):
        got = ev._kl_rows(model, enc, new, rmask, None, None, chunk, 0.7)
        assert got == pytest.approx(full, abs=1e-4), chunk


def test_evaluate_point_kl_does_not_depend_on_the_kl_grouping(tiny):
    """``kl_rows`` only regroups the KL forwards: the same samples, and the same KL per response."""
    model = _random_lora(tiny[0])
    kw = dict(seed=3, max_new_tokens=8, batch_size=5, temperature=0.7)
    one = ev.evaluate_point(model, tiny[1], ["conciseness"], PROMPTS, kl_rows=1, **kw)
    whole = ev.evaluate_point(model, tiny[1], ["conciseness"], PROMPTS, kl_rows=5, **kw)
    assert one.texts == whole.texts and one.kl != 0.0
    assert one.kl_per_response == pytest.approx(whole.kl_per_response, abs=1e-4)
