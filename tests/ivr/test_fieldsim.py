"""The field simulation: learned call times against fixed ones, and the forecast's back-test.

A discrete-event simulation of the dialer's schedule with the real calling-rule
functions (``ivr/sim/fieldsim.py``); ``bench/calltimes.py`` prints the same
figures over more seeds.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest

from ivr.sim import fieldsim
from ivr.sim.availability import answer_by_hour, town_tilt
from minping import calling
from minping.config import load_config
from scoring.forecast import forecast

STRATA = {"residents": ("residents", "xinan", 600), "deputies": ("deputies", "chengguan", 300),
          "business": ("business", "hekou", 300)}
TARGETS = {"residents": 300, "deputies": 130, "business": 130}


@pytest.fixture(scope="module")
def rules():
    return load_config().calling


def test_availability_differs_by_group_and_town_and_is_seeded():
    evening, morning = 18, 10
    assert answer_by_hour("deputies", "xinan", 0)[evening] > 3 * answer_by_hour(
        "deputies", "xinan", 0)[morning]
    assert answer_by_hour("residents", "xinan", 0)[morning] > answer_by_hour(
        "residents", "xinan", 0)[evening]
    assert town_tilt("chengguan") == 0.3 and town_tilt("hekou") == town_tilt("hekou")
    assert answer_by_hour("business", "hekou", 5)[morning] > answer_by_hour(
        "business", "hekou", 0)[morning]                      # Saturday morning


def test_learned_call_times_need_fewer_attempts_per_complete_for_more_completes(rules):
    start = datetime(2026, 11, 16, 9, tzinfo=rules.tz)
    cases = fieldsim.make_cases(STRATA, rng=np.random.default_rng(3))
    fixed = fieldsim.run(rules, cases, start=start, days=8, rng=np.random.default_rng(4))
    learned = fieldsim.run(rules, cases, start=start, days=8, rng=np.random.default_rng(4),
                           method="learned")
    assert learned.completes() >= fixed.completes()
    assert learned.attempts_per_complete() < 0.9 * fixed.attempts_per_complete()  # 0.84 seen
    for cid, started, _, _ in learned.attempts:                # never outside the rules
        assert calling.is_allowed(rules, started), (cid, started)
    per_case: dict[int, int] = {}
    for cid, *_ in learned.attempts:
        per_case[cid] = per_case.get(cid, 0) + 1
    assert max(per_case.values()) <= rules.max_attempts


def test_the_day_two_projection_covers_the_day_each_stratum_reached_its_target(rules):
    rules = replace(rules, max_concurrent_calls=2)           # a field that takes days
    start = datetime(2026, 11, 16, 9, tzinfo=rules.tz)
    at = datetime(2026, 11, 18, 0, tzinfo=rules.tz)          # after calling day 2
    ahead = fieldsim.calling_days(rules, at.date(), rules.end_date)
    covered = total = 0
    for seed in range(1, 6):
        cases = fieldsim.make_cases(STRATA, rng=np.random.default_rng(seed))
        run = fieldsim.run(rules, cases, start=start, days=21,
                           rng=np.random.default_rng(seed + 1000))
        state = fieldsim.snapshot(run, rules, at=at, targets=TARGETS)
        for p in forecast(state, days=ahead, end_date=start.date() + timedelta(days=20),
                          max_attempts=rules.max_attempts, n_sims=300, level=0.9,
                          rng=np.random.default_rng(seed)):
            covered += fieldsim.covers(p, fieldsim.reached_on(run, rules, p.key, p.target))
            total += 1
    assert covered / total >= 0.8, f"{covered}/{total}"


def test_the_webhook_simulator_gives_each_number_its_group_and_town_profile(db):
    from ivr.fieldwork import run_ivr_field_period, set_availability
    from ivr.simulator import Simulator
    from minping.settings import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN
    from tests.builders import FIELD_START, build_field

    field = build_field(db, n_cases=12, units_per_case=2, group="deputies")
    sim = Simulator(account_sid=SIMULATOR_ACCOUNT_SID, auth_token=SIMULATOR_AUTH_TOKEN,
                    rng=np.random.default_rng(1), transport=None)
    assert set_availability(db, sim, weekday=2) == 12
    town = field.cfg.towns[0].id
    for phone in field.phones.values():
        persona = sim.persona(phone)
        if persona.line == "human":
            hours = persona.answer_by_hour
            assert hours[19] > hours[10]                       # deputies: evenings
            ratio = hours[19] / answer_by_hour("deputies", town, 2)[19]
            assert 0.6 - 1e-9 <= ratio <= 1.0 + 1e-9           # times the person's propensity
    summary = run_ivr_field_period(db, field.cfg, start=FIELD_START, days=0.05, seed=2,
                                   availability=True)
    assert summary["attempts"] >= 12
