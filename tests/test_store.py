"""Store round trips of every table, schema versioning and clear errors, on SQLite and (in CI) PostgreSQL."""
from __future__ import annotations

import datetime as dt

import pytest

from pama.store import SCHEMA_HEAD, SchemaOutOfDateError, Store, StoreError, alembic_config


def _run(store, **kw):
    base = dict(name="demo", method="pama", model="tiny-random", config={"steps": 3, "preference": [0.7, 0.3]},
                objectives=[{"name": "sentiment", "lower": -1, "upper": 1},
                            {"name": "conciseness", "lower": 0, "upper": 1}], total_steps=3)
    base.update(kw)
    return store.create_run(**base)


def test_run_round_trip_with_objectives_and_status(any_store):
    rid = _run(any_store)
    run = any_store.get_run(rid)
    assert run["status"] == "queued" and run["config"]["preference"] == [0.7, 0.3]
    assert [o["name"] for o in run["objectives"]] == ["sentiment", "conciseness"]
    assert run["objectives"][0]["lower"] == -1.0 and run["objectives"][1]["upper"] == 1.0
    any_store.set_status(rid, "running")
    run = any_store.get_run(rid)
    assert run["status"] == "running" and run["started_at"].tzinfo is not None and run["pid"]
    any_store.set_status(rid, "failed", error="boom")
    run = any_store.get_run(rid)
    assert run["status"] == "failed" and run["error"] == "boom" and run["finished_at"] >= run["started_at"]
    assert [r["id"] for r in any_store.list_runs(status="failed")] == [rid]
    assert any_store.list_runs(status="finished") == []


def test_status_check_constraint_rejects_unknown_status(any_store):
    rid = _run(any_store)
    with pytest.raises(ValueError):
        any_store.set_status(rid, "exploded")
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):  # the database itself refuses, not only the Python check
        any_store.update_run(rid, status="exploded")
    assert any_store.get_run(rid)["status"] == "queued"


def test_metrics_round_trip_idempotent_per_step(any_store):
    rid = _run(any_store)
    for step in range(1, 4):
        any_store.log_metrics(rid, step, {"kl": 0.1 * step, "rewards/sentiment/mean": step / 10})
    any_store.log_metrics(rid, 3, {"kl": 9.0})  # a resumed run repeating step 3 overwrites
    rows = any_store.metrics(rid)
    assert len(rows) == 6 and any_store.count_metrics(rid) == 6
    assert [r["value"] for r in rows if r["key"] == "kl"] == pytest.approx([0.1, 0.2, 9.0])
    assert any_store.get_run(rid)["step"] == 3
    assert any_store.metrics(rid, keys=["rewards/sentiment/mean"])[-1]["value"] == pytest.approx(0.3)


def test_metrics_refuse_non_finite_silently_dropped(any_store):
    rid = _run(any_store)
    any_store.log_metrics(rid, 1, {"kl": float("nan"), "loss/policy": 0.5})
    assert [r["key"] for r in any_store.metrics(rid)] == ["loss/policy"]


def test_sweep_points_values_generations_round_trip(any_store):
    sid = any_store.create_sweep(name="sw", method="pama", model="tiny-random", objectives=["a", "b"],
                                 config={"points": 2})
    rid = _run(any_store, sweep_id=sid)
    pid = any_store.add_point(kind="adapter", label="p=0.7", model="tiny-random", sweep_id=sid, run_id=rid,
                              method="pama", preference=[0.7, 0.3], values={"a": (0.5, 0.4, 0.6), "b": (0.2, 0.1, 0.3)},
                              kl=0.01, mean_length=12.5, distinct_1=0.8, distinct_2=0.9,
                              generations=[{"prompt_index": i, "prompt": f"q{i}", "text": f"<b>t{i}</b>",
                                            "scores": {"a": i, "b": -i}} for i in range(3)])
    base = any_store.add_point(kind="base", label="base", model="tiny-random", sweep_id=sid,
                               values={"a": (0.1, 0.0, 0.2), "b": (0.1, 0.0, 0.2)})
    mix = any_store.add_point(kind="mixture", label="mix", model="tiny-random", sweep_id=sid, mixture={rid: 0.5},
                              values={"a": (0.3, 0.2, 0.4), "b": (0.15, 0.1, 0.2)})
    pts = {p["id"]: p for p in any_store.points(sweep_id=sid)}
    assert set(pts) == {pid, base, mix}
    assert pts[pid]["values"]["a"] == {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6,
                                       "lc_mean": None, "lc_low": None, "lc_high": None}   # lc: not computed
    assert pts[pid]["preference"] == [0.7, 0.3] and pts[mix]["mixture"] == {rid: 0.5}
    gens = any_store.generations(pid)
    assert [g["text"] for g in gens] == ["<b>t0</b>", "<b>t1</b>", "<b>t2</b>"] and gens[2]["scores"]["b"] == -2
    assert any_store.get_sweep(sid)["objectives"] == ["a", "b"]
    assert any_store.counts() == {"runs": 1, "sweeps": 1, "points": 3}
    # deleting the run removes its points, generations and the mixtures that used it; the base point stays
    any_store.delete_run(rid)
    assert [p["id"] for p in any_store.points(sweep_id=sid)] == [base]
    assert any_store.generations(pid) == []
    any_store.delete_sweep(sid)
    assert any_store.counts() == {"runs": 0, "sweeps": 0, "points": 0}


