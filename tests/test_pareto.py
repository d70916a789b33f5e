"""Tests for pama/pareto.py on hand-computed cases (maximisation)."""

import itertools

import numpy as np
import pytest

from pama.pareto import front_order, hypervolume, non_dominated, normalise, pareto_front


def test_non_dominated_basic_ties_and_duplicates():
    P = np.array([[1, 3], [2, 2], [3, 1], [1, 1], [2, 2], [1, 3], [0.5, 3]])
    # [1,1] dominated; duplicates of front points all kept; [0.5,3] is dominated by [1,3] (tie in obj 2)
    assert non_dominated(P).tolist() == [True, True, True, False, True, True, False]
    # weak ties: [2,1] dominated by [2,2]; [3,1] is not
    assert non_dominated([[2, 2], [2, 1], [3, 1]]).tolist() == [True, False, True]


def test_non_dominated_edge_cases():
    assert non_dominated([[0.3, -5.0]]).tolist() == [True]
    assert non_dominated(np.zeros((0, 2))).tolist() == []
    assert non_dominated([]).tolist() == []
    assert non_dominated([[1, 1], [1, 1]]).tolist() == [True, True]
    assert non_dominated([[1.0], [2.0], [2.0]]).tolist() == [False, True, True]
    with pytest.raises(ValueError):
        non_dominated([[1.0, float("nan")]])
    with pytest.raises(ValueError):
        non_dominated([1.0, 2.0])


def test_non_dominated_three_objectives_cube():
    corners = np.array(list(itertools.product([0, 1], repeat=3)), dtype=float)
    mask = non_dominated(corners)
    assert mask.tolist() == [c.tolist() == [1, 1, 1] for c in corners]
    # the three unit vectors and their midpoints: no one dominates another
    P = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0.4, 0.4, 0]])
    assert non_dominated(P).tolist() == [True, True, True, True, False]
    assert pareto_front(P).shape == (4, 3)
    # 4 objectives
    Q = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    assert non_dominated(Q).tolist() == [False, False, False, True]


def test_hypervolume_2d_rectangles():
    # union of [0,1]x[0,3], [0,2]x[0,2], [0,3]x[0,1] = 3 + 1 + 1 + ... computed: 1·3 + 1·2 + 1·1 = 6
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [0, 0]) == pytest.approx(6.0)
    # dominated and duplicate points add nothing
    assert hypervolume([[1, 3], [2, 2], [3, 1], [1, 1], [2, 2]], [0, 0]) == pytest.approx(6.0)
    # shifted reference: [0.5,1]x... → (1−.5)(3−.5) + (2−1)(2−.5) + (3−2)(1−.5) = 1.25 + 1.5 + 0.5
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [0.5, 0.5]) == pytest.approx(3.25)
    assert hypervolume([[2, 2]], [-1, 0]) == pytest.approx(6.0)


def test_hypervolume_reference_handling():
    # points not strictly better than the reference in every objective contribute nothing
    assert hypervolume([[1, 0], [0, 5]], [0, 0]) == 0.0
    assert hypervolume([[1, 0], [2, 2]], [0, 0]) == pytest.approx(4.0)
    assert hypervolume([[-1, 5], [2, 2]], [0, 0]) == pytest.approx(4.0)
    assert hypervolume(np.zeros((0, 2)), [0, 0]) == 0.0
    assert hypervolume([], [0, 0]) == 0.0
    with pytest.raises(ValueError):
        hypervolume([[1, 2, 3]], [0, 0])


def test_hypervolume_3d():
    assert hypervolume([[1, 1, 1]], [0, 0, 0]) == pytest.approx(1.0)
    assert hypervolume([[2, 3, 4]], [1, 1, 1]) == pytest.approx(1 * 2 * 3)
    # two boxes [0,2]x[0,1]x[0,1] and [0,1]x[0,2]x[0,1]: 2 + 2 − 1 (overlap [0,1]^3) = 3
    assert hypervolume([[2, 1, 1], [1, 2, 1]], [0, 0, 0]) == pytest.approx(3.0)
    # three unit-length boxes along each axis of size 2x1x1 etc.: 2+2+2 − 3·1 + 1 = 4
    assert hypervolume([[2, 1, 1], [1, 2, 1], [1, 1, 2]], [0, 0, 0]) == pytest.approx(4.0)
    corners = np.array(list(itertools.product([0, 1], repeat=3)), dtype=float)
    assert hypervolume(corners, [-1, -1, -1]) == pytest.approx(8.0)


def test_front_order():
    P = np.array([[3, 1], [1, 3], [0, 0], [2, 2], [2, 2]])
    assert front_order(P).tolist() == [1, 3, 4, 0]
    assert front_order([[1, 1]]).tolist() == [0]
    assert front_order([]).tolist() == []
    # 3 objectives: sorted by the first objective, ties by the second (descending)
    assert front_order([[1, 0, 0], [0, 1, 0], [0, 0, 1]]).tolist() == [1, 2, 0]


def test_normalise():
    P = np.array([[0.0, 10.0], [5.0, 20.0], [12.0, 0.0]])
    out = normalise(P, [0, 0], [10, 20])
    np.testing.assert_allclose(out, [[0.0, 0.5], [0.5, 1.0], [1.2, 0.0]])  # outside the bounds → outside [0, 1]
    np.testing.assert_allclose(normalise(P, [0, 0], [10, 20], clip=True), [[0.0, 0.5], [0.5, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(normalise([1.0, -1.0], [-1, -2], [3, 2]), [0.5, 0.25])
    with pytest.raises(ValueError, match="upper must be > lower"):
        normalise(P, [0, 5], [10, 5])
    with pytest.raises(ValueError, match="one value per objective"):
        normalise(P, [0], [1])
    # hypervolume is invariant to objective scale after normalising
    hv = hypervolume(normalise([[1, 30], [2, 20], [3, 10]], [0, 0], [4, 40]), [0, 0])
    assert hv == pytest.approx(hypervolume([[1, 3], [2, 2], [3, 1]], [0, 0]) / 16)
