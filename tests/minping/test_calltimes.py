"""Learned call times: the beta-binomial smoothing, and learned retries keep every calling rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minping import calling, calltimes
from minping.config import ConfigError, load_config
from minping.resources import CAMPAIGN_TEMPLATE


@pytest.fixture(scope="module")
def rules():
    return replace(load_config().calling, retry_method="learned")


def test_smoothing_follows_the_nested_beta_posteriors_computed_by_hand():
    # stratum A: 10 morning attempts, 1 contact; 10 evening attempts, 8 contacts (Mondays)
    obs = ([("A", 0, 0, i < 1) for i in range(10)] + [("A", 0, 2, i < 8) for i in range(10)]
           + [("B", 0, 2, i < 2) for i in range(4)])
    rates = calltimes.estimate(obs, prior_strength=4)
    m0 = (11 + 1) / (24 + 2)                      # all attempts, uniform prior
    m1 = (10 + 4 * m0) / (14 + 4)                 # evening, all strata
    m2 = (8 + 4 * m1) / (10 + 4)                  # stratum A in the evening
    p = (8 + 4 * m2) / (10 + 4)                   # A, Monday evening
    assert rates.p("A", 0, 2) == pytest.approx(p)
    # a cell never tried is its parent: A on a Tuesday evening
    assert rates.p("A", 1, 2) == pytest.approx(m2)
    # with no attempts at all every chance is 1/2
    assert calltimes.estimate([]).p("X", 3, 1) == pytest.approx(0.5)
    # the case's own misses shrink its chance: 2 misses with case weight 2 halve it
    assert rates.for_key("A", {2: 2}, case_strength=2)(0, 2) == pytest.approx(p / 2)


def test_a_case_missed_at_good_times_is_probably_a_dead_line():
    obs = [("A", 0, 2, i < 6) for i in range(10)] + [("A", 0, 0, i < 1) for i in range(10)]
    rates = calltimes.estimate(obs, prior_strength=4)
    pe, pm = rates.p("A", 0, 2), rates.p("A", 0, 0)
    # Bayes by hand: prior dead share 0.15, a live line misses with 1 - p
    live = 0.85 * (1 - pe) ** 2 * (1 - pm)
    alive = live / (live + 0.15)
    assert rates.reachable("A", [(0, 2), (0, 2), (0, 0)], dead_share=0.15) == pytest.approx(alive)
    assert rates.reachable("A", [], dead_share=0.15) == pytest.approx(0.85)
    # the case's chance: alive x the stratum's (optimistic) chance x its misses in that part
    f = rates.for_case("A", [(0, 2), (0, 2), (0, 0)], case_strength=20, dead_share=0.15)
    assert f(0, 2) == pytest.approx(alive * rates.optimistic("A", 0, 2) * 20 / 22)
    # the optimistic chance: one posterior sd more, less as the stratum's part fills
    n = 10
    assert rates.optimistic("A", 0, 2, z=1) == pytest.approx(
        pe + (pe * (1 - pe) / (n + 4 + 1)) ** 0.5)
    assert rates.optimistic("A", 0, 2, z=0) == pytest.approx(pe)


def test_first_attempts_go_now_while_nothing_is_known_and_later_when_the_stratum_is_not_in(rules):
    monday_9 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)              # Monday 09:00 Shanghai
    blank = calltimes.estimate([])
    assert calltimes.first_attempt_at(rules, blank, "A", now=monday_9) == monday_9
    # stratum A answers in the evening, hardly in the morning; B the other way round
    obs = ([("A", w, 0, i < 2) for w in range(5) for i in range(40)]
           + [("A", w, 2, i < 25) for w in range(5) for i in range(40)]
           + [("B", w, 0, i < 25) for w in range(5) for i in range(40)]
           + [("B", w, 2, i < 2) for w in range(5) for i in range(40)])
    rates = calltimes.estimate(obs)
    at = calltimes.first_attempt_at(rules, rates, "A", now=monday_9)
    assert at.astimezone(rules.tz).hour == 17 and calling.is_allowed(rules, at)
    assert calltimes.first_attempt_at(rules, rates, "B", now=monday_9) == monday_9


def test_a_likely_dead_line_is_parked_on_the_campaigns_last_calling_day(rules, monkeypatch):
    obs = [("A", w, d, i < 1) for w in range(6) for d in range(3) for i in range(40)]
    rates = calltimes.estimate(obs)                                # 1 in 40 answers
    now = datetime(2026, 11, 17, 1, 30, tzinfo=UTC)
    missed = [(1, 0)] * 5
    monkeypatch.setattr(calltimes, "PARK_BELOW", 0.5)
    at = calltimes.next_try(rules, rates, "A", missed, now=now, outcome="no-answer")
    assert at.astimezone(rules.tz).date() == calling.last_calling_day(rules)
    assert calling.is_allowed(rules, at)
    monkeypatch.setattr(calltimes, "PARK_BELOW", 0.0)
    soon = calltimes.next_try(rules, rates, "A", missed, now=now, outcome="no-answer")
    assert soon <= now + timedelta(days=rules.learned_horizon_days + 1)


def test_a_learned_retry_goes_to_the_best_part_of_the_day(rules):
    now = datetime(2026, 11, 17, 1, 30, tzinfo=UTC)            # Tuesday 09:30 Shanghai
    best_evening = lambda weekday, part: 0.8 if part == 2 else 0.1  # noqa: E731
    at = calling.learned_retry(rules, now=now, outcome="no-answer", p_contact=best_evening)
    local = at.astimezone(rules.tz)
    assert (local.date(), local.hour, local.minute) == (now.astimezone(rules.tz).date(), 17, 0)
    fixed = calling.spread_retry(rules, now=now, outcome="no-answer", tried={0})
    assert fixed.astimezone(rules.tz).hour == 14                  # the afternoon window opens


@settings(max_examples=300, deadline=None)
@given(minutes=st.integers(0, 60 * 24 * 70), outcome=st.sampled_from(
    ["busy", "no-answer", "machine"]), table=st.lists(st.floats(0, 1), min_size=21, max_size=21),
    horizon=st.floats(0, 5))
def test_learned_retries_never_leave_the_windows_holidays_dates_or_delays(
        rules, minutes, outcome, table, horizon):
    now = datetime(2026, 11, 10, tzinfo=UTC) + timedelta(minutes=minutes)
    at = calling.learned_retry(rules, now=now, outcome=outcome, horizon_days=horizon,
                               p_contact=lambda w, d: table[w * 3 + d])
    earliest = calling.next_attempt(rules, now, outcome)
    if earliest is None:
        assert at is None
        return
    assert calling.is_allowed(rules, at)
    assert at >= now + rules.retry_delay(outcome)
    assert earliest <= at <= earliest + timedelta(days=horizon)
    assert at.astimezone(rules.tz).date() not in rules.holidays


@settings(max_examples=200, deadline=None)
@given(minutes=st.integers(0, 60 * 24 * 70), outcome=st.sampled_from(
    ["busy", "no-answer", "machine"]), hits=st.lists(st.integers(0, 20), min_size=18, max_size=18),
    missed=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2)), max_size=6),
    park=st.sampled_from([0.0, 0.05, 1.0]))
def test_learned_first_attempts_and_retries_keep_windows_holidays_dates_and_delays(
        rules, minutes, outcome, hits, missed, park):
    now = datetime(2026, 11, 10, tzinfo=UTC) + timedelta(minutes=minutes)
    rates = calltimes.estimate([("A", w, d, i < hits[w * 3 + d]) for w in range(6)
                                for d in range(3) for i in range(20)])
    old = calltimes.PARK_BELOW
    calltimes.PARK_BELOW = park
    try:
        at = calltimes.next_try(rules, rates, "A", missed, now=now, outcome=outcome)
    finally:
        calltimes.PARK_BELOW = old
    first = calltimes.first_attempt_at(rules, rates, "A", now=now)
    if calling.next_attempt(rules, now, outcome) is None:
        assert at is None
    else:
        assert calling.is_allowed(rules, at) and at >= now + rules.retry_delay(outcome)
        assert at.astimezone(rules.tz).date() not in rules.holidays
    if calling.next_allowed(rules, now) is None:
        assert first is None
    else:
        assert calling.is_allowed(rules, first) and first >= now
        assert first <= calling.next_allowed(rules, now) + timedelta(
            days=rules.learned_horizon_days)


def test_bad_retry_method_and_prior_are_reported_with_their_key_path(tmp_path):
    text = CAMPAIGN_TEMPLATE.read_text(encoding="utf-8")
    text = text.replace('retry_day_parts = ["12:00", "17:00"]',
                        'retry_day_parts = ["12:00", "17:00"]\nretry_method = "smart"\n'
                        'learned_prior_strength = 0')
    path = tmp_path / "survey.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert 'calling.retry_method: "smart" is not one of "fixed", "learned"' in message
    assert "calling.learned_prior_strength" in message


def test_the_template_keeps_fixed_spreading_as_the_default():
    assert load_config().calling.retry_method == "fixed"


def test_cati_no_answer_call_back_goes_to_the_learned_part_of_the_day(db):
    from cati import service
    from minping.models import SampleCase, User
    from tests.builders import build_field
    from tests.cati.helpers import add_user

    cfg = load_config()
    field = build_field(db, n_cases=2, cfg=cfg)
    uid = add_user(db, "ann")
    learned = replace(cfg, calling=replace(cfg.calling, retry_method="learned"))
    now = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)                 # Wednesday 10:00 Shanghai
    with db.transaction() as s:
        stratum = s.get(SampleCase, field.case_ids[0]).stratum_id
    evening = calltimes.estimate([(stratum, w, 2, True) for w in range(6) for _ in range(20)]
                                 + [(stratum, w, d, False) for w in range(6) for d in (0, 1)
                                    for _ in range(20)])
    calltimes.CACHE.clear()
    calltimes.CACHE.put(db.url, learned.calling, evening)
    dues = {}
    for case_id, c in zip(field.case_ids, (learned, cfg), strict=True):
        with db.transaction() as s:
            user, case = s.get(User, uid), s.get(SampleCase, case_id)
            assert service.cases.try_hold(s, case_id, channel="cati", now=now, user_id=uid)
            service.begin_attempt(s, case, user, now=now)
            service.close_attempt(s, case, user, code="3.13", now=now, cfg=c)
            dues[c.calling.retry_method] = case.next_attempt_at
    calltimes.CACHE.clear()
    tz = cfg.calling.tz
    assert dues["learned"].astimezone(tz).hour == 17                 # the evening part
    assert dues["fixed"].astimezone(tz).hour == 14                   # delay, next window
    for due in dues.values():
        assert calling.is_allowed(cfg.calling, due)


def test_the_dialer_puts_a_never_tried_case_back_until_its_strata_best_time(db):
    from minping import cases
    from minping.models import SampleCase
    from tests.builders import build_field

    cfg = load_config()
    field = build_field(db, n_cases=2, cfg=cfg)
    learned = replace(cfg.calling, retry_method="learned")
    now = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)                 # Wednesday 10:00 Shanghai
    with db.transaction() as s:
        stratum = s.get(SampleCase, field.case_ids[0]).stratum_id
    evening = calltimes.estimate([(stratum, w, 2, i < 15) for w in range(6) for i in range(20)]
                                 + [(stratum, w, d, False) for w in range(6) for d in (0, 1)
                                    for _ in range(20)])
    calltimes.CACHE.clear()
    calltimes.CACHE.put(db.url, learned, evening)
    try:
        with db.transaction() as s:
            case = s.get(SampleCase, field.case_ids[0])
            assert cases.try_hold(s, case.id, channel="ivr", now=now)
            s.refresh(case)
            assert calltimes.defer_first_attempt(s, cfg.calling, case, now=now) is None  # fixed
            when = calltimes.defer_first_attempt(s, learned, case, now=now)
            assert when.astimezone(learned.tz).hour == 17 and calling.is_allowed(learned, when)
            assert case.next_attempt_at == when and case.lock_channel is None
    finally:
        calltimes.CACHE.clear()


def test_waiting_costs_more_when_the_end_date_is_near(rules):
    tight = replace(rules, end_date=datetime(2026, 11, 18).date())   # Mon..Wed: 3 calling days
    monday = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
    wednesday = datetime(2026, 11, 18, 2, 0, tzinfo=UTC)
    assert calltimes.waiting_cost(rules, monday, 6) == calltimes.DAILY_DISCOUNT
    assert calltimes.waiting_cost(tight, monday, 6) == calltimes.DAILY_DISCOUNT  # 3 days for 3
    # 5 attempts need 3 days; Wednesday is the last one: 1 - 1/3
    assert calltimes.waiting_cost(tight, wednesday, 5) == pytest.approx(2 / 3)
    assert calltimes.waiting_cost(tight, wednesday, None) == calltimes.DAILY_DISCOUNT
