"""Plotly figures as pure functions of the store's dicts (no store access, no Streamlit).

Points are ``Store.points()`` dicts: ``id, kind, label, method, preference, mixture, values`` with
``values = {objective: {mean, ci_low, ci_high}}``. Every marker carries its point id in ``custom_data`` so a
click in the app maps back to the point (see ``pama.app.selection.selected_point_ids``).
"""
from __future__ import annotations

import html
import math
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import pareto

PALETTE = ("#4C6EF5", "#E8590C", "#2B8A3E", "#AE3EC9", "#F59F00", "#0CA678", "#D6336C", "#495057")
BASE_COLOUR = "#212529"
OTHER_EVAL = "quick mixture (other eval config)"  # evaluated unlike its sweep: drawn apart, never in a front or HV
OTHER_EVAL_COLOUR = "#868E96"
FADED = 0.28

__all__ = [
    "group_of", "preference_order", "front_data", "controlled_value", "plotted_controlled", "front_figure",
    "front_figure_3d", "pairwise_figure", "hover_text",
    "reward_curves_figure", "weights_figure", "metric_figure", "metrics_table", "empty_figure",
    "live_key", "live_table", "live_front_figure",
]


CONDITIONED = " conditioned"  # suffix of a conditioned adapter's series: its points joined in preference order


def group_of(point: Mapping) -> str:
    """Default series of a point: 'base model', the method (adapters), '<method> mixtures' or '<method> conditioned'
    (one conditioned run evaluated along a preference grid)."""
    if point.get("kind") == "base":
        return "base model"
    method = point.get("method") or "adapter"
    if point.get("kind") == "conditioned":
        return method + CONDITIONED
    return f"{method} mixtures" if point.get("kind") == "mixture" else method


def preference_order(points: Sequence[Mapping]) -> list[int]:
    """Indices of the points in the order of their preference: by p_1 from 0 to 1 for two objectives (one end of a
    conditioned adapter's curve to the other), lexicographically beyond; points without a preference go last."""
    def key(i: int):
        pref = points[i].get("preference") or []
        return (not pref, [float(x) for x in pref], i)
    return sorted(range(len(points)), key=key)


