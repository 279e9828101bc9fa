"""CATI operations: what the interviewer and supervisor screens do, without HTTP.

The views call these functions, and so does :mod:`cati.simulate` (the demo's
simulated interviewers); tests call them directly.  Each takes a ``Session``
and a ``now`` and leaves committing to the caller.  The case life cycle itself
(holds, attempts, answers, dispositions) is :mod:`minping.cases`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from minping import calling, calltimes, cases
from minping import dispositions as rule
from minping.cases import CATI_HOLD, CaseError
from minping.dispositions import Refused
from minping.models import (
    Answer,
    Appointment,
    AttemptEvent,
    AuditLog,
    CallAttempt,
    DispositionEvent,
    FrameContact,
    SampleCase,
    User,
)
from minping.scheduler import Progress, held_by, pick
from scoring.aapor import CATI_CHOICES, disposition

#: The codes an interviewer may close an attempt with.
CHOICE_CODES = frozenset(d.code for d in CATI_CHOICES)
#: Soft refusals: they may go to the refusal-conversion queue.
SOFT_REFUSALS = frozenset({"2.1111", "2.1121"})
APPOINTMENT_CODE = "2.211"


def actor_of(user: User) -> str:
    return f"{user.role}:{user.username}"


def mask_phone(phone: str) -> str:
    """``+8613800000001`` -> ``138****0001``: the first three and the last four digits."""
    digits = phone[3:] if phone.startswith("+86") else phone.lstrip("+")
    if len(digits) <= 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def shown_phone(phone: str, user: User) -> str:
    """The number as ``user`` may see it: full for supervisors, masked for everybody else."""
    return phone if user.role == "supervisor" else mask_phone(phone)


def log_phone_view(session: Session, user: User, case_ids, *, now: datetime) -> int:
    """Record in the audit log that ``user`` saw the full number of each case.

    Only supervisors see full numbers (:func:`shown_phone`); for anybody else
    nothing is logged.  Returns how many views were logged (the caller commits).
    """
    if user.role != "supervisor":
        return 0
    ids = sorted(set(case_ids))
    for case_id in ids:
        session.add(AuditLog(at=now, user_id=user.id, actor=actor_of(user), action="phone.view",
                             entity="case", entity_id=str(case_id)))
    return len(ids)


# --- taking and giving back a case -------------------------------------------------------


def take_next(session: Session, user: User, *, now: datetime, cfg,
              progress: Progress | None = None, draw_id: int | None = None,
              hold: timedelta = CATI_HOLD) -> SampleCase | None:
    """Hold the best case for ``user`` (see :func:`minping.scheduler.next_case`).

    Attempts left open on cases whose hold has run out (a closed browser) are
    closed in the same transaction (:func:`reap_abandoned`), so the case can be worked
    again: the pick itself reports them (it never gives such a case) and, when it found
    nothing else, picks again once they are closed.
    """
    if user.role != "interviewer":
        raise Refused("Only interviewers take cases.")
    got = pick(session, user, now=now, rules=cfg.calling, progress=progress, draw_id=draw_id,
               hold=hold)
    if got.stale and reap_abandoned(session, now=now, cfg=cfg) and got.case is None:
        got = pick(session, user, now=now, rules=cfg.calling, progress=progress,
                   draw_id=draw_id, hold=hold)
    return got.case


def holding(session: Session, case_id: int, user: User, *, now: datetime) -> SampleCase:
    """The case, if ``user`` holds it now; else :class:`CaseError`."""
    case = session.get(SampleCase, case_id)
    if case is None:
        raise Refused("There is no such case.")
    if not (case.lock_channel == "cati" and case.locked_by == user.id
            and case.lock_expires_at is not None and case.lock_expires_at >= now):
        raise Refused("Case {case} is no longer yours (its hold ran out or it was given "
                      "back): take the next case.", case=case.pseudo_id)
    return case


def keep_alive(session: Session, case: SampleCase, *, now: datetime,
               hold: timedelta = CATI_HOLD) -> datetime:
    cases.extend_hold(session, case, now=now, hold=hold)
    return case.lock_expires_at


def open_attempt(session: Session, case: SampleCase, user: User) -> CallAttempt | None:
    return session.scalar(
        select(CallAttempt).where(CallAttempt.case_id == case.id, CallAttempt.channel == "cati",
                                  CallAttempt.interviewer_id == user.id,
                                  CallAttempt.outcome.is_(None))
        .order_by(CallAttempt.id.desc()).limit(1)
    )


def give_back(session: Session, case: SampleCase, user: User, *, now: datetime) -> None:
    """Release a case without calling it (only before dialing)."""
    if open_attempt(session, case, user) is not None:
        raise Refused("Case {case}: a call is open; close it with a disposition.",
                      case=case.pseudo_id)
    cases.release_hold(session, case)
    session.add(AuditLog(at=now, user_id=user.id, actor=actor_of(user), action="case.release",
                         entity="case", entity_id=str(case.id)))


def reap_abandoned(session: Session, *, now: datetime, cfg) -> int:
    """Close CATI attempts left open on cases nobody holds any more.

    The attempt ends as 3.16 (technical problem: the screen was left) unless the
    respondent consented, then with the code the answers earn
    (:func:`scoring.dispositions.interview_code`: 2.12 break-off, resumed later
    where it stopped, 1.2 or 1.1).  The case is held for the moment of closing it (a conditional
    update), so two pickers never close one attempt twice.
    """
    stale = session.execute(
        select(CallAttempt.id, CallAttempt.case_id)
        .join(SampleCase, SampleCase.id == CallAttempt.case_id)
        .where(CallAttempt.channel == "cati", CallAttempt.outcome.is_(None),
               (SampleCase.lock_channel.is_(None)) | (SampleCase.lock_expires_at < now))
    ).all()
    closed = 0
    for attempt_id, case_id in stale:
        if not cases.try_hold(session, case_id, channel="cati", now=now):
            continue
        case = session.get(SampleCase, case_id)
        attempt = session.get(CallAttempt, attempt_id)
        state = rule.state_of(session, case, attempt)
        code = state.earned if state.consent else "3.16"
        cases.finish_attempt(session, case, attempt, code, now=now, rules=cfg.calling,
                             max_attempts=cfg.calling.max_attempts,
                             note="closed automatically: the screen was left open")
        closed += 1
    return closed


# --- the call ------------------------------------------------------------------------------


def begin_attempt(session: Session, case: SampleCase, user: User, *, now: datetime,
                  call_sid: str | None = None, how: str = "manual") -> CallAttempt:
    """Open the attempt (the interviewer dialled, or the gateway is bridging)."""
    attempt = open_attempt(session, case, user)
    if attempt is not None:
        return attempt
    attempt = cases.start_attempt(session, case, channel="cati", now=now, interviewer_id=user.id,
                                  call_sid=call_sid)
    attempt.status = "in-progress" if how == "manual" else "queued"
    cases.add_event(session, attempt, "dial", now=now, payload={"how": how})
    return attempt


def mark_answered(session: Session, attempt: CallAttempt, *, now: datetime,
                  consent: bool = False) -> None:
    """The respondent picked up (and, with ``consent``, agreed to the interview)."""
    if attempt.answered_at is None:
        attempt.answered_at = now
        attempt.status = "in-progress"
        cases.add_event(session, attempt, "answered", now=now)
    if consent:
        cases.add_event(session, attempt, "consent", now=now)


#: Longest note an interviewer may keep with an attempt.
MAX_NOTE = 500


def twiml_bridge(respondent: str, *, caller_id: str, timeout: int, byoc: str = "") -> str:
    """TwiML that bridges the interviewer's leg to the respondent (no recording).

    With a BYOC trunk (``[ivr] byoc_trunk_sid``) the respondent's leg goes through it
    (``<Number byoc="BY...">``), as the IVR's calls and hand-overs do: Twilio refuses a
    +86 caller ID on a call to a +86 number otherwise.
    """
    from twilio.twiml.voice_response import Dial, VoiceResponse

    response = VoiceResponse()
    dial = Dial(caller_id=caller_id, timeout=timeout, answer_on_bridge=True)
    dial.number(respondent, **({"byoc": byoc} if byoc else {}))
    response.append(dial)
    return str(response)


def dial_through_gateway(session: Session, case: SampleCase, user: User, *, now: datetime,
                         client, from_number: str, cfg) -> CallAttempt:
    """Click-to-call: Twilio rings ``user.phone`` and, when answered, dials the respondent.

    Recording is never started here; :func:`start_recording` does it once the
    respondent has consented.
    """
    from twilio.base.exceptions import TwilioRestException

    if case.release_state == "practice":  # minping.practice: never a real call
        raise CaseError("practice cases are dialled by a simulated call only")
    if not user.phone:
        raise CaseError(f"user {user.username!r}: no phone number on file for click-to-call")
    phone = session.scalar(select(FrameContact.phone).where(FrameContact.id == case.contact_id))
    byoc = cfg.ivr.byoc_trunk_sid
    twiml = twiml_bridge(phone, caller_id=from_number, timeout=cfg.calling.ring_timeout_seconds,
                         byoc=byoc)
    try:
        call = client.calls.create(to=user.phone, from_=from_number, twiml=twiml,
                                   time_limit=cfg.calling.call_time_limit_seconds,
                                   **({"byoc": byoc} if byoc else {}))
    except TwilioRestException as exc:  # nothing was placed: no attempt is recorded
        raise Refused("Twilio refused the call to your phone: {reason} (error {code}). "
                      "Dial by hand, or ask the supervisor to check the caller ID.",
                      reason=exc.msg, code=exc.code) from exc
    attempt = begin_attempt(session, case, user, now=now, call_sid=call.sid, how="gateway")
    attempt.status = getattr(call, "status", None) or "queued"
    return attempt


def start_recording(session: Session, attempt: CallAttempt, *, now: datetime, client) -> None:
    """Start recording the bridged call (only after consent); failures are logged, not raised."""
    if not attempt.call_sid:
        return
    try:
        rec = client.calls(attempt.call_sid).recordings.create()
        cases.add_event(session, attempt, "recording", now=now, payload={"sid": rec.sid})
    except Exception as exc:  # the gateway refused: the interview goes on unrecorded
        cases.add_event(session, attempt, "recording-failed", now=now,
                        payload={"error": f"{type(exc).__name__}: {exc}"})


# --- answers -----------------------------------------------------------------------------


def save_answer(session: Session, case: SampleCase, user: User, unit_id: int, key: str | None,
                *, now: datetime, cfg) -> Answer:
    """Save the rating ``key`` (a scale key, or ``None`` for no answer) as it is keyed."""
    if key is not None:
        cfg.scale.option(key)  # raises KeyError naming the key and the allowed keys
    attempt = open_attempt(session, case, user)
    rule.check_rating(rule.state_of(session, case, attempt))
    mark_answered(session, attempt, now=now)
    return cases.record_answer(session, case, unit_id, key, channel="cati", now=now,
                               attempt_id=attempt.id, actor=actor_of(user), user_id=user.id)


def change_answer(session: Session, case: SampleCase, supervisor: User, unit_id: int,
                  key: str | None, *, now: datetime, cfg, reason: str = "") -> Answer:
    """A supervisor changes an answer after the fact (audited by ``record_answer``)."""
    if supervisor.role != "supervisor":
        raise CaseError(f"user {supervisor.username!r}: only supervisors change answers")
    if key is not None:
        cfg.scale.option(key)
    rule.check_supervisor_change(session, case, unit_id, key)
    answer = cases.record_answer(session, case, unit_id, key, channel="cati", now=now,
                                 actor=actor_of(supervisor), user_id=supervisor.id)
    if reason:
        session.add(AuditLog(at=now, user_id=supervisor.id, actor=actor_of(supervisor),
                             action="answer.change.reason", entity="answer",
                             entity_id=str(answer.id), detail=reason))
    return answer


# --- closing the attempt -------------------------------------------------------------------


@dataclass(frozen=True)
class AppointmentRequest:
    """A call-back time in the respondent's (the campaign's) local time."""

    day: date
    at: time
    kind: str = "soft"  # "hard": only the interviewer who booked it

    def utc(self, cfg) -> datetime:
        from datetime import UTC

        local = datetime.combine(self.day, self.at, tzinfo=cfg.calling.tz)
        return local.astimezone(UTC)


def close_attempt(session: Session, case: SampleCase, user: User, *, code: str, now: datetime,
                  cfg, note: str | None = None, appointment: AppointmentRequest | None = None,
                  refusal_conversion: bool = False) -> cases.Finish:
    """End the open attempt with a disposition from :data:`scoring.aapor.CATI_CHOICES`.

    An appointment (code 2.211) books a call-back: due at the given local time
    (stored in UTC), soft (anybody) or hard (only this interviewer).  A soft
    refusal with ``refusal_conversion`` puts the case in the refusal-conversion
    queue (experienced interviewers only).  Pending appointments that were due
    are marked kept (contact made) or missed.
    """
    if note is not None and len(note) > MAX_NOTE:
        raise Refused("Note: at most {n} characters, got {got}.", n=MAX_NOTE, got=len(note))
    if code not in CHOICE_CODES:
        raise Refused("Choose a disposition from the list.")
    info = disposition(code)
    attempt = open_attempt(session, case, user)
    rule.check_code(code, rule.state_of(session, case, attempt))
    due = None
    if code == APPOINTMENT_CODE:
        if appointment is None:
            raise Refused("Appointment: choose the date and the time of the call-back.")
        if appointment.kind not in ("hard", "soft"):
            raise Refused("Appointment: choose soft or hard.")
        due = appointment.utc(cfg)
        if due <= now:
            raise Refused("Appointment: {when} is already past.",
                          when=f"{appointment.day} {appointment.at:%H:%M}")
        if not calling.is_allowed(cfg.calling, due):
            raise Refused("Appointment: {when} is outside the calling hours.",
                          when=f"{appointment.day} {appointment.at:%H:%M}")
    elif appointment is not None:
        raise Refused("Appointment: only with disposition {code}.", code=APPOINTMENT_CODE)
    contact = info.category in ("I", "P", "R", "O") or code == APPOINTMENT_CODE
    for appt in session.scalars(select(Appointment).where(
            Appointment.case_id == case.id, Appointment.status == "pending",
            Appointment.due_at <= now)):
        appt.status = "kept" if contact else "missed"
    attempt.status = "completed"
    retry = due if due is not None else calltimes.cati_retry_at(session, cfg.calling, case,
                                                                 code=code, now=now)
    finish = cases.finish_attempt(session, case, attempt, code, now=now, rules=cfg.calling,
                                  max_attempts=cfg.calling.max_attempts, by_user_id=user.id,
                                  note=note, next_attempt_at=retry)
    if due is not None and finish.final is None:
        session.add(Appointment(case_id=case.id, due_at=due, kind=appointment.kind,
                                interviewer_id=user.id if appointment.kind == "hard" else None,
                                status="pending", note=note, created_by=user.id,
                                created_at=now))
    if code in SOFT_REFUSALS and refusal_conversion and finish.final is None:
        case.refusal_conversion = True
    elif info.category in ("I", "P"):
        case.refusal_conversion = False
    if case.assigned_to == user.id and finish.final is not None:
        case.assigned_to = None
    return finish


# --- what the screens show ------------------------------------------------------------------


def attempt_history(session: Session, case_id: int) -> list[dict[str, Any]]:
    """The case's attempts, oldest first, with their outcome and who made them."""
    names = dict(session.execute(select(User.id, User.display_name)).all())
    rows = session.scalars(
        select(CallAttempt).where(CallAttempt.case_id == case_id)
        .order_by(CallAttempt.started_at, CallAttempt.id)
    ).all()
    out = []
    for a in rows:
        d = disposition(a.outcome) if a.outcome else None
        out.append({"id": a.id, "channel": a.channel, "started_at": a.started_at,
                    "ended_at": a.ended_at,
                    "interviewer": names.get(a.interviewer_id) if a.interviewer_id else None,
                    "code": a.outcome, "label_zh": d.label_zh if d else None,
                    "label_en": d.label_en if d else None, "note": a.note})
    return out


