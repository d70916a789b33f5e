"""Blind votes on the Blind vote page (views/vote.py): which points a session draws from, drawing the next ballot
under the chosen rule, generating the responses a ballot lacks, casting the vote, and the scores table (the draw
itself and the Bradley–Terry fit are ``pama.votes``, the active rule ``pama.votefit``)."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from .. import votefit as F
from .. import votes as V
from ..prompts import PromptError, load_prompts
from . import reads, tradeoff
from .hosting import host_for
from .selection import objectives_of, point_label
from .settings import GENERATION_MAX_NEW_TOKENS, GENERATION_TEMPERATURE

RULES = ("front neighbours, then open questions", "where my trade-off is most uncertain")   # today's, the active one
VOTE_BUTTONS = (("a", "A is better", "A"), ("b", "B is better", "B"), ("tie", "Tie", "T"),
                ("both_bad", "Both bad", "X"))     # (choice, button label, keyboard shortcut)


def blind_scope(points: Sequence[Mapping], sweep_id: str | None, picked: Iterable[str] | None = None) -> list:
    """The points a blind session draws from: the sweep's (or every point when ``sweep_id`` is None), kept to
    ``picked`` when the person narrowed the set."""
    pts = [p for p in points if sweep_id is None or p.get("sweep_id") == sweep_id]
    if picked is not None:
        keep = set(picked)
        pts = [p for p in pts if p["id"] in keep]
    return pts


def fill_ballot(store, ballot: dict, by_id: Mapping[str, Mapping], *, app_model: str | None = None,
                temperature: float = GENERATION_TEMPERATURE, max_new_tokens: int = GENERATION_MAX_NEW_TOKENS,
                seed: int = 0) -> dict:
    """Generate the responses a ballot lacks (no stored response for its prompt), each with its point's model,
    the same seed for both; returns the ballot with ``text_a`` / ``text_b`` filled."""
    out = dict(ballot)
    for side in ("a", "b"):
        if out.get(f"text_{side}") is None:
            item = by_id[out[f"point_{side}"]]
            res = host_for(item, app_model).generate(store, item, out["prompt"], seed=seed, temperature=temperature,
                                                     max_new_tokens=max_new_tokens)
            out[f"text_{side}"] = res["text"]
    return out


def submit_vote(store, ballot: Mapping, choice: str, voter: str | None = None) -> dict:
    """Store a ballot's vote ({id, duplicate}); ``store.VoteRefused`` when a point was deleted meanwhile."""
    return store.add_vote(token=ballot["token"], point_a=ballot["point_a"], point_b=ballot["point_b"],
                          prompt=ballot["prompt"], text_a=ballot["text_a"] or "", text_b=ballot["text_b"] or "",
                          vote=choice, voter=voter, sweep_id=ballot.get("sweep_id"),
                          prompt_index=ballot.get("prompt_index"), source=ballot.get("source"))


def vote_table(points: Sequence[Mapping], score: Mapping[str, Mapping], *,
               sweeps: Mapping[str, Mapping] | None = None) -> list[dict]:
    """Rows for the scores table: best score first, points without votes last."""
    rows = []
    for p in points:
        s = score.get(p["id"]) or {}
        rows.append({
            "point": point_label(p, sweeps=sweeps), "votes": s.get("votes", 0),
            "W-L-T": f"{s.get('wins', 0)}-{s.get('losses', 0)}-{s.get('ties', 0)}", "both bad": s.get("both_bad", 0),
            "win rate": None if s.get("win_rate") is None else round(s["win_rate"], 3),
            "BT score": None if s.get("score") is None else round(s["score"], 3),
            "95% interval": "" if s.get("low") is None else f"[{s['low']:+.2f}, {s['high']:+.2f}]",
        })
    rows.sort(key=lambda r: (r["BT score"] is None, -(r["BT score"] or 0)))
    return rows


def active_ballot(points: Sequence[Mapping], votes: Sequence[Mapping], generations: Mapping[str, Sequence[Mapping]],
                  objectives: Sequence[str], specs: Mapping[str, Mapping], analysis: F.Analysis | None, *,
                  seed: int = 0, draw: int = 0) -> dict | None:
    """The active rule's ballot (``votefit.active_ballot``: the stored pair and prompt whose vote says most about
    the voter's weights, from the current fit's bootstrap or, before a fit, the prior); None when no two points
    share a scored stored response, and the page falls back to today's rule."""
    return F.active_ballot(points, votes, generations, objectives, specs, analysis.fit if analysis else None,
                           seed=seed, draw=draw)


NO_ACTIVE_PAIR = "No two of these points share a scored stored response: today's rule drew this pair."


def draw_ballot(points: Sequence[Mapping], votes: list[dict], score: Mapping[str, Mapping], sweeps: Mapping,
                scope: str | None, *, rule: str, voter: str | None = None, seed: int = 0,
                draw: int = 0) -> tuple[dict, str | None]:
    """The next ballot between ``points`` and a note to show with it (or None). ``rule`` is one of ``RULES``: today's
    (``votes.ballot``: front neighbours first along the first objective of sweep ``scope``, then pairs whose scores
    are unclear) or the active one (the voter's fitted weights, falling back to today's with ``NO_ACTIVE_PAIR`` when
    no two points share a scored stored response). ValueError when the points share no stored prompt and there is no
    held-out set to draw one from."""
    order = list(getattr(sweeps.get(scope), "objectives", None) or []) if scope else []
    first = (objectives_of(points, order) or [None])[0]
    gens = {p["id"]: reads.generations(p["id"]) for p in points}
    try:
        heldout = load_prompts("builtin:heldout")
    except PromptError:
        heldout = []
    ballot, note = None, None
    if rule == RULES[1]:
        objectives = tradeoff.fit_objectives(points, sweeps)
        sids = tradeoff.sweeps_of(points)
        fit_now = tradeoff.analysis(votes, tuple(objectives), sids, voter)
        ballot = active_ballot(points, votes, gens, objectives, tradeoff.specs_for(objectives, sids), fit_now,
                               seed=seed, draw=draw)
        if ballot is None:
            note = NO_ACTIVE_PAIR
    ballot = ballot or V.ballot(points, votes, gens, heldout=heldout, objective=first, score=score, seed=seed,
                                draw=draw)
    return ballot, note
