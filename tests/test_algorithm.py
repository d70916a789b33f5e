"""Tests for pama/algorithm.py: closed forms against brute force (LP / QP / naive loops) and hand-computed cases."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.optimize import linprog, minimize

from pama.algorithm import (
    AdaptiveKLController,
    clipped_surrogate,
    clipped_value_loss,
    gae,
    linear_scalarise,
    masked_mean,
    mgda_weights,
    noon,
    pama_combine,
    pama_combine_batch_mean,
    whiten,
)

FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None)


# ----------------------------------------------------------------------------------------------- brute force


def brute_min_sq(a: np.ndarray, p: np.ndarray, lam: float) -> float:
    """min (c·a)² over c = (1−λ)p + λq, q in the simplex, from two LPs (the reachable range of c·a)."""
    n = a.size
    base = (1 - lam) * float(p @ a)
    bounds = [(0, None)] * n
    A_eq, b_eq = np.ones((1, n)), [1.0]
    lo = linprog(lam * a, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    hi = linprog(-lam * a, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    assert lo.status == 0 and hi.status == 0
    s_lo, s_hi = base + lo.fun, base - hi.fun
    if s_lo <= 0 <= s_hi:
        return 0.0
    return min(s_lo**2, s_hi**2)


def brute_min_norm(G: np.ndarray) -> float:
    """Exact min of c'Gc over the simplex: enumerate supports, solve each bordered KKT system."""
    n = G.shape[0]
    best = float(np.min(np.diag(G)))
    for k in range(2, n + 1):
        for S in itertools.combinations(range(n), k):
            S = list(S)
            A = np.zeros((k + 1, k + 1))
            A[:k, :k] = G[np.ix_(S, S)]
            A[:k, k] = 1
            A[k, :k] = 1
            b = np.zeros(k + 1)
            b[k] = 1
            c = np.linalg.lstsq(A, b, rcond=None)[0][:k]
            if (c >= -1e-12).all():
                c = np.clip(c, 0, None)
                c /= c.sum()
                best = min(best, float(c @ G[np.ix_(S, S)] @ c))
    return best


def slsqp_min_norm(G: np.ndarray) -> float:
    n = G.shape[0]
    res = minimize(
        lambda c: c @ G @ c,
        np.full(n, 1.0 / n),
        jac=lambda c: 2 * G @ c,
        bounds=[(0, 1)] * n,
        constraints=[{"type": "eq", "fun": lambda c: c.sum() - 1, "jac": lambda c: np.ones(n)}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    c = np.clip(res.x, 0, None)
    c /= c.sum()
    return float(c @ G @ c)


# ----------------------------------------------------------------------------------------------- pama_combine


@st.composite
def pama_cases(draw):
    n = draw(st.integers(2, 6))
    B = draw(st.integers(1, 3))
    T = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    a = rng.normal(scale=2.0, size=(n, B, T))
    if draw(st.booleans()):  # integers: ties, exact zeros, all-same-sign tokens
        a = np.round(a)
    shift = draw(st.sampled_from([0.0, 0.0, 3.0, -3.0]))  # sometimes all positive / all negative
    a = a + shift
    pref_kind = draw(st.sampled_from(["none", "dirichlet", "onehot"]))
    if pref_kind == "none":
        p = None
    elif pref_kind == "onehot":
        p = np.zeros(n)
        p[draw(st.integers(0, n - 1))] = 1.0
    else:
        p = rng.dirichlet(np.ones(n))
    lam = draw(st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0)))
    return a, p, lam


@FAST
@given(pama_cases())
def test_pama_combine_matches_lp_brute_force(case):
    a, p, lam = case
    n = a.shape[0]
    at = torch.tensor(a, dtype=torch.float64)
    combined, w = pama_combine(at, None if p is None else torch.tensor(p), anchor=lam)
    assert combined.shape == a.shape[1:] and w.shape == a.shape
    pv = np.full(n, 1.0 / n) if p is None else p
    c, w = combined.numpy(), w.numpy()
    for b, t in itertools.product(range(a.shape[1]), range(a.shape[2])):
        opt = brute_min_sq(a[:, b, t], pv, lam)
        assert c[b, t] ** 2 == pytest.approx(opt, abs=1e-9)
    # on the simplex, inside the anchored simplex, and reproducing the combined advantage
    assert (w >= -1e-12).all()
    np.testing.assert_allclose(w.sum(0), 1.0, atol=1e-12)
    assert (w >= (1 - lam) * pv.reshape(-1, 1, 1) - 1e-12).all()
    np.testing.assert_allclose((w * a).sum(0), c, atol=1e-9)