def _fmt(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 1000 else f"{x:.4g}"


def controlled_value(value: Mapping | None) -> tuple[float, float, float] | None:
    """The length-controlled (mean, low, high) of one objective's value ({mean, ci_low, ci_high, lc_mean, lc_low,
    lc_high}, a dict or a record's ``Estimate``), or None where there is none (not computed, or it is length)."""
    if not value or value.get("lc_mean") is None:
        return None
    m = float(value["lc_mean"])
    lo, hi = value.get("lc_low"), value.get("lc_high")
    return m, m if lo is None else float(lo), m if hi is None else float(hi)


def _triple(point: Mapping, name: str, controlled: Iterable[str] = ()) -> tuple[float, float, float] | None:
    """(mean, low, high) of ``name`` for a point: the length-controlled one when ``name`` is in ``controlled``."""
    v = (point.get("values") or {}).get(name)
    if not v:
        return None
    if name in controlled:
        return controlled_value(v)
    return float(v["mean"]), float(v["ci_low"]), float(v["ci_high"])


def hover_text(point: Mapping, objectives: Sequence[str] | None = None, *, is_length: Iterable[str] = ()) -> str:
    """The configuration of a point as escaped HTML for plotly's hover box: each objective's score with its interval,
    and its length-controlled score where there is one (or "is length" for an objective in ``is_length``)."""
    esc = html.escape
    lines = [f"<b>{esc(str(point.get('label') or point.get('id')))}</b>",
             f"id: {esc(str(point.get('id')))} · {esc(str(point.get('kind')))}"]
    if point.get("method"):
        lines.append(f"method: {esc(str(point['method']))}")
    if point.get("preference"):
        lines.append("preference: [" + ", ".join(f"{p:.2f}" for p in point["preference"]) + "]")
    if point.get("mixture"):
        lines.append("mixture: " + ", ".join(f"{esc(str(k))}×{v:.2f}" for k, v in point["mixture"].items()))
    cfg = point.get("eval_config") or {}
    if cfg.get("anchor") is not None:
        lines.append(f"anchor λ: {cfg['anchor']}")
    vals = point.get("values") or {}
    length_itself = set(is_length)
    for name in objectives or list(vals):
        v = vals.get(name)
        if v:
            line = f"{esc(name)}: {_fmt(v['mean'])} [{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]"
            lc = controlled_value(v)
            if lc is not None:
                line += f" · length-controlled {_fmt(lc[0])} [{_fmt(lc[1])}, {_fmt(lc[2])}]"
            elif name in length_itself:
                line += " · is length"
            lines.append(line)
    if point.get("kl") is not None:
        lines.append(f"KL: {_fmt(point['kl'])}")
    if point.get("mean_length") is not None:
        lines.append(f"mean length: {point['mean_length']:.1f}")
    if point.get("eos_fraction") is not None:
        lines.append(f"ended on EOS: {point['eos_fraction']:.0%}")
    return "<br>".join(lines)


def _signs(objectives: Sequence[str], bounds: Mapping | None) -> np.ndarray:
    """+1 for objectives to maximise, -1 for those to minimise (pareto works on maximisation)."""
    out = []
    for name in objectives:
        b = (bounds or {}).get(name) or {}
        out.append(-1.0 if b.get("direction") == "minimize" else 1.0)
    return np.asarray(out)


def _normalised(arr: np.ndarray, objectives: Sequence[str], bounds: Mapping | None) -> np.ndarray | None:
    """Values mapped to [0, 1]-ish by the objectives' bounds (better = larger); None when a bound is missing."""
    if not bounds or any(name not in bounds for name in objectives):
        return None
    lo = np.array([float(bounds[n]["lower"]) for n in objectives])
    hi = np.array([float(bounds[n]["upper"]) for n in objectives])
    try:
        norm = pareto.normalise(arr, lo, hi)
    except ValueError:
        return None
    signs = _signs(objectives, bounds)
    return np.where(signs > 0, norm, 1.0 - norm)


def front_data(points: Sequence[Mapping], objectives: Sequence[str], *, bounds: Mapping | None = None,
               group: Callable[[Mapping], str] = group_of, controlled: Iterable[str] = ()) -> dict[str, dict]:
    """Per series: the points having every objective, their means / CIs, non-dominated mask, front order, HV.

    ``bounds`` = {objective: {lower, upper, direction}} normalises the hypervolume (reference = the lower bounds,
    i.e. the origin after normalisation); without bounds the hypervolume is left out (None).
    ``controlled``: the objectives drawn with their length-controlled scores (pama.lengthcontrol); a point without
    one for such an objective is left out, as a point without a score is.
    """
    objectives = list(objectives)
    controlled = set(controlled)
    groups: dict[str, list[Mapping]] = {}
    evaluated = [p for p in points if all(_triple(p, o, controlled) is not None for o in objectives)]
    for p, ok in zip(evaluated, pareto.comparable(evaluated)):
        groups.setdefault(group(p) if ok else OTHER_EVAL, []).append(p)
    signs = _signs(objectives, bounds)
    out = {}
    for name, pts in groups.items():
        cube = np.array([[_triple(p, o, controlled) for o in objectives] for p in pts], dtype=float)
        mean, lo, hi = cube[..., 0], cube[..., 1], cube[..., 2]
        signed = mean * signs
        mask = pareto.non_dominated(signed)
        order = pareto.front_order(signed) if len(objectives) >= 2 else np.flatnonzero(mask)
        by_preference = name.endswith(CONDITIONED)
        if by_preference:  # a conditioned adapter's curve: every point, dominated or not, in preference order
            order = np.asarray(preference_order(pts), int)
        norm = _normalised(mean, objectives, bounds)
        hv = None
        if name == OTHER_EVAL:  # drawn apart (own symbol and colour, in the legend), never joined, no HV
            mask = np.ones(len(pts), bool)
            order = np.zeros(0, int)
        elif norm is not None and pts[0].get("kind") != "base":
            hv = pareto.hypervolume(norm[mask], np.zeros(len(objectives)))
        out[name] = dict(points=list(pts), mean=mean, low=lo, high=hi, mask=mask, order=order, hv=hv,
                         by_preference=by_preference)
    return out


def _colours(names: Iterable[str]) -> dict[str, str]:
    out, i = {}, 0
    for n in names:
        if n == "base model":
            out[n] = BASE_COLOUR
            continue
        if n == OTHER_EVAL:
            out[n] = OTHER_EVAL_COLOUR
            continue
        root = n.removesuffix(" mixtures")
        if root in out:
            out[n] = out[root]
            continue
        out[n] = PALETTE[i % len(PALETTE)]
        out[root] = out[n]
        i += 1
    return out


def _series_order(names: Iterable[str]) -> list[str]:
    names = list(names)
    return sorted(names, key=lambda n: (n == OTHER_EVAL, n == "base model", n.endswith(" mixtures"), n))


def _legend_name(name: str, d: dict) -> str:
    return f"{name} (HV {d['hv']:.3f})" if d.get("hv") is not None else name


def _symbol(name: str) -> str:
    if name == "base model":
        return "star"
    if name == OTHER_EVAL:
        return "x"
    if name.endswith(CONDITIONED):
        return "square"
    return "diamond" if name.endswith(" mixtures") else "circle"


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=html.escape(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=15, color="#868e96"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def _add_2d(fig: go.Figure, data: dict[str, dict], ix: int, iy: int, objectives: Sequence[str], *,
            selected: set[str], row: int | None = None, col: int | None = None, showlegend: bool = True,
            error_bars: bool = True, colour_by: Mapping[str, float] | None = None,
            is_length: Iterable[str] = ()) -> None:
    colours = _colours(data)
    span = _span(colour_by)
    where = dict(row=row, col=col) if row is not None else {}
    for name in _series_order(data):
        d = data[name]
        colour, sym = colours[name], _symbol(name)
        mean, lo, hi, mask = d["mean"], d["low"], d["high"], d["mask"]
        ids = [p["id"] for p in d["points"]]
        hover = [hover_text(p, objectives, is_length=is_length) for p in d["points"]]
        order = list(d["order"])
        if len(order) >= 2 and name not in ("base model", OTHER_EVAL):
            fig.add_trace(go.Scatter(
                x=mean[order, ix], y=mean[order, iy], mode="lines", line=dict(color=colour, width=2,
                dash="dot" if name.endswith(" mixtures") else "solid"),
                legendgroup=name, showlegend=False, hoverinfo="skip", name=f"{name} front"), **where)
        for dominated in (False, True):
            idx = [i for i in range(len(ids)) if bool(mask[i]) != dominated]
            if not idx:
                continue
            # fade with marker / error-bar opacity (not the trace's), so that a click selection in the app keeps
            # every point visible: selected points full, the others at their usual opacity
            alpha = FADED if dominated else 1.0
            bar = _rgba(colour, 0.35 if dominated else 0.8)
            err = {}
            if error_bars:
                err = dict(
                    error_x=dict(type="data", symmetric=False, array=(hi[idx, ix] - mean[idx, ix]).tolist(),
                                 arrayminus=(mean[idx, ix] - lo[idx, ix]).tolist(), color=bar, thickness=1,
                                 width=2),
                    error_y=dict(type="data", symmetric=False, array=(hi[idx, iy] - mean[idx, iy]).tolist(),
                                 arrayminus=(mean[idx, iy] - lo[idx, iy]).tolist(), color=bar, thickness=1,
                                 width=2))
            line_w = [3 if ids[i] in selected else 1 for i in idx]
            fig.add_trace(go.Scatter(
                x=mean[idx, ix].tolist(), y=mean[idx, iy].tolist(), mode="markers",
                name=_legend_name(name, d) if not dominated else f"{name} (dominated)",
                legendgroup=name, showlegend=showlegend and not dominated,
                marker=dict(color=colour if colour_by is None else [_scale_colour(colour_by.get(ids[i]), span)
                                                                    for i in idx],
                            symbol=sym, size=16 if name == "base model" else 11, opacity=alpha,
                            line=dict(color=["#000000" if ids[i] in selected else "#ffffff" for i in idx],
                                      width=line_w)),
                selected=dict(marker=dict(opacity=1.0)),
                unselected=dict(marker=dict(opacity=alpha * 0.75)),
                customdata=[[ids[i]] for i in idx], hovertext=[hover[i] for i in idx],
                hovertemplate="%{hovertext}<extra></extra>", **err), **where)


SCORE_SCALE = "Viridis"
UNSCORED = "#ced4da"


def _span(values: Mapping[str, float] | None) -> tuple[float, float]:
    vals = [v for v in (values or {}).values() if v is not None and finite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    return (lo - 0.5, hi + 0.5) if hi - lo < 1e-9 else (lo, hi)


def _scale_colour(value: float | None, span: tuple[float, float]) -> str:
    """A score's colour on SCORE_SCALE over ``span``; grey for a point nobody voted on."""
    from plotly.colors import sample_colorscale  # heavy-ish: plotly's colour module, only for vote colours

    if value is None or not finite(value):
        return UNSCORED
    return sample_colorscale(SCORE_SCALE, [(value - span[0]) / (span[1] - span[0])])[0]


def _colour_bar(fig: go.Figure, values: Mapping[str, float], title: str) -> None:
    """An invisible trace that carries the colour bar of ``colour_by`` (the markers hold sampled colours, so that
    each series keeps its symbol, error bars and front line)."""
    lo, hi = _span(values)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                             marker=dict(colorscale=SCORE_SCALE, cmin=lo, cmax=hi, color=[lo], showscale=True,
                                         colorbar=dict(title=dict(text=html.escape(title)), thickness=14, x=1.02))))


def front_figure(points: Sequence[Mapping], objectives: Sequence[str], *, bounds: Mapping | None = None,
                 selected: Iterable[str] = (), title: str | None = None,
                 group: Callable[[Mapping], str] = group_of, error_bars: bool = True,
                 colour_by: Mapping[str, float] | None = None, colour_title: str = "score",
                 controlled: Iterable[str] = (), is_length: Iterable[str] = (),
                 axis_titles: Mapping[str, str] | None = None) -> go.Figure:
    """Two objectives: one scatter per series, dominated points faded, the front joined, CI error bars,
    hypervolume in the legend, the base model as a star. Three or more objectives: pairwise panels.

    ``colour_by`` = {point id: value} (e.g. the blind-vote score) colours the markers on a scale with a colour bar
    (grey: no value); the series keep their symbols and lines (two objectives only).

    ``controlled``: objectives plotted with their length-controlled scores (``front_data``); ``is_length``: those
    that are length itself (said in the hover); ``axis_titles``: {objective: axis title} (e.g. "… (is length)")."""
    objectives = list(objectives)
    controlled = tuple(controlled)
    if len(objectives) < 2:
        return empty_figure("Choose at least two objectives.")
    if len(objectives) > 2:
        return pairwise_figure(points, objectives, bounds=bounds, selected=selected, group=group,
                               error_bars=error_bars, controlled=controlled, is_length=is_length,
                               axis_titles=axis_titles)
    data = front_data(points, objectives, bounds=bounds, group=group, controlled=controlled)
    if not data:
        return _mark(empty_figure(f"No points have both {objectives[0]} and {objectives[1]}"
                                  + (" with a length-controlled score." if controlled else ".")), controlled)
    fig = go.Figure()
    _add_2d(fig, data, 0, 1, objectives, selected=set(selected), error_bars=error_bars, colour_by=colour_by,
            is_length=is_length)
    if colour_by is not None:
        _colour_bar(fig, colour_by, colour_title)
    titles = {o: (axis_titles or {}).get(o, o) for o in objectives}
    _mark(fig, controlled)
    fig.update_layout(
        title=title or _title(data, objectives, bounds), xaxis_title=titles[objectives[0]],
        yaxis_title=titles[objectives[1]],
        legend=dict(title="series (hypervolume)", orientation="v"),
        hovermode="closest", height=560, margin=dict(l=60, r=20, t=70, b=60))
    if colour_by is not None:   # the colour bar takes the right margin: the legend goes under the plot
        fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.14, x=0), margin=dict(b=90))
    return fig


