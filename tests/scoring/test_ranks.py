"""Rank intervals with multiplicity adjustment against R.

Reference numbers from ``data/reference_ranks.R`` (R 4.2.2, base ``pt`` and
``p.adjust(method = "holm")``): seven units with given composites, standard
errors, df and covariances between shared raters.
"""

from __future__ import annotations

import numpy as np
import pytest

from scoring.composite import PartScore, composite_scores, pairwise_pvalues

X = [88.0, 84.5, 79.0, 76.0, 71.5, 70.0, 55.0]
SE = [2.0, 2.5, 3.0, 1.5, 2.0, 4.0, 3.0]
DF = [40, 35, 60, 80, 25, 30, 45]
COV = {("U1", "U2"): 2.0, ("U3", "U4"): -1.0}
UNITS = [f"U{j + 1}" for j in range(7)]
# reference_ranks.R: rank_low and rank_high of U1..U7
R_RANKS = {
    "pairwise": ([1, 1, 2, 3, 4, 3, 7], [2, 3, 5, 6, 6, 6, 7]),
    "marginal": ([1, 1, 1, 3, 3, 3, 7], [2, 3, 6, 6, 6, 6, 7]),
    "simultaneous": ([1, 1, 1, 2, 3, 2, 6], [3, 5, 6, 6, 6, 7, 7]),
}


def _cov(a, b):
    return COV.get((a, b), COV.get((b, a), 0.0))


def _track(ranks):
    parts = {"phone": {u: PartScore(u, x, se, float(df), 100, True)
                       for u, x, se, df in zip(UNITS, X, SE, DF, strict=True)}}
    return composite_scores("t", UNITS, {"phone": 1.0}, parts, covariances={"phone": _cov},
                            ranks=ranks)


@pytest.mark.parametrize("ranks", sorted(R_RANKS))
def test_rank_intervals_match_r(ranks):
    track = _track(ranks)
    low, high = R_RANKS[ranks]
    assert [track[u].rank_low for u in UNITS] == low
    assert [track[u].rank_high for u in UNITS] == high
    assert [track[u].rank for u in UNITS] == list(range(1, 8))
    assert track.ranks == ranks


def test_adjusted_intervals_contain_the_pairwise_ones():
    pair, marg, simu = (_track(r) for r in ("pairwise", "marginal", "simultaneous"))
    for u in UNITS:
        assert marg[u].rank_low <= pair[u].rank_low and marg[u].rank_high >= pair[u].rank_high
        assert simu[u].rank_low <= marg[u].rank_low and simu[u].rank_high >= marg[u].rank_high


def test_pairwise_pvalues_match_r():
    var = np.square(SE)
    cov = np.zeros((7, 7))
    cov[0, 1] = cov[1, 0] = 2.0
    cov[2, 3] = cov[3, 2] = -1.0
    p = pairwise_pvalues(np.array(X), var, cov, np.array(DF, dtype=float))
    assert p[0, 1] == pytest.approx(0.170315581165402, rel=1e-9)  # reference_ranks.R "p12"
    assert p[2, 3] == pytest.approx(0.413111015772497, rel=1e-9)  # "p34"
    np.testing.assert_allclose(p, p.T)


def test_unknown_coverage_is_refused():
    with pytest.raises(ValueError, match="'marginal', 'simultaneous' or 'pairwise'"):
        _track("bonferroni")