@FAST
@given(pama_cases())
def test_pama_combine_float32(case):
    a, p, lam = case
    at = torch.tensor(a, dtype=torch.float32)
    combined, w = pama_combine(at, p, anchor=lam)
    assert combined.dtype == torch.float32 and w.dtype == torch.float32
    assert torch.allclose(w.sum(0), torch.ones(()), atol=1e-5)
    assert torch.allclose((w * at).sum(0), combined, atol=1e-4)
    ref, _ = pama_combine(at.double(), p, anchor=lam)
    assert torch.allclose(combined.double(), ref, atol=1e-4)


def test_pama_plain_on_noon_advantages_is_the_minimum():
    a = noon(torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0)))
    combined, w = pama_combine(a, anchor=1.0)
    assert torch.equal(combined, a.min(0).values)
    at_min = (a == a.min(0).values).to(a.dtype)
    assert (at_min.sum(0) > 1).any()  # Noon's zeros tie: the weight is shared among them, not given to index 0
    torch.testing.assert_close(w, at_min / at_min.sum(0))


@pytest.mark.parametrize("anchor", [1.0, 0.5])
def test_pama_ties_are_split_evenly(anchor):
    """Symmetric objectives (identical advantages, often all zero after Noon) get equal weights."""
    a = noon(torch.randn(1, 4, 6, generator=torch.Generator().manual_seed(2))).repeat(2, 1, 1)
    combined, w = pama_combine(a, [0.5, 0.5], anchor=anchor)
    torch.testing.assert_close(combined, a[0])
    torch.testing.assert_close(w, torch.full_like(w, 0.5))
    c, w = pama_combine(torch.tensor([[0.0], [1.0], [0.0]]), anchor=1.0)  # two of three tie at the minimum
    assert c.tolist() == [0.0] and w[:, 0].tolist() == [0.5, 0.0, 0.5]
    c, w = pama_combine(torch.tensor([[-2.0], [-1.0], [-1.0]]), anchor=1.0)  # and at the maximum (all negative)
    assert c.tolist() == [-1.0] and w[:, 0].tolist() == [0.0, 0.5, 0.5]


def test_pama_hand_cases():
    a = torch.tensor([[1.0, -2.0, 3.0], [2.0, 1.0, -1.0]])
    combined, w = pama_combine(a, anchor=1.0)
    assert combined.tolist() == [1.0, 0.0, 0.0]
    # token 1: t·(−2) + (1−t)·1 = 0 → t = 1/3 on objective 0 (the argmin)
    torch.testing.assert_close(w[:, 1], torch.tensor([1 / 3, 2 / 3]))
    torch.testing.assert_close(w[:, 2], torch.tensor([0.25, 0.75]))
    # all negative: the max (closest to zero)
    c, w = pama_combine(torch.tensor([[-1.0], [-3.0]]), anchor=1.0)
    assert c.tolist() == [-1.0] and w[:, 0].tolist() == [1.0, 0.0]
    # equal advantages: combined is that value, the weights split evenly
    c, w = pama_combine(torch.tensor([[2.0], [2.0], [2.0]]), anchor=1.0)
    assert c.tolist() == [2.0]
    torch.testing.assert_close(w[:, 0], torch.full((3,), 1 / 3))


def test_anchor_zero_is_linear_scalarisation():
    a = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    p = [0.2, 0.5, 0.3]
    combined, w = pama_combine(a, p, anchor=0.0)
    torch.testing.assert_close(combined, linear_scalarise(a, p))
    torch.testing.assert_close(w, torch.tensor(p, dtype=a.dtype).reshape(3, 1, 1).expand_as(a))


