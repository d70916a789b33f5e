"""Length-controlled scores (issue 23 item 1; docs/fronts.md "Length-controlled scores"): the math on synthetic fronts
(pure length → warned; length-independent → not; length itself → "is length"), the store's columns on SQLite and
PostgreSQL, ``control_sweep`` on a sweep built in the store, the exports, the CLI, the plots, the front page's switch,
and the shipped demos, which the warning must flag."""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from pama import controlled, demo, lengthcontrol as LC, plots, report
from pama import fronts
from pama.cli import main

OBJS = ["informativeness", "conciseness"]
FLAGS = {"informativeness": False, "conciseness": True}
N = 40


def _text(words: int) -> str:
    return " ".join(["word"] * words)


def _front(kind: str, seed: int = 0) -> dict[str, tuple[list, list[str]]]:
    """Four points of N samples: lengths grow from 'base' to 'long'. ``kind`` = "length": the first objective is a
    noisy function of log length only (the points differ only by length); "independent": it follows a per-point
    quality that has nothing to do with length (uncorrelated with the points' lengths: a front whose quality moved
    with length at every point could not be told apart from length by any regression, docs/fronts.md)."""
    rng = np.random.default_rng(seed)
    out = {}
    for pid, mean_words, quality in (("base", 40, 0.8), ("short", 15, 0.5), ("mid", 60, 0.3), ("long", 150, 0.6)):
        words = np.clip(rng.normal(mean_words, mean_words * 0.2, N).round(), 1, None).astype(int)
        x = np.log1p(words)
        noise = rng.normal(0, 0.02, N)
        first = 0.15 * x + noise if kind == "length" else quality + noise
        conc = 1.0 / (1.0 + words / 50.0)   # a function of length alone, like conciseness
        out[pid] = ([first.tolist(), conc.tolist()], [_text(int(w)) for w in words])
    return out


# ---------------------------------------------------------------------------------------------------- the math

def test_a_front_that_is_pure_length_is_flagged():
    cf = LC.control_front(_front("length"), OBJS, FLAGS, base="base")
    assert cf.share["informativeness"] > 0.9 and cf.mostly_length
    assert cf.rho["informativeness"] > 0.8
    text = cf.warning()
    assert text and "mostly varies answer length" in text and "conciseness: is length" in text
    # controlled, every point keeps roughly the base model's score: what they differed by was length
    base = cf.values["base"]["informativeness"][0]
    for pid in ("short", "mid", "long"):
        assert cf.values[pid]["informativeness"][0] == pytest.approx(base, abs=0.03)


def test_a_front_whose_objective_varies_apart_from_length_is_not_flagged():
    cf = LC.control_front(_front("independent"), OBJS, FLAGS, base="base")
    assert not cf.mostly_length and cf.warning() is None
    assert cf.share["informativeness"] < 0.5
    means = {pid: cf.values[pid]["informativeness"][0] for pid in ("base", "long", "short", "mid")}
    assert list(means) == sorted(means, key=means.get, reverse=True)   # the quality order survives the control
    lo, hi = cf.values["long"]["informativeness"][1:]
    assert lo <= means["long"] <= hi


def test_an_objective_that_is_length_has_no_controlled_score():
    cf = LC.control_front(_front("independent"), OBJS, FLAGS, base="base")
    assert all(cf.values[pid]["conciseness"] is None for pid in cf.values)
    assert cf.is_length["conciseness"] and cf.share["conciseness"] == 1.0 and cf.fits["conciseness"] is None
    # the same objective not declared as length gets a (meaningless, but computed) controlled score
    other = LC.control_front(_front("independent"), OBJS, {"informativeness": False, "conciseness": False}, "base")
    assert other.values["long"]["conciseness"] is not None


# ---------------------------------------------------------------------------------------------------- the store

def _sweep(store, kind: str = "length", *, quick: bool = False) -> tuple[str, dict[str, str]]:
    """A sweep in the store from a synthetic front: a base point and three adapters with their generations."""
    full = dict(n_prompts=N, seed=1, max_new_tokens=256, temperature=0.7)
    sid = store.create_sweep(name=f"synthetic {kind} front", method="pama", model="tiny-random", objectives=OBJS,
                             config={"points": 3})
    ids = {}
    for pid, (scores, texts) in _front(kind).items():
        arr = np.asarray(scores)
        gens = [dict(prompt_index=k, prompt=f"prompt {k}", text=t, scores={o: float(arr[j, k]) for j, o in
                                                                           enumerate(OBJS)})
                for k, t in enumerate(texts)]
        ids[pid] = store.add_point(
            kind="base" if pid == "base" else "adapter", label=pid, model="tiny-random", sweep_id=sid,
            method=None if pid == "base" else "pama", eval_config=full, generations=gens,
            preference=None if pid == "base" else [1.0, 0.0],
            values={o: (float(arr[j].mean()), float(arr[j].min()), float(arr[j].max())) for j, o in enumerate(OBJS)})
    if quick:   # the app's quick mixture: fewer prompts, kept out of the fit
        scores, texts = _front(kind, seed=5)["long"]
        ids["quick"] = store.add_point(
            kind="mixture", label="quick", model="tiny-random", sweep_id=sid, method="pama",
            eval_config=dict(full, n_prompts=8, quick=True), mixture={"a": 0.5, "b": 0.5},
            values={o: (float(np.mean(scores[j])),) * 3 for j, o in enumerate(OBJS)},
            generations=[dict(prompt_index=k, prompt="p", text=texts[k],
                              scores={o: scores[j][k] for j, o in enumerate(OBJS)}) for k in range(8)])
    store.update_sweep(sid, status="finished", summary={"hypervolume": 0.5})
    return sid, ids


