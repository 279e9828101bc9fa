"""The pure forecast core (scoring/forecast.py): edge cases a supervisor would check."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from scoring.forecast import StratumState, UnitState, forecast

DAYS = [date(2026, 12, 3) + timedelta(days=i) for i in range(20)]
END = DAYS[9]


def state(key, *, target, completed, open_first=0, pace=1.0):
    return StratumState(key=key, target=target, completed=completed,
                        open_by_attempts=[open_first, 0, 0, 0, 0, 0],
                        attempts_by_number=[100, 50, 0, 0, 0, 0],
                        contacts_by_number=[40, 15, 0, 0, 0, 0],
                        completes_from_contacts=45, refusals=5, pace=pace)


def run(strata, units=(), seed=1):
    return {p.key: p for p in forecast(strata, units, days=DAYS, end_date=END, max_attempts=6,
                                       n_sims=200, rng=np.random.default_rng(seed))}


def test_reached_out_of_reach_and_on_track():
    out = run([state("done", target=10, completed=10),
               state("stuck", target=50, completed=5, open_first=0),
               state("easy", target=20, completed=5, open_first=200)])
    assert out["done"].reached and out["done"].p_by_end == 1.0
    stuck = out["stuck"]
    assert stuck.median_date is None and stuck.p_by_end == 0.0 and stuck.shortfall == 45
    assert stuck.cases_to_release is not None and stuck.cases_to_release >= 45
    assert stuck.extra_attempts is None            # no open case: only a release helps
    easy = out["easy"]
    assert easy.low_date <= easy.median_date <= easy.high_date <= END
    assert easy.p_by_end > 0.9 and easy.shortfall == 0
    # the band is cumulative completes: never below what is done, never decreasing
    meds = [m for _, _, m, _ in easy.band]
    assert meds[0] >= 5 and meds == sorted(meds)


def test_same_seed_same_projection_and_units_follow_their_strata():
    strata = [state("a", target=60, completed=10, open_first=150)]
    units = [UnitState(key="u", min_raters=30, raters=5, open_by_stratum={"a": [90]},
                       raters_per_complete=0.9)]
    one, two = run(strata, units, seed=7), run(strata, units, seed=7)
    assert one["u"].as_dict() == two["u"].as_dict() and one["a"].as_dict() == two["a"].as_dict()
    assert one["u"].kind == "unit" and one["u"].band[-1][2] <= 5 + 90 * 0.9


def test_bad_options_name_the_value():
    with pytest.raises(ValueError, match="level must be in"):
        forecast([], days=DAYS, end_date=END, max_attempts=6, level=1.5,
                 rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_sims must be >= 10, got 3"):
        forecast([], days=DAYS, end_date=END, max_attempts=6, n_sims=3,
                 rng=np.random.default_rng(0))
