"""Length-controlled scores of a stored front: ``control_sweep(store, sweep_id)`` reads every point of the sweep with
its stored generations (text and per-objective scores), runs :func:`pama.lengthcontrol.control_front` with the base
model's point as the reference, writes each point's controlled (mean, low, high) per objective
(``Store.set_controlled``) and the front-level figures into the sweep's summary under ``length_control``.

Called at the end of every sweep evaluation (``pama.sweep``), when a shipped demo is imported without stored values
(``pama.demo``) and by ``python -m pama front SWEEP --length-control``. Core: the store, the objectives and the math
only, so each of those may call it (docs/fronts.md, "Length-controlled scores").

The fit uses the points evaluated like the rest of their sweep (``pareto.comparable``); a point evaluated otherwise
(the app's quick mixtures on a few prompts) gets its controlled score from the same fitted lines but does not move
them, nor count in the shares, as it does not count in the front or its hypervolume."""
from __future__ import annotations

import json
import math
import time
from typing import Iterable, Mapping

import numpy as np

from . import lengthcontrol as LC
from . import objectives as objmod
from . import pareto
from .stats import bootstrap_ci
from .store import Store, StoreError

SUMMARY_KEY = "length_control"
METHOD = ("pooled least squares of each score on log(1 + words) over the sweep's points (base included); a point's "
          "controlled score = mean of score − slope·(log(1 + words) − the base model's mean log(1 + words)), 95% "
          "percentile bootstrap interval; see docs/fronts.md")


def is_length(objectives: Iterable[str]) -> dict[str, bool]:
    """Per objective name: whether it is a function of answer length alone (``Objective.measures_length``); an
    objective that cannot be built here (an ``hf:`` model not on this machine, a ``py:`` module) counts as not."""
    out = {}
    for name in objectives:
        try:
            out[name] = bool(objmod.get(name).measures_length)
        except Exception:  # any failure to build the scorer: unknown, so treated as an ordinary objective
            out[name] = False
    return out


def samples_of(store: Store, point_ids: Iterable[str], objectives: list[str]) -> dict[str, tuple[list, list[str]]]:
    """point id → (scores n_objectives × n_samples, texts) from its stored generations; a generation lacking a score
    of some objective is left out, and a point left with none is absent."""
    out = {}
    for pid in point_ids:
        rows = [g for g in store.generations(pid) if all(o in (g.get("scores") or {}) for o in objectives)]
        if rows:
            out[pid] = ([[float(g["scores"][o]) for g in rows] for o in objectives], [g["text"] for g in rows])
    return out


def _num(x: float | None) -> float | None:
    """JSON-safe: NaN (no spread, too few points) becomes None (PostgreSQL's JSON refuses NaN)."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _apply(cf: LC.ControlledFront, scores, texts, objectives: list[str]) -> dict[str, tuple | None]:
    """A point outside the fit, controlled along the front's fitted lines."""
    words = LC.word_lengths(texts)
    arr = np.asarray(scores, dtype=float).reshape(len(objectives), -1)
    out = {}
    for j, o in enumerate(objectives):
        f = cf.fits.get(o)
        out[o] = None if f is None else bootstrap_ci(f.adjust(arr[j], words))
    return out


def summary_of(cf: LC.ControlledFront, objectives: list[str], *, base: str | None, n_points: int,
               n_samples: int) -> dict:
    """The front-level figures kept in the sweep's summary (JSON-safe)."""
    fits = {o: None if f is None else dict(slope=f.slope, intercept=f.intercept, x_ref=f.x_ref, r2=f.r2)
            for o, f in cf.fits.items()}
    return dict(objectives=list(objectives), share={o: _num(cf.share.get(o)) for o in objectives},
                rho={o: _num(cf.rho.get(o)) for o in objectives}, is_length=dict(cf.is_length),
                mostly_length=bool(cf.mostly_length), warning=cf.warning(), threshold=LC.MOSTLY_LENGTH_SHARE,
                reference_point_id=base, n_points=n_points, n_samples=n_samples,
                fits={o: None if v is None else {k: _num(x) for k, x in v.items()} for o, v in fits.items()},
                method=METHOD, updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _canonical(point: Mapping) -> tuple:
    return (point["kind"] != "base", point["kind"], str(point.get("run_id") or ""),
            json.dumps(point.get("preference")), json.dumps(point.get("mixture"), sort_keys=True),
            str(point.get("label") or ""), point["id"])


def control_points(points: list[Mapping], samples: Mapping[str, tuple], objectives: list[str],
                   flags: Mapping[str, bool]) -> tuple[LC.ControlledFront | None, dict[str, dict], dict | None]:
    """Pure part of :func:`control_sweep`: (the controlled front of the comparable points, point id → objective →
    (mean, low, high) | None for every point with samples, the summary); (None, {}, None) with nothing to fit."""
    keep = pareto.comparable(points)
    # pooled in an order of what the points are, not of when they were stored: a point re-evaluated after a resume
    # (a new id, a later row) gets the same controlled values to the last digit
    fit = sorted((p for p, k in zip(points, keep) if k and p["id"] in samples), key=_canonical)
    fit_ids = [p["id"] for p in fit]
    if not fit_ids:
        return None, {}, None
    base = next((p["id"] for p in points if p["kind"] == "base" and p["id"] in fit_ids), None)
    cf = LC.control_front({pid: samples[pid] for pid in fit_ids}, objectives, flags, base)
    values = {pid: cf.values[pid] for pid in fit_ids}
    for p in points:
        if p["id"] in samples and p["id"] not in values:
            values[p["id"]] = _apply(cf, *samples[p["id"]], objectives)
    summary = summary_of(cf, objectives, base=base, n_points=len(fit_ids),
                         n_samples=sum(len(samples[pid][1]) for pid in fit_ids))
    return cf, values, summary


def control_sweep(store: Store, sweep_id: str) -> LC.ControlledFront | None:
    """Compute and store the length-controlled values of every point of the sweep and the front-level figures
    (``summary["length_control"]``); None (nothing written) when no point has stored generations."""
    sweep = store.get_sweep(sweep_id)
    if sweep is None:
        raise StoreError(f"No sweep with id '{sweep_id}' in {store.safe_url}. `python -m pama front` lists them.")
    objectives = list(sweep["objectives"])
    points = [p for p in store.points(sweep_id=sweep_id) if all(o in p["values"] for o in objectives)]
    samples = samples_of(store, [p["id"] for p in points], objectives)
    cf, values, summary = control_points(points, samples, objectives, is_length(objectives))
    if cf is None:
        return None
    for pid, vals in values.items():
        store.set_controlled(pid, vals)
    current = store.get_sweep(sweep_id)["summary"] or {}
    store.update_sweep(sweep_id, summary={**current, SUMMARY_KEY: summary})
    return cf
