"""#17.1: a disposition must fit the interview, in the service layer, for every channel.

The scenarios are the ones found by working the screens: 1.1 with 0 of 8 answers and no
consent, 1.1 with 2 of 8, 3.13 on a case never dialled, ratings saved before consent,
and a supervisor's edit that would leave a complete with a missing answer.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cati import service
from minping.cases import case_units
from minping.dispositions import Refused
from minping.models import Answer, SampleCase, User
from scoring.dispositions import interview_code
from scoring.twilio_status import from_twilio_status
from tests.builders import FIELD_START, build_field
from tests.cati.helpers import add_user


def test_the_ivr_and_the_screen_earn_the_same_code_from_the_same_answers():
    # AAPOR Standard Definitions: the survey sets the share of applicable questions that
    # makes a partial and a complete; minping: half for 1.2, all for 1.1.
    for total in range(1, 11):
        for answered in range(1, total + 1):
            ivr = from_twilio_status("completed", answered_by="human", had_consent=True,
                                     answered_units=answered, total_units=total)
            assert ivr == interview_code(answered, total)
    assert interview_code(8, 8) == "1.1"
    assert interview_code(4, 8) == "1.2" and interview_code(7, 8) == "1.2"
    assert interview_code(3, 8) == "2.12" and interview_code(0, 8) == "2.12"


def _take(s, user_id, cfg):
    user = s.get(User, user_id)
    return user, service.take_next(s, user, now=FIELD_START, cfg=cfg)


def test_impossible_dispositions_are_refused_whoever_calls(db):
    field = build_field(db, n_cases=3, units_per_case=8)
    cfg = field.cfg
    ann = add_user(db, "ann")
    sue = add_user(db, "sue", role="supervisor")
    with db.transaction() as s:
        user, case = _take(s, ann, cfg)
        units = case_units(s, case.id)
        # never dialled: no outcome of a call, not even "no answer"
        for code in ("3.13", "1.1", "2.211"):
            with pytest.raises(Refused, match="Dial first"):
                service.close_attempt(s, case, user, code=code, now=FIELD_START, cfg=cfg)
        attempt = service.begin_attempt(s, case, user, now=FIELD_START)
        # no consent: no rating, no complete
        with pytest.raises(Refused, match="consent"):
            service.save_answer(s, case, user, units[0].unit_id, "1", now=FIELD_START, cfg=cfg)
        with pytest.raises(Refused, match="consent"):
            service.close_attempt(s, case, user, code="1.1", now=FIELD_START, cfg=cfg)
        service.mark_answered(s, attempt, now=FIELD_START, consent=True)
        for u, key in zip(units[:2], "10", strict=True):  # "don't know" (0) is an answer
            service.save_answer(s, case, user, u.unit_id, key, now=FIELD_START, cfg=cfg)
        for code, earned in (("1.1", "2.12"), ("1.2", "2.12")):
            with pytest.raises(Refused, match=f"2 of 8 .* is {earned}, not {code}"):
                service.close_attempt(s, case, user, code=code, now=FIELD_START, cfg=cfg)
        for u in units[2:4]:
            service.save_answer(s, case, user, u.unit_id, "2", now=FIELD_START, cfg=cfg)
        with pytest.raises(Refused, match="4 of 8 .* is 1.2, not 2.12"):
            service.close_attempt(s, case, user, code="2.12", now=FIELD_START, cfg=cfg)
        for u in units[4:]:
            service.save_answer(s, case, user, u.unit_id, "3", now=FIELD_START, cfg=cfg)
        finish = service.close_attempt(s, case, user, code="1.1", now=FIELD_START, cfg=cfg)
        assert finish.final == "1.1"
        done = case.id
    with db.transaction() as s:  # the supervisor may not un-complete it
        sup = s.get(User, sue)
        case = s.get(SampleCase, done)
        with pytest.raises(Refused, match="1.1; with this change 7 of 8"):
            service.change_answer(s, case, sup, units[0].unit_id, None, now=FIELD_START,
                                  cfg=cfg)
        service.change_answer(s, case, sup, units[0].unit_id, "2", now=FIELD_START, cfg=cfg)
        # ...nor give ratings to a case where nobody consented
        other = s.scalar(select(SampleCase).where(SampleCase.id != done).limit(1))
        with pytest.raises(Refused, match="never consented"):
            service.change_answer(s, other, sup, case_units(s, other.id)[0].unit_id, "1",
                                  now=FIELD_START, cfg=cfg)
    with db.session() as s:
        assert s.scalar(select(Answer.rating).where(Answer.case_id == done,
                                                    Answer.unit_id == units[0].unit_id)) == "2"
        assert s.scalars(select(Answer).where(Answer.case_id != done)).all() == []


def test_an_abandoned_screen_is_closed_with_the_code_its_answers_earn(db):
    field = build_field(db, n_cases=1, units_per_case=4)
    cfg = field.cfg
    ann = add_user(db, "ann")
    with db.transaction() as s:
        user, case = _take(s, ann, cfg)
        attempt = service.begin_attempt(s, case, user, now=FIELD_START)
        service.mark_answered(s, attempt, now=FIELD_START, consent=True)
        for u in case_units(s, case.id)[:3]:
            service.save_answer(s, case, user, u.unit_id, "1", now=FIELD_START, cfg=cfg)
        case.lock_expires_at = FIELD_START  # the browser was closed
        assert service.reap_abandoned(s, now=FIELD_START.replace(hour=3), cfg=cfg) == 1
        assert attempt.outcome == "1.2"  # 3 of 4: a partial, not a break-off
