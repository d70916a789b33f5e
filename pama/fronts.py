"""A stored front as a table: what reads a sweep's evaluated points without training or evaluating anything.

``summarise`` (front ids and hypervolumes), ``front_table`` (one row per point) and ``format_table`` (the CLI's text)
are used by the sweep workflow after it evaluates (``pama.sweep``), by the exports (``pama.report``, the app's
``pama.app.exports``) and by the ``front`` / ``sweep`` subcommands. They live apart from the sweep so that an
exporter reading a front does not import the trainer (torch, peft, accelerate).

Hypervolume: objectives are normalised by their declared bounds (``Objective.lower/upper`` → [0, 1]) and the
reference point is the normalised lower bounds, i.e. 0 in every objective. A reference at the base model's values
would give 0 to any adapter that trades one objective for another (it must beat the base in every objective to count),
hiding exactly the trade-offs a front is about; so the reference is 0 and the summary reports the hypervolume of the
base model alone next to that of the sweep (``hypervolume_base`` / ``hypervolume_adapters`` / ``hypervolume``).
"""
from __future__ import annotations

import time
from typing import Iterable

import numpy as np

from . import objectives as objmod
from . import pareto
from .controlled import SUMMARY_KEY as LENGTH_CONTROL
from .store import Store, StoreError


def pref_label(pref: Iterable[float]) -> str:
    """A preference as the tables and logs print it: ``(0.25, 0.75)``."""
    return "(" + ", ".join(f"{p:.2f}" for p in pref) + ")"