def appointments_of(session: Session, case_id: int) -> list[Appointment]:
    return list(session.scalars(select(Appointment).where(Appointment.case_id == case_id)
                                .order_by(Appointment.due_at)))


def disposition_history(session: Session, case_id: int) -> list[DispositionEvent]:
    return list(session.scalars(select(DispositionEvent).where(
        DispositionEvent.case_id == case_id).order_by(DispositionEvent.at, DispositionEvent.id)))


def audit_of_case(session: Session, case_id: int) -> list[AuditLog]:
    answer_ids = [str(i) for i in session.scalars(select(Answer.id).where(
        Answer.case_id == case_id))]
    cond = and_(AuditLog.entity == "case", AuditLog.entity_id == str(case_id))
    if answer_ids:
        cond = cond | and_(AuditLog.entity == "answer", AuditLog.entity_id.in_(answer_ids))
    return list(session.scalars(select(AuditLog).where(cond).order_by(AuditLog.at, AuditLog.id)))


def events_of(session: Session, attempt_id: int) -> list[AttemptEvent]:
    return list(session.scalars(select(AttemptEvent).where(AttemptEvent.attempt_id == attempt_id)
                                .order_by(AttemptEvent.at, AttemptEvent.id)))


#: Longest search a screen may post, and most digits a phone number has (E.164).
MAX_QUERY = 40
MAX_PHONE_DIGITS = 15
MAX_ID = 2**31 - 1
PHONE_QUERY = re.compile(r"^\+?[\d\s()\-]+$")


