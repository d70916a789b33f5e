"""Sweeps end to end on the tiny model (train → evaluate → front → resume → mixtures → export), grids, the demo."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pama import fronts
from pama import sweep as sw
from pama.cli import main


def test_preference_grid_two_and_three_objectives():
    g = sw.preference_grid(2, 5)
    assert g[0] == [1.0, 0.0] and g[-1] == [0.0, 1.0] and len(g) == 5
    assert np.allclose([p[0] for p in g], [1, 0.75, 0.5, 0.25, 0])
    g3 = sw.preference_grid(3, 3)
    assert len(g3) == 6 and all(abs(sum(p) - 1) < 1e-12 for p in g3)
    assert {tuple(p) for p in g3} == {(1, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 1, 0), (0, 0.5, 0.5), (0, 0, 1)}
    assert len(sw.preference_grid(3, 4)) == 10
    assert sw.preference_grid(2, 1) == [[0.5, 0.5]]
    with pytest.raises(ValueError):
        sw.preference_grid(2, 0)


TINY_SWEEP = ["--model", "tiny-random", "--objectives", "sentiment,conciseness", "--points", "2", "--steps", "2",
              "--batch-size", "2", "--samples-per-prompt", "1", "--max-new-tokens", "5", "--eval-samples", "4",
              "--eval-max-new-tokens", "5", "--learning-rate", "0.01", "--save-every", "1", "--threads", "1", "--quiet"]


def test_two_point_sweep_end_to_end_resume_mixtures_export(store, pama_home, tmp_path, capsys):
    assert main(["sweep", *TINY_SWEEP]) == 0
    out = capsys.readouterr().out
    sweep_id = out.strip().splitlines()[-1].split()[-1]
    sweep = store.get_sweep(sweep_id)
    assert sweep["status"] == "finished"
    runs = store.list_runs(sweep_id=sweep_id)
    assert len(runs) == 2 and all(r["status"] == "finished" for r in runs)
    for r in runs:
        assert (Path(r["adapter_path"]) / "adapter_model.safetensors").is_file()
        assert Path(r["adapter_path"]).resolve().is_relative_to(pama_home.resolve())
    prefs = sorted(tuple(r["config"]["preference"]) for r in runs)
    assert prefs == [(0.0, 1.0), (1.0, 0.0)]
    points = store.points(sweep_id=sweep_id)
    assert sorted(p["kind"] for p in points) == ["adapter", "adapter", "base"]
    assert all(set(p["values"]) == {"sentiment", "conciseness"} for p in points)
    assert all(len(store.generations(p["id"])) == 4 for p in points)
    summary = sweep["summary"]
    assert summary["hypervolume"] > 0 and summary["hypervolume"] >= summary["hypervolume_base"]
    assert summary["front_point_ids"] and set(summary["front_point_ids"]) <= {p["id"] for p in points}
    lc = summary["length_control"]   # pama.controlled, at the end of the sweep's evaluation (docs/fronts.md)
    assert lc["is_length"] == {"sentiment": False, "conciseness": True} and lc["share"]["conciseness"] == 1.0
    assert all(p["values"]["sentiment"]["lc_mean"] is not None and p["values"]["conciseness"]["lc_mean"] is None
               for p in points)
    assert "hypervolume" in out and "base" in out

    # resuming a complete sweep is a no-op: no new runs, points or metrics
    before = (store.counts(), store.count_metrics())
    assert main(["sweep", "--resume", sweep_id, "--quiet"]) == 0
    assert (store.counts(), store.count_metrics()) == before
    capsys.readouterr()

    # an interrupted sweep: one run cancelled, one point missing → resume finishes the run and evaluates the point
    lost = next(p for p in points if p["kind"] == "adapter")
    store.delete_point(lost["id"])
    store.set_status(runs[0]["id"], "cancelled", error="test")
    assert main(["sweep", "--resume", sweep_id, "--quiet"]) == 0
    assert store.counts() == before[0]
    assert all(r["status"] == "finished" for r in store.list_runs(sweep_id=sweep_id))
    again = next(p for p in store.points(sweep_id=sweep_id, run_id=lost["run_id"]))
    assert again["values"] == lost["values"]   # same prompts, same seeds, same adapter → the same point
    capsys.readouterr()

    # one exact mixture between each pair of neighbouring front adapters. A tiny random model's two adapters may
    # land one above the other (a front of one: no pair, no mixture), so their stored values are set to the two
    # ends of the trade-off first: both on the front, exactly one pair to mix.
    rows, summary = sw.front(store, sweep_id, mixtures=0, progress=False)
    front_adapters = [r for r in fronts.front_table(store, sweep_id)[0] if r["kind"] == "adapter"]
    from pama import objectives as objmod
    from pama import pareto
    from pama.orm import PointValue

    adapter_pts = store.points(sweep_id=sweep_id, kind="adapter")
    span = {o: (objmod.get(o).lower, objmod.get(o).upper) for o in ("sentiment", "conciseness")}
    with store.session() as s:
        for p in adapter_pts:
            first = p["preference"][0]  # (1, 0): high sentiment, low conciseness; (0, 1): the reverse
            for o, share in (("sentiment", 0.2 + 0.6 * first), ("conciseness", 0.8 - 0.6 * first)):
                lo, hi = span[o]
                row = s.get(PointValue, (p["id"], o))
                row.mean, row.ci_low, row.ci_high = lo + share * (hi - lo), lo, hi
    adapter_pts = store.points(sweep_id=sweep_id, kind="adapter")
    mat = np.array([[p["values"][o]["mean"] for o in ("sentiment", "conciseness")] for p in adapter_pts])
    assert int(pareto.non_dominated(mat).sum()) == 2 and len(front_adapters) == 2
    assert main(["front", sweep_id, "--mixtures", "1", "--quiet"]) == 0
    mixtures = store.points(sweep_id=sweep_id, kind="mixture")
    assert len(mixtures) == 1
    assert sorted(mixtures[0]["mixture"].values()) == [0.5, 0.5]
    assert set(mixtures[0]["mixture"]) == {r["id"] for r in runs}
    assert mixtures[0]["preference"] == pytest.approx([0.5, 0.5])  # halfway between (1, 0) and (0, 1)
    assert mixtures[0]["values"]["sentiment"]["lc_mean"] is not None   # controlled once the mixture is in
    text = capsys.readouterr().out
    assert "mixture" in text
    assert main(["front", sweep_id, "--mixtures", "1", "--quiet"]) == 0   # again: nothing new
    assert len(store.points(sweep_id=sweep_id, kind="mixture")) == len(mixtures)

    for fmt in ("csv", "json", "html"):
        path = tmp_path / f"front.{fmt}"
        assert main(["front", sweep_id, "--export", fmt, "--out", str(path), "--quiet"]) == 0
        assert path.is_file() and path.stat().st_size > 0
    csv_lines = (tmp_path / "front.csv").read_text().splitlines()
    assert csv_lines[0].startswith("point_id,kind") and len(csv_lines) == 1 + 3 + len(mixtures)
    assert "sentiment/lc_mean" in csv_lines[0] and "conciseness/lc_note" in csv_lines[0]
    data = json.loads((tmp_path / "front.json").read_text())
    assert data["summary"]["hypervolume"] == pytest.approx(store.get_sweep(sweep_id)["summary"]["hypervolume"])
    assert len(data["points"]) == 3 + len(mixtures) and len(data["runs"]) == 2
    html = (tmp_path / "front.html").read_text()
    assert "plotly" in html.lower() and "hypervolume" in html and sweep_id in html


def test_sweep_errors_are_clear(store, capsys):
    assert main(["sweep", "--resume", "s_missing", "--quiet"]) == 2
    assert "No sweep with id 's_missing'" in capsys.readouterr().err
    assert main(["sweep", *TINY_SWEEP, "--points", "0"]) == 2
    assert "points must be" in capsys.readouterr().err
    assert main(["front", "s_missing"]) == 2


def test_evaluate_command_base(store, capsys):
    assert main(["evaluate", "--base", "--model", "tiny-random", "--objectives", "sentiment", "--samples", "2",
                 "--max-new-tokens", "4", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "sentiment" in out and "point id" in out
    assert [p["kind"] for p in store.points()] == ["base"]


def test_demo_import_is_idempotent(store):
    from pama import adapters as adp
    from pama import demo

    if not demo.available():
        pytest.skip("demo/front has not been built yet")
    ids = demo.import_if_empty(store)
    assert ids and len(ids) == sum(demo.available(d) for d in demo.shipped_dirs())
    sweep_id = ids[0]                                     # demo/front, imported first
    counts = store.counts()
    assert demo.import_if_empty(store) == []
    assert store.counts() == counts
    pts = store.points(sweep_id=sweep_id, kind="adapter")
    assert len(pts) >= 2                                  # at least the two ends
    assert store.points(sweep_id=sweep_id, kind="base")
    assert store.get_sweep(sweep_id)["summary"]["hypervolume"] > 0
    for r in store.list_runs(sweep_id=sweep_id):
        assert r["status"] == "finished"
        adp.check_adapter_path(r["adapter_path"])         # inside the demo folder, complete, readable
        assert store.metrics(r["id"])
    assert all(store.generations(p["id"]) for p in pts)


def test_points_evaluated_otherwise_stay_out_of_the_sweeps_front_and_hypervolume(store):
    """The app's quick mixtures (8 prompts × 32 tokens) in a sweep evaluated on 64 × 48: never in its HV or front."""
    full = dict(n_prompts=64, seed=1234, max_new_tokens=48, temperature=0.7, batch_size=16)
    quick = dict(full, n_prompts=8, max_new_tokens=32, batch_size=8, quick=True)
    sid = store.create_sweep(name="s", method="pama", model="tiny-random", objectives=["sentiment", "conciseness"],
                             config={})

    def add(kind, s, c, cfg, **kw):
        return store.add_point(kind=kind, label=kind, model="tiny-random", sweep_id=sid, eval_config=cfg,
                               values={"sentiment": (s, s, s), "conciseness": (c, c, c)}, **kw)

    add("base", 0.0, 0.4, full)
    a = add("adapter", 0.2, 0.6, full, method="pama")
    b = add("adapter", 0.6, 0.3, dict(full, batch_size=32), method="pama")  # the batch size does not matter
    before = fronts.summarise(store, sid)
    q = add("mixture", 0.9, 0.9, quick, method="pama", mixture={"r1": 0.5, "r2": 0.5})  # would dominate both
    after = fronts.summarise(store, sid)
    assert after["hypervolume"] == pytest.approx(before["hypervolume"])
    assert set(after["front_point_ids"]) == {a, b} and after["other_eval_point_ids"] == [q]
    rows, _ = fronts.front_table(store, sid)
    by_id = {r["point_id"]: r for r in rows}
    assert not by_id[q]["on_front"] and not by_id[q]["comparable"]
    assert by_id[a]["on_front"] and by_id[b]["on_front"] and by_id[a]["comparable"]