def test_pama_validation_messages():
    a = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="one value per objective"):
        pama_combine(a, [1.0], anchor=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        pama_combine(a, [1.5, -0.5], anchor=1.0)
    with pytest.warns(UserWarning, match="does not sum to 1"):  # pama.preference's one policy: normalised
        pama_combine(a, [0.5, 0.6], anchor=1.0)
    with pytest.raises(ValueError, match="finite"):
        pama_combine(a, [float("nan"), 1.0], anchor=1.0)
    for bad in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(ValueError, match="anchor"):
            pama_combine(a, anchor=bad)
    with pytest.warns(UserWarning, match="does not sum to 1"):  # off by 1e-5: normalised (pama.preference.SUM_TOL)
        pama_combine(a, [0.33, 0.67001], anchor=1.0)
    with pytest.raises(ValueError, match="one value per objective"):
        linear_scalarise(a, [0.2, 0.3, 0.5])


def test_pama_combine_batch_mean():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    mask = torch.zeros(4, 5)
    mask[:, 1:4] = 1
    combined, w = pama_combine_batch_mean(a, mask, [0.2, 0.3, 0.5], anchor=0.7)
    means = torch.stack([a[i][mask.bool()].mean() for i in range(3)])
    _, c = pama_combine(means, [0.2, 0.3, 0.5], anchor=0.7)
    assert w.shape == a.shape
    torch.testing.assert_close(w, c.reshape(3, 1, 1).expand_as(a))
    torch.testing.assert_close(combined, (c.reshape(3, 1, 1) * a).sum(0) * mask.double())
    # the batch-mean combined advantage is the min-|·| point for the means
    s_mean = masked_mean(combined, mask)
    opt = brute_min_sq(means.numpy(), np.array([0.2, 0.3, 0.5]), 0.7)
    assert float(s_mean) ** 2 == pytest.approx(opt, abs=1e-10)


@pytest.mark.parametrize("anchor", [0.0, 0.5, 1.0])
def test_per_sample_preference_equals_pama_combine_per_sample(anchor):
    """A conditioned rollout: one preference per sample, shape (n, B), broadcast over the tokens."""
    g = torch.Generator().manual_seed(5)
    n, B, T = 3, 6, 7
    a = torch.randn(n, B, T, generator=g, dtype=torch.float64).clamp(min=0)   # Noon advantages, ties included
    p = torch.distributions.Dirichlet(torch.ones(n)).sample((B,)).T.double()  # (n, B)
    p[:, 0] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)               # a one-hot column
    combined, w = pama_combine(a, p, anchor=anchor)
    for b in range(B):
        cb, wb = pama_combine(a[:, b], p[:, b], anchor=anchor)
        torch.testing.assert_close(combined[b], cb)
        torch.testing.assert_close(w[:, b], wb)
    mask = torch.ones(B, T)
    mask[:, 5:] = 0
    combined, w = pama_combine_batch_mean(a, mask, p, anchor=anchor)
    means = torch.stack([a[i][mask.bool()].mean() for i in range(n)])
    for b in range(B):
        _, c = pama_combine(means, p[:, b], anchor=anchor)
        torch.testing.assert_close(w[:, b], c.reshape(n, 1).expand(n, T))
        torch.testing.assert_close(combined[b], (c.reshape(n, 1) * a[:, b]).sum(0) * mask[b].double())
    torch.testing.assert_close(linear_scalarise(a[..., 0], p), (p * a[..., 0]).sum(0))
    # a per-sample preference that is the same for every sample gives the shared-preference result
    same = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    torch.testing.assert_close(pama_combine(a, same.unsqueeze(1).expand(n, B), anchor=anchor)[0],
                               pama_combine(a, same, anchor=anchor)[0])