def bounds(objectives: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The objectives' declared (lower, upper) bounds, which normalise a front for its hypervolume."""
    objs = [objmod.get(o) for o in objectives]
    return np.array([o.lower for o in objs], float), np.array([o.upper for o in objs], float)


def matrix(points: list[dict], objectives: list[str]) -> np.ndarray:
    """The points' means, one row per point and one column per objective."""
    return np.array([[p["values"][o]["mean"] for o in objectives] for p in points], float).reshape(len(points),
                                                                                                  len(objectives))


def mixture_key(m: dict) -> tuple:
    """A mixture's weights as a hashable key (rounded), so a mixture already evaluated is not evaluated again."""
    return tuple(sorted((k, round(float(v), 6)) for k, v in m.items()))


def summarise(store: Store, sweep_id: str) -> dict:
    """Front ids, hypervolumes (all points / trained adapters / base alone) on bounds-normalised objectives.

    Only points evaluated with the sweep's own setting count (``pareto.comparable``): a quick mixture evaluated on
    fewer prompts or shorter responses is listed in ``other_eval_point_ids`` and kept out of front and hypervolume."""

    sweep = store.get_sweep(sweep_id)
    objectives = list(sweep["objectives"])
    evaluated = [p for p in store.points(sweep_id=sweep_id) if all(o in p["values"] for o in objectives)]
    keep = pareto.comparable(evaluated)
    points = [p for p, k in zip(evaluated, keep) if k]
    lo, hi = bounds(objectives)
    ref = np.zeros(len(objectives))
    norm = pareto.normalise(matrix(points, objectives), lo, hi) if points else np.zeros((0, len(objectives)))

    def hv(kinds) -> float:
        rows = [i for i, p in enumerate(points) if p["kind"] in kinds]
        return pareto.hypervolume(norm[rows], ref) if rows else 0.0

    order = pareto.front_order(norm) if points else []
    summary = dict(
        objectives=objectives, lower=lo.tolist(), upper=hi.tolist(),
        reference=ref.tolist(), reference_raw=lo.tolist(),
        reference_note="objectives normalised by their bounds to [0, 1]; reference = normalised lower bounds (0)",
        hypervolume=hv(("base", "adapter", "mixture", "conditioned")),
        hypervolume_adapters=hv(("adapter", "conditioned")),   # every trained point (a conditioned run's included)
        hypervolume_adapters_and_base=hv(("adapter", "conditioned", "base")),
        hypervolume_conditioned=hv(("conditioned",)),
        hypervolume_base=hv(("base",)),
        front_point_ids=[points[i]["id"] for i in order],
        n_points={k: sum(p["kind"] == k for p in points) for k in ("base", "adapter", "mixture", "conditioned")},
        other_eval_point_ids=[p["id"] for p, k in zip(evaluated, keep) if not k],
        updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    summary["hypervolume_gain_over_base"] = summary["hypervolume"] - summary["hypervolume_base"]
    if (sweep.get("summary") or {}).get(LENGTH_CONTROL):   # written by pama.controlled.control_sweep: kept
        summary[LENGTH_CONTROL] = sweep["summary"][LENGTH_CONTROL]
    return summary


def front_table(store: Store, sweep_id: str) -> tuple[list[dict], dict]:
    """One row per point of the sweep (sorted: base, then by first objective), and the summary."""

    sweep = store.get_sweep(sweep_id)
    if sweep is None:
        raise StoreError(f"No sweep with id '{sweep_id}' in {store.url}.")
    summary = summarise(store, sweep_id)
    objectives = summary["objectives"]
    points = [p for p in store.points(sweep_id=sweep_id) if all(o in p["values"] for o in objectives)]
    lo, hi = np.array(summary["lower"]), np.array(summary["upper"])
    mat = matrix(points, objectives)
    norm = pareto.normalise(mat, lo, hi) if points else mat
    comparable = np.array(pareto.comparable(points), bool)
    on_front = np.zeros(len(points), bool)
    if comparable.any():  # a point evaluated otherwise is never on the sweep's front (nor dominates anything)
        on_front[comparable] = pareto.non_dominated(norm[comparable])
    runs = {r["id"]: r for r in store.list_runs(sweep_id=sweep_id)}
    rows = []
    for i, p in enumerate(points):
        run = runs.get(p["run_id"]) if p["run_id"] else None
        rc = run["config"] if run else {}
        row = dict(point_id=p["id"], kind=p["kind"], label=p["label"], run_id=p["run_id"],
                   preference=p["preference"], mixture=p["mixture"], on_front=bool(on_front[i]),
                   comparable=bool(comparable[i]),
                   kl=p["kl"], mean_length=p["mean_length"], distinct_1=p["distinct_1"], distinct_2=p["distinct_2"],
                   eos_fraction=p.get("eos_fraction"),
                   config={k: rc[k] for k in ("method", "anchor", "learning_rate", "steps", "batch_size",
                                              "max_new_tokens", "seed", "conditioned", "conditioning") if k in rc})
        for j, o in enumerate(objectives):
            v = p["values"][o]
            row[f"{o}/mean"] = v["mean"]
            row[f"{o}/ci_low"] = v["ci_low"]
            row[f"{o}/ci_high"] = v["ci_high"]
            row[f"{o}/normalised"] = float(norm[i, j])
            for k in ("lc_mean", "lc_low", "lc_high"):   # length-controlled (None: not computed, or is length)
                row[f"{o}/{k}"] = v.get(k)
        rows.append(row)
    first = objectives[0] if objectives else None
    rows.sort(key=lambda r: (r["kind"] != "base", r.get(f"{first}/mean", 0)))
    return rows, summary


def format_table(rows: list[dict], summary: dict) -> str:
    """The front table as the CLI prints it: one line per point (``*``: on the front), then the hypervolumes."""
    objectives = summary["objectives"]
    head = f"{'point':<13} {'kind':<11} {'preference / mixture':<30} " + " ".join(
        f"{o[:22]:>22}" for o in objectives) + f" {'KL':>6} {'len':>5} {'EOS':>4} front"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["kind"] == "mixture" and r["mixture"]:
            what = " + ".join(f"{w:.2f}·{k}" for k, w in r["mixture"].items())
        elif r["preference"]:
            what = pref_label(r["preference"])
        else:
            what = "base"
        cells = []
        for o in objectives:
            m, lo, hi = r[f"{o}/mean"], r[f"{o}/ci_low"], r[f"{o}/ci_high"]
            cells.append(f"{m:>8.3f} [{lo:.3f},{hi:.3f}]".rjust(22))
        lines.append(f"{r['point_id']:<13} {r['kind']:<11} {what[:30]:<30} " + " ".join(cells)
                     + f" {r['kl'] or 0:>6.2f} {r['mean_length'] or 0:>5.1f} "
                     + ("   -" if r.get("eos_fraction") is None else f"{r['eos_fraction']:>4.0%}")
                     + f"{'  *' if r['on_front'] else ''}")
    lines.append("")
    lines.append(f"hypervolume (normalised objectives, reference {summary['reference']}): "
                 f"all points {summary['hypervolume']:.4f} | trained adapters {summary['hypervolume_adapters']:.4f} | "
                 + (f"conditioned {summary['hypervolume_conditioned']:.4f} | "
                    if summary.get("n_points", {}).get("conditioned") else "") +
                 f"base alone {summary['hypervolume_base']:.4f}")
    return "\n".join(lines)