def test_evaluation_progress_is_printed_and_written_to_the_sweep(store, capsys):
    """Issue 24: each update prints a line (the log of a --quiet sweep shows it) and writes summary["evaluation"],
    keeping the rest of the summary; the ETA is the prompt-evaluations left at the mean rate so far."""
    sid = store.create_sweep(name="s", method="pama", model="tiny-random", objectives=["a", "b"], config={})
    store.update_sweep(sid, summary={"kept": 1})
    bar = sw.EvalProgress(store, sid, points_total=3, prompts=10)
    bar.started -= 30                       # 30 s into the evaluation
    bar.start("base model")
    bar.prompts_progress(5, 10)
    state = store.get_sweep(sid)["summary"]["evaluation"]
    assert store.get_sweep(sid)["summary"]["kept"] == 1
    assert (state["points_done"], state["points_total"], state["prompts_done"], state["prompts_total"]) == (0, 3, 5, 10)
    assert state["eta_s"] == pytest.approx(30 / 5 * 25, rel=0.05)   # 5 of 30 prompt-evaluations in 30 s
    bar.finished()
    bar.start("r1 at (1.00, 0.00) (0.00, 1.00)", points=2)
    bar.prompts_progress(10, 10)
    bar.finished(2)
    state = store.get_sweep(sid)["summary"]["evaluation"]
    assert state["points_done"] == 3 and state["eta_s"] == 0
    err = capsys.readouterr().err
    assert "evaluation: 0/3 points · base model: 5/10 prompts · elapsed 30 s · ETA 2 min" in err
    assert "evaluation: 1/3 points · r1 at (1.00, 0.00) (0.00, 1.00): 10/10 prompts" in err
    assert err.strip().splitlines()[-1].startswith("evaluation: 3/3 points · elapsed")
