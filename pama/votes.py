"""Blind pairwise votes between points: Bradley–Terry scores with bootstrap intervals, and which pair to ask next.

Pure functions of ``Store.votes()`` dicts (``point_a, point_b, vote`` with vote in a / b / tie / both_bad) and
``Store.points()`` dicts; the store and Streamlit stay outside. Why each choice: docs/votes.md.

- The fit is ``choix.ilsr_pairwise_dense`` (iterative Luce spectral ranking: the Bradley–Terry maximum-likelihood
  estimate from a matrix of win counts), not a hand-written solver; it takes the counts, so refits cost the same
  whatever the number of votes (0.5 ms for six points), which keeps a 200-resample bootstrap interactive.
- A tie counts as half a win for each side (0.5 in each direction of the count matrix). ``both_bad`` says nothing
  about which is better and is left out of the fit (it is counted and exported).
- ``alpha`` is choix's regularisation: a small rate added between every pair, which pulls scores together like a
  few virtual even games. It keeps an undefeated point finite and places points that were never compared with each
  other relative to one another; with many votes its effect vanishes.
- Scores are log-strengths centred on the mean of the points that have votes: P(i beats j) = σ(θ_i − θ_j).
"""
from __future__ import annotations

import math
import uuid
from typing import Iterable, Mapping, Sequence

import numpy as np

from .records import Estimate, Record

CHOICES = ("a", "b", "tie", "both_bad")
SCORE_NAME = "blind-vote score"   # the pseudo-objective under which the front page plots the score
ALPHA = 0.1          # choix's LSR regularisation: 3 wins of one point over another → a gap of 1.8, not infinity
N_BOOT = 200
LEVEL = 0.95


# ------------------------------------------------------------------------------------------------ counting

def counted(votes: Iterable[Mapping]) -> list[Mapping]:
    """The votes that enter the fit: a, b and tie (both_bad is left out)."""
    return [v for v in votes if v.get("vote") in ("a", "b", "tie") and v.get("point_a") != v.get("point_b")]


def tally(votes: Iterable[Mapping]) -> dict[str, dict]:
    """Per point: votes, wins, losses, ties, both_bad and the win rate (wins + ½ ties) / (wins + losses + ties)."""
    out: dict[str, dict] = {}

    def row(pid):
        return out.setdefault(pid, dict(votes=0, wins=0, losses=0, ties=0, both_bad=0, win_rate=None))

    for v in votes:
        a, b, choice = v.get("point_a"), v.get("point_b"), v.get("vote")
        if choice not in CHOICES or a == b:
            continue
        ra, rb = row(a), row(b)
        ra["votes"] += 1
        rb["votes"] += 1
        if choice == "a":
            ra["wins"] += 1
            rb["losses"] += 1
        elif choice == "b":
            rb["wins"] += 1
            ra["losses"] += 1
        elif choice == "tie":
            ra["ties"] += 1
            rb["ties"] += 1
        else:
            ra["both_bad"] += 1
            rb["both_bad"] += 1
    for r in out.values():
        n = r["wins"] + r["losses"] + r["ties"]
        r["win_rate"] = (r["wins"] + 0.5 * r["ties"]) / n if n else None
    return out


def pair_counts(votes: Iterable[Mapping]) -> dict[frozenset, int]:
    """How many votes (any choice) each unordered pair has."""
    out: dict[frozenset, int] = {}
    for v in votes:
        if v.get("point_a") != v.get("point_b"):
            key = frozenset((v.get("point_a"), v.get("point_b")))
            out[key] = out.get(key, 0) + 1
    return out


# ------------------------------------------------------------------------------------------------ Bradley–Terry

