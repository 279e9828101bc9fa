"""The O(ratings) estimators (``scoring.sparse``) against the respondents × units ones.

``score_units`` without raking or replicates runs ``scoring.sparse``; the
dense designs (``StratifiedDesign``, ``AssignedDesign``), which the R tests
check, must give the same numbers to 1e-9 on a benchmark-sized table: 145
units, 10,000 respondents rating 8 units each, "don't know", unanswered and
unassigned rows, a census stratum and a stratum with a single rater of a unit.
"""

from __future__ import annotations

import numpy as np
import pytest

from scoring.estimators import StratifiedDesign
from scoring.scale import RatingScale
from scoring.sparse import factorise
from scoring.units import _dense_estimates, _long_rows, score_units


def _table(n=10_000, m=145, k=8, seed=3):
    rng = np.random.default_rng(seed)
    strata = np.array(["s0", "s1", "s2", "s3"])[rng.choice(4, size=n, p=[0.5, 0.3, 0.19, 0.01])]
    picks = np.argsort(rng.random((n, m)), axis=1)[:, :k]
    rid = np.repeat(np.array([f"R{i:05d}" for i in range(n)]), k)
    st = np.repeat(strata, k)
    unit = np.array([f"U{j:03d}" for j in range(m)])[picks.ravel()]
    rating = rng.choice(["1", "2", "3", "0", ""], size=n * k, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    assigned = rng.random(n * k) > 0.02
    counts = {h: int((strata == h).sum()) for h in ("s0", "s1", "s2", "s3")}
    pop = {"s0": 40 * counts["s0"], "s1": 5 * counts["s1"], "s2": 3 * counts["s2"],
           "s3": counts["s3"]}  # s3 is a census
    return rid, st, unit, rating, pop, assigned


def _scale():
    base = RatingScale.default()
    return RatingScale(points={**base.points, "": None}, satisfied=base.satisfied,
                       labels={**base.labels, "": ""})


@pytest.mark.parametrize("per_unit", [False, True])
@pytest.mark.parametrize("ci_method", ["beta", "wilson"])
def test_sparse_equals_dense(per_unit, ci_method):
    rid, st, unit, rating, pop, assigned = _table()
    given = assigned if per_unit else None
    fast = score_units(rid, st, unit, rating, pop, scale=_scale(), assigned=given,
                       ci_method=ci_method)
    rows = _long_rows(rid, st, unit, rating, _scale(), given)
    design = StratifiedDesign(rows.resp_strata, pop)
    dense = _dense_estimates(rows, design, (), "linearised", 0, None, 0.95, ci_method)
    got = {name: np.array([getattr(u, name) for u in fast], dtype=float)
           for name in ("score", "se", "ci_low", "ci_high", "sat", "sat_low", "sat_high",
                        "n_eff", "deff", "n")}
    np.testing.assert_allclose(got["score"], dense.estimate, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["se"], dense.se, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["ci_low"], dense.ci_low, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["ci_high"], dense.ci_high, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["sat"], dense.sat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["sat_low"], dense.sat_low, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["sat_high"], dense.sat_high, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["n_eff"], dense.n_eff, rtol=1e-12)
    np.testing.assert_array_equal(got["n"], dense.n)
    assert [u.df for u in fast] == [int(x) for x in dense.df]
    np.testing.assert_allclose(fast.covariance, dense.covariance, rtol=0, atol=1e-9)


def test_factorise_is_numpy_unique():
    values = ["b", "a", "c", "a", "b", "10", "9"]
    labels, codes = factorise(values)
    ref_labels, ref_codes = np.unique(np.asarray(values), return_inverse=True)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(codes, ref_codes)
    labels, codes = factorise([1, "1", 2])  # same text: one label, as astype(str) does
    assert labels.tolist() == ["1", "2"] and codes.tolist() == [0, 0, 1]
    labels, codes = factorise(["b", "a", "b"], sort=False)  # in order of first appearance
    assert labels.tolist() == ["b", "a"] and codes.tolist() == [0, 1, 0]
    labels, codes = factorise([2, "1", 1], sort=False)  # same text merged (then sorted)
    assert labels.tolist() == ["1", "2"] and codes.tolist() == [1, 0, 0]


@pytest.mark.parametrize("k", [1, 8, 40])
@pytest.mark.parametrize("grouped", [True, False])
def test_gram_is_the_product_of_the_respondents_matrix(k, grouped):
    """``gram`` (pairs of one respondent's rows, or the dense product) is Z'Z."""
    from scoring.sparse import gram

    rng = np.random.default_rng(k)
    n, m = 3_000, 50
    resp = np.repeat(np.arange(n), k)
    unit = np.argsort(rng.random((n, m)), axis=1)[:, :k].ravel()
    keep = rng.random(resp.size) > 0.1
    resp, unit = resp[keep], unit[keep]
    if not grouped:  # rows of one respondent apart
        order = rng.permutation(resp.size)
        resp, unit = resp[order], unit[order]
    x = rng.normal(size=resp.size)
    z = np.zeros((n, m))
    z[resp, unit] = x
    np.testing.assert_allclose(gram(resp, unit, x, m, chunk=1_000), z.T @ z, rtol=0, atol=1e-9)


@pytest.mark.parametrize("k", [1, 2, 8, 40])
def test_gram_of_a_respondents_by_width_table_is_the_same(k):
    """Rows grouped by respondent, k each (``width``): the same Z'Z."""
    from scoring.sparse import gram

    rng = np.random.default_rng(k)
    n, m = 2_000, 50
    resp = np.repeat(np.arange(n), k)
    unit = np.argsort(rng.random((n, m)), axis=1)[:, :k].ravel()
    x = np.where(rng.random(resp.size) > 0.1, rng.normal(size=resp.size), 0.0)
    z = np.zeros((n, m))
    z[resp, unit] = x
    np.testing.assert_allclose(gram(resp, unit, x, m, width=k), z.T @ z, rtol=0, atol=1e-9)
    np.testing.assert_allclose(gram(resp, unit, x, m, width=k), gram(resp, unit, x, m),
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("rid", [["a", "a", "b", "b"], ["b", "b", "a", "a"], ["b", "a", "b", "a"]])
def test_a_unit_rated_twice_is_named_in_a_table_of_equal_rows(rid):
    """Two rows each, grouped or not: the respondent and the unit are named."""
    unit = {"a": iter(["u2", "u2"]), "b": iter(["u1", "u3"])}
    units = [next(unit[r]) for r in rid]
    with pytest.raises(ValueError, match="respondent 'a' rated unit 'u2' more than once"):
        score_units(rid, ["s"] * 4, units, ["1"] * 4, {"s": 100})


def test_respondents_are_numbered_as_they_come_and_their_stratum_checked():
    rows = _long_rows(["b", "b", "a", "a"], ["s", "s", "t", "t"], ["u1", "u2", "u1", "u2"],
                      ["1", "2", "3", "0"], _scale(), None)
    assert rows.resp_ids.tolist() == ["b", "a"] and rows.resp.tolist() == [0, 0, 1, 1]
    assert rows.resp_strata.tolist() == ["s", "t"] and rows.width == 2
    ordered = rows.by_respondent_id()
    assert ordered.resp_ids.tolist() == ["a", "b"] and ordered.resp.tolist() == [1, 1, 0, 0]
    assert ordered.resp_strata.tolist() == ["t", "s"]
    with pytest.raises(ValueError, match="respondent 'b' is in two strata: 's' and 't'"):
        _long_rows(["b", "b", "a"], ["s", "t", "t"], ["u1", "u2", "u1"], ["1"] * 3, _scale(), None)


def test_short_text_codes_read_keypad_keys_and_refuse_the_rest():
    from scoring.codes import short_text_codes

    keys, codes = short_text_codes(["1", "", "3", "1", "满", ""])
    assert keys == ["", "1", "3", "满"] and codes.tolist() == [1, 0, 2, 1, 3, 0]
    assert short_text_codes(np.array(["2", "0"]))[1].tolist() == [1, 0]
    for values in (["12", "", "1"], ["1", 2], ["\0", "1"], [], ["1", "\ud800"]):
        assert short_text_codes(values) is None
    # the scale reads the same points either way
    scale = _scale()
    fast = scale.encode(["1", "", "3", "2", "0"])
    slow = scale.encode([1, "", 3, "2", 0])
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_unit_rated_twice_is_named_wherever_the_rows_are():
    rid = ["a", "b", "a", "c", "b", "a"]
    unit = ["u1", "u2", "u2", "u1", "u1", "u2"]  # a rated u2 twice, rows apart
    with pytest.raises(ValueError, match="respondent 'a' rated unit 'u2' more than once"):
        score_units(rid, ["s"] * 6, unit, ["1"] * 6, {"s": 100})
