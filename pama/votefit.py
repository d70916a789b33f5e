"""A voter's trade-off, learned from blind votes: preference weights w on the simplex over the objectives.

Model (docs/votes.md, "Your trade-off"): for a vote between responses A and B,

    P(A preferred to B) = σ(κ · w·(ŝ_A − ŝ_B) + γ · (log(1 + words_A) − log(1 + words_B)))

where ŝ are the two responses' per-objective scores normalised by the objectives' bounds (1 = the best end, so a
minimised objective is flipped), w ≥ 0 sums to 1, κ ≥ 0 says how strongly the objectives drive the votes and γ is a
nuisance term for answer length, so that "prefers longer answers" is not read as a preference over objectives.

- Fitted as β = κ·w with β ≥ 0 (a logistic regression with non-negative coefficients, convex), by scipy's L-BFGS-B
  with the analytic gradient; then κ = Σβ and w = β / κ. This is the simplex constraint without a softmax: the
  problem stays convex (one optimum, no restarts) and a weight can be exactly 0, which a softmax never reaches.
- A small ridge ``alpha`` on β and γ keeps the fit finite when the votes are perfectly separable (like the
  Bradley–Terry scores' regularisation, a few virtual even votes' worth), and vanishes as votes accumulate.
- Ties are half a win for each side (a row with target ½), ``both_bad`` is left out: as ``pama.votes`` does.
- Each response's scores are the ones stored when its point was evaluated (``generations`` rows: same point, same
  prompt index, same text); responses generated for a ballot have no stored scores and are scored only when a
  ``score_texts`` function is given (the CLI's ``--rescore``), else they are counted as unscored and left out.
- Intervals: percentile bootstrap over votes (resampled with replacement, refitted, fixed seed).
- Held-out accuracy: K-fold cross-validation (seeded folds) of this model against a length-only predictor and the
  points' Bradley–Terry scores (``pama.votes.fit``), on the decisive (A or B) votes.
- The length term is on unless one of the objectives measures length itself (``Objective.measures_length``:
  conciseness, length): then γ and that objective's weight would explain the same thing and split it arbitrarily.

Pure functions of ``Store.votes()`` / ``Store.generations()`` dicts; the store and Streamlit stay outside.
"""
from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits   # scikit-learn's dependency

from . import objectives as objmod
from . import votes as V
from .lengthcontrol import word_lengths

ALPHA = 0.02          # ridge on β and γ: keeps separable votes finite; ~0 against a few dozen votes
N_BOOT = 200
LEVEL = 0.95
FOLDS = 5
MIN_VOTES = 4         # counted votes before a fit is attempted (fewer: the active rule draws from the prior)
PRIOR_KAPPA = 10.0    # the active rule's prior before any fit: w ~ Dirichlet(1), κ = 10 (a 0.1 gap → 73%)
LENGTH_MODES = ("auto", "on", "off")

