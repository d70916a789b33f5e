"""The review findings of issue 23, each pinned by a test that failed before its fix (docs/learnability.md,
"Review fixes (session 8)"): the evaluation's KL at the sampling temperature, PAMA without Noon combining per-objective
clipped surrogates, MGDA's min-norm weights from gradients averaged over data-parallel ranks, the prefix form keeping
its preference line on a long prompt, and top_p < 1 refused in training."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pama import algorithm as alg
from pama import conditioning as cond
from pama import models
from pama.config import ConfigError, TrainConfig

REPO = Path(__file__).resolve().parent.parent
PROMPTS = ["Describe a quiet beach.", "Give me a tip for sleeping well.", "Review the film Jaws.",
           "Explain what a battery does."]
OBJECTIVES = ["informativeness", "conciseness"]


# ------------------------------------------------------------------------------------------- 1. KL at temperature

def test_evaluation_kl_is_the_kl_of_the_policy_that_sampled(tiny, monkeypatch):
    """Responses sampled at temperature τ: the stored KL is Σ log π_τ − log π_ref,τ over each response, the KL of the
    policy that wrote it, not the log-ratio of the temperature-1 policies."""
    from pama import adapters as adp
    from pama import evaluate as ev
    from pama.logprobs import seq_logprobs_and_hidden

    base, tok = tiny
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                          task_type="CAUSAL_LM"))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    model = peft.eval()
    seen = []  # what evaluate_point actually sampled, batch by batch
    real = models.generate

    def spy(*a, **k):
        out = real(*a, **k)
        seen.append((out[1], out[2]))
        return out

    monkeypatch.setattr(models, "generate", spy)
    tau = 0.4
    res = ev.evaluate_point(model, tok, ["conciseness"], PROMPTS, seed=5, max_new_tokens=6, batch_size=2,
                            temperature=tau)
    eos = models.eos_ids(model, tok)

    def kl_at(t):
        out = []
        for enc, new in seen:
            rmask = ev.response_mask(new, eos)
            ids = torch.cat([enc["input_ids"], new], 1)
            attn = torch.cat([enc["attention_mask"], rmask.long()], 1)
            q = enc["input_ids"].shape[1]
            with torch.no_grad():
                lp, _ = seq_logprobs_and_hidden(model, ids, attn, q, hidden=False, temperature=t)
                with adp.reference(model):
                    ref, _ = seq_logprobs_and_hidden(model, ids, attn, q, hidden=False, temperature=t)
            out += ((lp - ref) * rmask).sum(1).tolist()
        return out

    expected, at_one = kl_at(tau), kl_at(1.0)
    assert max(abs(a - b) for a, b in zip(expected, at_one)) > 1e-2   # the test can tell the two apart
    assert res.kl_per_response == pytest.approx(expected, abs=1e-4)
    assert res.kl == pytest.approx(sum(expected) / len(expected), abs=1e-4)


# ------------------------------------------------------------------------------------- 2. PAMA without Noon

def _ratio_case():
    """Two objectives of mixed sign on 2×3 tokens, ratios inside and outside the clip range (ε = 0.2)."""
    adv = torch.tensor([[[1.0, -2.0, 0.5], [-1.0, 0.3, 2.0]],
                        [[-1.5, 1.0, -0.5], [2.0, -0.7, -1.0]]], dtype=torch.float64)
    old = torch.zeros(2, 3, dtype=torch.float64)
    logp = torch.log(torch.tensor([[1.5, 0.6, 1.1], [0.5, 1.4, 1.3]], dtype=torch.float64)).requires_grad_()
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    return adv, old, logp, mask


def _brute_force(logp, old, adv, weights, mask, eps):
    """Σ_i c_i,t · (the clipped PPO loss of objective i at token t), masked mean over tokens, written out."""
    total = torch.zeros((), dtype=logp.dtype)
    count = 0.0
    for b in range(adv.shape[1]):
        for t in range(adv.shape[2]):
            if not mask[b, t]:
                continue
            u = torch.exp(logp[b, t] - old[b, t])
            for i in range(adv.shape[0]):
                a = adv[i, b, t]
                total = total + weights[i, b, t] * torch.maximum(-a * u, -a * u.clamp(1 - eps, 1 + eps))
            count += 1
    return total / count


@pytest.mark.parametrize("granularity", ["token", "batch"])
@pytest.mark.parametrize("conditioned", [False, True])
def test_pama_without_noon_combines_per_objective_clipped_surrogates(granularity, conditioned):
    """noon: false → loss = Σ_i c_i·clip-surrogate(A_i) (the paper's Σ c_i ∇L_i); the surrogate of Σ c_i A_i differs
    once a ratio is outside the clip range and the advantages have mixed signs."""
    from pama.methods import create

    cfg = TrainConfig(model="tiny-random", objectives=["sentiment", "conciseness"], method="pama", noon="false",
                      anchor=0.5, preference=[0.7, 0.3], granularity=granularity)
    method = create(cfg)
    adv, old, logp, mask = _ratio_case()
    pref = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64) if conditioned else None
    combined, weights = method.combine(adv, mask, pref)
    loss, stats, _ = method.policy_loss(logp, old, adv, combined, mask, [], [], weights=weights)
    expected = _brute_force(logp, old, adv, weights, mask, cfg.cliprange)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), abs=1e-12)
    g, = torch.autograd.grad(loss, logp)
    g_expected, = torch.autograd.grad(expected, logp)
    assert torch.allclose(g, g_expected, atol=1e-12)
    old_loss, _ = alg.clipped_surrogate(logp, old, combined, mask, cfg.cliprange)
    assert abs(float(old_loss.detach()) - float(loss.detach())) > 1e-3   # the combined-advantage surrogate is another loss here
    assert {"clipfrac", "approx_kl", "ratio_mean"} <= set(stats)


def test_pama_with_noon_keeps_the_combined_surrogate():
    """With Noon every A_i ≥ 0, where Σ c_i·clip-surrogate(A_i) equals the surrogate of s* = Σ c_i A_i: the paper's
    loss, computed as before."""
    from pama.methods import create

    cfg = TrainConfig(model="tiny-random", objectives=["sentiment", "conciseness"], method="pama", anchor=0.5,
                      preference=[0.7, 0.3])
    method = create(cfg)
    adv, old, logp, mask = _ratio_case()
    adv = alg.noon(adv)
    combined, weights = method.combine(adv, mask)
    with torch.no_grad():
        loss, _, _ = method.policy_loss(logp, old, adv, combined, mask, [], [], weights=weights)
        assert float(loss) == pytest.approx(float(_brute_force(logp, old, adv, weights, mask, cfg.cliprange)),
                                            abs=1e-12)
        assert float(loss) == float(alg.clipped_surrogate(logp, old, combined, mask, cfg.cliprange)[0])


def test_the_trainer_hands_pama_its_weights(store, monkeypatch):
    """One training step without Noon: the policy loss receives the per-token weights of the mini-batch."""
    from pama import trainer
    from pama.methods.pama import Pama

    calls = []
    real = Pama.policy_loss

    def spy(self, logp, old_logp, adv, combined, mask, params, objectives, weights=None):
        calls.append(None if weights is None else tuple(weights.shape))
        return real(self, logp, old_logp, adv, combined, mask, params, objectives, weights=weights)

    monkeypatch.setattr(Pama, "policy_loss", spy)
    cfg = TrainConfig(model="tiny-random", objectives=["sentiment", "conciseness"], method="pama", noon="false",
                      steps=1, batch_size=4, samples_per_prompt=2, mini_batches=2, max_new_tokens=4, threads=1,
                      target_modules=["q_proj", "v_proj"]).validate()
    t = trainer.Trainer(cfg, store, progress=False)
    t.train_step(1)
    assert len(calls) == 2 and all(c is not None and c[:2] == (2, 2) for c in calls), calls


# ---------------------------------------------------------------------------------------- 3. MGDA across ranks

MGDA_WORKER = r'''
import sys, torch, torch.distributed as dist
from pama import algorithm as alg
from pama.methods.mgda import mgda_loss_weights

rank, init, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
x = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
# each rank's local objectives pull x towards different points: the local gradients differ between ranks
targets = {0: ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]), 1: ([-3.0, 0.2, 0.0], [0.5, 4.0, 1.0])}[rank]
losses = [((x - torch.tensor(t, dtype=torch.float64)) ** 2).sum() for t in targets]
w = mgda_loss_weights(losses, [x])
local = alg.mgda_weights(torch.stack([torch.autograd.grad(L, [x], retain_graph=True)[0] for L in losses]))
torch.save({"w": w, "local": local}, out)
dist.destroy_process_group()
'''


def test_mgda_weights_come_from_gradients_averaged_over_ranks(tmp_path):
    """Two gloo ranks with different local gradients: both get the min-norm weights of the rank-averaged gradients
    (the gradients the data-parallel step actually takes), not each its own local solve."""
    worker = tmp_path / "worker.py"
    worker.write_text(MGDA_WORKER)
    init = f"file://{tmp_path / 'rendezvous'}"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(worker), str(r), init, str(tmp_path / f"r{r}.pt")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, out.decode()[-3000:]
    res = [torch.load(tmp_path / f"r{r}.pt") for r in range(2)]
    # the gradients of ||x − t||² at x = 0 are −2t: average the two ranks' and solve min-norm on them
    g = {0: torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), 1: torch.tensor([[-3.0, 0.2, 0.0], [0.5, 4.0, 1.0]])}
    averaged = alg.mgda_weights((-2 * (g[0] + g[1]) / 2).double())
    assert not torch.allclose(res[0]["local"], res[1]["local"], atol=1e-3)   # the local solves disagree
    for r in range(2):
        assert torch.allclose(res[r]["w"], averaged, atol=1e-9), (r, res[r]["w"], averaged)


# ------------------------------------------------------------------------------- 4. the prefix on a long prompt

LONG = "Tell me about " + " ".join(f"river{i} stone" for i in range(300)) + ". What is the last river?"


@pytest.fixture
def short_prompts(monkeypatch):
    """A small prompt budget, so that a long prompt must be cut."""
    monkeypatch.setattr(models, "PROMPT_MAX_TOKENS", 64, raising=False)


def _prefix_model(tiny):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(tiny[0]), LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    cond.register_prefix(model, OBJECTIVES)
    return model.eval()


def _spy_inputs(monkeypatch, tok):
    """The decoded model inputs of every models.generate call."""
    seen: list[str] = []
    real = models.generate

    def spy(model, tokenizer, prompts, **kw):
        out = real(model, tokenizer, prompts, **kw)
        seen.extend(tok.batch_decode(out[1]["input_ids"] if kw.get("return_ids") else
                                     models.encode(tokenizer, prompts)["input_ids"], skip_special_tokens=False))
        return out

    monkeypatch.setattr(models, "generate", spy)
    return seen


def test_generate_and_evaluate_at_keep_the_preference_line_of_a_long_prompt(tiny, short_prompts, monkeypatch):
    """A prefix-conditioned adapter reads its preference line however long the prompt: the prompt's start is cut,
    the line and the prompt's end (the question) stay, and the input fits the budget."""
    from pama import evaluate as ev

    model, tok = _prefix_model(tiny), tiny[1]
    seen = _spy_inputs(monkeypatch, tok)
    cond.generate_at(model, tok, [LONG, "Hi."], [0.3, 0.7], max_new_tokens=2, temperature=0)
    res = ev.evaluate_at(model, tok, ["conciseness"], [LONG], [0.9, 0.1], max_new_tokens=2, batch_size=1)
    assert res.prompts == [LONG]          # the objectives and the results keep the prompt as given
    assert len(seen) == 3
    for text, line in zip(seen, ["informativeness 0.30, conciseness 0.70", "informativeness 0.30",
                                 "informativeness 0.90, conciseness 0.10"]):
        assert cond.PREFIX_HEAD + line in text, text
    assert "What is the last river?" in seen[0] and "river0 stone" not in seen[0]
    assert cond.prompts_at(model, ["Hi."], [0.3, 0.7])[0] in seen[1]   # a short prompt is untouched
    assert len(models.encode(tok, [seen[0]])["input_ids"][0]) <= 64


def test_a_prefix_conditioned_rollout_keeps_the_preference_line_of_a_long_prompt(store, tmp_path, short_prompts):
    """The trainer's rollout of a prefix-conditioned run: every long prompt still starts with its preference line."""
    from pama import trainer

    source = tmp_path / "long.txt"
    source.write_text(f"{LONG}\n{LONG.replace('river', 'lake')}\n")
    cfg = TrainConfig(model="tiny-random", objectives=["sentiment", "conciseness"], conditioned=True,
                      conditioning="prefix", steps=1, batch_size=4, samples_per_prompt=2, max_new_tokens=3,
                      threads=1, prompts=str(source), target_modules=["q_proj", "v_proj"]).validate()
    t = trainer.Trainer(cfg, store, progress=False)
    ro = t.rollout(1)
    assert ro.query_len <= 64
    for row, pref in enumerate(ro.preference.tolist()):
        text = t.tokenizer.decode(ro.input_ids[row, :ro.query_len])
        assert cond.prefix_text(["sentiment", "conciseness"], pref).strip() in text, text
        assert "What is the last" in text
    assert ro.prompts[0] in (LONG, LONG.replace("river", "lake"))   # scored as written


# ----------------------------------------------------------------------------------------------- 5. top_p

def test_training_with_top_p_below_one_is_refused_with_what_to_do():
    """π_old is computed without the nucleus the rollout sampled from, so the ratios would be wrong: refused."""
    with pytest.raises(ConfigError, match=r"top_p.*1"):
        TrainConfig(model="tiny-random", objectives=["sentiment"], top_p=0.9).validate()
    assert TrainConfig(model="tiny-random", objectives=["sentiment"], top_p=1.0).validate().top_p == 1.0
