"""The case life cycle shared by IVR and CATI."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from minping import cases
from minping.draws.release import release_replicate
from minping.models import (
    Appointment,
    AuditLog,
    DispositionEvent,
    DoNotCall,
    SampleCase,
    User,
)
from tests.builders import FIELD_START, build_field

NOW = FIELD_START


def test_a_case_is_held_by_one_channel_at_a_time(db):
    field = build_field(db, n_cases=2)
    cid = field.case_ids[0]
    with db.transaction() as s:
        assert cases.try_hold(s, cid, channel="ivr", now=NOW)
    with db.transaction() as s:
        assert not cases.try_hold(s, cid, channel="cati", now=NOW, user_id=None)
        assert not cases.try_hold(s, cid, channel="ivr", now=NOW)
    # a hold whose holder went silent expires
    later = NOW + cases.IVR_HOLD + timedelta(seconds=1)
    with db.transaction() as s:
        assert cases.try_hold(s, cid, channel="cati", now=later)


def test_dialer_holds_only_due_released_cases(db):
    field = build_field(db, n_cases=8)
    ids = field.case_ids
    with db.transaction() as s:
        s.get(SampleCase, ids[0]).next_attempt_at = NOW + timedelta(hours=1)
        s.get(SampleCase, ids[1]).release_state = "held"
        s.add(DoNotCall(phone=field.phones[ids[2]], source="test"))
        # cases that belong to interviewers are not dialed by IVR
        s.get(SampleCase, ids[3]).refusal_conversion = True
        s.add(Appointment(case_id=ids[4], due_at=NOW, kind="soft", status="pending"))
        user = User(username="li", display_name="李", password_hash="x", role="interviewer")
        s.add(user)
        s.flush()
        s.get(SampleCase, ids[5]).assigned_to = user.id
    with db.transaction() as s:
        held = cases.hold_cases_for_ivr(s, now=NOW, limit=10, max_attempts=6)
        assert sorted(c.id for c in held) == sorted(ids[6:])
    with db.transaction() as s:
        assert cases.hold_cases_for_ivr(s, now=NOW, limit=10, max_attempts=6) == []


def test_answers_are_saved_as_given_and_changes_are_audited(db):
    field = build_field(db, n_cases=1, units_per_case=3)
    cid = field.case_ids[0]
    with db.transaction() as s:
        case = s.get(SampleCase, cid)
        units = cases.case_units(s, cid)
        cases.record_answer(s, case, units[0].unit_id, "1", channel="ivr", now=NOW, actor="ivr")
        cases.record_answer(s, case, units[0].unit_id, "1", channel="ivr", now=NOW, actor="ivr")
    with db.transaction() as s:
        nxt = cases.next_unanswered(s, cid)
        assert nxt.position == 1
        case = s.get(SampleCase, cid)
        cases.record_answer(s, case, units[0].unit_id, "3", channel="cati", now=NOW,
                            actor="supervisor:zhang")
    with db.session() as s:
        log = s.scalars(select(AuditLog).where(AuditLog.action == "answer.change")).all()
        assert len(log) == 1
        assert log[0].old["rating"] == "1" and log[0].new["rating"] == "3"
        assert log[0].actor == "supervisor:zhang"
        assert cases.answer_counts(s, cid) == (1, 3)
    with db.transaction() as s, pytest.raises(cases.CaseError, match="not assigned"):
        cases.record_answer(s, s.get(SampleCase, cid), 10**6, "1", channel="ivr", now=NOW,
                            actor="ivr")


def test_busy_is_retried_after_its_delay_and_the_cap_ends_the_case(db):
    field = build_field(db, n_cases=1)
    rules = field.cfg.calling
    cid = field.case_ids[0]
    now = NOW
    for n in range(3):
        with db.transaction() as s:
            case = s.get(SampleCase, cid)
            assert cases.try_hold(s, cid, channel="ivr", now=now)
            attempt = cases.start_attempt(s, case, channel="ivr", now=now)
            result = cases.finish_attempt(s, case, attempt, "3.12", now=now, rules=rules,
                                          max_attempts=3)
        if n < 2:
            assert result.final is None
            assert result.next_attempt_at == now + timedelta(minutes=20)
            now = result.next_attempt_at
        else:
            assert result.final == "3.12"
    with db.session() as s:
        case = s.get(SampleCase, cid)
        assert case.state == "final" and case.final_disposition == "3.12"
        assert case.lock_channel is None
        codes = s.scalars(select(DispositionEvent.code).where(DispositionEvent.case_id == cid)
                          .order_by(DispositionEvent.id)).all()
        assert codes == ["3.12", "3.12", "3.12"]


def test_a_complete_is_final_and_finishing_twice_changes_nothing(db):
    field = build_field(db, n_cases=1)
    cid = field.case_ids[0]
    with db.transaction() as s:
        case = s.get(SampleCase, cid)
        attempt = cases.start_attempt(s, case, channel="cati", now=NOW)
        first = cases.finish_attempt(s, case, attempt, "1.1", now=NOW, rules=field.cfg.calling,
                                     max_attempts=6)
        again = cases.finish_attempt(s, case, attempt, "3.13", now=NOW,
                                     rules=field.cfg.calling, max_attempts=6)
    assert first.final == "1.1" and again.final == "1.1"
    with db.session() as s:
        assert s.get(SampleCase, cid).final_disposition == "1.1"
    with db.transaction() as s, pytest.raises(cases.CaseError, match="already final"):
        cases.start_attempt(s, s.get(SampleCase, cid), channel="ivr", now=NOW)


def test_a_late_evening_no_answer_is_retried_inside_the_next_window(db):
    field = build_field(db, n_cases=1)
    cid = field.case_ids[0]
    # 20:00 Beijing time on a Wednesday; +120 min falls after the 20:30 close
    evening = NOW.replace(hour=12)
    with db.transaction() as s:
        case = s.get(SampleCase, cid)
        attempt = cases.start_attempt(s, case, channel="ivr", now=evening)
        result = cases.finish_attempt(s, case, attempt, "3.13", now=evening,
                                      rules=field.cfg.calling, max_attempts=6)
    assert result.next_attempt_at is not None
    assert field.cfg.calling.is_callable(result.next_attempt_at)
    assert result.next_attempt_at.astimezone(field.cfg.calling.tz).hour == 9


def test_opt_out_adds_the_number_to_do_not_call(db):
    field = build_field(db, n_cases=1)
    cid = field.case_ids[0]
    with db.transaction() as s:
        cases.opt_out(s, s.get(SampleCase, cid), now=NOW, source="ivr")
        cases.opt_out(s, s.get(SampleCase, cid), now=NOW, source="ivr")
    with db.session() as s:
        assert s.get(DoNotCall, field.phones[cid]) is not None


def test_release_replicate(db):
    field = build_field(db, n_cases=4, released=False)
    with db.transaction() as s:
        assert release_replicate(s, field.draw_id, 1, now=NOW) == 4
        assert release_replicate(s, field.draw_id, 1, now=NOW) == 0