# scipy's L-BFGS-B calls BLAS on 2-4 numbers per step; with BLAS's thread pool on a busy machine each call waited
# ~50 ms for idle threads (a 200-resample bootstrap took minutes, 0.2 s on one thread), so the fits run on one
# (threadpoolctl limits only the libraries already loaded, hence scipy.optimize is imported first)
def one_thread(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        import scipy.optimize  # noqa: F401  heavy: loaded here so that its BLAS is among those limited

        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return run

ScoreTexts = Callable[[Sequence[str], Sequence[str]], np.ndarray]   # (prompts, texts) → (n_objectives, n) raw scores


# ------------------------------------------------------------------------------------------------ objectives

def objective_specs(names: Sequence[str], runs: Iterable[Mapping] = ()) -> dict[str, dict]:
    """{objective: {lower, upper, direction, measures_length}}: bounds as the runs stored them first, then the
    objective's own (built-ins and ``hf:`` specs are built without loading a model); unknown objectives are left out
    (their scores cannot be normalised)."""
    out: dict[str, dict] = {}
    for run in runs:
        for o in (run.get("objectives") if hasattr(run, "get") else None) or []:
            name = o["name"]
            if name in names and name not in out:
                out[name] = dict(lower=float(o["lower"]), upper=float(o["upper"]),
                                 direction=o.get("direction") or "maximize", measures_length=None)
    for name in names:
        try:
            kind, _, _ = objmod.parse_spec(name)
            obj = objmod.get(name, allow_python=False) if kind in objmod.available() else None
        except ValueError:
            obj = None
        if name in out:
            out[name]["measures_length"] = bool(obj and obj.measures_length)
        elif obj is not None:
            out[name] = dict(lower=float(obj.lower), upper=float(obj.upper), direction=obj.direction,
                             measures_length=bool(obj.measures_length))
    return {n: out[n] for n in names if n in out and out[n]["upper"] > out[n]["lower"]}


def normalised(scores: np.ndarray, objectives: Sequence[str], specs: Mapping[str, Mapping]) -> np.ndarray:
    """Raw scores (..., m) → 0 at the worst bound, 1 at the best (a minimised objective is flipped)."""
    lo = np.array([specs[o]["lower"] for o in objectives], float)
    hi = np.array([specs[o]["upper"] for o in objectives], float)
    x = (np.asarray(scores, float) - lo) / (hi - lo)
    flip = np.array([specs[o].get("direction") == "minimize" for o in objectives])
    return np.where(flip, 1.0 - x, x)


def length_term(objectives: Sequence[str], specs: Mapping[str, Mapping], mode: str = "auto") -> tuple[bool, str]:
    """(use the length covariate, why)."""
    if mode not in LENGTH_MODES:
        raise ValueError(f"length must be one of {LENGTH_MODES}, got {mode!r}")
    lengthy = [o for o in objectives if (specs.get(o) or {}).get("measures_length")]
    if mode == "off":
        return False, "off (asked)"
    if mode == "on":
        return True, ("on (asked; " + ", ".join(lengthy) + " measures length too, so the two share what length "
                      "explains)") if lengthy else "on"
    if lengthy:
        return False, (f"off: {', '.join(lengthy)} measures length itself, so a length term would take over that "
                       "objective's weight")
    return True, "on"


# ------------------------------------------------------------------------------------------------ the vote rows

def voters(votes: Iterable[Mapping]) -> list[str]:
    """The named voters, in order of first vote."""
    return list(dict.fromkeys((v.get("voter") or "").strip() for v in votes if (v.get("voter") or "").strip()))


def of_voter(votes: Iterable[Mapping], voter: str | None) -> list[Mapping]:
    """One voter's votes (None: everyone's)."""
    if voter is None:
        return list(votes)
    name = voter.strip()
    return [v for v in votes if (v.get("voter") or "").strip() == name]


@dataclass
class VoteRows:
    """The counted votes whose two responses have scores on every objective, as arrays.

    ``x`` (n, m): ŝ_A − ŝ_B, normalised; ``ell`` (n,): log(1 + words_A) − log(1 + words_B); ``y`` (n,): 1 (A chosen),
    0 (B chosen), ½ (tie); ``votes``: the vote dicts with ``scores_a`` / ``scores_b`` ({objective: raw score}) and
    ``score_source`` (stored / scored) added. ``unscored``: counted votes left out for want of scores."""
    objectives: list[str]
    x: np.ndarray
    ell: np.ndarray
    y: np.ndarray
    votes: list[dict]
    unscored: int = 0
    both_bad: int = 0

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> "VoteRows":
        idx = np.asarray(idx, int)
        return VoteRows(self.objectives, self.x[idx], self.ell[idx], self.y[idx], [self.votes[i] for i in idx])


def _stored(gens: Sequence[Mapping], prompt_index, text: str, objectives: Sequence[str]) -> dict | None:
    for g in gens:
        if g.get("prompt_index") == prompt_index and g.get("text") == text:
            sc = g.get("scores") or {}
            if all(o in sc and sc[o] is not None and math.isfinite(float(sc[o])) for o in objectives):
                return {o: float(sc[o]) for o in objectives}
    return None


def vote_rows(votes: Iterable[Mapping], generations: Mapping[str, Sequence[Mapping]], objectives: Sequence[str],
              specs: Mapping[str, Mapping], *, score_texts: ScoreTexts | None = None) -> VoteRows:
    """Each counted vote with its two responses' scores: the stored evaluation scores of the same point, prompt and
    text; else, with ``score_texts``, the texts scored now; else the vote is counted as unscored."""
    objectives = [o for o in objectives if o in specs]
    if not objectives:
        raise ValueError("no objective with known bounds to fit weights over")
    all_votes = list(votes)
    used = V.counted(all_votes)
    rows, missing = [], []
    for v in used:
        sa = _stored(generations.get(v["point_a"]) or [], v.get("prompt_index"), v.get("text_a") or "", objectives)
        sb = _stored(generations.get(v["point_b"]) or [], v.get("prompt_index"), v.get("text_b") or "", objectives)
        row = dict(v, scores_a=sa, scores_b=sb, score_source="stored")
        rows.append(row)
        if sa is None or sb is None:
            missing.append(row)
    if missing and score_texts is not None:
        prompts = [r["prompt"] for r in missing for _ in (0, 1)]
        texts = [t for r in missing for t in (r.get("text_a") or "", r.get("text_b") or "")]
        raw = np.asarray(score_texts(prompts, texts), float).reshape(len(objectives), len(texts))
        for k, r in enumerate(missing):
            r["scores_a"] = {o: float(raw[j, 2 * k]) for j, o in enumerate(objectives)}
            r["scores_b"] = {o: float(raw[j, 2 * k + 1]) for j, o in enumerate(objectives)}
            r["score_source"] = "scored"
    keep = [r for r in rows if r["scores_a"] is not None and r["scores_b"] is not None]
    m = len(objectives)
    sa = np.array([[r["scores_a"][o] for o in objectives] for r in keep], float).reshape(-1, m)
    sb = np.array([[r["scores_b"][o] for o in objectives] for r in keep], float).reshape(-1, m)
    x = normalised(sa, objectives, specs) - normalised(sb, objectives, specs)
    ell = (np.log1p(word_lengths([r.get("text_a") or "" for r in keep]))
           - np.log1p(word_lengths([r.get("text_b") or "" for r in keep])))
    y = np.array([1.0 if r["vote"] == "a" else 0.0 if r["vote"] == "b" else 0.5 for r in keep], float)
    return VoteRows(list(objectives), x, ell, y, keep, unscored=len(rows) - len(keep),
                    both_bad=sum(v.get("vote") == "both_bad" for v in all_votes))


# ------------------------------------------------------------------------------------------------ the fit

def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, float)))