def test_controlled_values_round_trip_through_the_store(any_store):
    store = any_store
    sid, ids = _sweep(store)
    store.set_controlled(ids["mid"], {"informativeness": (0.5, 0.4, 0.6), "conciseness": None})
    v = store.point_record(ids["mid"]).values
    assert (v["informativeness"].lc_mean, v["informativeness"].lc_low, v["informativeness"].lc_high) == (0.5, 0.4, 0.6)
    assert v["informativeness"].controlled == (0.5, 0.4, 0.6)
    assert v["conciseness"].lc_mean is None and v["conciseness"].controlled is None
    assert store.get_point(ids["base"])["values"]["informativeness"]["lc_mean"] is None   # not computed: NULL
    with pytest.raises(ValueError, match="no value for 'safety'"):
        store.set_controlled(ids["mid"], {"informativeness": (0.1, 0.1, 0.1), "safety": (0.1, 0.1, 0.1)})
    assert store.point_record(ids["mid"]).values["informativeness"].lc_mean == 0.5   # nothing written
    with pytest.raises(ValueError, match="non-finite"):
        store.set_controlled(ids["mid"], {"informativeness": (math.nan, 0.0, 1.0)})


def test_control_sweep_stores_values_and_the_front_figures(any_store):
    store = any_store
    sid, ids = _sweep(store, quick=True)
    cf = controlled.control_sweep(store, sid)
    assert cf is not None and cf.mostly_length
    summary = store.get_sweep(sid)["summary"]
    assert summary["hypervolume"] == 0.5                              # the rest of the summary is kept
    lc = summary[controlled.SUMMARY_KEY]
    assert lc["mostly_length"] and "mostly varies answer length" in lc["warning"]
    assert lc["is_length"] == FLAGS and lc["share"]["conciseness"] == 1.0 and lc["share"]["informativeness"] > 0.9
    assert lc["reference_point_id"] == ids["base"] and lc["n_points"] == 4 and lc["n_samples"] == 4 * N
    assert json.loads(json.dumps(lc, allow_nan=False)) == lc          # JSON-safe (PostgreSQL refuses NaN)
    pts = {p.id: p for p in store.point_records(sweep_id=sid)}
    for pid in ("base", "short", "mid", "long"):
        est = pts[ids[pid]].values["informativeness"]
        assert est.controlled == pytest.approx(cf.values[ids[pid]]["informativeness"])
        assert pts[ids[pid]].values["conciseness"].controlled is None
    # the quick mixture is controlled along the same lines, without moving them
    quick = pts[ids["quick"]].values["informativeness"]
    assert quick.lc_mean is not None and quick.lc_mean < quick.mean   # long answers: their length bonus removed
    assert quick.lc_mean == pytest.approx(cf.values[ids["base"]]["informativeness"][0], abs=0.05)
    # summarise keeps the figures; front_table carries the controlled columns
    assert fronts.summarise(store, sid)[controlled.SUMMARY_KEY] == lc
    rows, _ = fronts.front_table(store, sid)
    row = next(r for r in rows if r["point_id"] == ids["long"])
    assert row["informativeness/lc_mean"] == pytest.approx(cf.values[ids["long"]]["informativeness"][0])
    assert row["conciseness/lc_mean"] is None


def test_a_front_independent_of_length_stores_no_warning(store):
    sid, _ = _sweep(store, "independent")
    controlled.control_sweep(store, sid)
    lc = store.get_sweep(sid)["summary"][controlled.SUMMARY_KEY]
    assert not lc["mostly_length"] and lc["warning"] is None and lc["share"]["informativeness"] < 0.5


def test_a_sweep_without_generations_is_left_alone(store):
    sid = store.create_sweep(name="no gens", method="pama", model="tiny-random", objectives=OBJS, config={})
    store.add_point(kind="base", label="b", model="tiny-random", sweep_id=sid,
                    values={o: (0.5, 0.4, 0.6) for o in OBJS})
    assert controlled.control_sweep(store, sid) is None
    assert controlled.SUMMARY_KEY not in (store.get_sweep(sid)["summary"] or {})


