"""Per-unit scores against R survey on a small multi-unit fixture."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from scoring.scale import RatingScale
from scoring.units import RespondentMargin, score_units

DATA = Path(__file__).parent / "data"
POP = {"A": 500, "B": 300, "C": 200}

# From tests/scoring/data/reference.R (R survey 4.1.1): per unit
# n = nrow(subset), svymean, SE, degf, confint(df = degf), then
# svyciprop(method = "beta") estimate and interval, svyciprop(method = "logit") interval.
R_UNITS = {
    "U1": (22, 81.3471502590674, 5.1656706578201, 19, 70.5352773150987, 92.159023203036,
           0.958549222797927, 0.791034804687561, 0.998918362429753, 0.736356467645276, 0.994804287051344),
    "U2": (22, 64.2268041237113, 8.17189064107121, 19, 47.1228404419552, 81.3307678054675,
           0.768041237113402, 0.542338957126186, 0.918416456108789, 0.537777139156944, 0.904059811024107),
    "U3": (26, 80.704845814978, 5.05067086947502, 23, 70.2567370831167, 91.1529545468393,
           0.960352422907489, 0.801158253605787, 0.998915689192874, 0.752412605622571, 0.994847050550959),
    "U4": (24, 70.2369668246446, 7.23992030976707, 21, 55.1807283137278, 85.2932053355613,
           0.838862559241706, 0.636131006237857, 0.954537191632066, 0.626407858674607, 0.941736045158725),
}


def _columns():
    with open(DATA / "units_small.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [[r[k] for r in rows] for k in ("respondent_id", "stratum", "unit", "rating")]


@pytest.mark.parametrize("unit", sorted(R_UNITS))
def test_units_match_r_survey(unit):
    scores = score_units(*_columns(), POP)
    got = scores[unit]
    n, mean, se, df, lo, hi, sat, slo, shi, _, _ = R_UNITS[unit]
    assert (got.n, got.df) == (n, df)
    for value, ref in ((got.score, mean), (got.se, se), (got.ci_low, lo), (got.ci_high, hi),
                       (got.sat, sat), (got.sat_low, slo), (got.sat_high, shi)):
        assert value == pytest.approx(ref, abs=1e-6)
    assert got.reliable is False  # fewer than 30 raters


@pytest.mark.parametrize("unit", sorted(R_UNITS))
def test_logit_interval_matches_svyciprop(unit):
    got = score_units(*_columns(), POP, ci_method="logit")[unit]
    *_, llo, lhi = R_UNITS[unit]
    assert got.sat_low == pytest.approx(llo, abs=1e-6)
    assert got.sat_high == pytest.approx(lhi, abs=1e-6)


def test_covariance_between_units_matches_svyratio():
    scores = score_units(*_columns(), POP)
    # reference.R: vcov(svyratio(~a_U1 + a_U2, ~d_U1 + d_U2, des, covmat = TRUE))[1, 4]
    assert scores.cov("U1", "U2") == pytest.approx(-0.917480894975418, abs=1e-6)
    np.testing.assert_allclose(np.diag(scores.covariance), [u.se**2 for u in scores], rtol=1e-12)


def _margins(ids):
    group = {i: ("g1" if int(i[1:]) % 2 == 0 else "g2") for i in ids}
    town = {i: ["t1", "t2", "t3"][int(i[1:]) % 3] for i in ids}
    return group, town


def test_raked_scores_match_r_calibrate():
    cols = _columns()
    group, town = _margins(set(cols[0]))
    scores = score_units(*cols, POP, margins=[
        RespondentMargin("group", group, {"g1": 600, "g2": 400}),
        RespondentMargin("town", town, {"t1": 300, "t2": 300, "t3": 400}),
    ])
    # reference.R: calibrate(des, ~group + town, ..., calfun = "raking"), svymean on subset.
    assert scores["U1"].score == pytest.approx(81.0354363244891, abs=1e-6)
    assert scores["U1"].se == pytest.approx(4.95159807580858, abs=1e-6)


def test_post_stratified_scores_match_r_poststratify():
    cols = _columns()
    _, town = _margins(set(cols[0]))
    scores = score_units(*cols, POP, margins=[
        RespondentMargin("town", town, {"t1": 300, "t2": 300, "t3": 400})])
    # reference.R: postStratify(des, ~town, ...), svymean on subset.
    assert scores["U2"].score == pytest.approx(65.1717060077366, abs=1e-6)
    assert scores["U2"].se == pytest.approx(7.8671988667857, abs=1e-6)


def test_without_fpc_matches_r():
    scores = score_units(*_columns(), POP, fpc=False)
    # reference.R: svydesign without fpc, svymean(~y_U3) on subset: 80.704845814978, 5.15676024290502
    assert scores["U3"].score == pytest.approx(80.704845814978, abs=1e-6)
    assert scores["U3"].se == pytest.approx(5.15676024290502, abs=1e-6)


def test_min_raters_marks_reliability():
    scores = score_units(*_columns(), POP, min_raters=24)
    assert [u.reliable for u in scores] == [False, False, True, True]


def test_dont_know_is_outside_but_respondent_counts_in_stratum():
    rid = ["a", "b", "c", "d", "a", "b"]
    stratum = ["s", "s", "s", "s", "s", "s"]
    unit = ["U", "U", "U", "U", "V", "V"]
    rating = ["1", "3", "0", "0", "2", "2"]
    scores = score_units(rid, stratum, unit, rating, {"s": 8})
    u = scores["U"]
    assert u.n == 2 and u.score == 50.0 and u.sat == 0.5
    # z = (±50/2) on two of four respondents, 0 on the two others; n_h = 4, N_h = 8:
    # V = (1 - 4/8)·4/3·Σ(z - z̄)² with z̄ = 0: 0.5·4/3·(625 + 625).
    assert u.se == pytest.approx(math.sqrt(0.5 * 4 / 3 * 1250))
    v = scores["V"]
    assert v.score == 60.0 and v.se == 0.0 and v.sat == 1.0
    assert (v.ci_low, v.ci_high) == (60.0, 60.0)
    assert v.sat_high == 1.0 and v.sat_low == pytest.approx(0.025 ** 0.5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="rating '7' is not on the scale"):
        score_units(["a", "b"], ["s", "s"], ["U", "U"], ["1", "7"], {"s": 5})
    with pytest.raises(ValueError, match="respondent 'a' is in two strata: 's' and 't'"):
        score_units(["a", "a", "b", "c"], ["s", "t", "s", "t"], ["U", "V", "U", "U"],
                    ["1", "1", "1", "1"], {"s": 5, "t": 5})
    with pytest.raises(ValueError, match="respondent 'a' rated unit 'U' more than once"):
        score_units(["a", "a", "b"], ["s", "s", "s"], ["U", "U", "U"], ["1", "2", "1"], {"s": 5})


def test_custom_scale_from_config_like_options():
    class Opt:
        def __init__(self, key, points, satisfied):
            self.key, self.points, self.satisfied = key, points, satisfied
            self.label, self.label_en = f"k{key}", f"k{key}"

    scale = RatingScale.from_options([Opt(1, 10.0, True), Opt(2, 5.0, False), Opt(9, None, False)])
    assert scale.points == {"1": 10.0, "2": 5.0, "9": None}
    scores = score_units(["a", "b", "c"], ["s"] * 3, ["U"] * 3, [1, 2, 9], {"s": 10}, scale=scale)
    assert scores["U"].n == 2 and scores["U"].score == 7.5 and scores["U"].sat == 0.5
    with pytest.raises(ValueError, match="satisfied key '3' is not a key"):
        RatingScale(points={"1": 1.0}, satisfied=frozenset({"3"}), labels={})
    with pytest.raises(ValueError, match="scale key '1' appears twice"):
        RatingScale.from_options([{"key": "1", "points": 1, "satisfied": True},
                                  {"key": 1, "points": 0, "satisfied": False}])


def test_bootstrap_variance_option_is_seeded():
    a = score_units(*_columns(), POP, variance="bootstrap", replicates=400, rng=np.random.default_rng(3))
    b = score_units(*_columns(), POP, variance="bootstrap", replicates=400, rng=np.random.default_rng(3))
    lin = score_units(*_columns(), POP)
    assert [u.se for u in a] == [u.se for u in b]
    for boot, ref in zip(a, lin, strict=True):
        assert boot.score == ref.score
        assert boot.se == pytest.approx(ref.se, rel=0.25)
    with pytest.raises(ValueError, match="needs rng"):
        score_units(*_columns(), POP, variance="bootstrap")


def test_unit_with_only_dont_know_has_no_score():
    scores = score_units(["a", "b", "c", "a", "b"], ["s"] * 5, ["U", "U", "U", "V", "V"],
                         ["1", "3", "1", "0", "0"], {"s": 10})
    v = scores["V"]
    assert v.n == 0 and not v.reliable
    assert all(math.isnan(x) for x in (v.score, v.se, v.ci_low, v.sat, v.sat_low))
    d = v.as_dict()
    assert d["score"] is None and d["sat_high"] is None and d["n"] == 0
    assert scores.as_dict()["units"][0]["unit"] == "U"
    with pytest.raises(KeyError, match="'W' has no ratings"):
        scores["W"]
