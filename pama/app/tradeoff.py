"""Your trade-off, learned from your blind votes (``pama.votefit``; docs/votes.md): the cached fit of the shown votes,
its tables, where it lands on the front (a marker with its interval, the nearest stored point), the preference a
conditioned adapter's slider takes for it, and the Pareto front page's panel.

The panel is drawn here rather than on the page because the front page is shared by several changes at once; the
page calls ``front_panel`` in one line, before its chart is drawn (the marker goes on the chart)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import streamlit as st

from .. import plots
from .. import votefit as F
from .. import votes as V
from . import reads, steering
from .selection import point_label

ALL_VOTERS = "(all voters)"
SLIDER_STEP = 0.05      # the front page's two-objective slider (views/front.py, key cond_p)


# ------------------------------------------------------------------------------------------------ the fit

@st.cache_data(show_spinner=False, max_entries=32)
def analysis(votes: list[dict], objectives: tuple[str, ...], sweep_ids: tuple[str, ...], voter: str | None = None,
             length: str = "auto", seed: int = 0) -> F.Analysis:
    """``votefit.analyse`` of these votes, cached on the votes themselves: each response's stored scores (the
    cached generations of the voted points), the bounds the sweeps' runs stored."""
    ids = sorted({v[k] for v in votes for k in ("point_a", "point_b")})
    gens = {pid: reads.generations(pid) for pid in ids}
    runs = [r for s in sweep_ids for r in reads.runs(sweep_id=s)]
    specs = F.objective_specs(list(objectives), runs)
    used = [o for o in objectives if o in specs]
    if not used:
        return F.Analysis(F.VoteRows([], np.zeros((0, 0)), np.zeros(0), np.zeros(0), []), None, None, [], voter)
    return F.analyse(votes, gens, used, specs, voter=voter, length=length, seed=seed)


def specs_for(objectives: Sequence[str], sweep_ids: Sequence[str]) -> dict[str, dict]:
    return F.objective_specs(list(objectives), [r for s in sweep_ids for r in reads.runs(sweep_id=s)])


def fit_objectives(points: Sequence[Mapping], sweeps: Mapping[str, object]) -> list[str]:
    """The objectives to fit over: the sweeps' own (in their order), else every objective the points were scored on;
    the blind-vote pseudo-objective never."""
    out: list[str] = []
    for sid in dict.fromkeys(p.get("sweep_id") for p in points):
        for o in getattr(sweeps.get(sid), "objectives", None) or []:
            if o not in out:
                out.append(o)
    if not out:
        for p in points:
            for o in p.get("values") or {}:
                if o not in out:
                    out.append(o)
    return [o for o in out if o != V.SCORE_NAME]


def weights_rows(f: F.WeightFit) -> list[dict]:
    """One row per objective: weight and interval."""
    return [{"objective": o, "weight": None if not math.isfinite(w) else round(float(w), 3),
             f"{f.level:.0%} interval": "" if not math.isfinite(lo) else f"[{lo:.2f}, {hi:.2f}]"}
            for o, w, lo, hi in zip(f.objectives, f.w, f.w_low, f.w_high)]


def summary_text(f: F.WeightFit) -> str:
    """κ and the length term in one line."""
    out = f"κ = {f.kappa:.1f} [{f.kappa_interval[0]:.1f}, {f.kappa_interval[1]:.1f}] (how strongly the objectives "
    out += "drive the votes; 0 = not at all)"
    if f.gamma is None:
        return out + f" · length term {f.length_note}"
    share = f.length_share()
    return (out + f" · length coefficient {f.gamma:+.2f} [{f.gamma_interval[0]:+.2f}, {f.gamma_interval[1]:+.2f}] "
            f"per log-words gap" + ("" if share is None else f", {share:.0%} of the fitted preference"))


def accuracy_rows(acc: Mapping | None, *, with_length: bool) -> list[dict]:
    """The cross-validated accuracies as a table (empty without them)."""
    if not acc:
        return []
    names = [("model", "objectives + length" if with_length else "objectives (your weights)"),
             ("objectives", "objectives alone"), ("length", "length alone (longer or shorter wins)"),
             ("bt", "points' Bradley–Terry scores")]
    return [{"predictor": label, "held-out accuracy": f"{acc[k]:.0%}"} for k, label in names
            if with_length or k != "objectives"]


# ------------------------------------------------------------------------------------------------ on the front

def weight_draws(f: F.WeightFit) -> np.ndarray:
    """The bootstrap's weights (resamples where the objectives explain nothing left out)."""
    m = len(f.objectives)
    beta = f.boot[:, :m]
    k = beta.sum(axis=1)
    return beta[k > 1e-9] / k[k > 1e-9, None]


def marker_points(points: Sequence[Mapping], run_id: str | None = None) -> list[Mapping]:
    """The stored points the trade-off is placed among: the conditioned run's when one is chosen, else the
    largest series (``plots.group_of``) of points with a preference."""
    if run_id:
        own = [p for p in points if p.get("kind") == "conditioned" and p.get("run_id") == run_id]
        if own:
            return own
    groups: dict[str, list] = {}
    for p in points:
        if p.get("preference") and p.get("kind") in ("adapter", "conditioned"):
            groups.setdefault(plots.group_of(p), []).append(p)
    return max(groups.values(), key=len) if groups else []