def test_per_sample_preference_validation():
    a = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="shape \\(n, batch\\)"):
        pama_combine(a, torch.full((2, 5), 0.5), anchor=1.0)  # 5 samples against a batch of 3
    with pytest.warns(UserWarning, match="1 of 3 preference rows did not sum to 1"):  # normalised, as one would be
        pama_combine(a, torch.tensor([[0.5, 0.5, 0.9], [0.5, 0.5, 0.3]]), anchor=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        pama_combine(a, torch.tensor([[1.5, 0.5, 0.5], [-0.5, 0.5, 0.5]]), anchor=1.0)


# ----------------------------------------------------------------------------------------------- MGDA


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(st.integers(2, 6), st.integers(1, 12), st.integers(0, 2**31 - 1), st.booleans())
def test_mgda_matches_reference_qp(n, d, seed, correlated):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, d))
    if correlated:  # a shared component: origin outside the hull, interior optimum with several active points
        g = g + 2.0 * rng.normal(size=(1, d))
    w = mgda_weights(torch.tensor(g)).numpy()
    assert w.shape == (n,) and (w >= 0).all() and abs(w.sum() - 1) < 1e-12
    G = g @ g.T
    ours = math.sqrt(max(float(w @ G @ w), 0.0))
    exact = math.sqrt(max(brute_min_norm(G), 0.0))
    ref = math.sqrt(max(slsqp_min_norm(G), 0.0))
    assert ours <= ref + 1e-6
    assert abs(ours - exact) <= 1e-6 * max(1.0, math.sqrt(np.max(np.diag(G))))


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 20), st.integers(0, 2**31 - 1))
def test_mgda_two_objectives_closed_form_vs_slsqp(d, seed):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(2, d)) + rng.normal(size=(1, d))
    w = mgda_weights(torch.tensor(g)).numpy()
    G = g @ g.T
    assert float(w @ G @ w) <= slsqp_min_norm(G) + 1e-10
    assert float(w @ G @ w) == pytest.approx(brute_min_norm(G), abs=1e-12)


def test_mgda_hand_cases_and_float32():
    torch.testing.assert_close(mgda_weights(torch.tensor([[1.0, 0.0], [0.0, 1.0]])), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(mgda_weights(torch.tensor([[1.0, 0.0], [2.0, 0.0]])), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(mgda_weights(torch.tensor([[1.0, 1.0], [1.0, 1.0]])), torch.tensor([0.5, 0.5]))
    assert mgda_weights(torch.tensor([[3.0, 4.0]])).tolist() == [1.0]
    # origin inside the hull of three points → norm 0
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]])
    w = mgda_weights(g)
    assert float((w @ g).norm()) < 1e-6
    torch.testing.assert_close(w, torch.tensor([0.5, 0.25, 0.25]))
    # float32, large d
    g32 = torch.randn(4, 50_000, generator=torch.Generator().manual_seed(3)) + 0.1
    w32 = mgda_weights(g32)
    assert w32.dtype == torch.float32 and abs(float(w32.sum()) - 1) < 1e-6
    G = (g32.double() @ g32.double().T).numpy()
    ours = float(w32.double().numpy() @ G @ w32.double().numpy())
    assert math.sqrt(ours) <= math.sqrt(brute_min_norm(G)) + 1e-4
    with pytest.raises(ValueError):
        mgda_weights(torch.zeros(3))


# ----------------------------------------------------------------------------------------------- GAE / whiten / noon


def test_gae_hand_computed():
    r = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[0.5, 0.6, 0.7]], dtype=torch.float64)
    adv, ret = gae(r, v, torch.ones(1, 3), gamma=1.0, lam=0.95)
    # δ2 = 1 − 0.7 = 0.3; δ1 = 0.7 − 0.6 = 0.1, A1 = 0.1 + 0.95·0.3; δ0 = 0.1, A0 = 0.1 + 0.95·A1
    expected = torch.tensor([[0.1 + 0.95 * 0.385, 0.385, 0.3]], dtype=torch.float64)
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + v)
    # the same span inside padding on both sides; junk outside the mask must not leak in
    r2 = torch.tensor([[5.0, 0.0, 0.0, 1.0, 7.0]], dtype=torch.float64)
    v2 = torch.tensor([[9.0, 0.5, 0.6, 0.7, 9.0]], dtype=torch.float64)
    m2 = torch.tensor([[0, 1, 1, 1, 0]])
    adv2, ret2 = gae(r2, v2, m2)
    torch.testing.assert_close(adv2[:, 1:4], expected)
    assert adv2[0, 0] == 0 and adv2[0, 4] == 0
    torch.testing.assert_close(ret2, adv2 + v2)


