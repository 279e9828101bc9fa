"""Composite scores, flags and rank intervals on hand-computed fixtures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from scoring.composite import (
    PartScore,
    adjust_pvalues,
    assessment_scores,
    composite_scores,
    deduction_totals,
    online_scores,
)


def phone(unit, score, se, df, n):
    return PartScore(unit, score, se, df, n, True)


# Windows track: 0.7 phone + 0.3 online.  W4 has no online votes; W5 appears
# only in the inspection records (deductions only).
PHONE = {
    "W1": phone("W1", 90.0, 2.0, 40, 50),
    "W2": phone("W2", 68.0, 1.0, 60, 60),
    "W3": phone("W3", 72.0, 4.0, 30, 40),
    "W4": phone("W4", 81.5, 4.0, 35, 45),
}
VOTES = (
    ["W1", "W1", "W1", "W2", "W2", "W2", "W3", "W3", "W3"],
    ["1", "2", "3", "1", "2", "3", "1", "2", "0"],
    [80, 20, 0, 10, 30, 60, 50, 50, 999],
)
INSPECTIONS = (["W1", "W1", "W3", "W5", "W5"], [0.5, 1.0, 0.1, 1.0, 1.0])
# Phone covariance between units sharing raters: only W1 and W4 share any.
PHONE_COV = {("W1", "W4"): 4.0}


def cov(a, b):
    return PHONE_COV.get((a, b), PHONE_COV.get((b, a), 0.0))


def windows(**kwargs):
    return composite_scores(
        "windows", ["W1", "W2", "W3", "W4", "W5"], {"phone": 0.7, "online": 0.3},
        {"phone": PHONE, "online": online_scores(*VOTES)},
        deduction_totals(*INSPECTIONS), **kwargs)


def test_part_scores_by_hand():
    online = online_scores(*VOTES)
    # W1: (80·100 + 20·60 + 0·0)/100 = 92; W2: (1000 + 1800)/100 = 28;
    # W3: (5000 + 3000)/100 = 80 (the 999 "don't know" votes are outside).
    assert {u: p.score for u, p in online.items()} == {"W1": 92.0, "W2": 28.0, "W3": 80.0}
    assert all(p.se == 0.0 and not p.sampled for p in online.values())
    assert deduction_totals(*INSPECTIONS) == {"W1": 1.5, "W3": 0.1, "W5": 2.0}
    ballots = assessment_scores(["D1", "D1", "D1", "D1", "D2"], ["1", "1", "2", "3", "0"])
    # D1: points 100, 100, 60, 0: mean 65, s² = 6700/3, SE = s/2, df 3.  D2: only "don't know".
    assert list(ballots) == ["D1"]
    assert ballots["D1"].score == 65.0
    assert ballots["D1"].se == pytest.approx(math.sqrt(6700 / 3) / 2)
    assert (ballots["D1"].df, ballots["D1"].n) == (3, 4)


def test_composites_by_hand():
    track = windows(covariances={"phone": cov})
    w1, w2, w3, w4, w5 = (track[u] for u in ["W1", "W2", "W3", "W4", "W5"])
    # W1 = 0.7·90 + 0.3·92 − 1.5 = 89.1, SE = 0.7·2
    assert w1.composite == pytest.approx(89.1)
    assert w1.se == pytest.approx(1.4)
    assert w1.df == 40
    t40 = stats.t.ppf(0.975, 40)
    assert (w1.ci_low, w1.ci_high) == (pytest.approx(89.1 - t40 * 1.4), pytest.approx(89.1 + t40 * 1.4))
    # W2 = 0.7·68 + 0.3·28 = 56, SE 0.7
    assert (w2.composite, w2.se) == (pytest.approx(56.0), pytest.approx(0.7))
    # W3 = 0.7·72 + 0.3·80 − 0.1 = 74.3, SE 2.8
    assert (w3.composite, w3.se) == (pytest.approx(74.3), pytest.approx(2.8))
    assert w3.status == "ok" and w3.complete
    # W4 has no online votes: renormalised over the phone part alone, 81.5, SE 4.
    assert w4.status == "incomplete" and w4.missing == ("online",)
    assert dict(w4.weights) == {"phone": 1.0}
    assert (w4.composite, w4.se, w4.df) == (81.5, 4.0, 35)
    # W5 has deductions only: no composite, deductions kept, not flagged or ranked.
    assert w5.status == "no-score" and math.isnan(w5.composite)
    assert w5.deduction == 2.0
    assert (w5.flag, w5.rank, w5.rank_low, w5.rank_high) == (None, None, None, None)


def test_flags_by_hand():
    track = windows(covariances={"phone": cov})
    # W2: (56 − 70)/0.7 = −20: far below, below even after Holm.
    assert track["W2"].flag == "below"
    # W3: 74.3 − t30·2.8 = 68.58 < 70 ≤ 74.3: possibly below.
    assert track["W3"].ci_low < 70 < track["W3"].composite
    assert track["W3"].flag == "possibly-below"
    # W1 and W4 (81.5 − t35·4 = 73.4) are clear of 70.
    assert track["W1"].flag is None and track["W4"].flag is None
    assert track["W3"].p_below == pytest.approx(stats.t.cdf(4.3 / 2.8, 30))


def test_holm_turns_a_marginal_below_into_possibly_below():
    parts = {"phone": {"A": phone("A", 66.0, 2.0, 1000, 100),
                       "B": phone("B", 90.0, 2.0, 1000, 100)}}
    p_a = stats.t.cdf(-2.0, 1000)  # 0.0229 < 0.025
    plain = composite_scores("t", ["A", "B"], {"phone": 1.0}, parts, correction="none")
    assert plain["A"].ci_high < 70
    assert plain["A"].flag == "below"
    holm = composite_scores("t", ["A", "B"], {"phone": 1.0}, parts, correction="holm")
    # Holm with two tests: 2·0.0229 = 0.0458 ≥ 0.025.
    assert holm["A"].p_adjusted == pytest.approx(2 * p_a)
    assert holm["A"].flag == "possibly-below"
    bh = composite_scores("t", ["A", "B"], {"phone": 1.0}, parts, correction="bh")
    assert bh["A"].p_adjusted == pytest.approx(2 * p_a)  # BH: p(1)·m/1


def test_adjust_pvalues_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005·4, 0.01·3, 0.03·2, 0.04·1 with running max.
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    # BH: sorted 0.005·4/1, 0.01·4/2, 0.03·4/3, 0.04·4/4 with running min from the top.
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "none"), p)
    with pytest.raises(ValueError, match="'bonferroni'"):
        adjust_pvalues(p, "bonferroni")


def test_rank_intervals_use_the_covariance():
    # Pairwise comparisons without multiplicity adjustment, checked by hand.
    track = windows(covariances={"phone": cov}, ranks="pairwise")
    # Composites 89.1, 56, 74.3, 81.5 → ranks 1, 4, 3, 2.
    # W1 − W4 = 7.6; Var = 1.96 + 16 − 2·0.7·1·4 = 12.36; t35·√12.36 = 7.14 < 7.6: W1 clearly above W4.
    # W3 − W4: Var 7.84 + 16, t30·4.88 = 9.97 > 7.2: not clear.  Every other pair is clear.
    got = {u.unit: (u.rank, u.rank_low, u.rank_high) for u in track if u.rank is not None}
    assert got == {"W1": (1, 1, 1), "W4": (2, 2, 3), "W3": (3, 2, 3), "W2": (4, 4, 4)}
    # Without the covariance, t35·√17.96 = 8.60 > 7.6: W1 and W4 overlap.
    plain = windows(ranks="pairwise")
    assert (plain["W1"].rank_low, plain["W1"].rank_high) == (1, 2)
    assert (plain["W4"].rank_low, plain["W4"].rank_high) == (1, 3)


def test_missing_part_excluded_when_asked():
    track = windows(covariances={"phone": cov}, missing="exclude")
    w4 = track["W4"]
    assert w4.status == "incomplete" and math.isnan(w4.composite)
    assert (w4.flag, w4.rank) == (None, None)
    got = {u.unit: (u.rank, u.rank_low, u.rank_high) for u in track if u.rank is not None}
    assert got == {"W1": (1, 1, 1), "W3": (2, 2, 2), "W2": (3, 3, 3)}


def test_two_sampled_parts_add_variances_with_satterthwaite_df():
    ballots = assessment_scores(["D1"] * 4, ["1", "1", "2", "3"])
    parts = {"phone": {"D1": phone("D1", 80.0, 3.0, 50, 60)}, "assessment": ballots}
    track = composite_scores("departments", ["D1"], {"phone": 0.5, "assessment": 0.5}, parts,
                             min_raters=4)
    d1 = track["D1"]
    v_phone, v_assess = 0.25 * 9.0, 0.25 * 6700 / 3 / 4
    assert d1.composite == pytest.approx(0.5 * 80 + 0.5 * 65)
    assert d1.se == pytest.approx(math.sqrt(v_phone + v_assess))
    assert d1.df == pytest.approx((v_phone + v_assess) ** 2 / (v_phone**2 / 50 + v_assess**2 / 3))
    assert d1.reliable and d1.rank == 1
    strict = composite_scores("departments", ["D1"], {"phone": 0.5, "assessment": 0.5}, parts)
    assert not strict["D1"].reliable and strict["D1"].rank is None  # 4 ballots < 30


def test_bad_weights_and_parts():
    with pytest.raises(ValueError, match="sum to 1"):
        composite_scores("t", ["A"], {"phone": 0.5, "online": 0.3}, {"phone": {}, "online": {}})
    with pytest.raises(ValueError, match="no scores given for part 'online'"):
        composite_scores("t", ["A"], {"phone": 0.7, "online": 0.3}, {"phone": {}})


def test_as_dict_is_plain_json():
    import json

    track = windows(covariances={"phone": cov})
    data = [u.as_dict() for u in track]
    text = json.dumps(data)
    w5 = next(d for d in data if d["unit"] == "W5")
    assert w5["composite"] is None and w5["status"] == "no-score" and w5["deduction"] == 2.0
    w4 = next(d for d in data if d["unit"] == "W4")
    assert w4["missing"] == ["online"] and w4["weights"] == {"phone": 1.0}
    assert "NaN" not in text
    with pytest.raises(KeyError, match="not in track 'windows'"):
        track["X"]
