"""Pure tensor math for Noon PPO with PAMA / MORLHF / MGDA (see docs/PAMA_SPEC.md).

Everything here is model-free: plain ``torch`` functions on tensors, so the trainer stays thin and every
formula can be checked against brute force in ``tests/test_algorithm.py``.

Shapes: per-objective quantities are laid out as ``(n_objectives, batch, T)``; token masks as ``(batch, T)``
(broadcastable). The objective dimension is always dim 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .config import EOS_CREDITS, KL_SHAPINGS
from .preference import Preference, rows

__all__ = [
    "masked_mean",
    "gae",
    "whiten",
    "scale_by_spread",
    "noon",
    "pama_combine",
    "pama_combine_batch_mean",
    "mgda_weights",
    "linear_scalarise",
    "AdaptiveKLController",
    "clipped_surrogate",
    "weighted_clipped_surrogate",
    "clipped_value_loss",
]

_MASK_EPS = 1e-8  # floor of a mask count: an empty mask gives 0, and its gradient stays finite


# ----------------------------------------------------------------------------------------------- helpers


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | Sequence[int] | None = None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is non-zero (``mask`` broadcasts to ``x``).

    An all-zero mask gives 0 (not NaN) so that an empty batch slice never poisons a loss or its gradient.
    """
    m = mask.to(x.dtype).expand_as(x)
    if dim is None:
        return (x * m).sum() / m.sum().clamp_min(_MASK_EPS)
    return (x * m).sum(dim=dim) / m.sum(dim=dim).clamp_min(_MASK_EPS)


def _check_preference(preference, n: int, *, like: torch.Tensor) -> torch.Tensor:
    """Preference → tensor on ``like``'s dtype/device; default uniform. Raises ValueError.

    A ``pama.preference.Preference`` (what the trainer's methods pass) is taken as it is. Anything else comes from
    the library API and is made into preferences by ``pama.preference.rows`` (its one policy: finite, ≥ 0, one per
    objective; a sum ≠ 1 normalised with a warning): shape (n,), one preference for every entry of ``like`` (n, ...),
    or (n, B, ...), one per sample, its dims after the first matching the leading dims of ``like.shape[1:]`` (e.g.
    (n, B) against advantages (n, B, T), broadcast over the tokens)."""
    if preference is None:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    if isinstance(preference, Preference):
        if len(preference) != n:
            raise ValueError(f"preference must have one value per objective ({n}), got {len(preference)}")
        return preference.tensor(dtype=like.dtype, device=like.device)
    try:
        p = torch.as_tensor(preference, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"preference must be a sequence of {n} numbers, got {preference!r}") from None
    batch = tuple(p.shape[1:])
    if p.dim() < 1 or p.shape[0] != n or (batch and batch != tuple(like.shape[1:1 + len(batch)])):
        raise ValueError(f"preference must have one value per objective ({n}), or shape (n, batch) = "
                         f"({n}, {', '.join(map(str, like.shape[1:2])) or 'B'}) for one preference per sample, "
                         f"got shape {tuple(p.shape)}")
    columns = rows(p.reshape(n, -1).T, n, dtype=torch.float64)  # PreferenceError is a ValueError
    return columns.T.reshape(p.shape).to(dtype=like.dtype, device=like.device)


def _check_anchor(anchor) -> float:
    try:
        a = float(anchor)
    except (TypeError, ValueError):
        raise ValueError(f"anchor must be a number in [0, 1], got {anchor!r}") from None
    if not (0.0 <= a <= 1.0):  # also rejects NaN
        raise ValueError(f"anchor must be in [0, 1] (1 = paper's PAMA, 0 = linear scalarisation), got {anchor!r}")
    return a


def _per_objective(p: torch.Tensor, ndim: int) -> torch.Tensor:
    """(n,) → (n, 1, ..., 1), or a per-sample (n, B) → (n, B, 1, ...), so it broadcasts against an (n, ...) tensor
    with ``ndim`` dims."""
    return p.reshape(tuple(p.shape) + (1,) * (ndim - p.dim()))