def _log_sigmoid(z):
    z = np.asarray(z, float)
    return -np.logaddexp(0.0, -z)


def _solve(x: np.ndarray, ell: np.ndarray | None, y: np.ndarray, alpha: float, start: np.ndarray | None = None,
           nonneg: int | None = None) -> np.ndarray:
    """argmin −Σ [y log σ(f) + (1−y) log σ(−f)] + α/2 ‖θ‖², f = [x, ell] θ; the first ``nonneg`` coefficients
    (default: the x columns) are ≥ 0."""
    from scipy.optimize import minimize  # heavy: scipy.optimize pulls in most of scipy

    feats = x if ell is None else np.column_stack([x, ell])
    k = feats.shape[1]
    nonneg = x.shape[1] if nonneg is None else nonneg

    def loss(theta):
        f = feats @ theta
        val = -(y * _log_sigmoid(f) + (1 - y) * _log_sigmoid(-f)).sum() + 0.5 * alpha * theta @ theta
        grad = feats.T @ (_sigmoid(f) - y) + alpha * theta
        return val, grad

    x0 = np.zeros(k) if start is None else np.asarray(start, float)
    bounds = [(0.0, None)] * nonneg + [(None, None)] * (k - nonneg)
    res = minimize(loss, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=dict(maxiter=500, gtol=1e-8))
    return np.asarray(res.x, float)


def _weights(beta: np.ndarray) -> tuple[np.ndarray, float]:
    kappa = float(beta.sum())
    if kappa <= 1e-9:
        return np.full(len(beta), np.nan), 0.0
    return beta / kappa, kappa