def _naive_gae_row(r, v, m, gamma, lam):
    idx = [i for i in range(len(m)) if m[i]]
    adv = np.zeros(len(m))
    last = 0.0
    for k in range(len(idx) - 1, -1, -1):
        i = idx[k]
        nv = v[idx[k + 1]] if k + 1 < len(idx) else 0.0
        delta = r[i] + gamma * nv - v[i]
        last = delta + gamma * lam * last
        adv[i] = last
    return adv


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 8), st.integers(0, 2**31 - 1),
       st.sampled_from([1.0, 0.9]), st.sampled_from([0.95, 1.0, 0.0]))
def test_gae_matches_naive_loop(n, B, T, seed, gamma, lam):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(n, B, T))
    v = rng.normal(size=(n, B, T))
    mask = np.zeros((B, T))
    for b in range(B):
        start = rng.integers(0, T + 1)
        end = rng.integers(start, T + 1)
        mask[b, start:end] = 1
    adv, ret = gae(torch.tensor(r), torch.tensor(v), torch.tensor(mask), gamma=gamma, lam=lam)
    for i, b in itertools.product(range(n), range(B)):
        np.testing.assert_allclose(adv[i, b].numpy(), _naive_gae_row(r[i, b], v[i, b], mask[b], gamma, lam),
                                   atol=1e-12)
    np.testing.assert_allclose(ret.numpy(), adv.numpy() + v, atol=1e-12)


def test_whiten_per_objective():
    g = torch.Generator().manual_seed(4)
    scale = torch.tensor([1.0, 10.0, 0.01], dtype=torch.float64).reshape(3, 1, 1)
    x = torch.randn(3, 6, 7, generator=g, dtype=torch.float64) * scale
    x = x + torch.tensor([5.0, -2.0, 0.0], dtype=torch.float64).reshape(3, 1, 1)
    mask = torch.zeros(6, 7)
    mask[:, 2:6] = 1
    mask[0, 6] = 1
    w = whiten(x, mask)
    sel = mask.bool()
    for i in range(3):
        vals = w[i][sel]
        assert abs(float(vals.mean())) < 1e-10
        assert float(vals.std(unbiased=False)) == pytest.approx(1.0, abs=1e-10)
    assert (w[:, ~sel] == 0).all()
    # shift_mean=False keeps the mean, scales only
    w2 = whiten(x, mask, shift_mean=False)
    for i in range(3):
        assert float(w2[i][sel].mean()) == pytest.approx(float(x[i][sel].mean()), rel=1e-9)
    # zero variance: centred, no NaN; empty mask: zeros
    c = whiten(torch.full((2, 3, 4), 7.0), torch.ones(3, 4))
    assert torch.equal(c, torch.zeros(2, 3, 4))
    e = whiten(torch.randn(2, 3, 4), torch.zeros(3, 4))
    assert torch.isfinite(e).all() and (e == 0).all()


def test_noon_and_masked_mean():
    a = torch.tensor([-1.0, 0.0, 2.0])
    assert noon(a).tolist() == [0.0, 0.0, 2.0]
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    m = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert float(masked_mean(x, m).detach()) == 1.5
    per_row = masked_mean(x, m, dim=1)
    assert per_row.tolist() == [1.5, 0.0]
    per_row.sum().backward()
    assert torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------------------------- KL / losses


def test_kl_controller():
    kl = AdaptiveKLController(0.2, target=3.0, horizon=10000)
    kl.update(6.0, 100)  # above target → β grows, error clipped to +0.2
    assert kl.value == pytest.approx(0.2 * (1 + 0.2 * 100 / 10000))
    before = kl.value
    kl.update(2.7, 100)  # below target → shrinks, error −0.1
    assert kl.value == pytest.approx(before * (1 - 0.1 * 100 / 10000))
    before = kl.value
    kl.update(torch.tensor(3.0), 100)
    assert kl.value == pytest.approx(before)
    state = kl.state_dict()
    other = AdaptiveKLController(1.0, target=1.0)
    other.load_state_dict(state)
    assert other.value == kl.value and other.target == 3.0
    fixed = AdaptiveKLController(0.1, target=None)
    fixed.update(100.0, 1000)
    assert fixed.value == 0.1
    zero = AdaptiveKLController(0.0, target=3.0)
    zero.update(10.0, 1000)
    assert zero.value == 0.0
    with pytest.raises(ValueError):
        AdaptiveKLController(-1.0, target=3.0)
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, target=0.0)