def find_cases(session: Session, query: str, *, by_phone: bool = False,
               limit: int = 50) -> tuple[list[SampleCase], bool]:
    """Cases by id (``123``), pseudonymous id (``R…``) and, with ``by_phone`` (supervisors
    only), by phone number (any part of it, at least 4 digits).

    Returns the cases and whether the phone numbers were searched (the caller audits
    it).  Raises ``ValueError`` for a query out of bounds (too long, too many digits);
    an id beyond the database's integer range simply matches nothing.
    """
    q = query.strip()
    if len(q) > MAX_QUERY:
        raise ValueError(f"q: at most {MAX_QUERY} characters")
    if not q:
        return [], False
    conds = []
    if q.isascii() and q.isdigit() and int(q) <= MAX_ID:
        conds.append(SampleCase.id == int(q))
    if q.upper().startswith("R") and q[1:].isalnum():
        conds.append(SampleCase.pseudo_id == q.upper())
    searched_phone = False
    if by_phone and PHONE_QUERY.match(q):
        digits = "".join(ch for ch in q if ch.isdigit())
        if len(digits) > MAX_PHONE_DIGITS:
            raise ValueError(f"q: a phone number has at most {MAX_PHONE_DIGITS} digits")
        if len(digits) >= 4:
            searched_phone = True
            conds.append(SampleCase.contact_id.in_(
                select(FrameContact.id).where(FrameContact.phone.contains(digits))))
    if not conds:
        return [], searched_phone
    cond = conds[0]
    for c in conds[1:]:
        cond = cond | c
    return list(session.scalars(select(SampleCase).where(cond).order_by(SampleCase.id)
                                .limit(limit))), searched_phone


