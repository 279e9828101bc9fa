"""Property tests: callback delivery order, calling windows, pacing and concurrency."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, update

from ivr.fieldwork import drive
from ivr.simulator import CallbackFaults
from minping.config import FrozenMap
from minping.models import (
    Answer,
    AttemptEvent,
    CallAttempt,
    DispositionEvent,
    Lease,
    SampleCase,
)
from tests.builders import FIELD_START
from tests.ivr.conftest import sign

ALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
            HealthCheck.data_too_large]

# persona, expected code of the attempt (the table: complete 1.1, opt-out
# 2.112, busy 3.12, no answer 3.13, machine 3.14, partial 1.2 temporary)
KINDS = {
    "complete": ({"keys": ["1", "1", "2", "3"], "record_seconds": 0}, "1.1"),
    "opt-out": ({"keys": ["9"]}, "2.112"),
    "busy": ({"line": "busy"}, "3.12"),
    "no-answer": ({"line": "never-answers"}, "3.13"),
    "machine": ({"line": "machine"}, "3.14"),
    "partial": ({"keys": ["1", "1", "2"], "hangup_after_gathers": 3}, "1.2"),
}


def _reset_field(db) -> None:
    """Put every case back in the queue (the field is built once per test)."""
    with db.transaction() as s:
        for model in (Answer, DispositionEvent, AttemptEvent, CallAttempt):
            s.execute(delete(model))
        s.execute(update(SampleCase).values(
            state="pending", attempts=0, next_attempt_at=None, last_attempt_at=None,
            current_disposition=None, final_disposition=None, known_eligible=False,
            lock_channel=None, locked_by=None, locked_at=None, lock_expires_at=None))
        s.execute(update(Lease).values(state={}))


def test_any_callback_delivery_order_gives_the_clean_disposition(rig_factory, client):
    rig = rig_factory(n_cases=60)
    used = iter(range(60))

    def call_with_callbacks_held(kind):
        """Play one call with its status callbacks withheld; return them and the case."""
        i = next(used)
        persona, expected = KINDS[kind]
        rig.sim.set_callback_faults(CallbackFaults(drop=ALL_EVENTS), to=rig.phone(i))
        rig.persona(i, **persona)
        with rig.db.transaction() as s:  # only this case is due
            s.execute(update(SampleCase).where(SampleCase.id != rig.case_id(i))
                      .values(next_attempt_at=FIELD_START + timedelta(days=365)))
            s.execute(update(SampleCase).where(SampleCase.id == rig.case_id(i))
                      .values(next_attempt_at=None))
            s.execute(update(Lease).values(state={}))
        assert rig.dial().placed == 1
        (call,) = rig.calls_to(i)
        held = [x for x in rig.sim.exchanges_for(call.sid, "status-callback")
                if x.outcome == "dropped"]
        assert held
        return i, held, expected

    def deliver(exchange):
        # a withheld callback carries no headers in the simulator's record: sign it as
        # Twilio would, with one idempotency token per callback (repeats share it)
        form = exchange.form
        headers = {"X-Twilio-Signature": sign(exchange.url, form),
                   "I-Twilio-Idempotency-Token": f"{form['CallSid']}-{form['SequenceNumber']}"}
        path = exchange.url.removeprefix(rig.public_url)
        response = client.post(path, data=exchange.form, headers=headers)
        assert response.status_code == 200

    # clean delivery first, for every kind: the code the table says
    for kind in KINDS:
        i, held, expected = call_with_callbacks_held(kind)
        for x in held:
            deliver(x)
        assert rig.attempts(i)[0].outcome == expected, kind

    @settings(max_examples=30, deadline=None, suppress_health_check=FIXTURES)
    @given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
    def check(kind, data):
        i, held, expected = call_with_callbacks_held(kind)
        order = data.draw(st.permutations(held))
        repeats = data.draw(st.lists(st.sampled_from(held), max_size=4))
        for x in [*order, *repeats]:
            deliver(x)
        (attempt,) = rig.attempts(i)
        assert attempt.outcome == expected
        assert attempt.status_rank == 4 and attempt.status == held[-1].form["CallStatus"]

    check()


WINDOW_ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "Pacific/Auckland",
                "America/Sao_Paulo"]


def test_no_call_is_placed_outside_a_calling_window(rig_factory):
    rig = rig_factory(n_cases=5)
    base = rig.cfg.calling
    holidays = frozenset({date(2026, 12, 2), date(2026, 12, 25), date(2027, 1, 1)})
    moment = [FIELD_START]
    rig.dialer.now = lambda: moment[0]

    @settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
    @given(zone=st.sampled_from(WINDOW_ZONES),
           when=st.datetimes(min_value=datetime(2026, 11, 10), max_value=datetime(2027, 1, 20),
                             timezones=st.just(ZoneInfo("UTC"))))
    def check(zone, when):
        _reset_field(rig.db)
        rules = dataclasses.replace(base, timezone=zone, holidays=holidays,
                                    calls_per_second=1000.0, max_concurrent_calls=100)
        rig.dialer.rules = rules
        moment[0] = when
        before = len(rig.sim.calls)
        result = rig.dialer.step(max_calls=1)
        placed = list(rig.sim.calls.values())[before:]
        local = when.astimezone(ZoneInfo(zone))
        if rules.is_callable(when):
            assert len(placed) == 1, (local, result)
            assert local.date() not in holidays
            assert base.start_date <= local.date() <= base.end_date
            assert any(local.time() in w for w in rules.windows_on(local.date()))
        else:
            assert placed == [] and result.blocked in ("window", "done"), (local, result)

    check()


def test_calls_per_second_and_concurrency_never_exceed_their_limits(rig_factory):
    rig = rig_factory(n_cases=40)
    base = rig.cfg.calling

    @settings(max_examples=6, deadline=None, suppress_health_check=FIXTURES)
    @given(cps=st.sampled_from([0.25, 0.5, 1.0, 3.0, 10.0]), limit=st.integers(1, 6),
           seed=st.integers(0, 1000))
    def check(cps, limit, seed):
        _reset_field(rig.db)
        rig.sim.calls.clear()
        start = rig.clock.now()
        rules = dataclasses.replace(base, calls_per_second=cps, max_concurrent_calls=limit,
                                    retry_delays=FrozenMap({k: timedelta(minutes=1)
                                                            for k in base.retry_delays}))
        rig.dialer.rules = rules
        for i in range(40):
            rig.persona(i, line="human", answer_probability=0.7, busy_probability=0.1,
                        keys=["1", "1", "2", "3"][: 1 + seed % 4], record_seconds=0)
        drive(rig.dialer, rig.sim, start + timedelta(minutes=20))
        rig.sim.run_until_idle()
        calls = sorted(rig.sim.calls.values(), key=lambda c: c.date_created)
        assert len(calls) >= min(40, limit)
        gaps = [(b.date_created - a.date_created).total_seconds()
                for a, b in zip(calls, calls[1:], strict=False)]
        assert all(g >= 1 / cps - 1e-6 for g in gaps), (cps, min(gaps))
        edges = sorted([(c.date_created, 1) for c in calls] + [(c.end_time, -1) for c in calls])
        live = peak = 0
        for _, step in edges:
            live += step
            peak = max(peak, live)
        assert peak <= limit
        rig.clock.advance_to(rules.next_callable(rig.clock.now() + timedelta(hours=1)))

    check()
