"""Allocation: published numbers, rounding, bounds, errors, two-way controlled rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sampling.allocation import (
    AllocationError,
    allocate,
    allocate_two_way,
    controlled_round,
    largest_remainder,
)

# R package `stratallo` README: N = (3000, 4000, 5000, 2000), S = (48, 79, 76, 16),
# n = 190; opt(n, a = N * S) gives 31.376147 68.853211 82.798165 6.972477.
STRATALLO_N = [3000, 4000, 5000, 2000]
STRATALLO_S = [48, 79, 76, 16]
STRATALLO_REAL = [31.376147, 68.853211, 82.798165, 6.972477]


def test_neyman_matches_stratallo_readme():
    a = allocate(STRATALLO_N, 190, method="neyman", S=STRATALLO_S)
    assert a.real == pytest.approx(STRATALLO_REAL, abs=1e-6)
    assert a.counts == (31, 69, 83, 7)
    assert a.method == "neyman"
    assert a.S == (48.0, 79.0, 76.0, 16.0)


def test_neyman_with_upper_bound_is_recursive():
    # Upper bounds M = (100, 90, 70, 80): stratum 3's Neyman share 82.8 > 70, so it is
    # held at 70 and the remaining 120 are Neyman-allocated over strata 1, 2, 4
    # (Cochran 1977 §5.9): 120 * N_h S_h / (144000 + 316000 + 32000).
    a = allocate(STRATALLO_N, 190, method="neyman", S=STRATALLO_S, upper=[100, 90, 70, 80])
    assert a.real == pytest.approx([35.121951, 77.073171, 70.0, 7.804878], abs=1e-6)
    assert sum(a.counts) == 190
    assert a.counts[2] == 70


def test_neyman_with_lower_bounds():
    # Lower bounds (50, 0, 0, 20) bind strata 1 and 4 (31.4 < 50, 7.0 < 20); the other
    # 120 go to strata 2 and 3 in proportion 316000 : 380000.
    a = allocate(STRATALLO_N, 190, method="neyman", S=STRATALLO_S, lower=[50, 0, 0, 20])
    assert a.real == pytest.approx([50, 120 * 316 / 696, 120 * 380 / 696, 20], abs=1e-9)
    assert a.counts == (50, 54, 66, 20)


def test_proportional_default_size_and_mapping_labels():
    N = {"residents": 700_000, "deputies": 5_000, "business": 60_000}
    a = allocate(N, 2020)
    assert a.strata == ("residents", "deputies", "business")
    assert sum(a.counts) == 2020
    # 2020 * 700000 / 765000 = 1848.366..., 13.202..., 158.431...
    assert a.real == pytest.approx([1848.3660131, 13.2026144, 158.4313725], abs=1e-6)
    assert a.as_dict() == {"residents": 1848, "deputies": 13, "business": 159}


def test_equal_allocation_caps_small_strata():
    a = allocate([3, 100, 100], 30, method="equal")
    assert a.real == pytest.approx([3, 13.5, 13.5])
    assert sum(a.counts) == 30 and a.counts[0] == 3


def test_fixed_counts():
    a = allocate({"a": 10, "b": 20}, 12, method="fixed", fixed={"a": 5, "b": 7})
    assert a.counts == (5, 7)
    with pytest.raises(AllocationError, match="sum to 11, not the sample size 12"):
        allocate({"a": 10, "b": 20}, 12, method="fixed", fixed={"a": 5, "b": 6})
    with pytest.raises(
        AllocationError, match="stratum 'a': fixed count 11 is above the stratum size 10"
    ):
        allocate({"a": 10, "b": 20}, 12, method="fixed", fixed={"a": 11, "b": 1})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"N": [10, 10], "n": 21}, "sample size 21 is larger than the frame \\(20 contacts\\)"),
        (
            {"N": [10, 10], "n": 10, "upper": [4, 4]},
            "larger than the sum of the upper bounds \\(8\\)",
        ),
        (
            {"N": [10, 10], "n": 10, "lower": [6, 6]},
            "smaller than the sum of the lower bounds \\(12\\)",
        ),
        (
            {"N": [10, 10], "n": 5, "lower": [11, 0]},
            "stratum 0: lower bound 11 is above the stratum size 10",
        ),
        (
            {"N": [10, 10], "n": 5, "lower": [3, 0], "upper": [2, 9]},
            "lower bound 3 is above upper bound 2",
        ),
        ({"N": [10, 10], "n": 5, "method": "neyman"}, "needs prior standard deviations S"),
        (
            {"N": [10, 10], "n": 5, "method": "neyman", "S": [1, -2]},
            "S\\[1\\] must be a finite number >= 0",
        ),
        ({"N": [10, -1], "n": 5}, "N\\[1\\] must be at least 0, got -1"),
        ({"N": [10, 10], "n": -5}, "sample size n must be at least 0"),
        ({"N": [10, 10], "n": 5, "method": "optimal"}, "unknown allocation method 'optimal'"),
        (
            {"N": [10, 10], "n": 5, "S": [1, 2, 3], "method": "neyman"},
            "S has 3 values but there are 2 strata",
        ),
        ({"N": [], "n": 0}, "no strata"),
    ],
)
def test_clear_errors(kwargs, message):
    with pytest.raises(AllocationError, match=message):
        allocate(**kwargs)


def test_largest_remainder_is_hamilton():
    # Hamilton's method on 10 seats, quotas 4.6, 3.3, 2.1: floors 4+3+2 = 9, the last
    # seat goes to the largest remainder (0.6).
    assert list(largest_remainder([4.6, 3.3, 2.1], 10)) == [5, 3, 2]


def test_zero_weight_strata_take_what_is_left():
    # Neyman with S = 0 in stratum 2: it stays at 0 until stratum 1 is full.
    a = allocate([5, 10], 8, method="neyman", S=[1, 0])
    assert a.counts == (5, 3)
    assert math.isclose(sum(a.real), 8)


@st.composite
def allocation_problems(draw):
    H = draw(st.integers(1, 8))
    N = draw(st.lists(st.integers(0, 5000), min_size=H, max_size=H))
    assume(sum(N) > 0)
    lower = [draw(st.integers(0, min(v, 30))) for v in N]
    upper = [draw(st.integers(lo, v)) for lo, v in zip(lower, N, strict=True)]
    assume(sum(lower) <= sum(upper))
    n = draw(st.integers(sum(lower), sum(upper)))
    method = draw(st.sampled_from(["proportional", "equal", "neyman"]))
    S = draw(st.lists(st.floats(0, 100, allow_nan=False), min_size=H, max_size=H))
    return N, n, method, S, lower, upper


@settings(max_examples=300, deadline=None)
@given(allocation_problems())
def test_property_sum_and_bounds(problem):
    N, n, method, S, lower, upper = problem
    a = allocate(N, n, method=method, S=S if method == "neyman" else None, lower=lower, upper=upper)
    assert sum(a.counts) == n
    assert math.isclose(sum(a.real), n, rel_tol=1e-9, abs_tol=1e-6)
    for h in range(len(N)):
        assert lower[h] <= a.counts[h] <= upper[h] <= N[h]
        assert lower[h] - 1e-9 <= a.real[h] <= upper[h] + 1e-9
        assert a.counts[h] in (math.floor(a.real[h] + 1e-9), math.ceil(a.real[h] - 1e-9))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 10**6), min_size=2, max_size=6),
    st.lists(st.floats(0.1, 50), min_size=6, max_size=6),
    st.data(),
)
def test_property_unbounded_neyman_is_proportional_to_NS(N, S, data):
    S = S[: len(N)]
    n = data.draw(st.integers(0, min(sum(N), 5000)))
    a = allocate(N, n, method="neyman", S=S)
    ideal = np.array(N) * np.array(S) * n / np.dot(N, S)
    if np.all(ideal <= np.array(N)):
        assert a.real == pytest.approx(list(ideal), rel=1e-9, abs=1e-9)


# ---------------------------------------------------------------------------
# two-way


def _check_controlled(real, counts, n, N=None):
    real = np.asarray(real, dtype=float)
    counts = np.asarray(counts)
    assert counts.sum() == n
    tol = 1e-7
    assert np.all(counts >= np.floor(real + tol)) and np.all(counts <= np.ceil(real - tol))
    for got, r in ((counts.sum(axis=1), real.sum(axis=1)), (counts.sum(axis=0), real.sum(axis=0))):
        assert np.all(got >= np.floor(r + tol)) and np.all(got <= np.ceil(r - tol))
    if N is not None:
        assert np.all(counts <= np.asarray(N))


def test_two_way_keeps_both_margins():
    N = [[300, 200, 100], [50, 60, 70], [5, 9, 1000]]
    t = allocate_two_way(N, 101, rows=["r", "d", "b"], cols=["t1", "t2", "t3"])
    _check_controlled(t.real, t.counts, 101, N)
    assert sum(t.row_totals) == sum(t.col_totals) == 101
    assert t.as_dict()[("b", "t3")] == t.counts[2][2]


def test_two_way_diagonal_needs_joint_rounding():
    # Rounding margins independently could give rows (1, 0) and columns (0, 1), which no
    # table with zero off-diagonal cells can meet; controlled rounding picks them jointly.
    t = allocate_two_way([[10, 0], [0, 10]], 1)
    assert t.counts in (((1, 0), (0, 0)), ((0, 0), (0, 1)))
    _check_controlled(t.real, t.counts, 1)


def test_two_way_row_totals_spread_by_town():
    N = [[100, 300], [50, 50]]
    t = allocate_two_way(N, 10, row_totals=[7, 3])
    assert t.method == "row_totals"
    assert t.row_totals == (7, 3)
    assert t.real[0] == pytest.approx((1.75, 5.25))
    _check_controlled(t.real, t.counts, 10, N)
    with pytest.raises(AllocationError, match="group 1: total 200 is above its frame size 100"):
        allocate_two_way(N, 210, row_totals=[10, 200])


def test_two_way_cell_bounds_and_errors():
    N = [[3, 0], [4, 10]]
    t = allocate_two_way(N, 15, method="equal")
    assert t.counts == ((3, 0), (4, 8))
    with pytest.raises(AllocationError, match="larger than the frame"):
        allocate_two_way(N, 18)
    with pytest.raises(AllocationError, match="S must be a 2 × 2 table"):
        allocate_two_way(N, 5, method="neyman", S=[1, 2])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 8),
    st.data(),
)
def test_property_two_way_margins(R, C, data):
    N = np.array(data.draw(st.lists(st.integers(0, 400), min_size=R * C, max_size=R * C))).reshape(
        R, C
    )
    assume(N.sum() > 0)
    n = data.draw(st.integers(0, int(N.sum())))
    method = data.draw(st.sampled_from(["proportional", "equal", "neyman"]))
    S = None
    if method == "neyman":
        S = np.array(data.draw(st.lists(st.floats(0, 20), min_size=R * C, max_size=R * C))).reshape(
            R, C
        )
    t = allocate_two_way(N, n, method=method, S=S)
    _check_controlled(t.real, t.counts, n, N)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_property_controlled_round_any_matrix(R, C, data):
    raw = np.array(data.draw(st.lists(st.floats(0, 50), min_size=R * C, max_size=R * C)))
    raw = raw.reshape(R, C)
    total = data.draw(st.integers(0, 300))
    assume(raw.sum() > 0)
    real = raw * total / raw.sum()
    _check_controlled(real, controlled_round(real, total), total)