# ----------------------------------------------------------------------------------------------- advantages


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the last dim (tokens); any leading dims (objective, batch).

    ``mask`` marks response tokens (a contiguous span per row, left- or right-aligned). The episode ends after the
    last response token: the bootstrap value beyond it is 0, and rewards / values outside the mask never leak into
    the advantages of masked tokens. Advantages are 0 outside the mask; ``returns = advantages + values`` everywhere
    (so outside the mask returns equal values, and a masked value loss ignores them).
    Vectorised over leading dims; the recursion loops over T only.
    """
    if rewards.shape != values.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and values {tuple(values.shape)} must have the same shape")
    m = mask.to(values.dtype).expand_as(values)
    rewards = rewards.to(values.dtype)
    T = values.shape[-1]
    adv = torch.zeros_like(values)
    last = torch.zeros_like(values[..., 0])
    zero = torch.zeros_like(last)
    for t in range(T - 1, -1, -1):
        m_next = m[..., t + 1] if t + 1 < T else zero
        v_next = values[..., t + 1] * m_next if t + 1 < T else zero
        delta = rewards[..., t] + gamma * v_next - values[..., t]
        last = (delta + gamma * lam * m_next * last) * m[..., t]
        adv[..., t] = last
    return adv, adv + values


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Standardise ``x`` (..., B, T) over the masked entries of its last two dims, separately per leading index.

    Per objective, so that objectives on different reward scales get comparable advantages before PAMA compares
    them token by token. Uses the population std (ddof=0): the masked entries then have mean 0 and std 1 exactly.
    Zero variance (e.g. a constant reward) only centres. ``shift_mean=False`` keeps the original mean (scale only).
    Entries outside the mask are set to 0.
    """
    if x.dim() < 2:
        raise ValueError(f"whiten expects at least (B, T), got shape {tuple(x.shape)}")
    m = mask.to(x.dtype).expand_as(x)
    count = m.sum(dim=(-2, -1), keepdim=True).clamp_min(_MASK_EPS)
    mean = (x * m).sum(dim=(-2, -1), keepdim=True) / count
    var = (((x - mean) * m) ** 2).sum(dim=(-2, -1), keepdim=True) / count
    std = var.sqrt()
    std = torch.where(std > eps, std, torch.ones_like(std))
    out = (x - mean) / std
    if not shift_mean:
        out = out + mean
    return out * m


