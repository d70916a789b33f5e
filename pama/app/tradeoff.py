"""Your trade-off, learned from your blind votes (``pama.votefit``; docs/votes.md): the cached fit of the shown votes,
its tables, where it lands on the front (a marker with its interval, the nearest stored point), the preference a
conditioned adapter's slider takes for it, the Pareto front page's panel and the Blind vote page's.

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
from ..store import StoreError
from . import hosting, reads, steering
from .selection import point_label
from .settings import GENERATION_MAX_NEW_TOKENS, GENERATION_TEMPERATURE, UIError

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


def sweeps_of(points: Sequence[Mapping]) -> tuple[str, ...]:
    """The sweeps of ``points``, sorted: part of the cached fit's key (``analysis``)."""
    return tuple(sorted({p.get("sweep_id") for p in points if p.get("sweep_id")}))


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


# ------------------------------------------------------------------------------------------ the vote page's panel

def vote_panel(points: Sequence[Mapping], votes: list[dict], sweeps: Mapping, voter: str | None, *,
               all_points: Sequence[Mapping], prompt: str, seed: int = 0, expanded: bool = False) -> None:
    """The Blind vote page's "your trade-off": the fit of the votes between the drawn points (``voter``'s only when
    named), its weights, held-out accuracies and the votes that disagree most with the scores; and, with a
    conditioned adapter in the store, the ballot's ``prompt`` written at the fitted weights."""
    with st.expander("Your trade-off, learned from " + (f"{voter}'s votes" if voter else "everyone's votes"),
                     expanded=expanded):
        objectives = fit_objectives(points, sweeps)
        with st.spinner("Fitting your trade-off…"):
            mine = analysis(votes, tuple(objectives), sweeps_of(points), voter)
        if mine.fit is None:
            st.caption(f"Needs at least {F.MIN_VOTES} votes with stored scores "
                       f"({len(mine.rows)} so far; {mine.rows.unscored} on generated responses). Type your name "
                       "above to fit your own votes only.")
            return
        f = mine.fit
        st.markdown("**Weights** " + F.weights_text(f))
        st.dataframe(weights_rows(f), hide_index=True, key="tradeoff_weights")
        st.caption(summary_text(f))
        acc_rows = accuracy_rows(mine.accuracy, with_length=f.gamma is not None)
        if acc_rows:
            st.markdown(f"**Held-out accuracy** ({mine.accuracy['folds']}-fold cross-validation over "
                        f"{mine.accuracy['n']} decisive votes; chance is 50%)")
            st.dataframe(acc_rows, hide_index=True, key="tradeoff_accuracy")
        else:
            st.caption(f"Held-out accuracy needs at least {2 * F.FOLDS} decisive votes.")
        if mine.disagreements:
            st.markdown("**Where the objective scores and the votes disagree most** (the scores favoured one "
                        "response, the vote went to the other):")
        for k, d in enumerate(mine.disagreements):
            with st.container(border=True, key=f"tradeoff_disagree_{k}"):
                st.caption(f"Chose {d['chosen'].upper()}; the scores gave it {d['p_scores']:.0%}. "
                           f"Prompt: {d['prompt']}")
                dc = st.columns(2)
                for col, side in zip(dc, ("a", "b")):
                    col.caption(f"{side.upper()} · " + ", ".join(f"{o} {v:.3f}" for o, v in
                                                                 d[f"scores_{side}"].items())
                                + f" · {d[f'words_{side}']} words")
                    col.text(d[f"text_{side}"] or "(empty response)")  # plain text: only the ballot uses st.code
        gen_runs = steering.conditioned_runs(all_points)
        if gen_runs and f.kappa > 0:
            _generate_at_tradeoff(f, gen_runs, prompt, seed)


def _generate_at_tradeoff(f: F.WeightFit, gen_runs: Mapping[str, Mapping], prompt: str, seed: int) -> None:
    """A conditioned adapter picker and *Generate at my trade-off*: ``prompt`` written at the fitted weights."""
    g1, g2 = st.columns([2, 1])
    grun = g1.selectbox("Conditioned adapter", list(gen_runs), key="tradeoff_run",
                        format_func=lambda r: f"{gen_runs[r]['label']} [{r}]")
    grec = reads.run(grun)
    gobjs = list((grec.config if grec else {}).get("objectives") or gen_runs[grun]["objectives"])
    gpref = preference_for(f, gobjs)
    if g2.button("Generate at my trade-off", key="tradeoff_generate", disabled=gpref is None,
                 help="This prompt, written by the conditioned adapter at your weights."):
        item = steering.preference_item(grun, gen_runs[grun], gpref)
        try:
            with st.spinner(f"Generating at {steering.preference_text(gobjs, gpref)}…"):
                st.session_state["tradeoff_result"] = dict(item=item["label"], **hosting.generate_item(
                    reads.store(), item, prompt, override=st.session_state.get("app_model"), seed=int(seed),
                    temperature=GENERATION_TEMPERATURE, max_new_tokens=GENERATION_MAX_NEW_TOKENS))
        except (UIError, ValueError, StoreError, ImportError, OSError) as err:
            st.error(f"Could not generate with this adapter: {err}")
    if gpref is None:
        st.caption("This adapter takes other objectives than your votes were fitted on.")
    res = st.session_state.get("tradeoff_result")
    if res:
        st.caption(f"{res['item']}:")
        st.code(res["text"] or "(empty response)", language=None, wrap_lines=True)
        st.caption("Scores: " + (" · ".join(f"{o} {v:.3f}" for o, v in res["scores"].items()) or "none"))