def _title(data: dict, objectives: Sequence[str], bounds: Mapping | None) -> str:
    hvs = {n: d["hv"] for n, d in data.items() if d.get("hv") is not None}
    ref = "no bounds: hypervolume not computed"
    if hvs:
        ref = "hypervolume on bounds-normalised values, reference = lower bounds (" + ", ".join(
            f"{o} {(bounds or {})[o]['lower']:g}" for o in objectives) + ")"
    return f"Pareto front: {' vs '.join(objectives)}<br><sup>{html.escape(ref)}</sup>"


def pairwise_figure(points: Sequence[Mapping], objectives: Sequence[str], *, bounds: Mapping | None = None,
                    selected: Iterable[str] = (), group: Callable[[Mapping], str] = group_of,
                    error_bars: bool = True, controlled: Iterable[str] = (), is_length: Iterable[str] = (),
                    axis_titles: Mapping[str, str] | None = None) -> go.Figure:
    """One 2-D panel per pair of objectives; dominance (fading, front lines, HV) is over ALL objectives.
    ``controlled`` / ``is_length`` / ``axis_titles``: as in ``front_figure``."""
    objectives = list(objectives)
    controlled = tuple(controlled)
    titles = {o: (axis_titles or {}).get(o, o) for o in objectives}
    data = front_data(points, objectives, bounds=bounds, group=group, controlled=controlled)
    if not data:
        return _mark(empty_figure("No points have all of " + ", ".join(objectives)
                                  + (" with a length-controlled score." if controlled else ".")), controlled)
    pairs = [(i, j) for i in range(len(objectives)) for j in range(i + 1, len(objectives))]
    fig = make_subplots(rows=1, cols=len(pairs), horizontal_spacing=0.08,
                        subplot_titles=[f"{objectives[j]} vs {objectives[i]}" for i, j in pairs])
    for k, (i, j) in enumerate(pairs):
        # the joined line follows the first objective of the panel among all-objective non-dominated points
        panel = {n: d if d.get("by_preference") else dict(d, order=_panel_order(d, i, j)) for n, d in data.items()}
        _add_2d(fig, panel, i, j, objectives, selected=set(selected), row=1, col=k + 1, showlegend=(k == 0),
                error_bars=error_bars, is_length=is_length)
        fig.update_xaxes(title_text=titles[objectives[i]], row=1, col=k + 1)
        fig.update_yaxes(title_text=titles[objectives[j]], row=1, col=k + 1)
    _mark(fig, controlled)
    fig.update_layout(title=_title(data, objectives, bounds),
                      hovermode="closest", height=480, margin=dict(l=50, r=20, t=90, b=50),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def _panel_order(d: dict, i: int, j: int) -> list[int]:
    idx = np.flatnonzero(d["mask"])
    return [int(x) for x in idx[np.lexsort((-d["mean"][idx, j], d["mean"][idx, i]))]]


def front_figure_3d(points: Sequence[Mapping], objectives: Sequence[str], *, bounds: Mapping | None = None,
                    selected: Iterable[str] = (), group: Callable[[Mapping], str] = group_of,
                    controlled: Iterable[str] = (), is_length: Iterable[str] = (),
                    axis_titles: Mapping[str, str] | None = None) -> go.Figure:
    """Three objectives in a rotatable 3-D scatter (no click selection in 3-D: use the point picker).
    ``controlled`` / ``is_length`` / ``axis_titles``: as in ``front_figure``."""
    objectives = list(objectives)[:3]
    controlled = tuple(controlled)
    titles = {o: (axis_titles or {}).get(o, o) for o in objectives}
    data = front_data(points, objectives, bounds=bounds, group=group, controlled=controlled)
    if len(objectives) < 3 or not data:
        return _mark(empty_figure("No points have three objectives"
                                  + (" with a length-controlled score." if controlled else ".")), controlled)
    colours = _colours(data)
    sel = set(selected)
    fig = go.Figure()
    for name in _series_order(data):
        d = data[name]
        for dominated in (False, True):
            idx = [i for i in range(len(d["points"])) if bool(d["mask"][i]) != dominated]
            if not idx:
                continue
            fig.add_trace(go.Scatter3d(
                x=d["mean"][idx, 0], y=d["mean"][idx, 1], z=d["mean"][idx, 2], mode="markers",
                name=_legend_name(name, d) if not dominated else f"{name} (dominated)", legendgroup=name,
                opacity=FADED if dominated else 1.0,
                marker=dict(color=colours[name], size=[9 if d["points"][i]["id"] in sel else 6 for i in idx],
                            symbol="x" if name == OTHER_EVAL else "diamond" if name in ("base model",)
                            or name.endswith("mixtures") else "circle"),
                customdata=[[d["points"][i]["id"]] for i in idx],
                hovertext=[hover_text(d["points"][i], objectives, is_length=is_length) for i in idx],
                hovertemplate="%{hovertext}<extra></extra>"))
    fig.update_layout(title=_title(data, objectives, bounds), height=620, margin=dict(l=0, r=0, t=70, b=0),
                      scene=dict(xaxis_title=titles[objectives[0]], yaxis_title=titles[objectives[1]],
                                 zaxis_title=titles[objectives[2]]))
    return _mark(fig, controlled)


def _mark(fig: go.Figure, controlled: Sequence[str]) -> go.Figure:
    """Record in the figure which objectives it plots length-controlled (``add_live_point`` reads it)."""
    fig.update_layout(meta=dict(length_controlled=list(controlled)))
    return fig


def plotted_controlled(fig: go.Figure) -> list[str]:
    """The objectives a front figure plots with their length-controlled scores ([] for raw scores)."""
    meta = fig.layout.meta
    return list((meta or {}).get("length_controlled") or []) if isinstance(meta, Mapping) else []


# ------------------------------------------------------------------------------------------------ training curves

def metrics_table(metrics: Sequence[Mapping]) -> dict[str, tuple[list[int], list[float]]]:
    """[{step, key, value}] → {key: (steps, values)} sorted by step."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for m in sorted(metrics, key=lambda r: (r["key"], r["step"])):
        steps, values = out.setdefault(m["key"], ([], []))
        steps.append(int(m["step"]))
        values.append(float(m["value"]))
    return out


def metric_figure(metrics: Sequence[Mapping], keys: Sequence[str], *, title: str = "", yaxis: str = "",
                  label: Callable[[str], str] = lambda k: k, height: int = 320) -> go.Figure:
    table = metrics_table(metrics)
    keys = [k for k in keys if k in table]
    if not keys:
        return empty_figure("No values logged yet.")
    fig = go.Figure()
    for i, k in enumerate(keys):
        steps, values = table[k]
        fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers" if len(steps) < 30 else "lines",
                                 name=label(k), line=dict(color=PALETTE[i % len(PALETTE)])))
    _step_ticks(fig, table, keys)
    fig.update_layout(title=title, xaxis_title="step", yaxis_title=yaxis, height=height,
                      margin=dict(l=50, r=20, t=50 if title else 20, b=40), hovermode="x unified",
                      legend=dict(orientation="h", y=-0.25))
    return fig


def reward_curves_figure(metrics: Sequence[Mapping], objectives: Sequence[str] | None = None, *,
                         bands: bool = True, height: int = 320) -> go.Figure:
    """Per-objective mean reward per step (``rewards/<name>/mean``), ± one batch std as a band."""
    table = metrics_table(metrics)
    names = list(objectives) if objectives else sorted(
        k.split("/", 1)[1].rsplit("/", 1)[0] for k in table if k.startswith("rewards/") and k.endswith("/mean"))
    names = [n for n in names if f"rewards/{n}/mean" in table]
    if not names:
        return empty_figure("No rewards logged yet.")
    fig = go.Figure()
    for i, n in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        steps, mean = table[f"rewards/{n}/mean"]
        std_key = f"rewards/{n}/std"
        if bands and std_key in table and table[std_key][0] == steps and len(steps) > 1:
            std = np.asarray(table[std_key][1])
            m = np.asarray(mean)
            fig.add_trace(go.Scatter(x=steps + steps[::-1], y=(m + std).tolist() + (m - std).tolist()[::-1],
                                     mode="lines", fill="toself", fillcolor=_rgba(colour, 0.12), line=dict(width=0),
                                     hoverinfo="skip", showlegend=False, legendgroup=n))
        fig.add_trace(go.Scatter(x=steps, y=mean, mode="lines+markers" if len(steps) < 30 else "lines", name=n,
                                 line=dict(color=colour), legendgroup=n))
    _step_ticks(fig, table, [f"rewards/{n}/mean" for n in names])
    fig.update_layout(title="Reward per objective (batch mean ± std)", xaxis_title="step", yaxis_title="reward",
                      height=height, margin=dict(l=50, r=20, t=50, b=40), hovermode="x unified",
                      legend=dict(orientation="h", y=-0.25))
    return fig


def weights_figure(metrics: Sequence[Mapping], objectives: Sequence[str] | None = None, *,
                   height: int = 300) -> go.Figure:
    """PAMA's per-objective combination weights (``pama/weight/<name>``), or MGDA's (``mgda/weight/<name>``);
    ``objectives`` fixes the order (and so the colours, matching ``reward_curves_figure``)."""
    table = metrics_table(metrics)
    keys = sorted(k for k in table if k.startswith(("pama/weight/", "mgda/weight/")))
    if objectives:
        rank = {n: i for i, n in enumerate(objectives)}
        keys.sort(key=lambda k: (rank.get(k.rsplit("/", 1)[1], len(rank)), k))
    if not keys:
        return empty_figure("No combination weights logged (MORLHF uses the fixed preference).")
    return metric_figure(metrics, keys, title="Combination weights per objective", yaxis="weight",
                         label=lambda k: k.rsplit("/", 1)[1], height=height)


def _step_ticks(fig: go.Figure, table: Mapping, keys: Sequence[str]) -> None:
    """Steps are integers: no 1.5 ticks on short runs."""
    last = max((max(table[k][0]) for k in keys if k in table and table[k][0]), default=0)
    fig.update_xaxes(tickformat="d", dtick=1 if last <= 12 else None)


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


LIVE_COLOUR = "#d6336c"


def add_live_point(fig: go.Figure, point: Mapping, objectives: Sequence[str], *, name: str = "live generation") -> bool:
    """Place one unstored point (the app's preference slider: a response generated now, scored once) on a 2-objective
    front figure as a large marker; False (nothing drawn) when it lacks a score on either axis, or when an axis plots
    length-controlled scores (one live answer's raw score is not on that scale)."""
    objectives = list(objectives)
    values = point.get("values") or {}
    if len(objectives) != 2 or not all(o in values and finite(_mean(values[o])) for o in objectives):
        return False
    if any(o in plotted_controlled(fig) for o in objectives):
        return False
    x, y = (_mean(values[o]) for o in objectives)
    fig.add_trace(go.Scatter(
        x=[x], y=[y], mode="markers", name=html.escape(name), showlegend=True,
        marker=dict(symbol="x", size=16, color=LIVE_COLOUR, line=dict(color="#000000", width=1)),
        hovertext=[html.escape(str(point.get("label") or name))], hovertemplate="%{hovertext}<extra></extra>"))
    return True


def _mean(v) -> float:
    return float(v if isinstance(v, (int, float)) else v["mean"])  # a dict, a record's Estimate, or a number


TRADEOFF_COLOUR = "#f08c00"


def add_tradeoff(fig: go.Figure, marker: Mapping, objectives: Sequence[str], *, name: str = "your trade-off",
                 nearest: Mapping | None = None) -> bool:
    """Place a voter's fitted trade-off (``marker``: ``values`` {objective: {mean, ci_low, ci_high}}, the interval
    from the bootstrap of the weights) on a 2-objective front figure as a star with its interval as error bars, and
    a dotted line to the ``nearest`` stored point; False (nothing drawn) without both coordinates."""
    objectives = list(objectives)
    values = marker.get("values") or {}
    if len(objectives) != 2 or not all(o in values and finite(_mean(values[o])) for o in objectives):
        return False
    (x, y), (vx, vy) = ((_mean(values[o]) for o in objectives), (values[o] for o in objectives))

    def bar(v, c):
        lo, hi = (v.get("ci_low", c), v.get("ci_high", c)) if isinstance(v, Mapping) else (c, c)
        return dict(type="data", symmetric=False, array=[max(hi - c, 0.0)], arrayminus=[max(c - lo, 0.0)],
                    color=TRADEOFF_COLOUR, thickness=2)

    label = html.escape(str(marker.get("label") or name))
    if nearest is not None and all(o in (nearest.get("values") or {}) for o in objectives):
        nx, ny = (_mean(nearest["values"][o]) for o in objectives)
        fig.add_trace(go.Scatter(x=[x, nx], y=[y, ny], mode="lines", showlegend=False, hoverinfo="skip",
                                 line=dict(color=TRADEOFF_COLOUR, dash="dot", width=1.5)))
    fig.add_trace(go.Scatter(
        x=[x], y=[y], mode="markers", name=html.escape(name), showlegend=True, error_x=bar(vx, x),
        error_y=bar(vy, y), marker=dict(symbol="star", size=18, color=TRADEOFF_COLOUR,
                                        line=dict(color="#000000", width=1)),
        hovertext=[label], hovertemplate="%{hovertext}<extra></extra>"))
    return True


# ------------------------------------------------------------------------------------------------ the live front
# pama.livefront logs, every K steps, the policy's held-out means with their 95% intervals as metrics
# ``live/<label>/<objective>/mean|low|high`` (label: ``base``, ``policy``, or a conditioned run's ``p=0.50,0.50``)

LIVE_PREFIX = "live/"
LIVE_BASE = "base"
LIVE_POLICY = "policy"
LIVE_STATS = ("mean", "low", "high")


def live_key(label: str, objective: str, stat: str) -> str:
    return f"{LIVE_PREFIX}{label}/{objective}/{stat}"


def live_table(metrics: Sequence[Mapping]) -> dict[str, dict[int, dict[str, tuple[float, float, float]]]]:
    """[{step, key, value}] → {label: {step: {objective: (mean, low, high)}}}, only complete triples (objective
    names may hold '/': the label is the first part, the statistic the last)."""
    parts: dict[tuple[str, int, str], dict[str, float]] = {}
    for m in metrics:
        key = m["key"]
        if not key.startswith(LIVE_PREFIX) or key.count("/") < 3:
            continue
        label, rest = key[len(LIVE_PREFIX):].split("/", 1)
        objective, stat = rest.rsplit("/", 1)
        if stat in LIVE_STATS:
            parts.setdefault((label, int(m["step"]), objective), {})[stat] = float(m["value"])
    out: dict[str, dict[int, dict[str, tuple[float, float, float]]]] = {}
    for (label, step, objective), v in sorted(parts.items()):
        if all(s in v for s in LIVE_STATS):
            out.setdefault(label, {}).setdefault(step, {})[objective] = (v["mean"], v["low"], v["high"])
    return out


def _live_name(label: str) -> str:
    if label == LIVE_POLICY:
        return "this run"
    if label.startswith("p="):
        return f"preference ({label[2:].replace(',', ', ')})"
    return label


def live_front_figure(metrics: Sequence[Mapping], objectives: Sequence[str], *, height: int = 420) -> go.Figure:
    """The front forming during training: for each evaluated preference (a plain run: its one point) the held-out
    means of the first two objectives at every live evaluation, joined in step order and coloured by step, with
    their 95% intervals as error bars; the base model (step 0) as a star."""
    table = live_table(metrics)
    objectives = list(objectives)[:2]
    if len(objectives) < 2 or not any(lb != LIVE_BASE for lb in table):
        return empty_figure("No live evaluation logged yet (live_eval_every = 0, or before its first step).")
    ox, oy = objectives
    base = next(iter(table.get(LIVE_BASE, {}).values()), None)
    start = (base[ox][0], base[oy][0]) if base and ox in base and oy in base else None
    steps_all = sorted({s for label, rows in table.items() if label != LIVE_BASE for s in rows})
    cmin, cmax = (steps_all[0], steps_all[-1]) if steps_all else (0, 1)
    fig = go.Figure()
    shown_scale = False
    for i, label in enumerate(sorted(lb for lb in table if lb != LIVE_BASE)):
        rows = [(s, r) for s, r in sorted(table[label].items()) if ox in r and oy in r]
        if not rows:
            continue
        colour = PALETTE[i % len(PALETTE)]
        steps = [s for s, _ in rows]
        x = np.array([r[ox] for _, r in rows])
        y = np.array([r[oy] for _, r in rows])
        name = html.escape(_live_name(label))
        lx, ly = x[:, 0].tolist(), y[:, 0].tolist()
        if start is not None:  # each trajectory leaves from the base model
            lx, ly = [start[0], *lx], [start[1], *ly]
        fig.add_trace(go.Scatter(x=lx, y=ly, mode="lines", line=dict(color=colour, width=1.5),
                                 name=name, legendgroup=label, hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=x[:, 0], y=y[:, 0], mode="markers", showlegend=False, legendgroup=label,
            error_x=dict(type="data", symmetric=False, array=np.maximum(x[:, 2] - x[:, 0], 0), thickness=1,
                         arrayminus=np.maximum(x[:, 0] - x[:, 1], 0), color=_rgba(colour, 0.5)),
            error_y=dict(type="data", symmetric=False, array=np.maximum(y[:, 2] - y[:, 0], 0), thickness=1,
                         arrayminus=np.maximum(y[:, 0] - y[:, 1], 0), color=_rgba(colour, 0.5)),
            marker=dict(size=10, color=steps, colorscale="Viridis", cmin=cmin, cmax=cmax,
                        line=dict(color=colour, width=2), showscale=not shown_scale,
                        colorbar=dict(title="step", thickness=12)),
            customdata=steps, hovertemplate=f"{name}<br>step %{{customdata}}<br>{html.escape(ox)} %{{x:.3f}}"
                                            f"<br>{html.escape(oy)} %{{y:.3f}}<extra></extra>"))
        shown_scale = True
    if start is not None:
        (bx, bxl, bxh), (by, byl, byh) = base[ox], base[oy]
        fig.add_trace(go.Scatter(
            x=[bx], y=[by], mode="markers", name="base model",
            error_x=dict(type="data", symmetric=False, array=[max(bxh - bx, 0)], arrayminus=[max(bx - bxl, 0)],
                         color=BASE_COLOUR, thickness=1),
            error_y=dict(type="data", symmetric=False, array=[max(byh - by, 0)], arrayminus=[max(by - byl, 0)],
                         color=BASE_COLOUR, thickness=1),
            marker=dict(symbol="star", size=14, color=BASE_COLOUR),
            hovertemplate=f"base model<br>{html.escape(ox)} %{{x:.3f}}<br>{html.escape(oy)} %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title="The front forming: held-out means every few steps (95% intervals)", height=height,
                      xaxis_title=ox, yaxis_title=oy, margin=dict(l=50, r=20, t=50, b=40),
                      legend=dict(orientation="h", y=-0.2))
    return fig