def test_point_with_non_finite_value_is_refused_atomically(any_store):
    with pytest.raises(ValueError):
        any_store.add_point(kind="base", label="bad", model="m", values={"a": (float("inf"), 0, 1)})
    assert any_store.points() == []


def test_stale_running_run_is_marked_failed_with_metrics_kept(store):
    rid = _run(store)
    store.set_status(rid, "running")
    store.log_metrics(rid, 1, {"kl": 0.1})
    store.update_run(rid, heartbeat_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=600))
    assert store.mark_stale_failed(grace_s=60) == [rid]
    run = store.get_run(rid)
    assert run["status"] == "failed" and "heartbeat" in run["error"] and f"--resume {rid}" in run["error"]
    assert store.count_metrics(rid) == 1


def test_sqlite_pragmas_are_set(store):
    with store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_out_of_date_schema_is_refused_and_upgrade_command_fixes_it(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0001")  # a database written by the first release
    with pytest.raises(SchemaOutOfDateError, match="python -m pama db upgrade"):
        Store(url)
    Store.upgrade(url)
    s = Store(url)
    assert s.schema_version() == SCHEMA_HEAD
    rid = _run(s)
    assert s.get_run(rid)["sweep_id"] is None


def test_migration_0006_adds_empty_length_controlled_columns_and_keeps_values(tmp_path):
    """0005 → 0006 adds point_values.lc_mean / lc_low / lc_high (NULL: not computed); the values stay, the new
    columns take a point's controlled scores, and the downgrade drops them again."""
    from alembic import command
    from sqlalchemy import create_engine, inspect

    url = f"sqlite:///{tmp_path / 'lc.db'}"
    Store.upgrade(url)
    s = Store(url)
    sid = s.create_sweep(name="s", method="pama", model="m", objectives=["sentiment"], config={})
    pid = s.add_point(kind="base", label="b", model="m", sweep_id=sid, values={"sentiment": (0.5, 0.4, 0.6)})
    s.close()
    command.downgrade(alembic_config(url), "0005")
    engine = create_engine(url)
    assert "lc_mean" not in {c["name"] for c in inspect(engine).get_columns("point_values")}
    engine.dispose()
    Store.upgrade(url)
    s = Store(url)
    v = s.get_point(pid)["values"]["sentiment"]
    assert (v["mean"], v["ci_low"], v["ci_high"], v["lc_mean"], v["lc_low"], v["lc_high"]) == (0.5, 0.4, 0.6, None,
                                                                                              None, None)
    s.set_controlled(pid, {"sentiment": (0.45, 0.35, 0.55)})
    assert s.point_record(pid).values["sentiment"].controlled == (0.45, 0.35, 0.55)
    s.close()


def test_migrations_build_the_same_schema_as_the_models(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from pama.orm import Base

    url = f"sqlite:///{tmp_path / 'm.db'}"
    Store.upgrade(url)
    with create_engine(url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


@pytest.mark.parametrize("url, fragment", [
    ("notaurl", "Cannot use the database URL"),
    ("nosuchdb://x/y", "Cannot use the database URL"),
    ("sqlite:////nonexistent-dir-pama/sub/x.db", "Cannot"),
])
def test_unusable_database_url_gives_clear_error(url, fragment):
    with pytest.raises(StoreError, match=fragment):
        Store(url, create=False)


def test_unreachable_postgres_gives_clear_error():
    with pytest.raises(StoreError, match="Cannot open the database"):
        Store("postgresql+psycopg://nobody:pw@127.0.0.1:1/nodb")


def test_missing_store_without_create(tmp_path):
    with pytest.raises(StoreError, match="pama db init"):
        Store(f"sqlite:///{tmp_path / 'none.db'}", create=False)


def test_setup_upgrades_an_older_sqlite_store_and_keeps_a_backup(tmp_path, monkeypatch, capsys):
    """`make run` after a pull that brings migration 0007 (the jobs table): `python -m pama setup` copies the 0006
    file to pama.db.backup-0006 and upgrades it, runs kept; the downgrade drops the table again."""
    import argparse

    from alembic import command
    from sqlalchemy import create_engine, inspect

    from pama.cli import setup as setup_cli

    url = f"sqlite:///{tmp_path / 'pama.db'}"
    s = Store(url)
    rid = _run(s)
    s.close()
    command.downgrade(alembic_config(url), "0006")
    engine = create_engine(url)
    assert "jobs" not in inspect(engine).get_table_names()
    engine.dispose()
    with pytest.raises(StoreError, match="needs 0007"):
        Store(url)
    monkeypatch.setattr(setup_cli.models, "main_build_cache", lambda: None)
    assert setup_cli.run(argparse.Namespace(db=url, no_demo=True)) == 0
    assert "from schema 0006 to 0007" in capsys.readouterr().out
    assert (tmp_path / "pama.db.backup-0006").is_file()
    s = Store(url)
    assert s.schema_version() == SCHEMA_HEAD and s.get_run(rid) is not None
    jid = s.add_job(kind="train", target_id=rid, argv=["-m", "pama", "train", "--run-id", rid])
    assert s.get_job(jid)["status"] == "queued"
    s.close()