def test_clipped_surrogate():
    A = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    lp = torch.zeros(1, 4, requires_grad=True)
    loss, stats = clipped_surrogate(lp, torch.zeros(1, 4), A, mask)
    assert float(loss.detach()) == pytest.approx(-(1.0 - 2.0 + 0.5) / 3)  # ratio 1: plain −mean(A)
    assert stats["clipfrac"] == 0.0 and stats["approx_kl"] == 0.0 and stats["ratio_mean"] == 1.0

    # ratio 2 with A > 0 → clipped at 1.2 (and no gradient); A < 0 → unclipped 2·A
    lp = torch.full((1, 2), math.log(2.0), requires_grad=True)
    A = torch.tensor([[1.0, -1.0]])
    loss, stats = clipped_surrogate(lp, torch.zeros(1, 2), A, torch.ones(1, 2))
    assert float(loss.detach()) == pytest.approx(-(1.2 - 2.0) / 2)
    assert stats["clipfrac"] == 0.5
    loss.backward()
    assert lp.grad[0, 0] == 0 and lp.grad[0, 1] != 0

    # ratio 0.5: A > 0 → unclipped 0.5·A; A < 0 → clipped 0.8·A
    lp = torch.full((1, 2), math.log(0.5))
    loss, stats = clipped_surrogate(lp, torch.zeros(1, 2), A, torch.ones(1, 2), cliprange=0.2)
    assert float(loss.detach()) == pytest.approx(-(0.5 - 0.8) / 2)
    assert stats["clipfrac"] == 0.5


def test_clipped_value_loss():
    v = torch.tensor([[1.0, 0.0, 2.0]])
    old = torch.tensor([[0.0, 0.0, 2.0]])
    R = torch.tensor([[0.0, 1.0, 2.0]])
    # tok0: (1−0)²=1 vs clip(1, −.2, .2)=0.2 → 0.04 → 1; tok1: 1 vs 1 → 1; tok2: 0
    assert float(clipped_value_loss(v, old, R, torch.ones(1, 3))) == pytest.approx(0.5 * 2 / 3)
    # v moved away from R beyond the clip: the clipped term is larger and counts
    v = torch.tensor([[0.5]])
    old = torch.tensor([[0.0]])
    R = torch.tensor([[1.0]])
    assert float(clipped_value_loss(v, old, R, torch.ones(1, 1))) == pytest.approx(0.5 * 0.8**2)
    # (n, B, T) heads with a (B, T) mask
    vv = torch.full((2, 1, 3), 0.5)
    RR = torch.ones(2, 1, 3)
    loss = clipped_value_loss(vv, torch.zeros(2, 1, 3), RR, torch.tensor([[1, 1, 0]]))
    assert float(loss) == pytest.approx(0.5 * 0.8**2)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_equal_the_full_log_softmax_and_its_gradient(temperature):
    """The row-chunked chosen-logit-minus-logsumexp gives log softmax(logits / τ) at the targets, and the same
    gradient, for a batch that does not divide into the chunk size."""
    from pama.logprobs import token_logprobs

    torch.manual_seed(0)
    logits = torch.randn(5, 7, 50, requires_grad=True)
    targets = torch.randint(0, 50, (5, 7))
    want = torch.log_softmax(logits / temperature, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    got = token_logprobs(logits, targets, temperature, rows=2)
    assert torch.allclose(got, want, atol=1e-6)
    (g_want,) = torch.autograd.grad(want.sum(), logits)
    (g_got,) = torch.autograd.grad(got.sum(), logits)
    assert torch.allclose(g_got, g_want, atol=1e-6)
