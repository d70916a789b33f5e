"""Pareto-front utilities on objectives to MAXIMISE (rows = points, columns = objectives).

Dominance and hypervolume come from ``moocore`` (exact, O(n log n) sweeps for 2-3 objectives), called with
``maximise=True``; nothing here hand-rolls dominance loops.
"""

from __future__ import annotations

import moocore
import numpy as np

from .config import ConfigError

__all__ = ["normalise", "non_dominated", "hypervolume", "front_order", "pareto_front", "eval_key", "comparable",
           "preference_grid", "conditioned_grid"]

# what must match for two points' evaluations to be comparable (batch size and timing do not change the statistics)
EVAL_KEY_FIELDS = ("n_prompts", "seed", "max_new_tokens", "temperature")


def _points(points, name: str = "points") -> np.ndarray:
    """Array-like → float (N, m) array; empty input → shape (0, m) (m = 0 when unknown). Raises ValueError."""
    arr = np.asarray(points, dtype=float)
    if arr.size == 0:
        m = arr.shape[1] if arr.ndim == 2 else 0
        return arr.reshape(0, m)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows = points, columns = objectives), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN / inf)")
    return arr


def normalise(points, lower, upper, *, clip: bool = False) -> np.ndarray:
    """Map each objective column linearly to [0, 1] by its bounds: (x − lower) / (upper − lower).

    Objectives have very different scales (a sentiment logit vs. a length ratio); normalising by the objectives'
    declared bounds makes hypervolumes comparable across runs. Values outside the bounds are NOT clipped by
    default (they land outside [0, 1], so out-of-range results stay visible); ``clip=True`` clamps to [0, 1].
    Works on one point (m,) or many (N, m). Raises ValueError unless upper > lower for every objective.
    """
    x = np.asarray(points, dtype=float)
    lo = np.asarray(lower, dtype=float)
    hi = np.asarray(upper, dtype=float)
    m = x.shape[-1] if x.ndim else 1
    if lo.shape != hi.shape or lo.size != m:
        raise ValueError(f"lower / upper must have one value per objective ({m}), got {lo.shape} and {hi.shape}")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("lower / upper bounds must be finite")
    if not (hi > lo).all():
        raise ValueError(f"upper must be > lower for every objective, got lower={lo.tolist()} upper={hi.tolist()}")
    out = (x - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0) if clip else out


def non_dominated(points) -> np.ndarray:
    """Boolean mask of the points no other point dominates (maximisation).

    q dominates p when q ≥ p in every objective and q > p in at least one. Duplicates: every copy of a
    non-dominated point is kept (True) — equal points do not dominate each other strictly. A single point is
    non-dominated; empty input gives an empty mask. Any number of objectives (1, 2, 3+).
    """
    arr = _points(points)
    if arr.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(arr, maximise=True, keep_weakly=True), dtype=bool)


def pareto_front(points) -> np.ndarray:
    """The non-dominated rows themselves (duplicates kept), in input order."""
    arr = _points(points)
    return arr[non_dominated(arr)] if arr.shape[0] else arr


def hypervolume(points, reference) -> float:
    """Volume dominated by ``points`` and bounded below by ``reference`` (maximisation), in objective units.

    Only points strictly better than the reference in every objective contribute (others add nothing);
    empty input (or no such point) gives 0.0. Normalise first (``normalise``) to compare across objective scales;
    with normalised points, reference = zeros is the usual choice.
    """
    ref = np.asarray(reference, dtype=float).reshape(-1)
    if not np.isfinite(ref).all():
        raise ValueError("reference must be finite")
    arr = _points(points)
    if arr.shape[0] == 0:
        return 0.0
    if arr.shape[1] != ref.size:
        raise ValueError(f"reference has {ref.size} values, points have {arr.shape[1]} objectives")
    inside = (arr > ref).all(axis=1)
    if not inside.any():
        return 0.0
    return float(moocore.hypervolume(arr[inside], ref=ref, maximise=True))


def front_order(points) -> np.ndarray:
    """Indices of the non-dominated points sorted by the first objective (ascending; ties: second descending).

    In 2-D this is the order to join the front with a line (it runs from the best-in-objective-2 end to the
    best-in-objective-1 end). Duplicates are kept and end up adjacent. Empty input → empty int array.
    """
    arr = _points(points)
    if arr.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.flatnonzero(non_dominated(arr))
    sub = arr[idx]
    # lexsort sorts by the last key first: primary = objective 0 ascending, then objective 1 descending
    keys = [idx] + ([-sub[:, 1]] if sub.shape[1] > 1 else []) + [sub[:, 0]]
    return idx[np.lexsort(keys)].astype(np.int64)


def eval_key(point) -> tuple:
    """A point's evaluation setting (from its ``eval_config``): the first n held-out prompts, the sampling seed,
    the response length and the temperature."""
    cfg = point.get("eval_config") or {}
    return tuple(cfg.get(k) for k in EVAL_KEY_FIELDS)


def comparable(points) -> list[bool]:
    """Per point (store dicts): whether it was evaluated like the rest of its sweep, and so may enter that sweep's
    front and hypervolume. A sweep's setting is its base-model point's, or without one the most common among its
    adapters. The app's quick mixtures (8 prompts × 32 tokens) in a sweep evaluated on 64 × 48 are not."""
    points = list(points)
    by_sweep: dict = {}
    for p in points:
        by_sweep.setdefault(p.get("sweep_id"), []).append(p)
    reference = {}
    for sweep, pts in by_sweep.items():
        base = [eval_key(p) for p in pts if p.get("kind") == "base"]
        keys = base or [eval_key(p) for p in pts if p.get("kind") == "adapter"] or [eval_key(p) for p in pts]
        reference[sweep] = max(keys, key=keys.count)  # the first of the most common
    return [eval_key(p) == reference[p.get("sweep_id")] for p in points]


def preference_grid(n_objectives: int, points: int) -> list[list[float]]:
    """An even grid of the simplex: every (k_1, ..., k_n)/(K−1) with Σ k_i = K−1 (K = ``points``).

    2 objectives: K points from (1, 0) to (0, 1); 3 objectives: the (K choose 2)+... triangle grid. K = 1 gives the
    uniform preference.
    """
    if n_objectives < 1:
        raise ConfigError("a preference grid needs at least one objective")
    if points < 1:
        raise ConfigError(f"points must be ≥ 1, got {points}")
    if n_objectives == 1:
        return [[1.0]]
    if points == 1:
        return [[1.0 / n_objectives] * n_objectives]
    K = points - 1
    out: list[list[float]] = []

    def rec(prefix: list[int], left: int, slots: int) -> None:
        if slots == 1:
            out.append([k / K for k in prefix + [left]])
            return
        for k in range(left, -1, -1):
            rec(prefix + [k], left - k, slots - 1)

    rec([], K, n_objectives)
    return out


# points per edge of the grid a conditioned adapter is evaluated at, by number of objectives (docs/conditioned.md)
CONDITIONED_GRID = {1: 1, 2: 11, 3: 5}


def conditioned_grid(n_objectives: int, points: int = 0) -> list[list[float]]:
    """The preferences one conditioned adapter is evaluated at: 11 points from (1, 0) to (0, 1) for two objectives,
    the 5-per-edge triangle (15 points) for three, 3 per edge beyond; a larger ``points`` (a sweep's) refines it."""
    return preference_grid(n_objectives, max(int(points), CONDITIONED_GRID.get(n_objectives, 3)))
