"""The hand-over key: the caller is put through to a free interviewer.

The case goes to the CATI queue with its IVR answers; when an interviewer is
free their CATI screen opens the case while ``<Dial>`` rings their phone.  When
nobody is free, or nobody answers in time, the caller is told so and offered a
call back by key (:data:`CALLBACK_KEY` / :data:`END_KEY`, :func:`callback_choice`):

* accepted (or no choice made): an appointment due now (``appointment``, kind
  ``soft``, note :data:`CALLBACK_NOTE`) and the top CATI priority
  (:data:`HANDOFF_PRIORITY`); the caller hears ``handoff_callback``;
* declined: the case goes back to the normal queue (``in_field``, no raised
  priority), the event ``callback_declined`` and the audit log say so; the
  caller hears ``handoff_declined``.

A caller who hangs up during the offer keeps the top CATI priority (they asked
for a person).  The priority is reset when the case is finished or taken.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ivr import flow
from ivr.live import Live, Urls, event_kinds, language_of
from minping import cases
from minping.models import Appointment, AttemptEvent, AuditLog, CallAttempt, SampleCase, User

#: CATI priority of a case whose caller asked for an interviewer and found none free
#: (reset by :func:`minping.cases.finish_attempt` once an interviewer has called it).
HANDOFF_PRIORITY = cases.HANDOFF_PRIORITY
#: The keys of the call-back offer (said in the prompt ``handoff_unavailable``).
CALLBACK_KEY, END_KEY = "1", "2"
#: The note of the appointment a call-back offer creates.
CALLBACK_NOTE = "IVR hand-over: the caller asked to be called back by an interviewer"


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
    time (:func:`hand_over_result`), the case gets the top CATI priority and
    the caller is told so and offered a call-back by key (:func:`callback_choice`).
    """
    if case.state == "final":
        return flow.hangup()
    cases.hand_to_cati(session, case, now=now, actor="ivr", reason="hand-over key pressed")
    user = free_interviewer(session, now=now) if urls is not None else None
    cases.add_event(session, attempt, "handoff", now=now,
                    payload={"interviewer_id": user.id if user else None})
    if user is None:
        return _nobody_free(session, cfg, case, attempt, lang, urls=urls)
    case.lock_channel, case.locked_by = "cati", user.id
    case.locked_at, case.lock_expires_at = now, now + cases.CATI_HOLD
    return flow.transfer(cfg, lang, number=user.phone, timeout=cfg.ivr.handoff_wait_seconds,
                         action=urls.handoff(attempt.id, user.id))


def _nobody_free(session: Session, cfg, case: SampleCase, attempt, lang: str, *,
                 urls: Urls | None) -> str:
    """Nobody took the hand-over: top CATI priority, and the call-back offer."""
    case.priority = max(case.priority or 0, HANDOFF_PRIORITY)
    if urls is None:  # a key whose request came after the call ended: no one to ask
        return flow.hangup()
    return offer_callback_twiml(cfg, lang, action=urls.callback(attempt.id))


def offer_callback_twiml(cfg, lang: str, *, action: str, notice: str | None = None) -> str:
    return flow.offer(cfg, lang, "handoff_unavailable", action=action, notice=notice,
                      callback_key=CALLBACK_KEY, end_key=END_KEY)


def hand_over_result(session: Session, cfg, attempt: Live | CallAttempt, *, interviewer_id: int,
                     dial_status: str, now: datetime, urls: Urls | None = None) -> str:
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
    return _nobody_free(session, cfg, case, attempt, language_of(cfg, case), urls=urls)


