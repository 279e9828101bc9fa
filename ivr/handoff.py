"""The hand-over key: the caller is put through to a free interviewer.

The case goes to the CATI queue with its IVR answers; when an interviewer is
free their CATI screen opens the case while ``<Dial>`` rings their phone.  When
nobody is free, or nobody answers in time, the caller is told so and offered a
call back, and the case gets the top CATI priority (:data:`HANDOFF_PRIORITY`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr import flow
from ivr.live import Live, Urls, language_of
from minping import cases
from minping.models import CallAttempt, SampleCase, User

#: CATI priority of a case whose caller asked for an interviewer and found none free.
HANDOFF_PRIORITY = 1000


def free_interviewer(session: Session, *, now: datetime) -> User | None:
    """An active interviewer with a phone on file who holds no case now (longest idle first)."""
    busy = select(SampleCase.locked_by).where(
        SampleCase.lock_channel == "cati", SampleCase.locked_by.is_not(None),
        SampleCase.lock_expires_at >= now)
    return session.scalar(
        select(User).where(User.role == "interviewer", User.active.is_(True),
                           User.phone.is_not(None), User.phone != "", User.id.not_in(busy))
        .order_by(User.id).limit(1).with_for_update(skip_locked=True))


def hand_over(session: Session, cfg, case: SampleCase, attempt: CallAttempt, lang: str, *,
               now: datetime, urls: Urls | None = None) -> str:
    """The hand-over key: the caller is put through to a free interviewer.

    The case goes to the CATI queue (``handoff_cati``) with its answers so far
    and, when an interviewer is free, is held for them -- their CATI screen
    opens it -- while ``<Dial>`` rings their phone (as click-to-call does) for
    ``[ivr] handoff_wait_seconds``.  When nobody is free, or nobody answers in
    time (:func:`hand_over_result`), the caller is told so, an interviewer will
    call back, and the case gets the top CATI priority.
    """
    if case.state == "final":
        return flow.hangup()
    cases.hand_to_cati(session, case, now=now, actor="ivr", reason="hand-over key pressed")
    user = free_interviewer(session, now=now) if urls is not None else None
    cases.add_event(session, attempt, "handoff", now=now,
                    payload={"interviewer_id": user.id if user else None})
    if user is None:
        return _nobody_free(session, cfg, case, lang)
    case.lock_channel, case.locked_by = "cati", user.id
    case.locked_at, case.lock_expires_at = now, now + cases.CATI_HOLD
    return flow.transfer(cfg, lang, number=user.phone, timeout=cfg.ivr.handoff_wait_seconds,
                         action=urls.handoff(attempt.id, user.id))


def _nobody_free(session: Session, cfg, case: SampleCase, lang: str) -> str:
    case.priority = max(case.priority or 0, HANDOFF_PRIORITY)
    return flow.goodbye(cfg, lang, "handoff_unavailable")


def hand_over_result(session: Session, cfg, attempt: Live | CallAttempt, *, interviewer_id: int,
                     dial_status: str, now: datetime) -> str:
    """The ``<Dial>`` to the interviewer ended: talked, or nobody took the call."""
    if isinstance(attempt, Live):
        attempt = attempt.orm(session)
    case = session.get(SampleCase, attempt.case_id)
    cases.add_event(session, attempt, "handoff_result", now=now,
                    payload={"interviewer_id": interviewer_id, "DialCallStatus": dial_status})
    if dial_status == "completed" or case.state == "final":
        return flow.hangup()
    if case.lock_channel == "cati" and case.locked_by == interviewer_id:
        cases.release_hold(session, case)
    return _nobody_free(session, cfg, case, language_of(cfg, case))