def log_phone_search(session: Session, user: User, query: str, case_ids, *, now: datetime,
                     address: str | None = None) -> None:
    """Audit a search by phone number: who, when, from where, how many digits and which
    cases it found (the digits themselves are not stored; the caller commits)."""
    digits = sum(ch.isdigit() for ch in query)
    session.add(AuditLog(at=now, user_id=user.id, actor=actor_of(user), action="phone.search",
                         entity="case", entity_id=None,
                         new={"digits": digits, "found": sorted(case_ids)[:50],
                              "address": address}))


# --- supervisor actions -------------------------------------------------------------------


def reassign(session: Session, case: SampleCase, supervisor: User, interviewer_id: int | None,
             *, now: datetime) -> None:
    """Reserve the case for one interviewer (``None``: anybody)."""
    if interviewer_id is not None:
        target = session.get(User, interviewer_id)
        if target is None or target.role != "interviewer":
            raise CaseError(f"interviewer: {interviewer_id!r} is not an interviewer")
    old = case.assigned_to
    case.assigned_to = interviewer_id
    # the work moves with the case: its pending appointments go to the new interviewer
    # (a hard one now reaches only them), and an old interviewer's hold ends at once
    moved = session.execute(
        update(Appointment)
        .where(Appointment.case_id == case.id, Appointment.status == "pending")
        .values(interviewer_id=interviewer_id)
        .execution_options(synchronize_session=False)).rowcount
    old_hold = None
    if (case.lock_channel == "cati" and cases.is_held(case, now)
            and case.locked_by != interviewer_id):
        old_hold = case.locked_by
        case.lock_expires_at = case.locked_at
    session.add(AuditLog(at=now, user_id=supervisor.id, actor=actor_of(supervisor),
                         action="case.reassign", entity="case", entity_id=str(case.id),
                         old={"assigned_to": old, "held_by": old_hold},
                         new={"assigned_to": interviewer_id, "appointments_moved": moved}))


