"""Evaluate one point (the base model, a trained adapter, or an exact mixture) on held-out prompts.

Comparability: every point of a sweep is evaluated on the same prompts, in the same batches, with the same sampling
seed per batch (``seed * 1000 + batch index``), at the same temperature. Per objective we report the mean over
responses with a 95% percentile-bootstrap interval (numpy, fixed RNG seed); plus the KL to the reference policy
(the same model with every adapter disabled; 0 for the base), the mean response length in tokens, distinct-1/2
and the share of responses that ended on EOS rather than at the token limit (cut-off answers read badly whatever
their rewards say).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import adapters as adp
from . import conditioning as cond
from . import models
from . import objectives as objmod
from .logprobs import ended_on_eos, response_mask, seq_logprobs_and_hidden
from .stats import BOOTSTRAP_SEED, N_RESAMPLES, bootstrap_ci  # noqa: F401 (bootstrap_ci: re-exported)

EVAL_TEMPERATURE = 0.7


@dataclass
class EvalResult:
    objectives: list[str]
    values: dict[str, tuple[float, float, float]]   # objective → (mean, ci_low, ci_high)
    scores: np.ndarray                               # (n_objectives, n_prompts)
    prompts: list[str]
    texts: list[str]
    kl: float
    kl_per_response: list[float]
    lengths: list[int]
    mean_length: float
    distinct_1: float
    distinct_2: float
    eos_fraction: float = float("nan")               # share of responses that ended on EOS, not at the limit
    eval_config: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["scores"] = self.scores.tolist()
        return d


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over all responses (lower-cased whitespace words); 0 when there are none."""
    total, seen = 0, set()
    for t in texts:
        words = t.lower().split()
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


@torch.no_grad()
def _response_logprobs(model, enc, new, rmask) -> torch.Tensor:
    input_ids = torch.cat([enc["input_ids"], new], dim=1)
    attn = torch.cat([enc["attention_mask"], rmask.long()], dim=1)
    logp, _ = seq_logprobs_and_hidden(model, input_ids, attn, enc["input_ids"].shape[1], hidden=False)
    return logp * rmask


def evaluate_point(model, tokenizer, objectives, prompts: Sequence[str], *, seed: int = 1234,
                   max_new_tokens: int = 48, batch_size: int = 16, temperature: float = EVAL_TEMPERATURE,
                   ref: str | None = "adapter-disabled", confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                   progress: bool = False, desc: str = "evaluate", prompt_prefix: str = "") -> EvalResult:
    """Generate one response per prompt with the model as it is now (base, adapter or mixture) and score it.

    ``objectives``: Objective instances or names. ``ref="adapter-disabled"`` computes the KL against the same model
    with its adapters disabled (0 when the model has no active adapter); ``ref=None`` skips the KL (reported as 0).
    ``prompt_prefix`` is written before every prompt for generation only (a prefix-conditioned adapter's preference
    line, ``pama.conditioning.prompt_prefix``); the objectives score, and the results keep, the prompts as given.
    """
    objs = [objmod.get(o) if isinstance(o, str) else o for o in objectives]
    prompts = list(prompts)
    if not prompts:
        raise ValueError("evaluate_point needs at least one prompt")
    if batch_size <= 0 or max_new_tokens <= 0:
        raise ValueError("batch_size and max_new_tokens must be positive")
    t0 = time.perf_counter()
    eos = models.eos_ids(model, tokenizer)
    has_adapter = bool(adp.adapter_names(model)) and adp._is_enabled(model)
    texts: list[str] = []
    kls: list[float] = []
    lengths: list[int] = []
    ended: list[bool] = []
    model.eval()
    starts = range(0, len(prompts), batch_size)
    for b, start in enumerate(tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False)):
        batch = prompts[start:start + batch_size]
        out, enc, new = models.generate(model, tokenizer, [prompt_prefix + p for p in batch],
                                        max_new_tokens=max_new_tokens,
                                        temperature=temperature, seed=seed * 1000 + b, return_ids=True)
        rmask = response_mask(new, eos).to(new.device)
        texts += out
        lengths += [int(x) for x in rmask.sum(1).tolist()]
        ended += ended_on_eos(new, eos).tolist()
        if ref is not None and has_adapter:
            logp = _response_logprobs(model, enc, new, rmask)
            with adp.reference(model):
                ref_logp = _response_logprobs(model, enc, new, rmask)
            kls += (logp - ref_logp).sum(1).tolist()
        else:
            kls += [0.0] * len(batch)
    scores = objmod.score_all(objs, prompts, texts)
    values = {o.name: bootstrap_ci(scores[i], confidence, n_resamples) for i, o in enumerate(objs)}
    eval_config = dict(n_prompts=len(prompts), seed=seed, max_new_tokens=max_new_tokens, batch_size=batch_size,
                       temperature=temperature, confidence=confidence, n_resamples=n_resamples,
                       kl_reference="adapter disabled" if ref is not None else None)
    return EvalResult(objectives=[o.name for o in objs], values=values, scores=np.asarray(scores), prompts=prompts,
                      texts=texts, kl=float(np.mean(kls)), kl_per_response=kls, lengths=lengths,
                      mean_length=float(np.mean(lengths)), distinct_1=distinct_n(texts, 1),
                      distinct_2=distinct_n(texts, 2), eos_fraction=float(np.mean(ended)), eval_config=eval_config,
                      seconds=time.perf_counter() - t0)


def evaluate_at(model, tokenizer, objectives, prompts: Sequence[str], preference, *, adapter: str | None = None,
                **kwargs) -> EvalResult:
    """``evaluate_point`` with the model's conditioned adapter (``adapter``, default: every one) at one preference:
    the svd gates set to p, or the prefix form's preference line written before each prompt. The preference (checked,
    normalised) and the form are recorded in the result's ``eval_config``."""
    with cond.preference(model, preference, adapter=adapter) as p:
        prefix = cond.prompt_prefix(model, p[0], adapter=adapter)
        result = evaluate_point(model, tokenizer, objectives, prompts, prompt_prefix=prefix, **kwargs)
    info = cond.conditioned_adapters(model)
    forms = sorted({i.form for name, i in info.items() if adapter in (None, name)})
    result.eval_config.update(preference=[round(x, 6) for x in p[0].tolist()], conditioning="+".join(forms))
    return result


def generation_rows(result: EvalResult, limit: int | None = None) -> list[dict]:
    rows = []
    for i, (p, t) in enumerate(zip(result.prompts, result.texts)):
        if limit is not None and i >= limit:
            break
        rows.append(dict(prompt_index=i, prompt=p, text=t,
                         scores={o: float(result.scores[j, i]) for j, o in enumerate(result.objectives)}))
    return rows


def store_point(store, result: EvalResult, *, kind: str, label: str, model: str, sweep_id: str | None = None,
                run_id: str | None = None, method: str | None = None, preference: list[float] | None = None,
                mixture: dict[str, float] | None = None, max_generations: int | None = None,
                extra_config: dict | None = None) -> str:
    """Write the point, its per-objective (mean, CI) values and its generations in one transaction."""
    cfg = dict(result.eval_config, seconds=round(result.seconds, 2), **(extra_config or {}))
    return store.add_point(kind=kind, label=label, model=model, values=result.values, sweep_id=sweep_id,
                           run_id=run_id, method=method, preference=preference, mixture=mixture, eval_config=cfg,
                           kl=result.kl, mean_length=result.mean_length, distinct_1=result.distinct_1,
                           distinct_2=result.distinct_2, eos_fraction=result.eos_fraction, generations=generation_rows(result, max_generations))