def scale_by_spread(scores: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """[ours] Each objective's rewards (n, B) divided by their population std over the batch (TRL GRPO's
    ``scale_rewards="batch"``); a row with no spread is left as it is. Not shifted: only the scale changes, so a
    KL penalty added afterwards weighs the same against every objective."""
    std = scores.std(dim=-1, unbiased=False, keepdim=True)
    return scores / torch.where(std > eps, std, torch.ones_like(std))


def centre_in_groups(x: torch.Tensor, k: int) -> torch.Tensor:
    """``x`` (..., B) minus the mean of each run of ``k`` consecutive entries of its last dim (a prompt's samples)."""
    groups = x.reshape(*x.shape[:-1], -1, k)
    return (groups - groups.mean(-1, keepdim=True)).reshape(x.shape)


def length_residual(scores: torch.Tensor, lengths: torch.Tensor, k: int = 1, keep: Sequence[bool] | None = None,
                    eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """[ours] Each objective's rewards (n, B) with their linear trend on log answer length removed, within prompt
    groups: the slope of the group-centred rewards on the group-centred log lengths (over the whole batch when
    ``k`` = 1), times those centred log lengths, is subtracted. Each group's mean reward is unchanged and what is
    left has no linear length trend in the batch, so no direction of the policy earns by writing longer or shorter
    answers (the training-time twin of the length-controlled score, pama.lengthcontrol). Rows with ``keep`` False
    (objectives that are length) are left as they are. Returns (rewards, slopes (n,))."""
    n, B = scores.shape
    if B % k:
        raise ValueError(f"{B} rewards do not split into groups of {k}")
    g = k if k > 1 else B                      # one sample a prompt: the batch is the group
    xc = centre_in_groups(lengths.to(scores.dtype).clamp_min(1.0).log(), g)
    yc = centre_in_groups(scores, g)
    sxx = (xc * xc).sum()
    slope = (yc * xc).sum(-1) / sxx if sxx > eps else torch.zeros(n, dtype=scores.dtype, device=scores.device)
    if keep is not None:
        slope = slope * torch.as_tensor(list(keep), dtype=scores.dtype, device=scores.device)
    return scores - slope.unsqueeze(1) * xc.unsqueeze(0), slope


def noon(advantages: torch.Tensor) -> torch.Tensor:
    """Noon PPO: drop negative advantages (they are not pushed down), A = max(A', 0)."""
    return advantages.clamp(min=0)


# ----------------------------------------------------------------------------------------------- PAMA


def _tie_share(a: torch.Tensor, extreme: torch.Tensor) -> torch.Tensor:
    """Weights (n, ...) uniform over the objectives whose advantage equals ``extreme`` (the expectation of a
    one-hot choice among tied objectives), 0 elsewhere."""
    hit = (a == extreme.unsqueeze(0)).to(a.dtype)
    return hit / hit.sum(dim=0, keepdim=True).clamp_min(1.0)


def pama_combine(
    advantages: torch.Tensor,
    preference=None,
    *,
    anchor: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PAMA's closed-form objective weights, per token: O(n), vectorised, exact.

    Solves  min_c (Σ_i c_i a_i)²  over the anchored simplex c = (1−λ)·p + λ·q, q in the simplex, for every entry
    of ``advantages`` (shape (n, ...)). Over that set s = Σ c_i a_i covers [lo, hi] with
    lo = (1−λ)·p·a + λ·min a,  hi = (1−λ)·p·a + λ·max a, so s* = clamp(0, lo, hi) (the point closest to zero).
    q is uniform over the objectives attaining min a (s* = lo), over those attaining max a (s* = hi), or, when 0
    lies inside (lo, hi), the mix t·(min set) + (1−t)·(max set) with t = hi / (hi − lo), which makes s* exactly 0.
    Ties (all advantages 0 after Noon is common) are split evenly, not given to the lowest index: any split gives the
    same s*, and the logged weights must not favour objective 0.

    ``anchor`` λ=1 is the paper's PAMA; λ=0 is linear scalarisation with ``preference`` p (default uniform). It has
    no default here: a run's comes from ``config.PamaSettings`` (one default per setting).
    ``preference`` may hold one preference per sample, shape (n, B) against advantages (n, B, T) (a conditioned
    adapter's rollout: c_b = (1−λ)·p_b + λ·q_b); the result equals calling this function on each sample alone
    with its own p.
    Returns ``(combined, weights)``: combined (...) = s*, weights (n, ...) on the simplex with
    Σ_i weights_i·advantages_i == combined (up to rounding).
    """
    if advantages.dim() < 1 or advantages.shape[0] < 1:
        raise ValueError(f"advantages must have shape (n_objectives, ...), got {tuple(advantages.shape)}")
    lam = _check_anchor(anchor)
    n = advantages.shape[0]
    p = _check_preference(preference, n, like=advantages)
    a = advantages
    nd = a.dim()
    pb = _per_objective(p, nd)

    base = (1.0 - lam) * (pb * a).sum(dim=0)
    amin = a.min(dim=0).values
    amax = a.max(dim=0).values
    lo = base + lam * amin
    hi = base + lam * amax
    combined = torch.maximum(lo, torch.minimum(torch.zeros_like(hi), hi))  # clamp(0, lo, hi)

    at_lo = lo >= 0
    at_hi = (hi <= 0) & ~at_lo
    mid = ~(at_lo | at_hi)  # lo < 0 < hi, which needs lam > 0 and amax > amin
    denom = torch.where(mid, hi - lo, torch.ones_like(hi))
    t_mid = (hi / denom).clamp(0.0, 1.0)
    t = torch.where(at_lo, torch.ones_like(hi), torch.where(at_hi, torch.zeros_like(hi), t_mid))
    combined = torch.where(mid, torch.zeros_like(combined), combined)

    q = t * _tie_share(a, amin) + (1.0 - t) * _tie_share(a, amax)
    weights = (1.0 - lam) * pb.expand_as(a) + lam * q
    return combined, weights


def pama_combine_batch_mean(
    advantages: torch.Tensor,
    mask: torch.Tensor,
    preference=None,
    *,
    anchor: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-mean PAMA variant (ablation): one weight vector for the whole batch.

    c* is ``pama_combine`` applied to each objective's mean advantage over the masked tokens (shape (n,)); the
    same c* is then applied to every token: combined_t = Σ_i c*_i·a_i,t (0 outside the mask). Unlike the per-token
    variant the per-token combined advantage need not be the minimum-magnitude one; only the batch mean is.
    Returns ``(combined, weights)`` with the same shapes as ``pama_combine`` — weights (n, ...) is c* repeated on
    every token, so Σ_i weights_i·advantages_i == combined on masked tokens. A per-sample preference (n, B) gives
    each sample its own c*_b = ``pama_combine`` (batch means, p_b).
    """
    if advantages.dim() < 2:
        raise ValueError(f"advantages must have shape (n_objectives, ...tokens), got {tuple(advantages.shape)}")
    n = advantages.shape[0]
    m = mask.to(advantages.dtype)
    if m.dim() == advantages.dim():
        m = m.expand_as(advantages)
    else:
        m = m.expand_as(advantages[0]).unsqueeze(0).expand_as(advantages)
    means = masked_mean(advantages, m, dim=tuple(range(1, advantages.dim())))
    p = _check_preference(preference, n, like=advantages) if preference is not None else None
    if p is not None and p.dim() > 1:  # one preference per sample: each sample's weights from the batch means
        means = _per_objective(means, p.dim()).expand_as(p)
    _, c = pama_combine(means, preference=p, anchor=anchor)
    cb = _per_objective(c, advantages.dim())
    weights = cb.expand_as(advantages).clone()
    combined = (cb * advantages).sum(dim=0) * m[0]
    assert weights.shape[0] == n
    return combined, weights


# ----------------------------------------------------------------------------------------------- MGDA


def _min_norm_gram(G: torch.Tensor, max_iter: int | None = None) -> torch.Tensor:
    """Min-norm point of conv{g_1..g_n} from the Gram matrix G (float64): Wolfe's (1976) algorithm.

    Finite, exact active-set method: keeps a 'corral' of affinely independent points, takes the affine
    minimiser over it (a bordered linear solve) and steps back into the simplex when it leaves it.
    """
    n = G.shape[0]
    scale = float(G.diagonal().abs().max().clamp_min(1e-300))
    tol = 1e-12 * scale
    max_iter = max_iter or 50 * n + 100
    w = torch.zeros(n, dtype=G.dtype, device=G.device)
    j0 = int(torch.argmin(G.diagonal()))
    w[j0] = 1.0
    S = [j0]
    for _ in range(max_iter):
        Gw = G @ w
        xx = float(w @ Gw)
        j = int(torch.argmin(Gw))
        if xx - float(Gw[j]) <= tol or j in S:
            break
        S.append(j)
        for _ in range(max_iter):  # minor cycles
            idx = torch.tensor(S, device=G.device)
            k = len(S)
            A = torch.zeros(k + 1, k + 1, dtype=G.dtype, device=G.device)
            A[:k, :k] = G[idx][:, idx]
            A[:k, k] = 1.0
            A[k, :k] = 1.0
            b = torch.zeros(k + 1, dtype=G.dtype, device=G.device)
            b[k] = 1.0
            v = torch.linalg.lstsq(A, b.unsqueeze(1)).solution.squeeze(1)[:k]
            if bool((v > 1e-14).all()):
                w = torch.zeros_like(w)
                w[idx] = v
                break
            ws = w[idx]
            neg = v <= 1e-14
            ratios = torch.where(neg, ws / (ws - v).clamp_min(1e-300), torch.full_like(ws, math.inf))
            blocking = int(torch.argmin(ratios))
            theta = float(ratios[blocking].clamp(0.0, 1.0))
            new = ws + theta * (v - ws)
            new[new <= 1e-14] = 0.0
            new[blocking] = 0.0  # drop at least the blocking point so the minor cycle always shrinks the corral
            w = torch.zeros_like(w)
            w[idx] = new
            S = [s for s, keep in zip(S, (new > 0).tolist()) if keep]
            if not S:  # cannot happen in exact arithmetic; restart from the best vertex
                S = [j]
                w = torch.zeros_like(w)
                w[j] = 1.0
                break
    w = w.clamp_min(0.0)
    return w / w.sum()


def mgda_weights(grads: torch.Tensor) -> torch.Tensor:
    """MGDA min-norm weights (Sener & Koltun 2018): argmin_{c in simplex} ‖Σ_i c_i g_i‖² for grads (n, d).

    The n×n Gram matrix is computed once (in float64 for accuracy, whatever the input dtype, on the grads' device);
    the solve then works on it only (on CPU): Sener & Koltun's closed form for n = 2, Wolfe's exact min-norm-point algorithm for n > 2.
    Returns weights (n,) on the simplex, in the dtype/device of ``grads``.
    """
    if grads.dim() != 2 or grads.shape[0] < 1:
        raise ValueError(f"grads must have shape (n_objectives, d), got {tuple(grads.shape)}")
    n = grads.shape[0]
    g = grads.detach().to(torch.float64)
    G = (g @ g.T).cpu()  # the n×n solve is tiny; on CPU, lstsq also handles rank-deficient systems
    if not bool(torch.isfinite(G).all()):
        raise ValueError("grads contain non-finite values")
    if n == 1:
        w = torch.ones(1, dtype=torch.float64, device=G.device)
    elif n == 2:
        denom = float(G[0, 0] + G[1, 1] - 2 * G[0, 1])
        if denom <= 1e-30 * max(float(G[0, 0]), float(G[1, 1]), 1e-300):
            gamma = 0.5  # identical gradients: every mix has the same norm
        else:
            gamma = min(max(float(G[1, 1] - G[0, 1]) / denom, 0.0), 1.0)
        w = torch.tensor([gamma, 1.0 - gamma], dtype=torch.float64, device=G.device)
    else:
        w = _min_norm_gram(G)
    return w.to(device=grads.device, dtype=grads.dtype)


def linear_scalarise(values: torch.Tensor, preference) -> torch.Tensor:
    """MORLHF's scalarisation Σ_i p_i·values_i over dim 0 (values (n, ...)); p (n,) or one per sample (n, B)."""
    if values.dim() < 1:
        raise ValueError(f"values must have shape (n_objectives, ...), got {tuple(values.shape)}")
    p = _check_preference(preference, values.shape[0], like=values)
    return (_per_objective(p, values.dim()) * values).sum(dim=0)


# ----------------------------------------------------------------------------------------------- KL control


class AdaptiveKLController:
    """KL coefficient β for the reward's −β·KL term (Ziegler et al. 2019; TRL's AdaptiveKLController).

    After each batch: β ← β·(1 + clip(KL/target − 1, −0.2, 0.2)·n_steps/horizon), so β grows when the policy
    drifts past the target KL and shrinks when it stays below. ``target=None`` keeps β fixed. Note that β = 0
    stays 0 under the multiplicative update (use β = 0 to switch the KL term off).
    """

    def __init__(self, init_beta: float, target: float | None = None, horizon: int = 10000):
        if not (float(init_beta) >= 0.0) or not math.isfinite(float(init_beta)):
            raise ValueError(f"init_beta must be a finite number >= 0, got {init_beta!r}")
        if target is not None and not (float(target) > 0.0):
            raise ValueError(f"target KL must be > 0 (or None for a fixed beta), got {target!r}")
        if not (float(horizon) > 0.0):
            raise ValueError(f"horizon must be > 0, got {horizon!r}")
        self.value = float(init_beta)
        self.target = None if target is None else float(target)
        self.horizon = float(horizon)

    @property
    def adaptive(self) -> bool:
        return self.target is not None

    def update(self, current_kl, n_steps: int) -> float:
        """Move β toward the target after a batch of ``n_steps`` samples; returns the new β."""
        if self.target is None:
            return self.value
        kl = float(current_kl.detach().item() if isinstance(current_kl, torch.Tensor) else current_kl)
        if not math.isfinite(kl):
            return self.value  # a NaN/inf KL estimate must not destroy the controller state
        err = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + err * float(n_steps) / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
        self.target = None if state.get("target") is None else float(state["target"])
        self.horizon = float(state.get("horizon", self.horizon))

    def __repr__(self) -> str:
        return f"AdaptiveKLController(value={self.value:.6g}, target={self.target}, horizon={self.horizon:g})"


def last_token(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: each row's last response token (where a sequence-level reward or term lands)."""
    return mask.cumsum(1).eq(mask.sum(1, keepdim=True)) & mask.bool()


def kl_penalty(kl: torch.Tensor, mask: torch.Tensor, beta: float, shaping: str = "token") -> torch.Tensor:
    """The KL part of every objective's per-token rewards (B, T), from per-token log-ratios ``kl`` (B, T).

    ``token``: −β·kl_t on every token (the paper's shaping). An answer's total is then β × its summed KL, which
    grows with its length, so the penalty also pays for brevity: on the negative-premise pair both ends' answers
    shortened with training, and shorter answers are the less positive ones (docs/learnability.md §16).
    ``answer-mean`` [ours]: −β × the answer's mean per-token KL × the batch's mean length, on its last token: the
    batch's total penalty is about the same (exactly, when every token's KL is equal), but no answer pays for its
    length."""
    if shaping == "token":
        return -beta * kl * mask
    if shaping == "loss":   # the KL is a term of the policy loss instead (kl_loss)
        return torch.zeros_like(kl)
    if shaping not in KL_SHAPINGS:
        raise ValueError(f"shaping must be {' or '.join(map(repr, KL_SHAPINGS))}, not {shaping!r}")
    lengths = mask.sum(1)
    per_token = (kl * mask).sum(1) / lengths.clamp(min=1)
    return -beta * (per_token * lengths.mean()).unsqueeze(1) * last_token(mask).to(kl.dtype)


def scheduled_lr(base: float, step: int, steps: int, schedule: str = "constant") -> float:
    """The learning rate of 1-based `step` of `steps` (transformers' get_{linear,cosine}_schedule_with_warmup without
    warm-up: full rate at step 1, approaching 0 at the last); stateless, so a resumed run continues its schedule."""
    if schedule == "constant" or steps <= 0:
        return base
    done = min(max(step - 1, 0), steps) / steps
    if schedule == "linear":
        return base * (1.0 - done)
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * done))
    raise ValueError(f"unknown lr_schedule {schedule!r}: constant, linear or cosine")


def kl_loss(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean per-token KL(π_θ ‖ π_ref) over the answer tokens, by Schulman's k3 estimator on the sampled tokens,
    exp(r) − r − 1 with r = log π_ref − log π_θ (≥ 0, unbiased, TRL GRPO's ``per_token_kl``). As a loss term its
    gradient lowers log π_θ where it exceeds log π_ref and raises it where it falls short, whatever the
    advantages: under Noon PPO, a KL penalty in the rewards only picks which answers to reinforce, this pulls back."""
    r = ref_logp - logp
    return masked_mean(torch.exp(r) - r - 1.0, mask)


# ----------------------------------------------------------------------------------------------- PPO losses


def end_advantage(ended: torch.Tensor, k: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """[ours] The advantage (B,) of ending an answer on EOS, for ``eos_weight``'s separate constraint: the indicator
    ended − its prompt group's mean (``k`` adjacent samples per prompt; the batch's mean for k = 1), divided by its
    std over the batch. Kept out of the objectives' rewards, so the constraint's pull does not scale with each
    objective's own variance (an objective with a small spread, whitened, made a subtracted penalty its whole
    advantage: docs/learnability.md §9). All ended or none: 0 (nothing to prefer)."""
    x = ended.to(torch.float32)
    if k > 1 and x.numel() % k == 0:
        g = x.view(-1, k)
        x = (g - g.mean(-1, keepdim=True)).view(-1)
    else:
        x = x - x.mean()
    std = x.pow(2).mean().sqrt()
    return x / std if float(std) > eps else torch.zeros_like(x)


def end_credit(ended: torch.Tensor, mask: torch.Tensor, k: int = 1, credit: str = "answer",
               min_tokens: int = 0) -> torch.Tensor:
    """[ours] ``end_advantage`` spread over tokens (B, T) for the end-of-answer term. ``answer``: on every token of
    the answer, which also reinforces what the answers that ended said (short ones: on negative-premise prompts the
    sentiment end learned to repeat the premise and stop, docs/learnability.md §11-12); ``eos``: on the EOS token of
    each answer that ended, and nowhere else, so only the decision to stop is credited, at the same per-token scale.

    ``min_tokens``: an answer that ended with fewer response tokens (EOS included) counts as not finished, so the
    term rewards finishing an answer, not stopping early: with ``eos`` its too-early EOS gets the negative side of the
    advantage (§13: crediting every stop taught the sentiment end to stop after one sentence)."""
    finished = ended.bool() & mask.sum(1).ge(min_tokens)   # min_tokens 0: every end counts
    adv = end_advantage(finished, k).unsqueeze(1)
    if credit == "answer":
        return adv * mask
    if credit not in EOS_CREDITS:
        raise ValueError(f"credit must be {' or '.join(map(repr, EOS_CREDITS))}, not {credit!r}")
    return adv * (last_token(mask) & ended.bool().unsqueeze(1)).to(mask.dtype)


def clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float = 0.2,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped policy loss L = −mean_masked min(u·A, clip(u, 1−ε, 1+ε)·A), u = exp(logπ − logπ_old).

    The clip keeps one rollout's update inside a trust region around π_old. Stats (floats, for logging):
    ``clipfrac`` (share of masked tokens where the clipped term was active), ``approx_kl`` (½·mean (Δlogπ)²),
    ``ratio_mean``.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    pg1 = -advantages * ratio
    pg2 = -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(pg1, pg2), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": float(masked_mean((pg2 > pg1).to(logprobs.dtype), mask)),
            "approx_kl": float(0.5 * masked_mean(log_ratio.detach() ** 2, mask)),
            "ratio_mean": float(masked_mean(ratio.detach(), mask)),
        }
    return loss, stats


def weighted_clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float = 0.2,
) -> torch.Tensor:
    """Σ_i c_i·L_i per token: the objectives' own clipped PPO losses, combined by the weights c (n, B, T).

    L = −mean_masked Σ_i c_i,t·min(u_t·A_i,t, clip(u_t, 1−ε, 1+ε)·A_i,t) for advantages (n, B, T). This is the
    paper's Σ_i c_i ∇L_i whatever the advantages' signs. ``clipped_surrogate`` of the combined advantage Σ_i c_i A_i is
    the same loss only when every A_i,t ≥ 0 (Noon): min(u·A, clip(u)·A) = A·min(u, clip(u)) then, which is linear in A;
    with mixed signs and u outside [1−ε, 1+ε] the two differ (one objective's term is clipped, the other's not).
    """
    ratio = torch.exp(logprobs - old_logprobs).unsqueeze(0)
    pg1 = -advantages * ratio
    pg2 = -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    return masked_mean((weights * torch.maximum(pg1, pg2)).sum(dim=0), mask)


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float = 0.2,
) -> torch.Tensor:
    """Clipped value loss 0.5·mean_masked max((v−R)², (clip(v, v_old±ε)−R)²), as in PPO / TRL.

    Works on one head (B, T) or all heads at once (n, B, T) with a (B, T) mask (mean over every masked entry).
    """
    vclip = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    l1 = (values - returns) ** 2
    l2 = (vclip - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(l1, l2), mask)
