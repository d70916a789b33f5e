"""Length-controlled scores: what a point scores once the part of each objective that answer length explains is
removed (after AlpacaEval 2's length-controlled win rate, Dubois et al. 2024; the reason: Singhal et al. 2023 found
most RLHF reward gains to be length). Pure functions over per-sample scores and word counts; docs/fronts.md says why
this method.

The model, per objective, fitted on the samples of every point of one front pooled (the base model's included):

    score = a + b · log(1 + words) + residual

A point's controlled samples are ``score − b · (log(1 + words) − x_ref)``: what each answer would score at the
reference length ``x_ref`` (the base model's mean log length when the base is among the points, else the pooled
mean). Its controlled score is their mean, with the same percentile bootstrap interval as the raw score. A point
that moved an objective only by writing longer or shorter answers keeps the base model's controlled score.

An objective that *is* length (``Objective.measures_length``: conciseness, length) has no controlled score (None):
removing length from it leaves nothing.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .stats import bootstrap_ci

# A front "mostly varies answer length" when, for every objective that is not length itself, length explains at least
# this share of the spread of the points' means (and every objective that is length trivially does).
MOSTLY_LENGTH_SHARE = 0.5

_WORD_RE = re.compile(r"\S+")


def word_lengths(texts: Sequence[str]) -> np.ndarray:
    """Whitespace words per text: the length the controls use (the unit of ``conciseness``; no tokenizer needed,
    so stored generations can be controlled without the model)."""
    return np.asarray([len(_WORD_RE.findall(t or "")) for t in texts], dtype=float)


@dataclass(frozen=True)
class LengthFit:
    """score ≈ intercept + slope · log(1 + words), pooled over a front; ``x_ref`` the reference log length."""
    intercept: float
    slope: float
    x_ref: float
    r2: float

    def adjust(self, scores: Sequence[float], words: Sequence[float]) -> np.ndarray:
        """Each sample's score moved to the reference length along the fitted slope."""
        x = np.log1p(np.asarray(words, dtype=float))
        return np.asarray(scores, dtype=float) - self.slope * (x - self.x_ref)


def fit(scores: Sequence[Sequence[float]], words: Sequence[Sequence[float]], ref: int | None = None) -> LengthFit:
    """Least squares of score on log(1 + words) over every group pooled (one group per point); ``ref`` is the index
    of the group whose mean log length is the reference (the base model), None for the pooled mean."""
    if len(scores) != len(words) or not scores:
        raise ValueError("fit needs one words list per scores list, and at least one group")
    ys = [np.asarray(s, dtype=float).reshape(-1) for s in scores]
    xs = [np.log1p(np.asarray(w, dtype=float).reshape(-1)) for w in words]
    for y, x in zip(ys, xs):
        if y.shape != x.shape:
            raise ValueError(f"a group has {y.size} scores but {x.size} lengths")
    y, x = np.concatenate(ys), np.concatenate(xs)
    if y.size == 0:
        raise ValueError("fit needs at least one sample")
    x_ref = float(xs[ref].mean()) if ref is not None and xs[ref].size else float(x.mean())
    var = float(((x - x.mean()) ** 2).sum())
    if var <= 1e-12:  # every answer the same length: nothing to control for
        return LengthFit(float(y.mean()), 0.0, x_ref, 0.0)
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / var)
    intercept = float(y.mean() - slope * x.mean())
    resid = y - intercept - slope * x
    tot = float(((y - y.mean()) ** 2).sum())
    return LengthFit(intercept, slope, x_ref, 1.0 - float((resid ** 2).sum()) / tot if tot > 0 else 0.0)


def length_share(raw_means: Sequence[float], controlled_means: Sequence[float]) -> float:
    """How much of the spread of the points' means length explains: 1 − Var(controlled) / Var(raw), clipped to
    [0, 1]; NaN with fewer than two points or no spread."""
    raw, ctl = np.asarray(raw_means, dtype=float), np.asarray(controlled_means, dtype=float)
    if raw.size < 2 or float(raw.var()) <= 1e-12:
        return float("nan")
    return float(min(max(1.0 - ctl.var() / raw.var(), 0.0), 1.0))