# ---------------------------------------------------------------------------------------------------- exports, CLI

def test_exports_carry_the_controlled_scores_notes_and_shares(store, tmp_path):
    sid, ids = _sweep(store)
    controlled.control_sweep(store, sid)
    rows, summary = fronts.front_table(store, sid)
    text = report.to_csv(rows, summary)
    table = list(csv.DictReader(io.StringIO(text)))
    for col in ("informativeness/lc_mean", "informativeness/lc_low", "informativeness/lc_high",
                "informativeness/length_share", "conciseness/lc_mean", "conciseness/lc_note"):
        assert col in table[0], col
    long = next(r for r in table if r["point_id"] == ids["long"])
    assert float(long["informativeness/lc_mean"]) < float(long["informativeness/mean"])
    assert long["conciseness/lc_mean"] == "" and long["conciseness/lc_note"] == "is length"
    assert float(long["informativeness/length_share"]) > 0.9

    data = json.loads(report.to_json(store, sid, rows, summary))
    assert data["length_control"]["mostly_length"] and data["summary"]["length_control"]["warning"]
    pt = next(p for p in data["points"] if p["point_id"] == ids["long"])
    assert pt["conciseness/lc_mean"] is None and pt["conciseness/lc_note"] == "is length"
    assert pt["informativeness/lc_note"] == ""

    page = report.to_html(store, sid, rows, summary)
    assert "informativeness length-controlled (95% CI)" in page and "mostly varies answer length" in page
    assert page.count("<td>is length</td>") == len(rows)


def test_the_front_command_recomputes_length_control(store, capsys):
    sid, ids = _sweep(store)
    assert main(["front", sid, "--quiet"]) == 0       # a sweep without figures gets them on its first showing
    out = capsys.readouterr().out
    assert "length control" in out and "is length" in out and "WARNING: This front mostly varies" in out
    store.set_controlled(ids["long"], {"informativeness": None})
    assert main(["front", sid, "--quiet"]) == 0       # nothing new: left as stored
    assert store.point_record(ids["long"]).values["informativeness"].lc_mean is None
    capsys.readouterr()
    assert main(["front", sid, "--length-control", "--quiet"]) == 0
    assert store.point_record(ids["long"]).values["informativeness"].lc_mean is not None
    assert "informativeness (length-controlled)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------- plots

def test_plots_draw_the_controlled_scores_and_say_what_is_length(store):
    sid, ids = _sweep(store)
    controlled.control_sweep(store, sid)
    pts = store.point_records(sweep_id=sid)
    raw = plots.front_data(pts, OBJS)
    ctl = plots.front_data(pts, OBJS, controlled=["informativeness"])
    by_raw = {p["id"]: row for d in raw.values() for p, row in zip(d["points"], d["mean"])}
    by_ctl = {p["id"]: row for d in ctl.values() for p, row in zip(d["points"], d["mean"])}
    long = next(p for p in pts if p.id == ids["long"])
    assert by_ctl[long.id][0] == pytest.approx(long.values["informativeness"].lc_mean)
    assert by_ctl[long.id][1] == by_raw[long.id][1] == pytest.approx(long.values["conciseness"].mean)
    assert by_ctl[long.id][0] != pytest.approx(by_raw[long.id][0])
    fig = plots.front_figure(pts, OBJS, controlled=["informativeness"], is_length=["conciseness"],
                             axis_titles={"informativeness": "informativeness (length-controlled)",
                                          "conciseness": "conciseness (is length)"})
    assert fig.layout.xaxis.title.text == "informativeness (length-controlled)"
    assert fig.layout.yaxis.title.text == "conciseness (is length)"
    hover = " ".join(h for t in fig.data if t.hovertext for h in t.hovertext)
    assert "length-controlled" in hover and "is length" in hover
    # one live answer's raw score is not on the controlled scale: it is not placed
    live = {"values": {"informativeness": 0.7, "conciseness": 0.3}}
    assert not plots.add_live_point(fig, live, OBJS)
    assert plots.add_live_point(plots.front_figure(pts, OBJS), live, OBJS)


# ---------------------------------------------------------------------------------------------------- the shipped demos

# demo/front: sentiment vs relevance on brief complaints (issue 23's new demo, docs/learnability.md sections 15, 17);
# demo/conditioned: sentiment vs echo-guarded relevance on the same prompts (section 22). Neither is mostly length (the
# informativeness-vs-conciseness demos before them were: length explained 96% of informativeness's spread)
SHIPPED = ("front", "conditioned")