@dataclass
class WeightFit:
    """w (on the simplex, NaN where the objectives explain nothing: κ = 0), κ, γ (None without the length term) and
    their bootstrap intervals; ``boot`` holds each resample's (β, γ), ``rows`` the votes fitted."""
    objectives: list[str]
    w: np.ndarray
    kappa: float
    gamma: float | None
    w_low: np.ndarray
    w_high: np.ndarray
    kappa_interval: tuple[float, float]
    gamma_interval: tuple[float, float] | None
    length: bool
    length_note: str
    rows: VoteRows
    boot: np.ndarray
    n_boot_empty: int = 0
    level: float = LEVEL
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_votes(self) -> int:
        return len(self.rows)

    def margin(self, x: np.ndarray, ell: np.ndarray | None = None, *, with_length: bool = True) -> np.ndarray:
        """The fitted logit of P(A preferred) for score gaps ``x`` (n, m) and log-length gaps ``ell``."""
        f = np.asarray(x, float) @ self.beta
        if with_length and self.gamma is not None and ell is not None:
            f = f + self.gamma * np.asarray(ell, float)
        return f

    def length_share(self) -> float | None:
        """How much of the fitted votes' spread in the logit the length term carries, var(γ·ℓ) / (var(βx) + var(γ·ℓ))
        over the fitted votes: near 1, the votes follow answer length; near 0, the objectives."""
        if self.gamma is None or not len(self.rows):
            return None
        a, b = np.var(self.rows.x @ self.beta), np.var(self.gamma * self.rows.ell)
        return float(b / (a + b)) if a + b > 0 else None

    def as_dict(self) -> dict:
        return dict(objectives=self.objectives, w=_list(self.w), w_low=_list(self.w_low), w_high=_list(self.w_high),
                    kappa=self.kappa, kappa_interval=list(self.kappa_interval), gamma=self.gamma,
                    gamma_interval=None if self.gamma_interval is None else list(self.gamma_interval),
                    length=self.length, length_note=self.length_note, n_votes=self.n_votes,
                    unscored=self.rows.unscored, both_bad=self.rows.both_bad, level=self.level,
                    length_share=self.length_share())


def _list(a) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, float)]


def point_fit(rows: VoteRows, *, length: bool, alpha: float = ALPHA, start=None) -> np.ndarray:
    """θ = (β, γ) (γ only with ``length``) fitted to ``rows``."""
    return _solve(rows.x, rows.ell if length else None, rows.y, alpha, start)


@one_thread
def fit(rows: VoteRows, specs: Mapping[str, Mapping] | None = None, *, length: str = "auto", alpha: float = ALPHA,
        n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> WeightFit | None:
    """The voter's weights with percentile bootstrap intervals (votes resampled with replacement, refitted from the
    full fit, seeded); None with fewer than ``MIN_VOTES`` scored votes."""
    if len(rows) < MIN_VOTES:
        return None
    use_len, note = length_term(rows.objectives, specs or {}, length)
    m = len(rows.objectives)
    theta = point_fit(rows, length=use_len, alpha=alpha)
    beta = theta[:m]
    w, kappa = _weights(beta)
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, len(theta)))
    for k in range(n_boot):
        pick = rng.integers(0, len(rows), len(rows))
        boot[k] = point_fit(rows.subset(pick), length=use_len, alpha=alpha, start=theta)
    kappas = boot[:, :m].sum(axis=1)
    empty = kappas <= 1e-9
    ws = np.where(empty[:, None], np.nan, boot[:, :m] / np.where(empty, 1.0, kappas)[:, None])
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    if (~empty).any():
        w_low, w_high = np.nanquantile(ws, lo_q, axis=0), np.nanquantile(ws, hi_q, axis=0)
    else:
        w_low = w_high = np.full(m, np.nan)
    gamma = float(theta[m]) if use_len else None
    g_int = (float(np.quantile(boot[:, m], lo_q)), float(np.quantile(boot[:, m], hi_q))) if use_len else None
    return WeightFit(list(rows.objectives), w, kappa, gamma, w_low, w_high,
                     (float(np.quantile(kappas, lo_q)), float(np.quantile(kappas, hi_q))), g_int, use_len, note,
                     rows, boot, int(empty.sum()), level, beta)


# ------------------------------------------------------------------------------------------------ accuracy

