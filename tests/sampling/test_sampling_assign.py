"""Unit assignment: balance over units and groups, no repeats, errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampling.assign import AssignmentError, assign_units

# The campaign's design (config/survey.toml): 39 departments, 76 agencies, 30 windows;
# residents rate agencies + windows, deputies all three tracks, business departments + windows.
DEPARTMENTS = [f"dep{i:02d}" for i in range(39)]
AGENCIES = [f"ag{i:02d}" for i in range(76)]
WINDOWS = [f"win{i:02d}" for i in range(30)]
UNITS_BY_GROUP = {
    "residents": AGENCIES + WINDOWS,
    "deputies": DEPARTMENTS + AGENCIES + WINDOWS,
    "business": DEPARTMENTS + WINDOWS,
}


def _spread(values) -> int:
    values = list(values)
    return max(values) - min(values)


def test_campaign_design_is_balanced():
    groups = ["residents"] * 1500 + ["deputies"] * 200 + ["business"] * 320
    np.random.default_rng(1).shuffle(groups)
    a = assign_units(groups, UNITS_BY_GROUP, 8, rng=np.random.default_rng(11))
    assert len(a.units) == 2020
    assert all(len(us) == 8 == len(set(us)) for us in a.units)
    for g, us in zip(groups, a.units, strict=True):
        assert set(us) <= set(UNITS_BY_GROUP[g])
    # each group's slots are spread evenly over its units
    for g, units in UNITS_BY_GROUP.items():
        assert _spread(a.unit_group_counts[u][g] for u in units) <= 1
        assert sum(a.unit_group_counts[u][g] for u in units) == 8 * groups.count(g)
    # units rated by the same groups get totals within one of each other
    for units in (DEPARTMENTS, AGENCIES, WINDOWS):
        assert _spread(a.unit_counts[u] for u in units) <= 1
    assert sum(a.unit_counts.values()) == 2020 * 8
    # the design's group mix in a window: n_g / m_g normalised
    shares = a.expected_shares()["win00"]
    rate = {"residents": 1500 / 106, "deputies": 200 / 145, "business": 320 / 69}
    total = sum(rate.values())
    assert shares == pytest.approx({g: r / total for g, r in rate.items()})


def test_same_units_for_all_groups_gives_proportional_mix():
    units = [f"u{i}" for i in range(10)]
    groups = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    a = assign_units(groups, {"a": units, "b": units, "c": units}, 3, rng=np.random.default_rng(2))
    # 300 slots over 10 units: 30 each; group a gives 18, b 9, c 3 to every unit
    assert set(a.unit_counts.values()) == {30}
    for u in units:
        assert a.unit_group_counts[u] == {"a": 18, "b": 9, "c": 3}
    assert a.expected_shares()["u0"] == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.1})


def test_blocks_vary_between_respondents():
    # with the random tie-break, pairs of units meet in many different blocks
    units = [f"u{i}" for i in range(6)]
    a = assign_units(["g"] * 300, {"g": units}, 3, rng=np.random.default_rng(4))
    pairs = Counter(frozenset(p) for us in a.units for p in _pairs(us))
    assert len(pairs) == 15  # every pair of the 6 units shares some rater
    assert min(pairs.values()) > 0.5 * max(pairs.values())


def _pairs(us):
    return [(us[i], us[j]) for i in range(len(us)) for j in range(i + 1, len(us))]


def test_deterministic_for_a_seed():
    groups = ["a", "b"] * 50
    ubg = {"a": list("pqrstu"), "b": list("rstuvw")}
    a1 = assign_units(groups, ubg, 2, rng=np.random.default_rng(9))
    a2 = assign_units(groups, ubg, 2, rng=np.random.default_rng(9))
    a3 = assign_units(groups, ubg, 2, rng=np.random.default_rng(10))
    assert a1 == a2 and a1.digest() == a2.digest()
    assert a1.digest() != a3.digest()


def test_total_priority_evens_totals_across_tracks():
    groups = ["residents"] * 1500 + ["deputies"] * 200 + ["business"] * 320
    np.random.default_rng(1).shuffle(groups)
    g = assign_units(groups, UNITS_BY_GROUP, 8, rng=np.random.default_rng(3))
    t = assign_units(groups, UNITS_BY_GROUP, 8, rng=np.random.default_rng(3), priority="total")
    assert _spread(t.unit_counts.values()) < _spread(g.unit_counts.values())
    assert all(len(set(us)) == 8 for us in t.units)


@pytest.mark.parametrize(
    ("groups", "ubg", "k", "message"),
    [
        (["a"], {"a": ["x", "y"]}, 3, "group 'a' may rate 2 units, fewer than k = 3"),
        (["a", "z"], {"a": ["x", "y"]}, 1, "case 1: group 'z' has no units to rate"),
        (["a"], {"a": ["x", "x"]}, 1, "group 'a' lists unit 'x' twice"),
        (["a"], {"a": ["x"]}, 0, "k \\(units per respondent\\) must be a whole number >= 1"),
    ],
)
def test_assignment_errors(groups, ubg, k, message):
    with pytest.raises(AssignmentError, match=message):
        assign_units(groups, ubg, k, rng=np.random.default_rng(0))


def test_group_without_cases_is_fine_and_counts_zero():
    a = assign_units(["a"] * 4, {"a": ["x", "y"], "b": ["y", "z"]}, 1, rng=np.random.default_rng(0))
    assert a.unit_counts == {"x": 2, "y": 2, "z": 0}
    assert a.unit_group_counts["y"] == {"a": 2, "b": 0}
    assert a.group_sizes == {"a": 4, "b": 0}


@st.composite
def designs(draw):
    n_units = draw(st.integers(1, 12))
    units = [f"u{i}" for i in range(n_units)]
    n_groups = draw(st.integers(1, 4))
    ubg = {}
    for g in range(n_groups):
        chosen = draw(st.lists(st.sampled_from(units), min_size=1, unique=True))
        ubg[f"g{g}"] = chosen
    k = draw(st.integers(1, min(len(v) for v in ubg.values())))
    groups = draw(st.lists(st.sampled_from(sorted(ubg)), min_size=0, max_size=120))
    seed = draw(st.integers(0, 2**32 - 1))
    return groups, ubg, k, seed


@settings(max_examples=200, deadline=None)
@given(designs())
def test_property_balance(design):
    groups, ubg, k, seed = design
    a = assign_units(groups, ubg, k, rng=np.random.default_rng(seed))
    assert len(a.units) == len(groups)
    for g, us in zip(groups, a.units, strict=True):
        assert len(us) == k == len(set(us))  # no unit twice for a respondent
        assert set(us) <= set(ubg[g])
    # a group's counts on its units differ by at most one
    for g, units in ubg.items():
        assert _spread(a.unit_group_counts[u][g] for u in units) <= 1
    # units available to the same set of groups (with cases) differ by at most one
    with_cases = set(groups)
    classes: dict[frozenset, list] = {}
    for u in a.unit_counts:
        key = frozenset(g for g in with_cases if u in ubg[g])
        classes.setdefault(key, []).append(u)
    for units in classes.values():
        assert _spread(a.unit_counts[u] for u in units) <= 1
    assert sum(a.unit_counts.values()) == k * len(groups)


def _town_strata(n=2020, seed=4):
    rng = np.random.default_rng(seed)
    groups = rng.choice(["residents", "deputies", "business"], size=n, p=[0.75, 0.1, 0.15])
    towns = rng.choice([f"t{j}" for j in range(8)], size=n,
                       p=[0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])
    return groups.tolist(), [f"{g}/{t}" for g, t in zip(groups, towns, strict=True)]


def test_every_unit_in_every_stratum_when_there_are_enough_cases():
    groups, strata = _town_strata()
    a = assign_units(groups, UNITS_BY_GROUP, 8, rng=np.random.default_rng(7), strata=strata)
    size = Counter(strata)
    group_of = dict(zip(strata, groups, strict=True))
    for h, n_h in size.items():
        m_h = len(UNITS_BY_GROUP[group_of[h]])
        counts = [a.unit_stratum_counts[u][h] for u in UNITS_BY_GROUP[group_of[h]]]
        assert sum(counts) == 8 * n_h
        assert _spread(counts) <= 1  # balanced within the stratum
        if n_h * 8 >= m_h:
            assert min(counts) >= 1, h
    holes = a.holes()
    assert all(size[h] * 8 < len(UNITS_BY_GROUP[group_of[h]]) for _, h in holes)
    assert holes  # the small strata (n_h·k < m_h) have holes, and they are listed
    # still seeded and random: the same seed gives the same units, another seed others
    again = assign_units(groups, UNITS_BY_GROUP, 8, rng=np.random.default_rng(7), strata=strata)
    other = assign_units(groups, UNITS_BY_GROUP, 8, rng=np.random.default_rng(8), strata=strata)
    assert again.digest() == a.digest() != other.digest()
    # the groups stay close to even over their units
    for g, units in UNITS_BY_GROUP.items():
        assert _spread(a.unit_group_counts[u][g] for u in units) <= 8


def test_without_strata_many_stratum_unit_holes():
    groups, strata = _town_strata()
    a = assign_units(groups, UNITS_BY_GROUP, 8, rng=np.random.default_rng(7))
    cover = Counter((h, u) for h, us in zip(strata, a.units, strict=True) for u in us)
    size = Counter(strata)
    group_of = dict(zip(strata, groups, strict=True))
    missing = [(h, u) for h in size if size[h] * 8 >= len(UNITS_BY_GROUP[group_of[h]])
               for u in UNITS_BY_GROUP[group_of[h]] if cover[(h, u)] == 0]
    assert missing  # what the stratum key removes
    assert a.holes() == []  # nothing known about strata


def test_strata_must_nest_in_groups():
    with pytest.raises(AssignmentError, match="stratum 'x' has cases of groups"):
        assign_units(["residents", "deputies"], UNITS_BY_GROUP, 2,
                     rng=np.random.default_rng(1), strata=["x", "x"])
