"""Estimators against published and R-computed reference numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.estimators import (
    Margin,
    RakingError,
    StratifiedDesign,
    bootstrap_weights,
    proportion_interval,
    rake,
    weighting_deff,
)

DATA = Path(__file__).parent / "data"

# R survey, tests/fpc.R data (reference/statistics.md): stratum 1 N = 15, stratum 2 N = 12.
FPC_X = np.array([2.8, 4.1, 6.8, 6.8, 9.2, 3.7, 6.6, 4.2])
FPC_STRATA = [1, 1, 1, 1, 1, 2, 2, 2]
FPC_N = {1: 15, 2: 12}


@pytest.mark.parametrize(
    ("fpc", "domain", "mean", "se"),
    [
        # Published in R survey tests/fpc.R (see reference/statistics.md).
        (False, None, 5.448148, 0.7412683),
        (True, None, 5.448148, 0.6160407),
        (False, "gt4", 6.195, 0.7555129),
        (True, "gt4", 6.195, 0.6301110),
        (False, "le4", 3.314286, 0.3117042),
        (True, "le4", 3.314286, 0.2623382),
    ],
)
def test_fpc_example_matches_r_survey(fpc, domain, mean, se):
    design = StratifiedDesign(FPC_STRATA, FPC_N, fpc=fpc)
    mask = {None: None, "gt4": FPC_X > 4, "le4": FPC_X <= 4}[domain]
    result = design.domain_mean(FPC_X, mask)
    assert result.estimate == pytest.approx(mean, abs=1e-6)
    assert result.se == pytest.approx(se, abs=1e-6)


def test_fpc_weights_are_n_over_n():
    design = StratifiedDesign(FPC_STRATA, FPC_N)
    np.testing.assert_allclose(design.weights, [3, 3, 3, 3, 3, 4, 4, 4])


def _apistrat():
    with open(DATA / "apistrat.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    stype = np.array([r["stype"] for r in rows])
    fpc = {r["stype"]: float(r["fpc"]) for r in rows}
    return rows, stype, fpc


def test_apistrat_mean_matches_r_survey():
    rows, stype, fpc = _apistrat()
    api00 = np.array([float(r["api00"]) for r in rows])
    design = StratifiedDesign(stype, fpc, respondent_ids=[r["cds"] for r in rows])
    # The weights N_h/n_h are the data set's pw column.
    np.testing.assert_allclose(design.weights, [float(r["pw"]) for r in rows], rtol=1e-6)
    result = design.domain_mean(api00)
    # Published: svymean(~api00, dstrat) = 662.2874, SE 9.4089; degf 197;
    # confint(df=197) [643.7322, 680.8425].  Full precision from reference.R.
    assert result.estimate == pytest.approx(662.287363159321, abs=1e-6)
    assert result.se == pytest.approx(9.40894080278458, abs=1e-6)
    assert result.df == 197
    assert result.ci.low == pytest.approx(643.732188272086, abs=1e-6)
    assert result.ci.high == pytest.approx(680.842538046555, abs=1e-6)
    assert result.n == 200


def test_apistrat_korn_graubard_matches_svyciprop():
    rows, stype, fpc = _apistrat()
    yes = np.array([r["sch.wide"] == "Yes" for r in rows], dtype=float)
    design = StratifiedDesign(stype, fpc)
    result = design.proportion(yes)
    # Published: svyciprop(~I(sch.wide=="Yes"), dstrat, method="beta"):
    # 0.827948, [0.774171, 0.873432]; full precision from reference.R.
    assert result.estimate == pytest.approx(0.827948011415823, abs=1e-6)
    assert result.ci.low == pytest.approx(0.774171328597313, abs=1e-6)
    assert result.ci.high == pytest.approx(0.873431592620735, abs=1e-6)
    # svyciprop(..., method="logit") from reference.R.
    logit = design.proportion(yes, method="logit")
    assert logit.ci.low == pytest.approx(0.774539654351568, abs=1e-6)
    assert logit.ci.high == pytest.approx(0.870814854544509, abs=1e-6)


def test_apistrat_domain_matches_r_subset():
    rows, stype, fpc = _apistrat()
    api00 = np.array([float(r["api00"]) for r in rows])
    api99 = np.array([float(r["api99"]) for r in rows])
    yes = np.array([r["sch.wide"] == "Yes" for r in rows], dtype=float)
    design = StratifiedDesign(stype, fpc)
    dom = api99 > 650
    result = design.domain_mean(api00, dom)
    # reference.R: svymean(~api00, subset(dstrat, api99 > 650)), degf, confint.
    assert result.estimate == pytest.approx(773.658997620509, abs=1e-6)
    assert result.se == pytest.approx(7.35183212829377, abs=1e-6)
    assert result.df == 83
    assert result.ci.low == pytest.approx(759.036499206733, abs=1e-6)
    assert result.ci.high == pytest.approx(788.281496034285, abs=1e-6)
    prop = design.proportion(yes, dom)
    # reference.R: svyciprop(~I(sch.wide=="Yes"), subset(...), method="beta").
    assert prop.estimate == pytest.approx(0.859160946108613, abs=1e-6)
    assert prop.ci.low == pytest.approx(0.772973511127036, abs=1e-6)
    assert prop.ci.high == pytest.approx(0.921891464114412, abs=1e-6)


def test_many_domains_equal_one_at_a_time():
    rows, stype, fpc = _apistrat()
    api00 = np.array([float(r["api00"]) for r in rows])
    design = StratifiedDesign(stype, fpc)
    masks = np.column_stack([api00 > 600, api00 <= 600, np.ones(200, bool)])
    many = design.domain_means(np.repeat(api00[:, None], 3, axis=1), masks)
    for k in range(3):
        one = design.domain_mean(api00, masks[:, k])
        got = many[k]
        assert (got.n, got.df) == (one.n, one.df)
        for name in ("estimate", "se", "n_eff", "deff"):
            assert getattr(got, name) == pytest.approx(getattr(one, name), rel=1e-12)
    cov = design.covariance(np.repeat(api00[:, None], 3, axis=1), masks)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), many.se, rtol=1e-12)


def test_proportion_all_satisfied_gets_clopper_pearson():
    design = StratifiedDesign(["a"] * 4 + ["b"] * 4, {"a": 40, "b": 40})
    y = np.ones(8)
    dom = np.array([1, 1, 1, 0, 1, 1, 0, 1], bool)
    result = design.proportion(y, dom)
    assert result.estimate == 1.0
    assert result.se == 0.0
    # Clopper–Pearson for 6 successes in 6: [(0.025)^(1/6), 1] (reference/statistics.md).
    assert result.ci.low == pytest.approx(0.025 ** (1 / 6), abs=1e-12)
    assert result.ci.high == 1.0
    zero = design.proportion(np.zeros(8), dom)
    assert (zero.ci.low, zero.ci.high) == (0.0, pytest.approx(1 - 0.025 ** (1 / 6)))
    wilson = design.proportion(y, dom, method="wilson")
    # Wilson at p = 1 on n_d = 6 raters: [n/(n + t^2), 1], t with df = 6 - 2 strata.
    from scipy import stats

    t = stats.t.ppf(0.975, 4)
    assert wilson.ci.low == pytest.approx(6 / (6 + t * t), rel=1e-12)
    assert wilson.ci.high == 1.0


def test_wilson_matches_textbook_when_design_is_srs():
    # With a single stratum and no fpc, V = p(1-p)/(n-1); the Wilson interval uses
    # n_eff = p(1-p)/V = n - 1 and t with n - 1 df (closed form checked by hand).
    p, n = 0.3, 30
    v = p * (1 - p) / (n - 1)
    low, high = proportion_interval(p, v, n=n, df=n - 1, method="wilson")
    from scipy import stats

    z = stats.t.ppf(0.975, n - 1)
    m = n - 1
    centre = (p + z * z / (2 * m)) / (1 + z * z / m)
    half = z / (1 + z * z / m) * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m))
    assert low[0] == pytest.approx(centre - half)
    assert high[0] == pytest.approx(centre + half)


def test_proportion_interval_rejects_unknown_method():
    with pytest.raises(ValueError, match="'exact'"):
        proportion_interval(0.5, 0.01, n=10, df=9, method="exact")


def test_proportion_rejects_non_binary_values():
    design = StratifiedDesign(FPC_STRATA, FPC_N)
    with pytest.raises(ValueError, match="0 or 1"):
        design.proportion(FPC_X)


def test_design_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="'z' has no population size"):
        StratifiedDesign(["a", "a", "z", "z"], {"a": 10})
    with pytest.raises(ValueError, match="stratum 'a'.*smaller than its 3"):
        StratifiedDesign(["a", "a", "a"], {"a": 2})
    with pytest.raises(ValueError, match="single respondent"):
        StratifiedDesign(["a", "a", "b"], {"a": 10, "b": 10})
    with pytest.raises(ValueError, match="'r1' appears more than once"):
        StratifiedDesign(["a", "a"], {"a": 10}, respondent_ids=["r1", "r1"])
    # A census stratum of one respondent is fine under fpc (no sampling error).
    StratifiedDesign(["a", "a", "b"], {"a": 10, "b": 1})


def test_single_rater_domain_has_no_interval():
    design = StratifiedDesign(FPC_STRATA, FPC_N)
    dom = np.zeros(8, bool)
    dom[0] = True
    result = design.domain_mean(FPC_X, dom)
    assert result.df == 0
    assert np.isnan(result.ci.low) and np.isnan(result.ci.high)
    empty = design.domain_mean(FPC_X, np.zeros(8, bool))
    assert empty.n == 0 and np.isnan(empty.estimate) and np.isnan(empty.se)


def test_weighting_deff():
    n_eff, deff = weighting_deff(np.array([1.0, 1.0, 2.0, 4.0]))
    assert n_eff == pytest.approx(64 / 22)
    assert deff == pytest.approx(4 * 22 / 64)


strata_st = st.lists(st.sampled_from("abc"), min_size=6, max_size=40).filter(
    lambda s: all(s.count(h) >= 2 for h in set(s))
)


@settings(max_examples=60, deadline=None)
@given(strata=strata_st, value=st.floats(-1e3, 1e3), data=st.data())
def test_constant_has_its_value_and_zero_se(strata, value, data):
    n = len(strata)
    pop = {h: strata.count(h) * data.draw(st.integers(1, 50)) for h in set(strata)}
    dom = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    dom[0] = True
    design = StratifiedDesign(strata, pop)
    result = design.domain_mean(np.full(n, value), dom)
    assert result.estimate == pytest.approx(value, abs=1e-9 * (1 + abs(value)))
    assert result.se == pytest.approx(0.0, abs=1e-9 * (1 + abs(value)))


@settings(max_examples=60, deadline=None)
@given(strata=strata_st, factor=st.integers(1, 1000), data=st.data())
def test_estimate_unchanged_when_all_populations_scale(strata, factor, data):
    # Scaling every N_h by the same factor scales all weights alike: the
    # Hájek mean is unchanged (without fpc the SE is unchanged too).
    n = len(strata)
    y = np.array(data.draw(st.lists(st.floats(0, 100), min_size=n, max_size=n)))
    pop = {h: strata.count(h) * 2 for h in set(strata)}
    big = {h: v * factor for h, v in pop.items()}
    a = StratifiedDesign(strata, pop, fpc=False).domain_mean(y)
    b = StratifiedDesign(strata, big, fpc=False).domain_mean(y)
    assert b.estimate == pytest.approx(a.estimate, rel=1e-9, abs=1e-9)
    assert b.se == pytest.approx(a.se, rel=1e-7, abs=1e-9)


def test_rake_meets_margins_and_post_stratifies_in_one_pass():
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    town = np.array(["t1", "t1", "t2", "t2", "t3", "t3"])
    group = np.array(["g1", "g2", "g1", "g2", "g1", "g2"])
    ps = rake(w, [Margin(town, {"t1": 10, "t2": 20, "t3": 30})])
    np.testing.assert_allclose(ps, [10 / 3, 20 / 3, 60 / 7, 80 / 7, 150 / 11, 180 / 11])
    raked = rake(w, [Margin(town, {"t1": 10, "t2": 20, "t3": 30}),
                     Margin(group, {"g1": 25, "g2": 35})])
    for codes, totals in ((town, {"t1": 10, "t2": 20, "t3": 30}), (group, {"g1": 25, "g2": 35})):
        for k, total in totals.items():
            assert raked[codes == k].sum() == pytest.approx(total, rel=1e-9)


def test_rake_errors_are_clear():
    w = np.ones(4)
    town = np.array(["t1", "t1", "t2", "t2"])
    with pytest.raises(RakingError, match="'t2' has no population total"):
        rake(w, [Margin(town, {"t1": 2}, name="town")])
    with pytest.raises(RakingError, match="'t9' has no respondent"):
        rake(w, [Margin(town, {"t1": 2, "t2": 2, "t9": 1}, name="town")])
    with pytest.raises(RakingError, match="disagree on the population size"):
        rake(w, [Margin(town, {"t1": 2, "t2": 2}), Margin(town, {"t1": 3, "t2": 3})])
    # Margins that cannot both hold: a cell structure where g1 is exactly t1.
    g = np.array(["g1", "g1", "g2", "g2"])
    with pytest.raises(RakingError, match="did not converge"):
        rake(w, [Margin(town, {"t1": 2, "t2": 6}), Margin(g, {"g1": 4, "g2": 4})], max_iter=50)


def test_bootstrap_weights_reproducible_and_close_to_linearised():
    rows, stype, fpc = _apistrat()
    api00 = np.array([float(r["api00"]) for r in rows])
    design = StratifiedDesign(stype, fpc)
    reps = bootstrap_weights(design, replicates=2000, rng=np.random.default_rng(7))
    again = bootstrap_weights(design, replicates=2000, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(reps.weights, again.weights)
    assert (reps.weights >= 0).all()
    # Rescaling keeps every stratum's total N_h in every replicate.
    for h, label in enumerate(design.stratum_labels):
        totals = reps.weights[stype == label].sum(axis=0)
        np.testing.assert_allclose(totals, design.N_h[h], rtol=1e-9)
    boot = design.domain_mean(api00, replicates=reps)
    lin = design.domain_mean(api00)
    assert boot.estimate == lin.estimate
    assert boot.df == lin.df
    # The rescaling bootstrap estimates the same variance: within 10 % at 2000 replicates.
    assert boot.se == pytest.approx(lin.se, rel=0.10)


def test_bootstrap_needs_two_replicates():
    design = StratifiedDesign(FPC_STRATA, FPC_N)
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_weights(design, replicates=1, rng=np.random.default_rng(0))