def _hit(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1 when the sign of the logit matches the decisive vote, ½ when the predictor has no opinion (f = 0)."""
    f = np.asarray(f, float)
    return np.where(np.abs(f) < 1e-12, 0.5, ((f > 0) == (y > 0.5)).astype(float))


@one_thread
def cross_validate(rows: VoteRows, specs: Mapping[str, Mapping] | None = None, *, length: str = "auto",
                   folds: int = FOLDS, seed: int = 0, alpha: float = ALPHA) -> dict | None:
    """Held-out accuracy on the decisive votes (K seeded folds; each fold's models fitted on the other folds' votes,
    ties included): ``model`` (objectives, plus length when the fit uses it), ``objectives`` (the same fit's
    objective term alone), ``length`` (a length-only logistic fit: 'longer wins' or 'shorter wins'), ``bt`` (the
    points' Bradley–Terry scores fitted on the training votes; a point unseen in training: no opinion, ½).
    None with fewer than 2·folds decisive votes. A predictor without an opinion scores ½ on that vote."""
    decisive = np.flatnonzero(rows.y != 0.5)
    if len(decisive) < 2 * folds:
        return None
    use_len, _ = length_term(rows.objectives, specs or {}, length)
    m = len(rows.objectives)
    order = np.random.default_rng(seed).permutation(len(rows))
    fold_of = np.empty(len(rows), int)
    fold_of[order] = np.arange(len(rows)) % folds
    hits = {k: np.zeros(len(rows)) for k in ("model", "objectives", "length", "bt")}
    for k in range(folds):
        train, test = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        tr, te = rows.subset(train), rows.subset(test)
        theta = point_fit(tr, length=use_len, alpha=alpha)
        f_obj = te.x @ theta[:m]
        hits["objectives"][test] = _hit(f_obj, te.y)
        hits["model"][test] = _hit(f_obj + (theta[m] * te.ell if use_len else 0.0), te.y)
        g = _solve(np.zeros((len(tr), 0)), tr.ell, tr.y, alpha, nonneg=0)
        hits["length"][test] = _hit(g[0] * te.ell, te.y)
        bt = V.fit(tr.votes)
        hits["bt"][test] = _hit([bt.get(v["point_a"], 0.0) - bt.get(v["point_b"], 0.0)
                                 if v["point_a"] in bt and v["point_b"] in bt else 0.0 for v in te.votes], te.y)
    return dict(n=int(len(decisive)), folds=folds,
                **{k: float(h[decisive].mean()) for k, h in hits.items()})


# ------------------------------------------------------------------------------------------------ disagreements

def disagreements(fit_: WeightFit, k: int = 5) -> list[dict]:
    """The decisive votes the objective scores predicted worst under the fitted weights (the scores favoured one
    response, the voter chose the other), worst first: each vote with ``p_scores`` = P(the chosen response) from
    the objective term alone, both texts and both responses' raw scores. Only votes the scores got wrong (< ½)."""
    rows = fit_.rows
    if not len(rows) or not (fit_.kappa > 0):
        return []
    f = rows.x @ fit_.beta
    chosen_a = rows.y == 1.0
    p = np.where(chosen_a, _sigmoid(f), _sigmoid(-f))
    out = []
    for i in np.argsort(p, kind="stable"):
        if rows.y[i] == 0.5 or p[i] >= 0.5:
            continue
        v = rows.votes[i]
        out.append(dict(vote_id=v.get("id"), voter=v.get("voter"), prompt=v.get("prompt"), chosen=v["vote"],
                        point_a=v["point_a"], point_b=v["point_b"], text_a=v.get("text_a"), text_b=v.get("text_b"),
                        scores_a=v["scores_a"], scores_b=v["scores_b"], p_scores=float(p[i]),
                        words_a=int(word_lengths([v.get("text_a") or ""])[0]),
                        words_b=int(word_lengths([v.get("text_b") or ""])[0])))
        if len(out) >= k:
            break
    return out


# ------------------------------------------------------------------------------------------------ the next pair

def samples(fit_: WeightFit | None, m: int, *, length: bool, n: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Draws of θ = (β, γ) that stand for what is known about the voter: the bootstrap fits, or before any fit
    the prior (w ~ Dirichlet(1), κ = PRIOR_KAPPA, γ ~ N(0, 1) with the length term)."""
    if fit_ is not None and len(fit_.boot):
        return fit_.boot
    rng = np.random.default_rng(seed)
    beta = PRIOR_KAPPA * rng.dirichlet(np.ones(m), n)
    return np.column_stack([beta, rng.normal(0.0, 1.0, n)]) if length else beta


def _entropy(p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def information(x: np.ndarray, ell: np.ndarray, draws: np.ndarray, m: int) -> np.ndarray:
    """Per candidate, the mutual information between its vote and the weights (BALD): H(mean p) − mean H(p) over
    the draws. High where the draws disagree about the outcome, not merely where one fit says 50/50."""
    f = np.asarray(x, float) @ draws[:, :m].T
    if draws.shape[1] > m:
        f = f + np.outer(ell, draws[:, m])
    p = _sigmoid(f)
    return _entropy(p.mean(axis=1)) - _entropy(p).mean(axis=1)


def candidates(points: Sequence[Mapping], generations: Mapping[str, Sequence[Mapping]], objectives: Sequence[str],
               specs: Mapping[str, Mapping]) -> list[dict]:
    """Every (pair of points, held-out prompt) both points stored a scored response for: what the active rule can
    ask without generating (a response generated now has no scores yet)."""
    objectives = [o for o in objectives if o in specs]
    by_point = {}
    for p in points:
        rows = {}
        for g in generations.get(p["id"]) or []:
            sc = g.get("scores") or {}
            if all(o in sc and sc[o] is not None for o in objectives):
                rows.setdefault(g["prompt_index"], g)
        by_point[p["id"]] = rows
    ids = [p["id"] for p in points]
    out = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            for idx in sorted(set(by_point[a]) & set(by_point[b])):
                ga, gb = by_point[a][idx], by_point[b][idx]
                out.append(dict(point_a=a, point_b=b, prompt_index=idx, prompt=ga["prompt"], text_a=ga["text"],
                                text_b=gb["text"], scores_a={o: float(ga["scores"][o]) for o in objectives},
                                scores_b={o: float(gb["scores"][o]) for o in objectives}))
    return out


def active_choice(cands: Sequence[Mapping], votes: Iterable[Mapping], draws: np.ndarray, objectives: Sequence[str],
                  specs: Mapping[str, Mapping], *, rng: np.random.Generator) -> dict | None:
    """The candidate whose vote says most about the weights (``information``), divided by 1 + the votes already
    cast on that pair and prompt; equal values broken by ``rng``. None without candidates."""
    if not cands:
        return None
    objectives = [o for o in objectives if o in specs]
    m = len(objectives)
    sa = np.array([[c["scores_a"][o] for o in objectives] for c in cands], float)
    sb = np.array([[c["scores_b"][o] for o in objectives] for c in cands], float)
    x = normalised(sa, objectives, specs) - normalised(sb, objectives, specs)
    ell = np.log1p(word_lengths([c["text_a"] for c in cands])) - np.log1p(word_lengths([c["text_b"] for c in cands]))
    seen: dict[tuple, int] = {}
    for v in votes:
        key = (frozenset((v.get("point_a"), v.get("point_b"))), v.get("prompt_index"))
        seen[key] = seen.get(key, 0) + 1
    info = information(x, ell, draws, m)
    info = info / np.array([1 + seen.get((frozenset((c["point_a"], c["point_b"])), c["prompt_index"]), 0)
                            for c in cands])
    best = np.flatnonzero(np.isclose(info, info.max(), rtol=1e-9, atol=1e-15))
    c = dict(cands[int(best[int(rng.integers(len(best)))])], information=float(info.max()))
    return c


@one_thread
def active_ballot(points: Sequence[Mapping], votes: Sequence[Mapping], generations: Mapping[str, Sequence[Mapping]],
                  objectives: Sequence[str], specs: Mapping[str, Mapping], fit_: WeightFit | None = None, *,
                  length: str = "auto", seed: int = 0, draw: int = 0) -> dict | None:
    """A blind ballot (the shape of ``pama.votes.ballot``, ``rule`` "active") on the pair and prompt where the
    current weights are most uncertain; None when no pair shares a scored stored response (use today's rule)."""
    cands = candidates(points, generations, objectives, specs)
    if not cands:
        return None
    use_len, _ = length_term([o for o in objectives if o in specs], specs, length)
    m = len([o for o in objectives if o in specs])
    rng = np.random.default_rng([int(seed), int(draw), 27])
    c = active_choice(cands, votes, samples(fit_, m, length=use_len, seed=seed), objectives, specs, rng=rng)
    if rng.random() < 0.5:   # which one is shown as A is random, as in today's rule
        c = dict(c, point_a=c["point_b"], point_b=c["point_a"], text_a=c["text_b"], text_b=c["text_a"],
                 scores_a=c["scores_b"], scores_b=c["scores_a"])
    by_id = {p["id"]: p for p in points}
    sweeps = {by_id[c["point_a"]].get("sweep_id"), by_id[c["point_b"]].get("sweep_id")}
    return dict(token=uuid.uuid4().hex, point_a=c["point_a"], point_b=c["point_b"], prompt_index=c["prompt_index"],
                sweep_id=sweeps.pop() if len(sweeps) == 1 else None, source="stored", prompt=c["prompt"],
                text_a=c["text_a"], text_b=c["text_b"], rule="active", information=c["information"])


# ------------------------------------------------------------------------------------------------ on the front

def preference_of(point: Mapping, objectives: Sequence[str], order: Sequence[str]) -> np.ndarray | None:
    """A point's training (or conditioned) preference over ``objectives``, read in its sweep's objective ``order``;
    None when it has none or it does not cover them."""
    pref = point.get("preference")
    if not pref or len(pref) != len(order) or not set(objectives) <= set(order):
        return None
    p = np.array([float(pref[list(order).index(o)]) for o in objectives])
    return p / p.sum() if p.sum() > 0 else None


def at_preference(points: Sequence[Mapping], w: Sequence[float], objectives: Sequence[str],
                  orders: Mapping[str, Sequence[str]], axes: Sequence[str]) -> dict | None:
    """Where weights ``w`` land on a front: the values on ``axes`` interpolated between the two stored points whose
    preferences are nearest w (inverse distance, which is linear interpolation when they bracket w), and the
    nearest one. ``orders``: {sweep id: its objectives in preference order}. None without such points."""
    w = np.asarray(w, float)
    if not np.isfinite(w).all():
        return None
    known = []
    for p in points:
        order = orders.get(p.get("sweep_id") or "") or []
        pref = preference_of(p, objectives, order)
        vals = p.get("values") or {}
        if pref is not None and all(a in vals for a in axes):
            known.append((float(np.abs(pref - w).sum()), p, pref))
    if not known:
        return None
    known.sort(key=lambda t: (t[0], str(t[1]["id"])))
    (d1, p1, _), rest = known[0], known[1:]

    def mean(p, a):
        return float(p["values"][a]["mean"])   # a dict or a record's Estimate

    if d1 < 1e-9 or not rest:
        pos = [mean(p1, a) for a in axes]
    else:
        d2, p2, _ = rest[0]
        pos = [(mean(p1, a) * d2 + mean(p2, a) * d1) / (d1 + d2) for a in axes]
    return dict(values=dict(zip(axes, pos)), nearest=p1, distance=d1)


# ------------------------------------------------------------------------------------------------ all of it

@dataclass
class Analysis:
    """What ``votes --fit`` and the app show: the fit (None with too few scored votes), the held-out accuracies
    (None with too few decisive votes), the worst-predicted votes, and the vote rows."""
    rows: VoteRows
    fit: WeightFit | None
    accuracy: dict | None
    disagreements: list[dict]
    voter: str | None = None


def analyse(votes: Iterable[Mapping], generations: Mapping[str, Sequence[Mapping]], objectives: Sequence[str],
            specs: Mapping[str, Mapping], *, voter: str | None = None, length: str = "auto",
            score_texts: ScoreTexts | None = None, n_boot: int = N_BOOT, seed: int = 0, top: int = 5) -> Analysis:
    """One voter's (None: everyone's) votes → rows, fit with intervals, cross-validated accuracies, disagreements."""
    rows = vote_rows(of_voter(votes, voter), generations, objectives, specs, score_texts=score_texts)
    f = fit(rows, specs, length=length, n_boot=n_boot, seed=seed)
    acc = cross_validate(rows, specs, length=length, seed=seed) if f is not None else None
    return Analysis(rows, f, acc, disagreements(f, top) if f is not None else [], voter)


def weights_text(f: WeightFit) -> str:
    """'informativeness 0.62 [0.48, 0.77] · conciseness 0.38 [0.23, 0.52]' (NaN: the objectives explain nothing)."""
    if not (f.kappa > 0):
        return "no weight on any objective (κ = 0: the objective scores do not explain these votes)"
    return " · ".join(f"{o} {w:.2f} [{lo:.2f}, {hi:.2f}]" for o, w, lo, hi in zip(f.objectives, f.w, f.w_low, f.w_high))
