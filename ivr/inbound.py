"""Calls to the survey number: a sampled respondent is recognised and interviewed.

Caller ID alone could be anyone's: when the advance SMS carried a code
(``[ivr] inbound_code_digits``), the caller confirms with it first.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr import flow
from ivr.interview import start_call
from ivr.live import STATUS_RANK, Urls, find_attempt, language_of
from minping import cases
from minping.models import AuditLog, DoNotCall, FrameContact, SampleCase


def case_for_caller(session: Session, phone: str, *, now: datetime) -> SampleCase | None:
    """The released, unfinished case whose number is ``phone`` (newest draw first)."""
    if not phone or session.get(DoNotCall, phone) is not None:
        return None
    return session.scalar(
        select(SampleCase).join(FrameContact, FrameContact.id == SampleCase.contact_id)
        .where(FrameContact.phone == phone, SampleCase.release_state == "released",
               SampleCase.state.in_(cases.IN_FIELD_STATES))
        .order_by(SampleCase.draw_id.desc(), SampleCase.id).limit(1)
    )


def inbound(session: Session, cfg, *, caller: str, call_sid: str, urls: Urls,
            now: datetime) -> str:
    """A call to the survey number: a known respondent resumes; others hear who we are.

    A sampled respondent whose case is being dialled, is open on an interviewer's
    screen, or waits for an interviewer (hand-over) is recognised and told that
    they will be called (prompt ``callback_pending``): that call is already under
    way or queued.
    """
    existing = find_attempt(session, attempt_id=None, call_sid=call_sid)
    if existing is not None:  # Twilio retried the request
        return start_call(session, cfg, existing, urls=urls, now=now)
    case = case_for_caller(session, caller, now=now)
    if case is None:
        return flow.goodbye(cfg, cfg.campaign.default_language, "unknown_caller")
    if needs_code(cfg, case):  # caller ID alone could be anyone's: the SMS's code first
        return flow.ask_code(cfg, language_of(cfg, case), digits=len(case.sms_code),
                             action=urls.verify(case.id))
    return _take_inbound(session, cfg, case, call_sid=call_sid, urls=urls, now=now)


def new_sms_code(cfg) -> str | None:
    """A random code for the SMS advance notice (``None`` when codes are off)."""
    digits = cfg.ivr.inbound_code_digits
    return f"{secrets.randbelow(10**digits):0{digits}d}" if digits else None


def needs_code(cfg, case: SampleCase) -> bool:
    """An inbound caller confirms with the SMS's code: codes on and an SMS was sent."""
    return bool(cfg.ivr.inbound_code_digits and case.notified_at is not None and case.sms_code)


def verify_code(session: Session, cfg, *, case_id: int, caller: str, call_sid: str,
                digits: str, tries: int, urls: Urls, now: datetime) -> str:
    """The code an inbound caller entered: the interview, a re-ask, or goodbye."""
    existing = find_attempt(session, attempt_id=None, call_sid=call_sid)
    if existing is not None:  # Twilio retried the request
        return start_call(session, cfg, existing, urls=urls, now=now)
    case = case_for_caller(session, caller, now=now)
    if case is None or case.id != case_id:
        return flow.goodbye(cfg, cfg.campaign.default_language, "unknown_caller")
    lang = language_of(cfg, case)
    if not needs_code(cfg, case) or hmac.compare_digest(digits.encode(), case.sms_code.encode()):
        return _take_inbound(session, cfg, case, call_sid=call_sid, urls=urls, now=now)
    session.add(AuditLog(at=now, actor="ivr", action="case.inbound_code_wrong", entity="case",
                         entity_id=str(case.id), detail=f"try {tries}"))
    if tries < cfg.ivr.max_reasks:
        return flow.ask_code(cfg, lang, digits=len(case.sms_code),
                             action=urls.verify(case.id, tries + 1), notice="invalid_key")
    return flow.goodbye(cfg, lang, "code_mismatch")


def _take_inbound(session: Session, cfg, case: SampleCase, *, call_sid: str, urls: Urls,
                  now: datetime) -> str:
    if case.state == "handoff_cati" or not cases.try_hold(session, case.id, channel="ivr",
                                                          now=now):
        session.add(AuditLog(at=now, actor="ivr", action="case.inbound_while_busy",
                             entity="case", entity_id=str(case.id),
                             detail=f"state {case.state}, held by {case.lock_channel or '-'}"))
        return flow.goodbye(cfg, language_of(cfg, case), "callback_pending")
    session.refresh(case)
    attempt = cases.start_attempt(session, case, channel="ivr", now=now, call_sid=call_sid,
                                  direction="inbound")
    attempt.status, attempt.status_rank = "in-progress", STATUS_RANK["in-progress"]
    attempt.answered_at = now
    attempt.answered_by = "human"
    session.flush()
    return start_call(session, cfg, find_attempt(session, attempt_id=None, call_sid=call_sid),
                      urls=urls, now=now)

