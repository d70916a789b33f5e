"""Blind votes: the Bradley–Terry fit and pair choice (pure), the votes table (SQLite and PostgreSQL), the migration
from 0002 (the shipped demo's store included), double submits, deleted points, concurrent voters, exports, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pama  # noqa: F401  (before torch)

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from pama import votes as V
from pama.store import SCHEMA_HEAD, SchemaOutOfDateError, Store, VoteRefused, alembic_config

REPO = Path(__file__).resolve().parent.parent
TRUE = {"p0": -1.5, "p1": -0.7, "p2": 0.0, "p3": 0.4, "p4": 1.2, "p5": 1.6}


def simulate(n: int, *, seed: int = 0, tie_band: float = 0.05, both_bad: float = 0.0) -> list[dict]:
    """Votes drawn from a Bradley–Terry model with the TRUE strengths (some ties and both_bad)."""
    rng = np.random.default_rng(seed)
    ids = list(TRUE)
    out = []
    for _ in range(n):
        a, b = rng.choice(ids, 2, replace=False)
        if rng.random() < both_bad:
            out.append(dict(point_a=a, point_b=b, vote="both_bad"))
            continue
        pa = 1 / (1 + np.exp(-(TRUE[a] - TRUE[b])))
        u = rng.random()
        out.append(dict(point_a=a, point_b=b, vote="tie" if abs(u - pa) < tie_band else ("a" if u < pa else "b")))
    return out


# ------------------------------------------------------------------------------------------------ the fit

def test_bt_fit_recovers_known_strengths():
    sc = V.scores(simulate(800, both_bad=0.1), n_boot=100)
    ids = list(TRUE)
    est = [sc[p]["score"] for p in ids]
    truth = [TRUE[p] for p in ids]
    assert spearmanr(est, truth).statistic == pytest.approx(1.0)       # the exact rank order
    assert pearsonr(est, truth).statistic > 0.98
    centred = np.array(truth) - np.mean(truth)
    assert np.max(np.abs(np.array(est) - centred)) < 0.4
    for p in ids:                                                       # intervals bracket the estimate (and truth)
        assert sc[p]["low"] < sc[p]["score"] < sc[p]["high"]
        assert sc[p]["low"] - 0.15 < TRUE[p] - np.mean(truth) < sc[p]["high"] + 0.15
        assert sc[p]["both_bad"] > 0                                    # counted, not fitted


def test_ties_count_half_and_both_bad_is_left_out():
    one_each = [dict(point_a="x", point_b="y", vote="a"), dict(point_a="x", point_b="y", vote="b")]
    ties = [dict(point_a="x", point_b="y", vote="tie")] * 2
    assert V.fit(one_each)["x"] == pytest.approx(0.0, abs=1e-9)
    assert V.fit(ties)["x"] == pytest.approx(0.0, abs=1e-9)
    # one win and two ties = a 2-1 record (wins + half the ties on each side)
    with_ties = V.fit([dict(point_a="x", point_b="y", vote="a")] + ties)
    record = V.fit([dict(point_a="x", point_b="y", vote="a")] * 2 + [dict(point_a="x", point_b="y", vote="b")])
    assert with_ties["x"] > 0 and with_ties["x"] == pytest.approx(record["x"], abs=1e-6)
    assert V.fit([dict(point_a="x", point_b="y", vote="both_bad")] * 5) == {}
    t = V.tally(ties + one_each + [dict(point_a="x", point_b="y", vote="both_bad")])
    assert t["x"] == dict(votes=5, wins=1, losses=1, ties=2, both_bad=1, win_rate=0.5)


def test_scores_are_finite_for_an_undefeated_point_and_deterministic():
    votes = [dict(point_a="x", point_b="y", vote="a")] * 3 + [dict(point_a="y", point_b="z", vote="a")] * 2
    s1, s2 = V.scores(votes, seed=3), V.scores(votes, seed=3)
    assert s1 == s2
    assert all(np.isfinite(s1[p]["score"]) for p in "xyz")
    assert s1["x"]["score"] > s1["y"]["score"] > s1["z"]["score"]
    assert V.scores([]) == {}
    only_bad = V.scores([dict(point_a="x", point_b="y", vote="both_bad")])
    assert only_bad["x"]["score"] is None and only_bad["x"]["both_bad"] == 1


def test_items_restrict_the_fit():
    votes = simulate(200)
    sc = V.scores(votes, items=["p0", "p5"], n_boot=20)
    assert set(sc) == {"p0", "p5"} and sc["p5"]["score"] > sc["p0"]["score"]


# ------------------------------------------------------------------------------------------------ pair choice

def _pts(n=5):
    return [dict(id=f"q{i}", sweep_id="s", values={"rel": {"mean": float(i)}, "read": {"mean": float(-i)}})
            for i in range(n)]


def test_first_pairs_are_front_neighbours_then_the_unvoted_ones():
    pts = _pts()
    adj = V.neighbours(pts, "rel")
    assert adj == {frozenset((f"q{i}", f"q{i + 1}")) for i in range(4)}
    votes: list[dict] = []
    seen = []
    for k in range(4):
        a, b = V.choose_pair([p["id"] for p in pts], votes, adjacent=adj, rng=np.random.default_rng(k))
        seen.append(frozenset((a, b)))
        votes.append(dict(point_a=a, point_b=b, vote="tie"))
    assert set(seen) == adj                   # every neighbour pair once before anything else
    a, b = V.choose_pair([p["id"] for p in pts], votes, adjacent=adj, rng=np.random.default_rng(9))
    assert frozenset((a, b)) not in adj       # then a pair nobody voted on yet


def test_overlapping_intervals_are_preferred():
    score = {"x": dict(low=0.0, high=1.0), "y": dict(low=0.5, high=1.5), "z": dict(low=3.0, high=4.0)}
    assert V.interval_overlap(score["x"], score["y"]) == pytest.approx(0.5)
    assert V.interval_overlap(score["x"], score["z"]) == 0.0
    assert V.interval_overlap(score["x"], None) == 1.0
    ranked = V.pair_priorities(["x", "y", "z"], [], score)
    assert {ranked[0][1], ranked[0][2]} == {"x", "y"}


def test_ballot_is_deterministic_given_a_seed_and_reuses_stored_texts():
    pts = _pts(3)
    gens = {p["id"]: [dict(prompt_index=k, prompt=f"prompt {k}", text=f"{p['id']} says {k}") for k in (0, 1)]
            for p in pts}
    b1 = V.ballot(pts, [], gens, heldout=["h0", "h1", "h2"], objective="rel", seed=4, draw=2)
    b2 = V.ballot(pts, [], gens, heldout=["h0", "h1", "h2"], objective="rel", seed=4, draw=2)
    assert b1["token"] != b2["token"]                                    # a fresh nonce each time
    assert {k: v for k, v in b1.items() if k != "token"} == {k: v for k, v in b2.items() if k != "token"}
    assert b1["source"] == "stored" and b1["prompt"] == f"prompt {b1['prompt_index']}"
    assert b1["text_a"] == f"{b1['point_a']} says {b1['prompt_index']}" and b1["sweep_id"] == "s"
    orders = {(V.ballot(pts, [], gens, heldout=[], objective="rel", seed=s)["point_a"]) for s in range(12)}
    assert len(orders) > 1                                               # A is not always the same side
    # no shared stored prompt: a held-out prompt, texts to generate
    b3 = V.ballot(pts, [], {}, heldout=["h0", "h1"], objective="rel", seed=1)
    assert b3["source"] == "generated" and b3["text_a"] is None and b3["prompt"] in ("h0", "h1")
    with pytest.raises(ValueError):
        V.ballot(pts[:1], [], {}, heldout=["h0"], seed=0)


def test_prompts_least_voted_for_the_pair_come_first():
    ga = [dict(prompt_index=k) for k in range(3)]
    votes = [dict(point_a="a", point_b="b", prompt_index=0), dict(point_a="a", point_b="b", prompt_index=2)]
    for s in range(5):
        assert V.choose_prompt(ga, ga, votes, n_heldout=9, rng=np.random.default_rng(s)) == (1, True)


# ------------------------------------------------------------------------------------------------ the store

def _two_points(store):
    sid = store.create_sweep(name="v", method="pama", model="tiny-random", objectives=["sentiment"], config={})
    a = store.add_point(kind="adapter", label="A", model="m", sweep_id=sid, values={"sentiment": (0.5, 0.4, 0.6)})
    b = store.add_point(kind="base", label="B", model="m", sweep_id=sid, values={"sentiment": (0.1, 0.0, 0.2)})
    return sid, a, b


def _vote(store, a, b, token, vote="a", **kw):
    return store.add_vote(token=token, point_a=a, point_b=b, prompt="<b>p</b>", text_a="ta", text_b="tb", vote=vote,
                          **kw)


def test_votes_round_trip_double_submit_and_refusals(any_store):
    sid, a, b = _two_points(any_store)
    first = _vote(any_store, a, b, "tok1", voter="  ann  ", sweep_id=sid, prompt_index=3, source="stored")
    again = _vote(any_store, a, b, "tok1", vote="b")                     # the same ballot submitted twice
    assert first["duplicate"] is False and again == dict(id=first["id"], duplicate=True)
    _vote(any_store, b, a, "tok2", vote="tie", sweep_id=sid)
    rows = any_store.votes(sweep_id=sid)
    assert [r["vote"] for r in rows] == ["a", "tie"]
    assert rows[0]["voter"] == "ann" and rows[0]["prompt_index"] == 3 and rows[0]["created_at"].tzinfo is not None
    assert len(any_store.votes(point_ids=[a, b])) == 2 and any_store.votes(point_ids=[a]) == []
    with pytest.raises(VoteRefused, match="unknown vote"):
        _vote(any_store, a, b, "tok3", vote="maybe")
    with pytest.raises(VoteRefused, match="two different points"):
        _vote(any_store, a, a, "tok4")
    with pytest.raises(VoteRefused, match="token"):
        _vote(any_store, a, b, "")
    # a point deleted after the pair was drawn: refused, nothing stored; earlier votes on it are kept
    any_store.delete_point(b)
    with pytest.raises(VoteRefused, match=f"point {b} was deleted"):
        _vote(any_store, a, b, "tok5", sweep_id=sid)
    assert any_store.get_vote("tok5") is None
    assert len(any_store.votes(sweep_id=sid)) == 2


def test_the_database_refuses_bad_rows_itself(any_store):
    """The CHECK and UNIQUE constraints hold even for writers that bypass Store.add_vote."""
    from sqlalchemy.exc import IntegrityError

    from pama.orm import Vote

    _, a, b = _two_points(any_store)
    for row in (dict(vote="maybe", token="t1"), dict(vote="a", token="t2", point_b=a)):
        with pytest.raises(IntegrityError):
            with any_store.session() as s:
                s.add(Vote(**dict(dict(point_a=a, point_b=b, prompt="p", text_a="x", text_b="y"), **row)))
    _vote(any_store, a, b, "t3")
    with pytest.raises(IntegrityError):
        with any_store.session() as s:
            s.add(Vote(token="t3", point_a=a, point_b=b, prompt="p", text_a="x", text_b="y", vote="b"))


def test_concurrent_voters_on_one_sqlite_file_lose_nothing(store):
    """Threads and processes writing votes at once, each ballot also submitted twice: every ballot once."""
    _, a, b = _two_points(store)
    url = store.url
    code = ("import sys; import pama; from pama.store import Store; s = Store(sys.argv[1]); w = sys.argv[2]\n"
            "for i in range(25):\n"
            "    for _ in range(2):\n"
            "        s.add_vote(token=f'{w}-{i}', point_a=sys.argv[3], point_b=sys.argv[4], prompt='p', text_a='x',"
            " text_b='y', vote='ab'[i % 2])\n"
            "    s.add_vote(token=f'shared-{i}', point_a=sys.argv[3], point_b=sys.argv[4], prompt='p', text_a='x',"
            " text_b='y', vote='tie')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, f"proc{k}", a, b], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for k in range(3)]
    errors: list[BaseException] = []

    def thread_voter(k):
        try:
            own = Store(url)
            for i in range(25):
                for _ in range(2):
                    _vote(own, a, b, f"thread{k}-{i}", vote="ab"[i % 2])
                _vote(own, a, b, f"shared-{i}", vote="tie")
            own.close()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=thread_voter, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert not errors, errors
    rows = store.votes()
    tokens = [r["token"] for r in rows]
    assert len(tokens) == len(set(tokens)) == 6 * 25 + 25


# ------------------------------------------------------------------------------------------------ the migration

def _downgrade(url: str, rev: str) -> None:
    from alembic import command
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, rev)
    engine.dispose()


def test_migration_from_0002_keeps_the_demo_front_and_adds_votes(tmp_path):
    from pama import demo

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    s = Store(url)
    sweep_id = demo.import_demo(s)
    def raw(p):   # the raw values (the length-controlled lc_* are dropped by the downgrade, recomputed on demand)
        return {o: {k: v[k] for k in ("mean", "ci_low", "ci_high")} for o, v in p["values"].items()}

    before = {p["id"]: raw(p) for p in s.points()}
    n_gens = sum(len(s.generations(p)) for p in before)
    s.close()
    _downgrade(url, "0002")                       # the database as the release with schema 0002 left it
    with pytest.raises(SchemaOutOfDateError, match="python -m pama db upgrade"):
        Store(url)
    out = subprocess.run([sys.executable, "-m", "pama", "db", "upgrade", "--db", url], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    s = Store(url)
    assert s.schema_version() == SCHEMA_HEAD == "0007"
    assert {p["id"]: raw(p) for p in s.points()} == before
    assert sum(len(s.generations(p)) for p in before) == n_gens
    ids = list(before)
    assert _vote(s, ids[0], ids[1], "after-upgrade", sweep_id=sweep_id)["duplicate"] is False
    assert len(s.votes(sweep_id=sweep_id)) == 1
    s.close()


def test_migration_from_0002_on_postgresql(pg_url):
    from alembic import command

    command.upgrade(alembic_config(pg_url), "0002")
    with pytest.raises(SchemaOutOfDateError):
        Store(pg_url)
    Store.upgrade(pg_url)
    s = Store(pg_url)
    _, a, b = _two_points(s)
    assert _vote(s, a, b, "pg")["duplicate"] is False and _vote(s, a, b, "pg")["duplicate"] is True
    _downgrade(pg_url, "0003")                    # and back: the downgrade drops only the votes table
    s.close()


# ------------------------------------------------------------------------------------------------ exports and CLI

def test_exports_and_cli_carry_votes_and_scores(store, tmp_path):
    from pama import report

    sid, a, b = _two_points(store)
    for i, choice in enumerate(["a", "a", "tie", "b", "both_bad"]):
        _vote(store, a, b, f"t{i}", vote=choice, sweep_id=sid)
    rows = report.votes_rows(store, sid)
    assert [r["vote"] for r in rows] == ["a", "a", "tie", "b", "both_bad"]
    csv_text = report.votes_csv(rows)
    assert csv_text.splitlines()[0].startswith("id,created_at,voter,")
    doc = json.loads(report.votes_json(store, sid))
    assert len(doc["votes"]) == 5 and {r["point_id"] for r in doc["scores"]} == {a, b}
    sa = next(r for r in doc["scores"] if r["point_id"] == a)
    assert sa["votes"] == 5 and sa["wins"] == 2 and sa["win_rate"] == pytest.approx(2.5 / 4)
    assert sa["bt_low"] <= sa["bt_score"] <= sa["bt_high"]
    front_json = json.loads(Path(report.export(store, sid, "json", tmp_path)).read_text())
    assert len(front_json["votes"]) == 5 and front_json["vote_scores"]
    front_csv = Path(report.export(store, sid, "csv", tmp_path)).read_text()
    assert "bt_score" in front_csv.splitlines()[0]
    env = dict(__import__("os").environ, PAMA_DB_URL=store.url)
    out = subprocess.run([sys.executable, "-m", "pama", "votes", sid], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "5 votes" in out.stdout and a in out.stdout and "win rate" in out.stdout
    out = subprocess.run([sys.executable, "-m", "pama", "votes", sid, "--export", "csv", "--out",
                          str(tmp_path / "v.csv")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len((tmp_path / "v.csv").read_text().splitlines()) == 6


# ------------------------------------------------------------------------------------------------ figures

def test_front_figure_colours_points_by_score_and_plots_it_as_an_axis():
    from pama import plots

    pts = [dict(id=f"q{i}", kind="adapter", method="pama", label=f"q{i}",
                values={"rel": dict(mean=i, ci_low=i - 0.1, ci_high=i + 0.1),
                        "read": dict(mean=-i, ci_low=-i - 0.1, ci_high=-i + 0.1)}) for i in range(3)]
    score = {"q0": dict(score=-1.0, low=-2.0, high=0.0), "q2": dict(score=1.0, low=0.2, high=1.8)}
    fig = plots.front_figure(pts, ["rel", "read"], colour_by={k: v["score"] for k, v in score.items()})
    markers = [t for t in fig.data if t.mode == "markers" and t.customdata is not None]
    colours = {cd[0]: c for t in markers for cd, c in zip(t.customdata, t.marker.color)}
    assert colours["q1"] == plots.UNSCORED and colours["q0"] != colours["q2"] != plots.UNSCORED
    assert any(t.marker.showscale for t in fig.data)                     # the colour bar
    axis = plots.front_figure(V.as_objective(pts, score), ["rel", V.SCORE_NAME])
    shown = [cd[0] for t in axis.data if t.mode == "markers" and t.customdata is not None for cd in t.customdata]
    assert sorted(shown) == ["q0", "q2"]                                 # unscored points have no such value
    bars = [t for t in axis.data if t.mode == "markers" and t.error_y is not None and t.error_y.array is not None]
    assert bars and axis.layout.yaxis.title.text == V.SCORE_NAME


# ------------------------------------------------------------------------------------------------ the app (AppTest)

def _blind(at):
    """Open the Blind vote page (views/vote.py, its own page in app.py's navigation)."""
    at.switch_page("views/vote.py").run()
    assert [t.value for t in at.title] == ["Blind vote"]
    assert not at.exception, [e.value for e in at.exception]
    return at


def _shown_text(at) -> str:
    """Everything a person reads on the page apart from pickers (which list every point by design)."""
    parts = [e.value for kind in ("markdown", "caption", "text", "success", "error", "subheader", "info")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_blind_flow_hides_labels_until_the_vote_stores_it_and_shows_scores(monkeypatch, pama_home):
    from streamlit.testing.v1 import AppTest

    from test_app import APP, TIMEOUT, make_front

    monkeypatch.setenv("PAMA_NO_DEMO", "1")
    monkeypatch.setenv("PAMA_APP_MODEL", "tiny-random")
    store = Store()
    ids = make_front(store)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    _blind(at)
    ballot = at.session_state["blind_ballot"]
    assert ballot["source"] == "stored" and ballot["sweep_id"] == ids["sweep"]
    labels = {p["id"]: p["label"] for p in store.points()}
    assert [c.value for c in at.code] == [ballot["text_a"], ballot["text_b"]]     # shown as text, <script> included
    page = _shown_text(at)
    for pid in (ballot["point_a"], ballot["point_b"]):
        assert pid not in page and f"`{labels[pid]}" not in page and "was" not in page
    at.text_input(key="blind_voter").set_value("tester").run()
    at.button(key="blind_vote_a").click().run()
    assert not at.exception
    rows = store.votes()
    assert len(rows) == 1 and rows[0]["vote"] == "a" and rows[0]["voter"] == "tester"
    assert (rows[0]["point_a"], rows[0]["point_b"], rows[0]["text_a"]) == (ballot["point_a"], ballot["point_b"],
                                                                           ballot["text_a"])
    page = _shown_text(at)
    assert "Vote recorded: A is better." in page
    assert f"A was** `{labels[ballot['point_a']]}" in page and f"B was** `{labels[ballot['point_b']]}" in page
    assert at.button(key="blind_vote_b").disabled                                   # one vote per ballot
    table = at.dataframe[0].value
    scored = table[table["votes"] == 1]
    assert len(scored) == 2 and scored["BT score"].notna().all() and scored["BT score"].iloc[0] > 0
    # next pair: a new ballot, its points hidden again
    at.button(key="blind_next").click().run()
    nxt = at.session_state["blind_ballot"]
    assert nxt["token"] != ballot["token"] and "was**" not in _shown_text(at)
    assert frozenset((nxt["point_a"], nxt["point_b"])) != frozenset((ballot["point_a"], ballot["point_b"]))


def test_blind_vote_on_a_deleted_point_is_refused_and_a_new_pair_drawn(monkeypatch, pama_home):
    from streamlit.testing.v1 import AppTest

    from test_app import APP, TIMEOUT, make_front

    monkeypatch.setenv("PAMA_NO_DEMO", "1")
    monkeypatch.setenv("PAMA_APP_MODEL", "tiny-random")
    store = Store()
    make_front(store)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    _blind(at)
    ballot = at.session_state["blind_ballot"]
    store.delete_point(ballot["point_b"])                # deleted by someone else while this ballot is on screen
    at.button(key="blind_vote_tie").click().run()
    assert not at.exception
    assert store.votes() == []
    assert any("was deleted after this pair was drawn" in e.value for e in at.error)
    assert at.session_state["blind_ballot"]["token"] != ballot["token"]
    assert ballot["point_b"] not in (at.session_state["blind_ballot"]["point_a"],
                                     at.session_state["blind_ballot"]["point_b"])


def test_blind_mode_generates_when_no_response_is_stored(monkeypatch, pama_home):
    """Points without stored generations: the tiny model writes both responses."""
    from streamlit.testing.v1 import AppTest

    from test_app import APP, TIMEOUT

    monkeypatch.setenv("PAMA_NO_DEMO", "1")
    monkeypatch.setenv("PAMA_APP_MODEL", "tiny-random")
    store = Store()
    sid = store.create_sweep(name="gen", method="pama", model="tiny-random", objectives=["sentiment"], config={})
    for k in range(2):   # two evaluations of the base model, none with stored responses
        store.add_point(kind="base", label=f"tiny base {k}", model="tiny-random", sweep_id=sid,
                        values={"sentiment": (0.1 * k, 0.0, 0.2)})
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    _blind(at)
    ballot = at.session_state["blind_ballot"]
    assert ballot["source"] == "generated" and ballot["text_a"] is not None and ballot["text_b"] is not None
    assert len(at.code) == 2 and not at.error
    at.button(key="blind_vote_both_bad").click().run()
    rows = store.votes(sweep_id=sid)
    assert [r["vote"] for r in rows] == ["both_bad"] and rows[0]["source"] == "generated"
    # the active rule needs stored scored responses: with none it says so and today's rule draws (and generates)
    from pama.app.ballots import NO_ACTIVE_PAIR, RULES

    at.radio(key="blind_rule").set_value(RULES[1]).run()
    at.button(key="blind_next").click().run()
    assert not at.exception, [e.value for e in at.exception]
    nxt = at.session_state["blind_ballot"]
    assert nxt["token"] != ballot["token"] and nxt.get("rule") != "active" and nxt["source"] == "generated"
    assert NO_ACTIVE_PAIR in [c.value for c in at.caption] and len(at.code) == 2