def marker(f: F.WeightFit, points: Sequence[Mapping], orders: Mapping[str, Sequence[str]],
           axes: Sequence[str], *, level: float = F.LEVEL) -> dict | None:
    """Where the fitted weights land among ``points`` (``votefit.at_preference``) on ``axes``, each axis with the
    percentile interval of the bootstrap's weights placed the same way, and the nearest stored point."""
    if not (f.kappa > 0):
        return None
    at = F.at_preference(points, f.w, f.objectives, orders, axes)
    if at is None:
        return None
    spots = [F.at_preference(points, w, f.objectives, orders, axes) for w in weight_draws(f)]
    spots = [s for s in spots if s is not None]
    values = {}
    for a in axes:
        c = at["values"][a]
        xs = np.array([s["values"][a] for s in spots]) if spots else np.array([c])
        lo, hi = np.quantile(xs, [(1 - level) / 2, 1 - (1 - level) / 2])
        values[a] = dict(mean=c, ci_low=float(min(lo, c)), ci_high=float(max(hi, c)))
    return dict(values=values, nearest=at["nearest"], distance=at["distance"],
                label="your trade-off: " + ", ".join(f"{o} {w:.2f}" for o, w in zip(f.objectives, f.w)))


def preference_for(f: F.WeightFit, run_objectives: Sequence[str]) -> list[float] | None:
    """The fitted weights in a conditioned adapter's objective order; None unless they are the same objectives."""
    if not (f.kappa > 0) or sorted(run_objectives) != sorted(f.objectives):
        return None
    return [float(f.w[f.objectives.index(o)]) for o in run_objectives]


def slider_state(pref: Sequence[float]) -> dict:
    """The front page's slider values for a preference: ``cond_p`` (two objectives, on the slider's 0.05 grid) or
    the linked ``cond_w_k`` (on steering's grid, summing to 1)."""
    if len(pref) == 2:
        return {"cond_p": round(round(pref[0] / SLIDER_STEP) * SLIDER_STEP, 2)}
    units = round(1 / steering.LINKED_STEP)   # grid units shared by largest remainders, as the linked sliders do
    return {f"cond_w_{k}": u / units for k, u in enumerate(steering._share(units, list(pref)))}


# ------------------------------------------------------------------------------------------------ the front panel

def front_panel(fig, points: Sequence[Mapping], votes: list[dict], axes: Sequence[str], sweeps: Mapping,
                cond_runs: Mapping[str, Mapping]) -> None:
    """The Pareto front page's "your trade-off": whose votes, the weights with intervals, the marker on ``fig`` (two
    plotted objectives), the nearest stored point, and a button that moves the conditioned slider to the weights
    (the slider then generates there)."""
    counted = [v for v in votes if v.get("vote") in ("a", "b", "tie")]
    if len(counted) < F.MIN_VOTES:
        return
    with st.container(border=True):
        names = F.voters(votes)
        c1, c2 = st.columns([1, 3])
        who = c1.selectbox("Your trade-off from the votes of", [ALL_VOTERS] + names, key="tradeoff_voter")
        voter = None if who == ALL_VOTERS else who
        objectives = fit_objectives(points, sweeps)
        sids = tuple(sorted({p.get("sweep_id") for p in points if p.get("sweep_id")}))
        with st.spinner("Fitting your trade-off…"):
            a = analysis(votes, tuple(objectives), sids, voter)
        f = a.fit
        if f is None:
            c2.caption(f"Too few votes with stored scores to fit a trade-off ({len(a.rows)} of at least "
                       f"{F.MIN_VOTES}; {a.rows.unscored} on generated responses).")
            return
        c2.markdown("**Your trade-off** (weights over the objectives, fitted from the blind votes): "
                    + F.weights_text(f))
        c2.caption(summary_text(f) + (f" · held-out accuracy {a.accuracy['model']:.0%} (length alone "
                                      f"{a.accuracy['length']:.0%}, BT scores {a.accuracy['bt']:.0%})"
                                      if a.accuracy else "") + ". Method: docs/votes.md.")
        run_id = st.session_state.get("cond_run") if st.session_state.get("cond_run") in cond_runs else None
        run_id = run_id or next(iter(cond_runs), None)
        orders = {sid: list(getattr(s, "objectives", []) or []) for sid, s in sweeps.items()}
        mk = marker(f, marker_points(points, run_id), orders, list(axes)) if len(axes) == 2 else None
        if mk is not None and fig is not None:
            plots.add_tradeoff(fig, mk, axes, nearest=mk["nearest"])
            near = mk["nearest"]
            c2.caption(f"★ on the plot, with its {f.level:.0%} interval. Nearest stored point: "
                       f"`{point_label(near, sweeps=sweeps)}` (preference distance {mk['distance']:.2f}).")
        elif fig is not None:
            c2.caption("Not on the plot: it is placed among points trained at a preference, on two plotted "
                       "objectives.")
        if run_id is None:
            return
        run_rec = reads.run(run_id)
        objs = list((run_rec.config if run_rec else {}).get("objectives") or cond_runs[run_id]["objectives"])
        pref = preference_for(f, objs)
        if pref is None:
            c2.caption("The conditioned adapter takes other objectives than these votes were fitted on.")
            return

        def move() -> None:
            st.session_state["cond_run"] = run_id
            st.session_state.update(slider_state(pref))

        c1.button("Move the slider to my trade-off", key="tradeoff_to_slider", on_click=move,
                  help=f"{cond_runs[run_id]['label']} at {steering.preference_text(objs, pref)}: the slider above "
                       "moves there and generates.")