def win_matrix(votes: Sequence[Mapping], index: Mapping[str, int]) -> np.ndarray:
    """W[i, j] = how often i beat j; a tie adds ½ in each direction."""
    w = np.zeros((len(index), len(index)))
    for v in votes:
        a, b = index[v["point_a"]], index[v["point_b"]]
        if v["vote"] == "a":
            w[a, b] += 1.0
        elif v["vote"] == "b":
            w[b, a] += 1.0
        else:
            w[a, b] += 0.5
            w[b, a] += 0.5
    return w


def _theta(w: np.ndarray, alpha: float, start: np.ndarray | None = None) -> np.ndarray:
    import choix  # heavy: imports scipy

    theta = np.asarray(choix.ilsr_pairwise_dense(w, alpha=alpha, initial_params=start, max_iter=1000), dtype=float)
    return theta - theta.mean()


def _arrays(used: Sequence[Mapping], index: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per counted vote: winner-side index, loser-side index and weight (a tie is two half-weight rows)."""
    rows = []
    for v in used:
        a, b = index[v["point_a"]], index[v["point_b"]]
        rows.append((a, b, 1.0) if v["vote"] == "a" else (b, a, 1.0) if v["vote"] == "b" else (a, b, 0.5))
    arr = np.array(rows, dtype=float).reshape(-1, 3)
    return arr[:, 0].astype(int), arr[:, 1].astype(int), arr[:, 2]


def fit(votes: Iterable[Mapping], items: Sequence[str] | None = None, *, alpha: float = ALPHA) -> dict[str, float]:
    """Bradley–Terry log-strengths per point from the counted votes (``choix.ilsr_pairwise_dense``), centred on
    the mean of the points that have counted votes. Points without any are left out. ``items`` fixes the set of
    points (votes on others are ignored); default: every point voted on."""
    used = counted(votes)
    if items is not None:
        keep = set(items)
        used = [v for v in used if v["point_a"] in keep and v["point_b"] in keep]
    ids = sorted({v["point_a"] for v in used} | {v["point_b"] for v in used})
    if len(ids) < 2:
        return {}
    index = {p: i for i, p in enumerate(ids)}
    theta = _theta(win_matrix(used, index), alpha)
    return {p: float(theta[index[p]]) for p in ids}


def scores(votes: Iterable[Mapping], items: Sequence[str] | None = None, *, n_boot: int = N_BOOT, seed: int = 0,
           level: float = LEVEL, alpha: float = ALPHA) -> dict[str, dict]:
    """Per point: the tally (``tally``) plus ``score`` (BT log-strength) and its percentile bootstrap interval
    ``low`` / ``high``: votes resampled with replacement, ``n_boot`` refits, seeded. A point absent from a resample
    is left to the regularisation (near the middle), which widens its interval as it should. Points with votes but
    none counted (only both_bad) get ``score`` None."""
    votes = list(votes)
    if items is not None:
        keep = set(items)
        votes = [v for v in votes if v.get("point_a") in keep and v.get("point_b") in keep]
    out = {p: dict(r, score=None, low=None, high=None) for p, r in tally(votes).items()}
    used = counted(votes)
    point = fit(used, alpha=alpha)
    if not point:
        return out
    ids = list(point)
    index = {p: i for i, p in enumerate(ids)}
    win, lose, weight = _arrays(used, index)
    n = len(ids)
    rng = np.random.default_rng(seed)
    start = np.array([point[p] for p in ids])
    boots = np.empty((n_boot, n))
    for k in range(n_boot):
        pick = rng.integers(0, len(used), len(used))
        w = np.zeros((n, n))
        np.add.at(w, (win[pick], lose[pick]), weight[pick])
        np.add.at(w, (lose[pick], win[pick]), np.where(weight[pick] < 1.0, weight[pick], 0.0))  # a tie's other half
        boots[k] = _theta(w, alpha, start)  # started from the full fit: a resample's optimum is close to it
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    for p, j in index.items():
        out[p].update(score=point[p], low=float(np.quantile(boots[:, j], lo_q)),
                      high=float(np.quantile(boots[:, j], hi_q)))
    return out


def win_probability(score_a: float, score_b: float) -> float:
    """P(A preferred to B) under the fit."""
    return 1.0 / (1.0 + math.exp(-(score_a - score_b)))


# ------------------------------------------------------------------------------------------------ which pair next

def neighbours(points: Sequence[Mapping], objective: str | None) -> set[frozenset]:
    """Pairs adjacent along ``objective`` (the front's first axis): on a front sorted by one objective, neighbours
    are the closest trade-offs, the comparisons a person can least tell apart from the numbers."""
    if not objective:
        return set()
    ranked = sorted((p for p in points if objective in (p.get("values") or {})),
                    key=lambda p: (p["values"][objective]["mean"], p["id"]))
    return {frozenset((a["id"], b["id"])) for a, b in zip(ranked, ranked[1:])}


def interval_overlap(a: Mapping | None, b: Mapping | None) -> float:
    """How much two score intervals overlap, as a share of the narrower one (1 = one inside the other, 0 = apart).
    A point without an interval yet counts as fully overlapping: nothing is known about it."""
    if not a or not b or a.get("low") is None or b.get("low") is None:
        return 1.0
    inter = min(a["high"], b["high"]) - max(a["low"], b["low"])
    narrow = min(a["high"] - a["low"], b["high"] - b["low"])
    if inter < 0:
        return 0.0
    return 1.0 if narrow <= 0 else min(1.0, inter / narrow)


def pair_priorities(ids: Sequence[str], votes: Iterable[Mapping], score: Mapping[str, Mapping] | None = None, *,
                    adjacent: Iterable[frozenset] = ()) -> list[tuple[float, str, str]]:
    """Every unordered pair with its priority, highest first (ties in input order):
    (1.5 if adjacent else 1) × (interval overlap + 0.1) / (1 + votes on the pair)."""
    ids = list(dict.fromkeys(ids))
    counts = pair_counts(votes)
    adj = set(adjacent)
    score = score or {}
    out = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            key = frozenset((a, b))
            pr = (1.5 if key in adj else 1.0) * (interval_overlap(score.get(a), score.get(b)) + 0.1) \
                / (1 + counts.get(key, 0))
            out.append((pr, a, b))
    out.sort(key=lambda t: -t[0])
    return out


def choose_pair(ids: Sequence[str], votes: Iterable[Mapping], score: Mapping[str, Mapping] | None = None, *,
                adjacent: Iterable[frozenset] = (), rng: np.random.Generator) -> tuple[str, str]:
    """The most informative pair (highest ``pair_priorities``); equal priorities are broken by ``rng``, and the
    order in which the two are shown (A / B) is drawn from ``rng`` too."""
    ranked = pair_priorities(ids, votes, score, adjacent=adjacent)
    if not ranked:
        raise ValueError("blind votes need at least two points")
    best = [t for t in ranked if math.isclose(t[0], ranked[0][0], rel_tol=1e-9)]
    _, a, b = best[int(rng.integers(len(best)))]
    return (a, b) if rng.random() < 0.5 else (b, a)


def choose_prompt(gens_a: Sequence[Mapping], gens_b: Sequence[Mapping], votes: Iterable[Mapping], *,
                  n_heldout: int, rng: np.random.Generator) -> tuple[int, bool]:
    """(prompt index, stored): a held-out prompt both points have a stored response for when there is one
    (reading stored text is instant and is exactly what was scored), else any held-out prompt; the prompts this
    pair has been voted on least come first, ties broken by ``rng``."""
    a_idx = {g["prompt_index"] for g in gens_a}
    shared = sorted(a_idx & {g["prompt_index"] for g in gens_b})
    pool = shared or list(range(n_heldout))
    if not pool:
        raise ValueError("no held-out prompt to draw from")
    used: dict[int, int] = {}
    for v in votes:
        if v.get("prompt_index") is not None:
            used[v["prompt_index"]] = used.get(v["prompt_index"], 0) + 1
    least = min(used.get(i, 0) for i in pool)
    cands = [i for i in pool if used.get(i, 0) == least]
    return int(cands[int(rng.integers(len(cands)))]), bool(shared)


def ballot(points: Sequence[Mapping], votes: Sequence[Mapping], generations: Mapping[str, Sequence[Mapping]], *,
           heldout: Sequence[str], objective: str | None = None, score: Mapping[str, Mapping] | None = None,
           seed: int = 0, draw: int = 0) -> dict:
    """The next blind ballot: two points (shown as A and B in random order), a held-out prompt and, when both
    points stored a response for it, the two stored texts (``source`` "stored"; else ``text_a`` / ``text_b`` are
    None and the caller generates them, ``source`` "generated"). Deterministic given ``seed`` and ``draw`` (the
    number of ballots drawn before), except the ``token``, a fresh nonce that makes a double submit count once."""
    ids = [p["id"] for p in points]
    rng = np.random.default_rng([int(seed), int(draw)])
    adj = neighbours(points, objective)
    a, b = choose_pair(ids, votes, score, adjacent=adj, rng=rng)
    key = frozenset((a, b))
    pair_votes = [v for v in votes if frozenset((v.get("point_a"), v.get("point_b"))) == key]
    ga, gb = generations.get(a) or [], generations.get(b) or []
    idx, stored = choose_prompt(ga, gb, pair_votes, n_heldout=len(heldout), rng=rng)
    by_id = {p["id"]: p for p in points}
    sweeps = {by_id[a].get("sweep_id"), by_id[b].get("sweep_id")}
    out = dict(token=uuid.uuid4().hex, point_a=a, point_b=b, prompt_index=idx, sweep_id=sweeps.pop()
               if len(sweeps) == 1 else None, source="stored" if stored else "generated")
    if stored:
        row_a = next(g for g in ga if g["prompt_index"] == idx)
        row_b = next(g for g in gb if g["prompt_index"] == idx)
        out.update(prompt=row_a["prompt"], text_a=row_a["text"], text_b=row_b["text"])
    else:
        out.update(prompt=heldout[idx], text_a=None, text_b=None)
    return out


def as_objective(points: Sequence[Mapping], score: Mapping[str, Mapping], name: str = SCORE_NAME) -> list:
    """Copies of the points whose ``values`` also hold the score as an objective ({mean, ci_low, ci_high}), so that
    any front figure can put it on an axis with its interval as the error bar. Unscored points get no such value.
    Records (``pama.records.PointRecord``) come back as records with an ``Estimate``, dicts as dicts."""
    out = []
    for p in points:
        s = score.get(p["id"]) or {}
        values = dict(p.get("values") or {})
        if isinstance(p, Record):
            if s.get("score") is not None:
                values[name] = Estimate(mean=s["score"], ci_low=s["low"], ci_high=s["high"])
            out.append(p.replace(values=values))
            continue
        if s.get("score") is not None:
            values[name] = dict(mean=s["score"], ci_low=s["low"], ci_high=s["high"])
        out.append(dict(p, values=values))
    return out


def score_rows(points: Sequence[Mapping], score: Mapping[str, Mapping]) -> list[dict]:
    """One row per point for tables and exports: id, label, votes, wins, losses, ties, both_bad, win rate, score
    and interval (None where there is no vote)."""
    rows = []
    for p in points:
        s = score.get(p["id"]) or {}
        rows.append(dict(point_id=p["id"], label=p.get("label"), votes=s.get("votes", 0), wins=s.get("wins", 0),
                         losses=s.get("losses", 0), ties=s.get("ties", 0), both_bad=s.get("both_bad", 0),
                         win_rate=s.get("win_rate"), bt_score=s.get("score"), bt_low=s.get("low"),
                         bt_high=s.get("high")))
    return rows
