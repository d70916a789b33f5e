"""Preference-conditioned adapters in the app (pure, no Streamlit): which runs of the shown points are conditioned,
slider values → a preference, comparison items at a preference, the typed preferences of the Compare page, and the
live point the Pareto front page places on its plot."""
from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

from ..preference import Preference, PreferenceError, PreferenceWarning
from .settings import UIError

LIVE_ID = "live"


def conditioned_runs(points: Sequence[Mapping]) -> dict[str, dict]:
    """{run id: {model, method, sweep_id, label, objectives}} of the runs behind the points of kind ``conditioned``,
    in the order first seen (the objectives: those the points were evaluated on)."""
    out: dict[str, dict] = {}
    for p in points:
        if p.get("kind") != "conditioned" or not p.get("run_id"):
            continue
        label = str(p.get("label") or p["run_id"]).split(" @ ")[0]
        info = out.setdefault(p["run_id"], dict(model=p.get("model"), method=p.get("method"),
                                                sweep_id=p.get("sweep_id"), label=label, objectives=[]))
        for o in (p.get("values") or {}):
            if o not in info["objectives"]:
                info["objectives"].append(o)
    return out


def _preference(weights: Any, n: int | None = None, *, what: str = "preference") -> Preference:
    """``pama.preference`` makes it; the page shows the weights used, so normalising needs no warning here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PreferenceWarning)
            return Preference.parse(weights, n, what=what)
    except PreferenceError as err:
        raise UIError(str(err)) from None


def normalise(weights: Sequence[float]) -> list[float]:
    """Slider or typed weights → a preference summing to 1; UIError if one is negative / not finite or all are 0."""
    return _preference(weights).as_list()


def two_objective_preference(first: float) -> list[float]:
    """The two-objective slider: the first objective's weight p₁ → (p₁, 1 − p₁)."""
    first = min(max(float(first), 0.0), 1.0)
    return [first, 1.0 - first]


# the linked weights of three or more objectives: one slider per objective on a grid of LINKED_STEP; moving one keeps
# the value set and rescales the others so that the sliders always show the preference used (their sum is 1)
LINKED_STEP = 0.01


def _share(total: int, parts: Sequence[float]) -> list[int]:
    """``total`` grid units split in proportion to ``parts`` (equally when they are all 0): largest remainders, ties
    to the first, so the units always add up to ``total``."""
    n = len(parts)
    s = sum(parts)
    exact = [total * x / s for x in parts] if s > 0 else [total / n] * n
    units = [math.floor(e + 1e-9) for e in exact]
    order = sorted(range(n), key=lambda i: (-(exact[i] - units[i]), i))
    for i in order[:total - sum(units)]:
        units[i] += 1
    return units


def linked_weights(values: Sequence[Any], n: int, *, step: float = LINKED_STEP) -> list[float]:
    """The linked sliders' values to show: ``values`` (the sliders' state) when they are n finite weights ≥ 0 on the
    grid that sum to 1, else the equal split (1/n each on the grid, the remainder to the first)."""
    units = round(1 / step)
    try:
        w = [float(x) for x in values]
    except (TypeError, ValueError):
        w = []
    if (len(w) == n and all(math.isfinite(x) and x >= 0 for x in w)
            and all(abs(x / step - round(x / step)) < 1e-6 for x in w) and sum(round(x / step) for x in w) == units):
        return [round(x / step) / units for x in w]
    return [u / units for u in _share(units, [1.0] * n)]


def rebalance(values: Sequence[float], moved: int, *, step: float = LINKED_STEP) -> list[float]:
    """Linked weights after the user set slider ``moved`` to ``values[moved]``: that weight is kept (clamped to
    [0, 1], on the grid of ``step``) and the rest, 1 − it, is shared by the other weights in proportion to their
    values before the move (equally when they were all 0). The result sums to 1 exactly on the grid."""
    n = len(values)
    if n < 2 or not 0 <= moved < n:
        raise UIError(f"cannot rebalance weight {moved} of {n}")
    units = round(1 / step)
    v = float(values[moved])
    kept = min(max(round(v / step) if math.isfinite(v) else 0, 0), units)
    others = [max(float(x), 0.0) if math.isfinite(float(x)) else 0.0 for i, x in enumerate(values) if i != moved]
    shared = iter(_share(units - kept, others))
    return [(kept if i == moved else next(shared)) / units for i in range(n)]


def preference_text(objectives: Sequence[str], p: Sequence[float]) -> str:
    return ", ".join(f"{o} {float(w):.2f}" for o, w in zip(objectives, p))


def parse_preferences(text: str, n: int) -> list[list[float]]:
    """The Compare page's typed preferences, one per line ('0.2, 0.8'), each normalised; UIError naming a bad line."""
    return [_preference(line, n, what=f"preference on line {k}").as_list()
            for k, line in enumerate((text or "").splitlines(), 1) if line.strip()]


def preference_item(run_id: str, info: Mapping[str, Any], p: Sequence[float]) -> dict:
    """A comparison item: the conditioned run ``run_id`` at preference ``p`` (not a stored point)."""
    p = [round(float(x), 4) for x in p]
    return dict(id=f"pref:{run_id}:{','.join(f'{x:.4f}' for x in p)}", kind="conditioned", run_id=run_id,
                preference=p, model=info.get("model"), method=info.get("method"), sweep_id=info.get("sweep_id"),
                values={}, label=f"{info.get('label') or run_id} @ ({', '.join(f'{x:.2f}' for x in p)})")


def live_point(run_id: str, p: Sequence[float], scores: Mapping[str, float], *, label: str = "") -> dict:
    """The slider's generation as a point for the plot (one response: no interval)."""
    return dict(id=LIVE_ID, kind="live", run_id=run_id, preference=list(p), label=label or "live",
                values={o: dict(mean=float(v), ci_low=float(v), ci_high=float(v)) for o, v in scores.items()})