@pytest.mark.parametrize("folder", SHIPPED)
def test_the_shipped_demos_are_not_flagged_as_mostly_length(store, folder):
    """Issue 23: both shipped demos trade sentiment against relevance, not answer length: their imported
    length-controlled figures raise no warning, and every objective keeps a controlled score. (The synthetic fronts
    above check that a front which is pure length is flagged.)"""
    path = demo.DEMO_ROOT / folder
    if not demo.available(path):
        pytest.skip(f"demo/{folder} is not shipped")
    sid = demo.import_demo(store, path)
    objs = store.get_sweep(sid)["objectives"]
    lc = store.get_sweep(sid)["summary"][controlled.SUMMARY_KEY]
    assert not lc["mostly_length"], lc
    assert not lc.get("warning") and not any(lc["is_length"].values())
    assert any(lc["share"][o] < LC.MOSTLY_LENGTH_SHARE for o in objs)
    points = store.point_records(sweep_id=sid)
    for p in points:
        assert all(p.values[o].controlled is not None for o in objs), p
    # an objective whose spread is still mostly length (the λ = 1 front's sentiment: its relevance end writes
    # shorter answers) must keep its ends apart once length is controlled: the trade-off is not the length
    ends = [p for p in points if p.kind in ("adapter", "conditioned") and p.preference and max(p.preference) == 1.0]
    for i, o in enumerate(objs):
        if lc["share"][o] >= LC.MOSTLY_LENGTH_SHARE:
            own, other = (max(ends, key=lambda p: p.preference[i]), min(ends, key=lambda p: p.preference[i]))
            assert own.values[o].controlled[1] > other.values[o].controlled[2], (o, own, other)


def test_the_demo_export_keeps_the_controlled_scores(store, tmp_path):
    """export → store.json holds lc values and the figures; importing it uses them instead of recomputing."""
    from pama.store import Store

    sid, ids = _sweep(store)
    controlled.control_sweep(store, sid)
    demo.export_sweep(store, sid, tmp_path / "d", generations_per_point=4)
    data = json.loads((tmp_path / "d" / demo.RECORDS).read_text())
    assert data["sweep"]["summary"][controlled.SUMMARY_KEY]["mostly_length"]
    point = next(p for p in data["points"] if p["id"] == ids["long"])
    assert point["values"]["informativeness"]["lc_mean"] is not None
    assert point["values"]["conciseness"]["lc_mean"] is None
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    demo.import_demo(other, tmp_path / "d")
    got = other.point_record(ids["long"]).values["informativeness"]
    # the exported values (fitted on every generation), not a refit on the 4 shipped per point
    assert got.controlled == pytest.approx(store.point_record(ids["long"]).values["informativeness"].controlled)
    other.close()


# ---------------------------------------------------------------------------------------------------- the front page

def test_the_front_page_switch_plots_controlled_scores_and_warns_on_a_pure_length_front(pama_home, monkeypatch):
    """The front page: the warning on a pure-length front (none on a length-independent one), the switch's axis
    titles ("length-controlled", "is length"), the controlled values in the plot, the hover and the points table."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from pama.store import Store

    monkeypatch.setenv("PAMA_NO_DEMO", "1")
    monkeypatch.setenv("PAMA_APP_MODEL", "tiny-random")
    store = Store()
    fair, _ = _sweep(store, "independent")
    controlled.control_sweep(store, fair)
    sid, ids = _sweep(store, "length")          # the newest sweep: the one the page shows first
    controlled.control_sweep(store, sid)
    long = store.point_record(ids["long"]).values["informativeness"]

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/front.py").run()
    assert not at.exception, at.exception
    warnings = [str(w.value) for w in at.warning]
    assert any("This front mostly varies answer length" in w for w in warnings), warnings
    assert any("length explains" in str(c.value) for c in at.caption)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["title"]["text"] == "informativeness"          # off: the raw scores

    at.toggle(key="front_length").set_value(True).run()
    assert not at.exception, at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["title"]["text"] == "informativeness (length-controlled)"
    assert spec["layout"]["yaxis"]["title"]["text"] == "conciseness (is length)"
    xs = [x for t in spec["data"] if t.get("mode") == "markers" for x in (t.get("x") or [])]
    assert long.lc_mean in xs and long.mean not in xs                            # the controlled scores are drawn
    assert "length-controlled" in at.get("plotly_chart")[0].proto.spec            # and shown in the hover
    table = at.dataframe[0].value
    row = table[table["id"] == ids["long"]].iloc[0]
    assert row["informativeness (length-controlled)"].startswith(f"{long.lc_mean:.4f}")
    assert row["conciseness (length-controlled)"] == "is length"
    assert any("mostly varies answer length" in str(w.value) for w in at.warning)

    at.multiselect(key="front_sweeps").set_value([fair]).run()                   # a front that is not length
    assert not at.exception, at.exception
    assert not any("mostly varies answer length" in str(w.value) for w in at.warning)
    store.close()