def spearman_with_length(scores: Sequence[float], words: Sequence[float]) -> float:
    """Spearman ρ of a score with answer length over samples (NaN when either is constant)."""
    from scipy.stats import spearmanr  # heavy: scipy.stats

    s, w = np.asarray(scores, dtype=float), np.asarray(words, dtype=float)
    if s.size < 3 or np.ptp(s) == 0 or np.ptp(w) == 0:
        return float("nan")
    return float(spearmanr(s, w).statistic)


@dataclass(frozen=True)
class ControlledFront:
    """Length-controlled values of every point of one front, and per objective how much length explains."""
    values: dict[str, dict[str, tuple[float, float, float] | None]]   # point id → objective → (mean, lo, hi) | None
    share: dict[str, float]        # objective → share of the spread of point means length explains (1.0 if length)
    rho: dict[str, float]          # objective → Spearman ρ with answer length over every pooled sample
    fits: dict[str, LengthFit | None]
    is_length: dict[str, bool]

    @property
    def mostly_length(self) -> bool:
        """True when every objective is length itself or has at least ``MOSTLY_LENGTH_SHARE`` of its spread
        explained by length: the front mostly varies answer length."""
        if not self.share:
            return False
        return all(self.is_length[o] or (not math.isnan(s) and s >= MOSTLY_LENGTH_SHARE)
                   for o, s in self.share.items())

    def warning(self) -> str | None:
        """The plain-words warning a front page shows, or None."""
        if not self.mostly_length:
            return None
        parts = [f"{o}: is length" if self.is_length[o] else f"{o}: {self.share[o]:.0%} of its spread"
                 for o in self.share]
        return ("This front mostly varies answer length: length explains most of the differences between its points "
                f"({'; '.join(parts)}). Switch on 'control for answer length' to see what is left.")


def control_front(samples: Mapping[str, tuple[Sequence[Sequence[float]], Sequence[str]]],
                  objectives: Sequence[str], is_length: Mapping[str, bool], base: str | None = None,
                  confidence: float = 0.95) -> ControlledFront:
    """``samples``: point id → (scores (n_objectives × n_samples, in ``objectives``' order), response texts).

    Fits one line per objective on every point's samples pooled, with the base point's (``base``) mean log length
    as the reference, and returns each point's controlled (mean, low, high) and each objective's length share."""
    ids = [pid for pid, (_, texts) in samples.items() if len(texts)]
    words = {pid: word_lengths(samples[pid][1]) for pid in ids}
    scores = {pid: np.asarray(samples[pid][0], dtype=float).reshape(len(objectives), -1) for pid in ids}
    ref = ids.index(base) if base in ids else None
    values: dict[str, dict] = {pid: {} for pid in samples}
    share, rho, fits = {}, {}, {}
    for j, obj in enumerate(objectives):
        length_itself = bool(is_length.get(obj, False))
        pooled_s = np.concatenate([scores[p][j] for p in ids]) if ids else np.zeros(0)
        pooled_w = np.concatenate([words[p] for p in ids]) if ids else np.zeros(0)
        rho[obj] = spearman_with_length(pooled_s, pooled_w)
        if length_itself or not ids:
            fits[obj] = None
            share[obj] = 1.0 if length_itself else float("nan")
            for pid in samples:
                values[pid][obj] = None
            continue
        f = fit([scores[p][j] for p in ids], [words[p] for p in ids], ref)
        fits[obj] = f
        raw_means, ctl_means = [], []
        for pid in samples:
            if pid not in scores:
                values[pid][obj] = None
                continue
            adj = f.adjust(scores[pid][j], words[pid])
            values[pid][obj] = bootstrap_ci(adj, confidence)
            raw_means.append(float(scores[pid][j].mean()))
            ctl_means.append(values[pid][obj][0])
        share[obj] = length_share(raw_means, ctl_means)
    return ControlledFront(values, share, rho, fits, {o: bool(is_length.get(o, False)) for o in objectives})
