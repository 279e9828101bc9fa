"""Balance statistics against R-computed reference numbers."""

from __future__ import annotations

import math

import pytest

from sampling.balance import BalanceError, kish, stratum_balance, unit_balance


def test_kish_matches_r():
    # R: w <- c(rep(17.5, 4), rep(3.2, 10), rep(40, 2))
    #    length(w) * sum(w^2) / sum(w)^2  -> 2.1868856418;  sum(w)^2 / sum(w^2) -> 7.3163405045
    w = [17.5] * 4 + [3.2] * 10 + [40] * 2
    k = kish(w)
    assert k.n == 16
    assert k.deff == pytest.approx(2.1868856418, abs=1e-9)
    assert k.n_eff == pytest.approx(7.3163405045, abs=1e-9)
    assert kish([5.0] * 7).deff == pytest.approx(1.0)
    empty = kish([])
    assert empty.n == 0 and math.isnan(empty.deff) and empty.n_eff == 0
    with pytest.raises(BalanceError, match="weights must be finite and >= 0, got -1.0"):
        kish([1.0, -1.0])


def test_stratum_table():
    rows = stratum_balance(
        frame_size={"a": 1000, "b": 500},
        target={"a": 100, "b": 50, "c": 0},
        drawn={"a": 110, "b": 55},
        released={"a": 100, "b": 40},
        completed={"a": 80, "b": 50},
    )
    assert [r.stratum for r in rows] == ["a", "b", "c"]
    a, b, c = rows
    assert (a.gap, a.relative_gap) == (-20, -0.2)
    assert (b.gap, b.relative_gap) == (0, 0.0)
    assert (c.frame_size, c.gap, c.relative_gap) == (0, 0, None)
    with pytest.raises(BalanceError, match="completed\\['a'\\] must be a whole number >= 0"):
        stratum_balance(frame_size={"a": 1}, target={"a": 1}, completed={"a": -1})


def test_unit_balance_matches_r_chisq_and_sorts_failures_first():
    # R: chisq.test(c(40, 45, 15), p = c(.3, .5, .2)) -> X-squared = 5.083333333,
    #    p-value = 0.07873506527
    shares = {"a": 0.3, "b": 0.5, "c": 0.2}
    assigned = {
        "ok": {"a": 40, "b": 45, "c": 15},
        "skewed": {"a": 90, "b": 5, "c": 5},
        "empty": {"a": 0, "b": 0, "c": 0},
        "perfect": {"a": 30, "b": 50, "c": 20},
    }
    rows = unit_balance(assigned, shares=shares, weights={"ok": [1, 1, 2, 2]})
    by_unit = {r.unit: r for r in rows}
    ok = by_unit["ok"]
    assert ok.chi2 == pytest.approx(5.083333333, abs=1e-8)
    assert ok.p_value == pytest.approx(0.07873506527, abs=1e-10)
    # dissimilarity: ½(|.40-.30| + |.45-.50| + |.15-.20|) = 0.10
    assert ok.dissimilarity == pytest.approx(0.10)
    assert ok.passed  # p >= 0.01 and 0.10 is not above 0.1
    assert ok.expected_assigned == pytest.approx((30, 50, 20))
    assert ok.kish is not None and ok.kish.deff == pytest.approx(4 * 10 / 36)
    assert [r.unit for r in rows[:2]] == ["empty", "skewed"]
    assert not by_unit["empty"].passed and by_unit["empty"].reason == "no raters"
    assert not by_unit["skewed"].passed and "chi-square" in by_unit["skewed"].reason
    assert by_unit["perfect"].p_value == pytest.approx(1.0)
    assert rows[-1].passed


def test_unit_balance_answered_and_per_unit_shares():
    assigned = {"w": {"res": 70, "dep": 10, "bus": 20}, "d": {"dep": 30, "bus": 70}}
    answered = {"w": {"res": 40, "dep": 2, "bus": 18}, "d": {"dep": 12, "bus": 28}}
    shares = {"w": {"res": 0.7, "dep": 0.1, "bus": 0.2}, "d": {"dep": 0.3, "bus": 0.7}}
    rows = {r.unit: r for r in unit_balance(assigned, answered=answered, shares=shares)}
    w = rows["w"]
    assert w.tested == "answered"
    assert w.groups == ("bus", "dep", "res")
    assert w.expected_answered == pytest.approx((12, 6, 42))
    # dissimilarity: ½(|18/60-.2| + |2/60-.1| + |40/60-.7|) = 0.1
    assert w.dissimilarity == pytest.approx(0.1)
    d = rows["d"]
    assert d.dissimilarity == pytest.approx(0.0)
    assert d.passed


def test_raters_from_a_group_with_no_share_fail():
    rows = unit_balance({"u": {"a": 10, "b": 1}}, shares={"a": 1.0, "b": 0.0})
    assert rows[0].p_value == 0.0 and not rows[0].passed
    assert "no expected share" in rows[0].reason


def test_dissimilarity_threshold_is_configurable():
    assigned = {"u": {"a": 60, "b": 40}}
    strict = unit_balance(
        assigned, shares={"a": 0.5, "b": 0.5}, alpha=0.001, max_dissimilarity=0.05
    )
    lax = unit_balance(assigned, shares={"a": 0.5, "b": 0.5}, alpha=0.001, max_dissimilarity=0.2)
    assert not strict[0].passed and "dissimilarity 0.100 > 0.05" in strict[0].reason
    assert lax[0].passed
    with pytest.raises(BalanceError, match="alpha must be between 0 and 1"):
        unit_balance(assigned, shares={"a": 1}, alpha=0)
