"""Typed, frozen store records (pama.records) and the app's typed cached reads of them (pama.app.reads)."""
from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from pama import jsonio
from pama import votes as V
from pama.records import Estimate, ObjectiveBounds, PointRecord, RunRecord, SweepRecord
from pama.store import Store

OBJS = [dict(name="sentiment", lower=-1.0, upper=1.0), dict(name="conciseness", lower=0.0, upper=1.0)]


def seed(store: Store) -> dict:
    sweep = store.create_sweep(name="front", method="pama", model="tiny-random", objectives=["sentiment", "conciseness"],
                               config={"points": 2})
    run = store.create_run(name="r", method="pama", model="tiny-random", config={"seed": 3}, objectives=OBJS,
                           total_steps=4, sweep_id=sweep)
    other = store.create_run(name="o", method="morlhf", model="tiny-random", config={}, objectives=OBJS[:1])
    point = store.add_point(kind="adapter", label="pama w=0.5", model="tiny-random", sweep_id=sweep, run_id=run,
                            method="pama", preference=[0.5, 0.5], kl=0.25,
                            values={"sentiment": (0.3, 0.2, 0.4), "conciseness": (0.6, 0.5, 0.7)})
    return dict(sweep=sweep, run=run, other=other, point=point)


def test_store_records_match_the_dicts_and_are_frozen(store):
    ids = seed(store)
    run = store.run_record(ids["run"])
    assert isinstance(run, RunRecord) and run.name == "r" and run.total_steps == 4 and run.active
    assert run.objectives == (ObjectiveBounds("sentiment", -1.0, 1.0), ObjectiveBounds("conciseness", 0.0, 1.0))
    assert run.objective_names == ["sentiment", "conciseness"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = "finished"
    assert run.replace(status="finished").status == "finished" and run.status == "queued"
    # the transition: a record reads like the store's dict of the same row
    as_dict = store.get_run(ids["run"])
    assert set(run.keys()) == set(as_dict) and run["status"] == as_dict["status"] and run.get("nope", 1) == 1
    assert dict(run)["config"] == {"seed": 3} and "sweep_id" in run and run["objectives"][0]["name"] == "sentiment"
    with pytest.raises(KeyError):
        run["nope"]
    assert store.run_record("r_missing") is None and store.point_record("p_missing") is None
    # lists carry each run's objectives (one query for all of them), newest first as list_runs
    listed = store.run_records()
    assert [r.id for r in listed] == [r["id"] for r in store.list_runs()]
    assert {r.id: len(r.objectives) for r in listed} == {ids["run"]: 2, ids["other"]: 1}
    assert [r.id for r in store.run_records(sweep_id=ids["sweep"])] == [ids["run"]]

    sweep = store.sweep_record(ids["sweep"])
    assert isinstance(sweep, SweepRecord) and sweep.objectives == ("sentiment", "conciseness") and sweep.active
    assert [s.id for s in store.sweep_records()] == [ids["sweep"]]

    (point,) = store.point_records(sweep_id=ids["sweep"])
    assert isinstance(point, PointRecord) and point == store.point_record(ids["point"])
    assert point.values["sentiment"] == Estimate(0.3, 0.2, 0.4) and point.values["sentiment"]["ci_high"] == 0.4
    assert str(point.values["conciseness"]) == "0.600 [0.500, 0.700]"


def test_records_pickle_and_serialise_like_the_dicts(store):
    ids = seed(store)
    for rec, row in ((store.run_record(ids["run"]), store.get_run(ids["run"])),
                     (store.point_record(ids["point"]), store.get_point(ids["point"])),
                     (store.sweep_record(ids["sweep"]), store.get_sweep(ids["sweep"]))):
        assert pickle.loads(pickle.dumps(rec)) == rec   # st.cache_data pickles what it caches
        doc, want = json.loads(jsonio.dumps(rec)), json.loads(jsonio.dumps(row))
        if "objectives" in want and isinstance(want["objectives"][0], dict):
            want["objectives"] = [{k: o[k] for k in ("name", "lower", "upper", "direction")}
                                  for o in want["objectives"]]
        assert doc == want


def test_columns_a_record_does_not_name_are_kept_in_extra():
    row = dict(id="p1", kind="adapter", label="x", model="m", values={}, created_by_a_newer_schema=7)
    rec = PointRecord.from_dict(row)
    assert rec.extra == {"created_by_a_newer_schema": 7} and rec["created_by_a_newer_schema"] == 7
    assert "created_by_a_newer_schema" in rec.keys() and "extra" not in rec.keys()
    assert json.loads(jsonio.dumps(rec))["created_by_a_newer_schema"] == 7


def test_the_vote_score_axis_keeps_records_records_and_dicts_dicts():
    rec = PointRecord.from_dict(dict(id="p1", kind="adapter", label="x", model="m",
                                     values={"a": dict(mean=0.5, ci_low=0.4, ci_high=0.6)}))
    score = {"p1": dict(score=1.0, low=0.5, high=1.5)}
    (out,) = V.as_objective([rec], score)
    assert isinstance(out, PointRecord) and out.values[V.SCORE_NAME] == Estimate(1.0, 0.5, 1.5)
    assert V.SCORE_NAME not in rec.values   # the original is untouched
    (d,) = V.as_objective([dict(rec)], score)
    assert isinstance(d, dict) and d["values"][V.SCORE_NAME] == dict(mean=1.0, ci_low=0.5, ci_high=1.5)


def test_cached_reads_are_typed_per_store_and_fresh_after_clear(pama_home, monkeypatch, tmp_path):
    from pama.app import reads

    reads.clear()
    store = reads.store()
    ids = seed(store)
    run = reads.run(ids["run"])
    assert isinstance(run, RunRecord) and run.status == "queued"
    store.set_status(ids["run"], "finished")
    assert reads.run(ids["run"]).status == "queued"          # cached (READ_TTL_S)
    assert reads.run.fresh(ids["run"]).status == "finished"  # read now
    reads.clear()                                            # what a page does after a write
    assert reads.run(ids["run"]).status == "finished"
    assert [p.id for p in reads.points(sweep_id=ids["sweep"])] == [ids["point"]]
    assert reads.counts() == {"runs": 2, "sweeps": 1, "points": 1}
    # another store (PAMA_DB_URL changed) is another cache: nothing leaks from the first one
    monkeypatch.setenv("PAMA_DB_URL", f"sqlite:///{tmp_path / 'other.db'}")
    assert reads.store().url != store.url
    assert reads.counts() == {"runs": 0, "sweeps": 0, "points": 0} and reads.run(ids["run"]) is None
    reads.clear()