def callback_choice(session: Session, cfg, attempt: Live | CallAttempt, *, digits: str,
                    tries: int, urls: Urls, now: datetime) -> str:
    """The key pressed at the call-back offer (``/ivr/callback``).

    :data:`CALLBACK_KEY` -- or no valid key after ``[ivr] max_reasks`` re-asks, the
    caller having asked for a person -- books the call-back; :data:`END_KEY`
    declines it.  A repeated request (the same choice twice) changes nothing more.
    """
    if isinstance(attempt, Live):
        attempt = attempt.orm(session)
    case = session.get(SampleCase, attempt.case_id)
    lang = language_of(cfg, case)
    if case.state == "final" or event_kinds(session, attempt.id) & {"callback_requested",
                                                                     "callback_declined"}:
        return flow.hangup()
    cases.add_event(session, attempt, "digits", now=now,
                    payload={"step": "callback", "digits": digits, "try": tries})
    if digits not in (CALLBACK_KEY, END_KEY) and tries < cfg.ivr.max_reasks:
        return offer_callback_twiml(cfg, lang, action=urls.callback(attempt.id, tries + 1),
                                    notice="invalid_key" if digits else "no_answer")
    if digits == END_KEY:
        decline_callback(session, case, attempt, now=now)
        return flow.goodbye(cfg, lang, "handoff_declined")
    book_callback(session, case, attempt, now=now, chosen=digits == CALLBACK_KEY)
    return flow.goodbye(cfg, lang, "handoff_callback")


def book_callback(session: Session, case: SampleCase, attempt: CallAttempt, *, now: datetime,
                  chosen: bool = True) -> Appointment:
    """The caller accepted the call-back: an appointment due now, the top CATI priority."""
    case.priority = max(case.priority or 0, HANDOFF_PRIORITY)
    appointment = Appointment(case_id=case.id, due_at=now, kind="soft", status="pending",
                              note=CALLBACK_NOTE, created_at=now)
    session.add(appointment)
    cases.add_event(session, attempt, "callback_requested", now=now,
                    payload={"chosen": chosen})
    return appointment


def decline_callback(session: Session, case: SampleCase, attempt: CallAttempt, *,
                     now: datetime) -> None:
    """The caller declined the call-back: the case goes back to the normal queue."""
    cases.add_event(session, attempt, "callback_declined", now=now)
    if case.priority == HANDOFF_PRIORITY:
        case.priority = 0
    if case.state == "handoff_cati":
        cases.hand_to_ivr(session, case, now=now, actor="ivr")
    session.add(AuditLog(at=now, actor="ivr", action="case.callback_declined", entity="case",
                         entity_id=str(case.id),
                         detail="the caller declined an interviewer's call-back"))


def handover_counts(session: Session, *, draw_id: int | None = None) -> dict[str, int]:
    """What became of the hand-overs (for the demo's and ``simulate``'s summaries).

    ``asked`` hand-over keys, ``put_through`` (an interviewer's phone answered the
    ``<Dial>``), ``not_answered`` (rung, nobody took it), ``callback_booked``,
    ``callback_declined``, and ``taken_in_cati``: handed-over cases an interviewer
    has since called (a CATI attempt).
    """
    E, A = AttemptEvent, CallAttempt
    handed = (select(A.case_id).join(E, E.attempt_id == A.id).where(E.kind == "handoff")
              .join(SampleCase, SampleCase.id == A.case_id))
    if draw_id is not None:
        handed = handed.where(SampleCase.draw_id == draw_id)

    def events(kind: str, *where) -> int:
        q = (select(func.count()).select_from(E).join(A, A.id == E.attempt_id)
             .where(E.kind == kind, A.case_id.in_(handed), *where))
        return session.scalar(q) or 0

    put_through = E.payload["DialCallStatus"].as_string() == "completed"
    return {
        "asked": events("handoff"),
        "put_through": events("handoff_result", put_through),
        "not_answered": events("handoff_result", ~put_through),
        "callback_booked": events("callback_requested"),
        "callback_declined": events("callback_declined"),
        "taken_in_cati": session.scalar(select(func.count(func.distinct(A.case_id))).where(
            A.channel == "cati", A.case_id.in_(handed))) or 0,
    }