def hand_over(session: Session, case: SampleCase, supervisor: User, channel: str, *,
              now: datetime) -> None:
    """Send a case to the IVR queue or the CATI queue."""
    if cases.is_held(case, now):
        raise Refused("Case {case} is held by {channel} now; try again later.",
                      case=case.pseudo_id, channel=case.lock_channel)
    if channel == "ivr":
        cases.hand_to_ivr(session, case, now=now, actor=actor_of(supervisor),
                          user_id=supervisor.id)
    elif channel == "cati":
        cases.hand_to_cati(session, case, now=now, actor=actor_of(supervisor),
                           reason="sent to CATI by a supervisor")
    else:
        raise CaseError(f"channel: {channel!r} is not 'ivr' or 'cati'")


def release_next_replicate(session: Session, draw_id: int, supervisor: User, *,
                           now: datetime, expected: int | None = None, cfg=None):
    """Release the next sample replicate; returns the :class:`~minping.draws.release.ReleasePlan`
    (``released == 0`` when none is left or ``expected`` is no longer the next one).

    The rule is :func:`minping.draws.release.release_next` (the reserve is never released here).
    """
    from minping.draws.release import release_next

    return release_next(session, draw_id, now=now, actor=actor_of(supervisor),
                        user_id=supervisor.id, expected=expected,
                        experiment=None if cfg is None else cfg.experiment)  # mode experiment


def expire_holds_of(session: Session, user: User) -> int:
    """Release every hold of ``user`` (at logout)."""
    result = session.execute(
        update(SampleCase)
        .where(SampleCase.lock_channel == "cati", SampleCase.locked_by == user.id)
        .values(lock_expires_at=SampleCase.locked_at)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


__all__ = [
    "APPOINTMENT_CODE", "AppointmentRequest", "CHOICE_CODES", "SOFT_REFUSALS", "actor_of",
    "appointments_of", "attempt_history", "audit_of_case", "begin_attempt", "change_answer",
    "close_attempt", "dial_through_gateway", "disposition_history", "events_of",
    "expire_holds_of", "find_cases", "give_back", "hand_over", "held_by", "holding",
    "keep_alive", "log_phone_search", "log_phone_view", "mark_answered", "mask_phone", "open_attempt", "reap_abandoned", "reassign",
    "release_next_replicate", "save_answer", "shown_phone", "start_recording", "take_next",
    "twiml_bridge",
]
