"""Evaluate one point (the base model, a trained adapter, or an exact mixture) on held-out prompts.

Comparability: every point of a sweep is evaluated on the same prompts, in the same batches, with the same sampling
seed per batch (``seed * 1000 + batch index``), at the same temperature. Per objective we report the mean over
responses with a 95% percentile-bootstrap interval (numpy, fixed RNG seed); plus the KL to the reference policy
(the same model with every adapter disabled; 0 for the base), the mean response length in tokens, distinct-1/2
and the share of responses that ended on EOS rather than at the token limit (cut-off answers read badly whatever
their rewards say).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
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
from . import sampling
from .logprobs import ended_on_eos, response_mask, seq_logprobs_and_hidden
from .stats import BOOTSTRAP_SEED, N_RESAMPLES, bootstrap_ci  # noqa: F401 (bootstrap_ci: re-exported)

EVAL_TEMPERATURE = 0.7
# the seed batch of a sweep's points and of `python -m pama evaluate` (each batch has its own sampling seed):
# decoding is memory-bound on a CPU, so 32 rows cost far less than twice 16
EVAL_BATCH = 32
# rows per KL forward of an evaluation (`_kl_rows`): the shortest responses together, each group's columns cut at
# its longest, so one 256-token answer no longer makes all 32 rows pay for 256 columns (benchmarks/bench_eval_kl.py)
KL_ROWS = 4


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
def _response_logprobs(model, enc, new, rmask, temperature: float = 1.0) -> torch.Tensor:
    """Log-probs of the responses under the distribution they were sampled from: the logits divided by the sampling
    ``temperature`` (as the trainer's), so that Σ log π − log π_ref is the KL of the policy that wrote them. Greedy
    decoding (temperature 0) has no such distribution: the temperature-1 log-probs are used then."""
    input_ids = torch.cat([enc["input_ids"], new], dim=1)
    attn = torch.cat([enc["attention_mask"], rmask.long()], dim=1)
    logp, _ = seq_logprobs_and_hidden(model, input_ids, attn, enc["input_ids"].shape[1], hidden=False,
                                      temperature=temperature if temperature > 0 else 1.0)
    return logp * rmask


def _checked_inputs(who: str, objectives, prompts, batch_size: int, max_new_tokens: int) -> tuple[list, list[str]]:
    """The objectives built and the prompts listed, refusing no prompts or a non-positive batch or length: the
    checks every evaluation entry point shares."""
    objs = [objmod.get(o) if isinstance(o, str) else o for o in objectives]
    prompts = list(prompts)
    if not prompts:
        raise ValueError(f"{who} needs at least one prompt")
    if batch_size <= 0 or max_new_tokens <= 0:
        raise ValueError("batch_size and max_new_tokens must be positive")
    return objs, prompts


def evaluate_point(model, tokenizer, objectives, prompts: Sequence[str], *, seed: int = 1234,
                   max_new_tokens: int = 48, batch_size: int = 16, temperature: float = EVAL_TEMPERATURE,
                   ref: str | None = "adapter-disabled", confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                   progress: bool = False, desc: str = "evaluate", prompt_prefix: str = "",
                   on_progress=None, first_batch: int = 0, kl_rows: int = KL_ROWS) -> EvalResult:
    """Generate one response per prompt with the model as it is now (base, adapter or mixture) and score it.

    ``objectives``: Objective instances or names. ``ref="adapter-disabled"`` computes the KL against the same model
    with its adapters disabled (0 when the model has no active adapter); ``ref=None`` skips the KL (reported as 0).
    ``prompt_prefix`` is written before every prompt for generation only (a prefix-conditioned adapter's preference
    line, ``pama.conditioning.prompt_prefix``); the objectives score, and the results keep, the prompts as given.
    ``on_progress(prompts done, prompts)`` is called after each batch (the sweep's evaluation progress).
    ``first_batch``: the index of the first batch, for a slice of a longer prompt list evaluated in rounds
    (``evaluate_in_rounds``): batch b of the slice is batch ``first_batch + b`` of the whole, with that batch's seed.
    ``kl_rows``: rows per KL forward (``_kl_rows``; ``batch_size`` = one forward over the batch's full width).
    """
    objs, prompts = _checked_inputs("evaluate_point", objectives, prompts, batch_size, max_new_tokens)
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
        out, enc, new = models.generate(model, tokenizer,
                                        [cond.fit_prompt(tokenizer, prompt_prefix, p) for p in batch],
                                        max_new_tokens=max_new_tokens,
                                        temperature=temperature, seed=seed * 1000 + first_batch + b,
                                        return_ids=True)
        rmask = response_mask(new, eos).to(new.device)
        texts += out
        lengths += [int(x) for x in rmask.sum(1).tolist()]
        ended += ended_on_eos(new, eos).tolist()
        if ref is not None and has_adapter:
            kls += _kl_rows(model, enc, new, rmask, None, None, max(1, int(kl_rows)), temperature)
        else:
            kls += [0.0] * len(batch)
        if on_progress is not None:
            on_progress(start + len(batch), len(prompts))
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



def eval_rows() -> int:
    """Rows per decode batch of ``evaluate_at_many``: ``PAMA_EVAL_ROWS`` if set, else 64 on a machine of up to 4
    cores and 128 above (a decode step is memory-bound at a few rows and compute-bound at many: more cores keep more
    rows busy). The KV cache grows with the rows (~46 KB per token and row for SmolLM2-135M in float32: 64 rows ×
    320 tokens ≈ 0.9 GB)."""
    env = os.environ.get("PAMA_EVAL_ROWS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    return 64 if (os.cpu_count() or 1) <= 4 else 128


def _kl_rows(model, enc, new, rmask, prefs, adapter, chunk: int, temperature: float = 1.0) -> list[float]:
    """KL(policy ‖ adapters disabled) of each response, in row order. Rows are taken shortest response first in
    groups of ``chunk`` and each group's columns cut at its longest response (causal attention: the kept positions
    compute what they did), so the two full forwards cost about the tokens written, not rows × the longest.
    ``prefs``: one preference per row for a conditioned adapter's gates, or None (the model as it is set)."""
    lengths = rmask.sum(1)
    order = torch.argsort(lengths, stable=True)
    kl = torch.zeros(new.shape[0], dtype=torch.float64)
    for i in range(0, len(order), chunk):
        sel = order[i:i + chunk]
        width = max(1, int(lengths[sel].max()))
        sub_enc = {k: v[sel] for k, v in enc.items()}
        sub_new, sub_mask = new[sel, :width], rmask[sel, :width]
        with (cond.preference(model, prefs[sel], adapter=adapter) if prefs is not None
              else contextlib.nullcontext()):
            logp = _response_logprobs(model, sub_enc, sub_new, sub_mask, temperature)
        with adp.reference(model):
            ref_logp = _response_logprobs(model, sub_enc, sub_new, sub_mask, temperature)
        kl[sel] = (logp - ref_logp).sum(1).double()
    return kl.tolist()


def evaluate_at_many(model, tokenizer, objectives, prompts: Sequence[str], preferences, *,
                     adapter: str | None = None, seed: int = 1234, max_new_tokens: int = 48, batch_size: int = 16,
                     temperature: float = EVAL_TEMPERATURE, ref: str | None = "adapter-disabled",
                     confidence: float = 0.95, n_resamples: int = N_RESAMPLES, rows: int | None = None,
                     on_progress=None, progress: bool = False, desc: str = "evaluate",
                     first_batch: int = 0) -> list[EvalResult]:
    """``evaluate_at`` at several preferences of a conditioned adapter at once, one result per preference (in order).

    Rows of different preferences share one decode batch (the svd gates take one preference per row; the prefix
    form's preference line is in each row's prompt): each decode batch is one seed batch of ``batch_size`` prompts
    (as ``evaluate_point`` forms them) at ``rows // batch_size`` preferences. Each (preference, prompt) row draws the
    uniforms ``evaluate_at`` would draw for it (seed ``seed * 1000 + batch index``, its row in that batch:
    ``sampling.row_noise``), so every preference keeps the per-prompt seeds of the one-at-a-time evaluation; only
    float rounding (unmerged per-row gates, another batch shape) can flip a token, rarely, and then that response
    differs. Rows that end leave the decode batch; the KL forwards run ``KL_ROWS`` rows at a time, shortest
    responses together (``_kl_rows``). ``on_progress(prompts done, prompts)`` after each seed batch (every
    preference done on those prompts). Each result's ``seconds`` is the shared time divided by the preferences.
    ``first_batch`` as in ``evaluate_point``."""
    objs, prompts = _checked_inputs("evaluate_at_many", objectives, prompts, batch_size, max_new_tokens)
    t0 = time.perf_counter()
    info = cond._targets(model, adapter)[0]
    pref = cond.check_preference(preferences, info.n, info.objectives)       # (K, n), rows normalised
    K, N = pref.shape[0], len(prompts)
    prefixes = [cond.prompt_prefix(model, pref[k], adapter=adapter) for k in range(K)]
    per_batch = max(1, int(rows or eval_rows()) // batch_size)             # preferences per decode batch
    eos = models.eos_ids(model, tokenizer)
    has_adapter = bool(adp.adapter_names(model)) and adp._is_enabled(model)
    device = next(model.parameters()).device
    texts = [[""] * N for _ in range(K)]
    kls = [[0.0] * N for _ in range(K)]
    lengths = [[0] * N for _ in range(K)]
    ended = [[False] * N for _ in range(K)]
    model.eval()
    starts = range(0, N, batch_size)
    for b, start in enumerate(tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False)):
        idx = list(range(start, min(start + batch_size, N)))
        noise_b = sampling.row_noise(seed * 1000 + first_batch + b, len(idx), max_new_tokens)   # what evaluate_point draws
        for k0 in range(0, K, per_batch):
            ks = list(range(k0, min(k0 + per_batch, K)))
            row_k = [k for k in ks for _ in idx]
            row_j = [j for _ in ks for j in idx]
            prow = pref[row_k]
            enc = models.encode(tokenizer, [cond.fit_prompt(tokenizer, prefixes[k], prompts[j])
                                            for k, j in zip(row_k, row_j)], device)
            with cond.preference(model, prow, adapter=adapter):
                new = sampling.sample(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=max_new_tokens,
                                      eos_ids=eos, pad_id=tokenizer.pad_token_id, temperature=temperature,
                                      noise=noise_b.repeat(len(ks), 1).to(device))
            rmask = response_mask(new, eos).to(new.device)
            outs = [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
            row_len = [int(x) for x in rmask.sum(1).tolist()]
            row_end = ended_on_eos(new, eos).tolist()
            row_kl = (_kl_rows(model, enc, new, rmask, prow, adapter, KL_ROWS, temperature)
                      if ref is not None and has_adapter else [0.0] * len(row_k))
            for r, (k, j) in enumerate(zip(row_k, row_j)):
                texts[k][j], lengths[k][j], ended[k][j], kls[k][j] = outs[r], row_len[r], row_end[r], row_kl[r]
        if on_progress is not None:
            on_progress(idx[-1] + 1, N)
    seconds = (time.perf_counter() - t0) / K
    forms = sorted({i.form for name, i in cond.conditioned_adapters(model).items() if adapter in (None, name)})
    results = []
    for k in range(K):
        scores = objmod.score_all(objs, prompts, texts[k])
        values = {o.name: bootstrap_ci(scores[i], confidence, n_resamples) for i, o in enumerate(objs)}
        eval_config = dict(n_prompts=N, seed=seed, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           temperature=temperature, confidence=confidence, n_resamples=n_resamples,
                           kl_reference="adapter disabled" if ref is not None else None,
                           preference=[round(x, 6) for x in pref[k].tolist()], conditioning="+".join(forms),
                           decode="preferences batched")
        results.append(EvalResult(
            objectives=[o.name for o in objs], values=values, scores=np.asarray(scores), prompts=prompts,
            texts=texts[k], kl=float(np.mean(kls[k])), kl_per_response=kls[k], lengths=lengths[k],
            mean_length=float(np.mean(lengths[k])), distinct_1=distinct_n(texts[k], 1),
            distinct_2=distinct_n(texts[k], 2), eos_fraction=float(np.mean(ended[k])), eval_config=eval_config,
            seconds=seconds))
    return results


def concat_results(parts: Sequence[EvalResult], *, confidence: float = 0.95,
                   n_resamples: int = N_RESAMPLES) -> EvalResult:
    """One point's result from its rounds (consecutive prompt slices, in order): samples joined, means, intervals
    and distinct-n recomputed over all of them, so it equals the one-pass evaluation of the joined prompts."""
    if not parts:
        raise ValueError("concat_results needs at least one result")
    first = parts[0]
    texts = [t for p in parts for t in p.texts]
    lengths = [n for p in parts for n in p.lengths]
    kls = [k for p in parts for k in p.kl_per_response]
    prompts = [q for p in parts for q in p.prompts]
    scores = np.concatenate([np.asarray(p.scores, dtype=float).reshape(len(first.objectives), -1) for p in parts],
                            axis=1)
    values = {o: bootstrap_ci(scores[i], confidence, n_resamples) for i, o in enumerate(first.objectives)}
    eos = float(np.average([p.eos_fraction for p in parts], weights=[len(p.texts) for p in parts]))
    return EvalResult(objectives=list(first.objectives), values=values, scores=scores, prompts=prompts, texts=texts,
                      kl=float(np.mean(kls)), kl_per_response=kls, lengths=lengths,
                      mean_length=float(np.mean(lengths)), distinct_1=distinct_n(texts, 1),
                      distinct_2=distinct_n(texts, 2), eos_fraction=eos,
                      eval_config=dict(first.eval_config, n_prompts=len(prompts)),
                      seconds=float(sum(p.seconds for p in parts)))


def ends_apart(ends: Sequence[EvalResult]) -> bool:
    """True when each end's 95% interval on its own objective (end i prefers objective i) lies above every other
    end's interval on that objective: the front's extremes are told apart beyond sampling noise."""
    names = ends[0].objectives
    for i, end in enumerate(ends):
        own_low = end.values[names[i]][1]
        if any(own_low <= other.values[names[i]][2] for j, other in enumerate(ends) if j != i):
            return False
    return True


@dataclass
class Rounds:
    """Early stopping of an evaluation: prompts in rounds of ``size`` (a multiple of the batch size), at least
    ``minimum`` of them, at most every prompt given (the cap), stopping once ``ends_apart``."""
    size: int = 32
    minimum: int = 32

    def check(self, batch_size: int) -> None:
        if self.size <= 0 or self.size % batch_size:
            raise ValueError(f"an evaluation round of {self.size} prompts is not a positive multiple of the batch "
                             f"size {batch_size}")


def evaluate_in_rounds(evaluate_slice, prompts: Sequence[str], batch_size: int, rounds: Rounds,
                       *, on_round=None) -> tuple[list[EvalResult], int]:
    """Evaluate the front's ends on ``prompts`` a round at a time until ``ends_apart`` (after at least
    ``rounds.minimum`` prompts) or every prompt is used; returns (one joined result per end, prompts used).

    ``evaluate_slice(prompt_slice, first_batch)`` evaluates every end on the slice and returns their results in end
    order. Rounds start on batch boundaries and pass their first batch index, so each prompt keeps the seed it has in
    a one-pass evaluation: the result on the first M prompts is the one-pass result on ``prompts[:M]``, and the other
    points of the front are then evaluated on exactly those M prompts (the comparability rule)."""
    rounds.check(batch_size)
    prompts = list(prompts)
    parts: list[list[EvalResult]] = []
    used = 0
    while used < len(prompts):
        chunk = prompts[used:used + rounds.size]
        parts.append(list(evaluate_slice(chunk, used // batch_size)))
        used += len(chunk)
        joined = [concat_results([p[e] for p in parts]) for e in range(len(parts[0]))]
        if on_round is not None:
            on_round(used, len(prompts), joined)
        if used >= rounds.minimum and ends_apart(joined):
            break
    return joined, used


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
