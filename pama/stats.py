"""Intervals for means: the percentile bootstrap every reported score uses (evaluation, length control, fronts)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean, reproducible (fixed RNG seed).

    One value gives a zero-width interval; no values is an error.
    """
    x = np.asarray(values, dtype=float).reshape(-1)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not np.isfinite(x).all():
        raise ValueError("bootstrap_ci: values must be finite")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(int(n_resamples), x.size))
    means = x[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    # the percentile interval of a skewed statistic can miss the sample mean by rounding; keep it inside
    return mean, float(min(lo, mean)), float(max(hi, mean))
