"""Plotly figures as pure functions of store dicts, and the plot-selection → point-id mapping (no Streamlit run)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from pama import pareto, plots
from pama.app import selection

BOUNDS = {"a": dict(lower=0.0, upper=1.0), "b": dict(lower=0.0, upper=1.0)}


def pt(pid, a, b, *, kind="adapter", method="pama", c=None, label=None, **extra):
    values = {"a": dict(mean=a, ci_low=a - 0.05, ci_high=a + 0.1), "b": dict(mean=b, ci_low=b - 0.02, ci_high=b + 0.02)}
    if c is not None:
        values["c"] = dict(mean=c, ci_low=c, ci_high=c)
    out = dict(id=pid, kind=kind, method=method if kind != "base" else None, label=label or pid, values=values,
               preference=[0.5, 0.5], mixture=None)
    out.update(extra)
    return out


POINTS = [
    pt("p1", 0.1, 0.9), pt("p2", 0.5, 0.6), pt("p3", 0.9, 0.1), pt("p4", 0.3, 0.3),       # p4 dominated
    pt("m1", 0.2, 0.8, method="morlhf"), pt("m2", 0.6, 0.3, method="morlhf"),
    pt("base", 0.2, 0.2, kind="base"),
    pt("x1", 0.7, 0.5, kind="mixture", mixture={"r1": 0.5, "r2": 0.5}),
]


def marker_traces(fig):
    return [t for t in fig.data if t.mode == "markers"]


def test_front_data_groups_mask_and_hypervolume():
    data = plots.front_data(POINTS, ["a", "b"], bounds=BOUNDS)
    assert set(data) == {"pama", "morlhf", "base model", "pama mixtures"}
    pama = data["pama"]
    assert [p["id"] for p in pama["points"]] == ["p1", "p2", "p3", "p4"]
    assert pama["mask"].tolist() == [True, True, True, False]
    expected = pareto.hypervolume(np.array([[0.1, 0.9], [0.5, 0.6], [0.9, 0.1]]), [0, 0])
    assert pama["hv"] == pytest.approx(expected)
    assert data["base model"]["hv"] is None
    # front order runs along the first objective
    assert [pama["points"][i]["id"] for i in pama["order"]] == ["p1", "p2", "p3"]


def test_front_data_without_bounds_has_no_hypervolume_and_skips_incomplete_points():
    partial = POINTS + [dict(id="q", kind="adapter", method="pama", label="q", values={"a": dict(mean=1, ci_low=1,
                                                                                               ci_high=1)})]
    data = plots.front_data(partial, ["a", "b"])
    assert all(d["hv"] is None for d in data.values())
    assert "q" not in [p["id"] for d in data.values() for p in d["points"]]


def test_minimised_objective_flips_dominance():
    bounds = {"a": dict(lower=0, upper=1), "b": dict(lower=0, upper=1, direction="minimize")}
    data = plots.front_data([pt("u", 0.5, 0.2), pt("v", 0.5, 0.8)], ["a", "b"], bounds=bounds)
    assert data["pama"]["mask"].tolist() == [True, False]


def test_two_objective_figure_ids_fading_legend_base_and_error_bars():
    fig = plots.front_figure(POINTS, ["a", "b"], bounds=BOUNDS, selected=["p2"])
    ids = [cd[0] for t in marker_traces(fig) for cd in t.customdata]
    assert sorted(ids) == sorted(p["id"] for p in POINTS)  # every point exactly once, id in custom_data
    by_name = {t.name: t for t in marker_traces(fig)}
    assert any(n.startswith("pama (HV ") for n in by_name)
    dominated = by_name["pama (dominated)"]
    assert [c[0] for c in dominated.customdata] == ["p4"]
    assert dominated.marker.opacity == plots.FADED and not dominated.showlegend
    front = next(t for n, t in by_name.items() if n.startswith("pama (HV"))
    assert front.marker.opacity == 1.0
    assert front.unselected.marker.opacity > 0.5  # a click selection keeps the other points visible
    assert by_name["base model"].marker.symbol == "star"
    assert next(t for n, t in by_name.items() if n.startswith("pama mixtures")).marker.symbol == "diamond"
    # selected points get a dark outline
    outline = dict(zip([c[0] for c in front.customdata], front.marker.line.color))
    assert outline["p2"] == "#000000" and outline["p1"] == "#ffffff"
    # asymmetric CI error bars from ci_low / ci_high
    assert front.error_x.array[0] == pytest.approx(0.1) and front.error_x.arrayminus[0] == pytest.approx(0.05)
    # the front line joins the non-dominated points in order
    line = next(t for t in fig.data if t.mode == "lines" and t.name == "pama front")
    assert list(line.x) == [0.1, 0.5, 0.9]
    assert "reference = lower bounds" in fig.layout.title.text


def test_hover_text_shows_configuration_escaped():
    p = pt("p9", 0.4, 0.5, label="<img src=x onerror=alert(1)>", mixture={"r1": 0.25})
    text = plots.hover_text(p, ["a", "b"])
    assert "<img" not in text and "&lt;img" in text
    assert "preference: [0.50, 0.50]" in text and "r1×0.25" in text and "a: 0.400 [0.350, 0.500]" in text


def test_three_objectives_pairwise_and_3d():
    pts = [pt("t1", 0.1, 0.9, c=0.5), pt("t2", 0.9, 0.1, c=0.5), pt("t3", 0.5, 0.5, c=0.9), pt("t4", 0.2, 0.2, c=0.1)]
    fig = plots.front_figure(pts, ["a", "b", "c"])
    assert len(fig.layout.annotations) == 3  # three panels: b~a, c~a, c~b
    xaxes = {t.xaxis for t in marker_traces(fig)}
    assert xaxes == {"x", "x2", "x3"}
    dominated = [c[0] for t in marker_traces(fig) if t.name and "dominated" in t.name for c in t.customdata]
    assert set(dominated) == {"t4"}  # dominance over all three objectives, the same in every panel
    fig3 = plots.front_figure_3d(pts, ["a", "b", "c"])
    assert all(isinstance(t, go.Scatter3d) for t in fig3.data)
    assert sorted(c[0] for t in fig3.data for c in t.customdata) == ["t1", "t2", "t3", "t4"]


def test_empty_and_degenerate_inputs_give_a_message_figure():
    for fig in (plots.front_figure([], ["a", "b"]), plots.front_figure(POINTS, ["a"]),
                plots.front_figure(POINTS, ["a", "zzz"]), plots.front_figure_3d(POINTS, ["a", "b"]),
                plots.reward_curves_figure([]), plots.weights_figure([]), plots.metric_figure([], ["kl"])):
        assert not fig.data and fig.layout.annotations


METRICS = [dict(step=s, key=k, value=v) for s in (2, 1, 3) for k, v in (
    ("rewards/sentiment/mean", 0.1 * s), ("rewards/sentiment/std", 0.05), ("rewards/conciseness/mean", 1 - 0.1 * s),
    ("pama/weight/sentiment", 0.3), ("pama/weight/conciseness", 0.7), ("kl", 0.01 * s))]


def test_metrics_table_sorted_by_step():
    table = plots.metrics_table(METRICS)
    assert table["kl"] == ([1, 2, 3], [0.01, 0.02, 0.03])


def test_reward_curves_weights_and_metric_figures():
    fig = plots.reward_curves_figure(METRICS)
    lines = [t for t in fig.data if t.name]
    assert sorted(t.name for t in lines) == ["conciseness", "sentiment"]
    band = [t for t in fig.data if t.fill == "toself"]
    assert len(band) == 1 and band[0].mode == "lines"  # only sentiment logged a std
    fig = plots.reward_curves_figure(METRICS, ["sentiment"])
    assert [t.name for t in fig.data if t.name] == ["sentiment"]
    w = plots.weights_figure(METRICS)
    assert [t.name for t in w.data] == ["conciseness", "sentiment"]
    w = plots.weights_figure(METRICS, ["sentiment", "conciseness"])  # same order (colours) as the reward curves
    assert [t.name for t in w.data] == ["sentiment", "conciseness"]
    assert w.layout.xaxis.dtick == 1
    assert list(plots.metric_figure(METRICS, ["kl", "missing"]).data[0].y) == [0.01, 0.02, 0.03]


# ------------------------------------------------------------------------------------------ selection → point ids

def test_selected_point_ids_from_a_plotly_event():
    event = {"selection": {"points": [
        {"curve_number": 1, "point_number": 0, "customdata": ["p2"]},
        {"curve_number": 0, "point_number": 3},                           # a line: no id
        {"curve_number": 1, "point_number": 2, "customdata": ["p3"]},
        {"curve_number": 1, "point_number": 0, "customdata": ["p2"]},     # duplicate
        {"custom_data": "p9"},
    ], "point_indices": [0, 2]}}
    assert selection.selected_point_ids(event) == ["p2", "p3", "p9"]


def test_selected_point_ids_from_attribute_style_state_and_empties():
    class Obj(dict):
        __getattr__ = dict.get

    event = Obj(selection=Obj(points=[Obj(customdata=["a1"])]))
    assert selection.selected_point_ids(event) == ["a1"]
    assert selection.selected_point_ids(None) == []
    assert selection.selected_point_ids({"selection": {"points": []}}) == []
    assert selection.selected_point_ids({}) == []


def test_merge_selection_keeps_known_unique_ids_up_to_the_limit():
    assert selection.merge_selection(["a"], []) == ["a"]                     # no click: keep the picker
    assert selection.merge_selection(["a"], ["b", "c"]) == ["b", "c"]        # a click replaces the selection
    assert selection.merge_selection([], ["a", "a", "zz", "b"], valid=["a", "b"]) == ["a", "b"]
    assert selection.merge_selection([], list("abcdef")) == list("abcd")


def test_filters_labels_objectives():
    assert selection.objectives_of(POINTS[:1] + [pt("z", 0, 0, c=1)]) == ["a", "b", "c"]
    assert selection.methods_of(POINTS) == ["morlhf", "pama"]
    only = selection.filter_points(POINTS, methods=["morlhf"], include_base=False)
    assert [p["id"] for p in only] == ["m1", "m2"]
    assert [p["id"] for p in selection.filter_points(POINTS, methods=["pama"], include_mixtures=False)] == \
        ["p1", "p2", "p3", "p4", "base"]
    assert selection.point_label(dict(id="p1", label="pama w=0.25", kind="adapter", sweep_id="s1"),
                          sweeps={"s1": {"name": "front A"}}) == "pama w=0.25 · front A  [p1]"
    bounds = selection.objective_bounds(["sentiment", "hf:some/model", "nope"],
                                 [dict(objectives=[dict(name="nope", lower=-2, upper=2)])])
    assert bounds["nope"] == dict(lower=-2.0, upper=2.0, direction="maximize")
    assert "sentiment" in bounds and "hf:some/model" not in bounds


def test_objectives_follow_the_sweeps_order_then_first_seen():
    from pama.app.selection import objectives_of

    pts = [{"values": {"readability": {}, "relevance": {}}}, {"values": {"safety": {}}}]
    assert objectives_of(pts) == ["readability", "relevance", "safety"]
    assert objectives_of(pts, ["relevance", "readability", "missing"]) == ["relevance", "readability", "safety"]


def test_points_evaluated_otherwise_are_drawn_apart_outside_every_front():
    full = dict(n_prompts=64, seed=1234, max_new_tokens=48, temperature=0.7)
    quick = dict(full, n_prompts=8, max_new_tokens=32, quick=True)
    points = [dict(p, sweep_id="s", eval_config=full) for p in POINTS]
    points.append(pt("q1", 0.95, 0.95, kind="mixture", mixture={"r1": 0.5, "r2": 0.5}, sweep_id="s",
                     eval_config=quick))  # would dominate everything
    data = plots.front_data(points, ["a", "b"], bounds=BOUNDS)
    assert [p["id"] for p in data[plots.OTHER_EVAL]["points"]] == ["q1"]
    assert data[plots.OTHER_EVAL]["hv"] is None and "q1" not in [p["id"] for p in data["pama mixtures"]["points"]]
    assert data["pama"]["hv"] == pytest.approx(plots.front_data(POINTS, ["a", "b"], bounds=BOUNDS)["pama"]["hv"])
    fig = plots.front_figure(points, ["a", "b"], bounds=BOUNDS)
    quick_traces = [t for t in marker_traces(fig) if ["q1"] in [list(c) for c in t.customdata or []]]
    assert len(quick_traces) == 1 and quick_traces[0].marker.symbol == "x"
    assert quick_traces[0].name == plots.OTHER_EVAL and quick_traces[0].showlegend
    assert not [t for t in fig.data if t.mode == "lines" and t.legendgroup == plots.OTHER_EVAL]
    others = {t.marker.symbol for t in marker_traces(fig) if t not in quick_traces}
    assert "x" not in others
