"""The life of a case, shared by IVR and CATI.

A case (a drawn contact) is *released* into the field, then *held* by one
channel at a time: the dialer (``lock_channel = "ivr"``) or one interviewer
(``"cati"``).  A hold is taken with a conditional ``UPDATE`` that only succeeds
when nobody holds the case (or the hold has expired), so two dialers, two
interviewers, or a dialer and an interviewer can never hold one case at once —
on PostgreSQL and on SQLite alike.  On PostgreSQL the candidate rows are also
read ``FOR UPDATE SKIP LOCKED`` so that concurrent pickers do not queue on the
same rows.

Every attempt is a :class:`~minping.models.CallAttempt`; what happens during it
is appended as :class:`~minping.models.AttemptEvent` rows.  Answers are saved
the moment they are given (one row per case and unit; a changed answer is
audited).  When an attempt ends, its AAPOR code is appended to the case's
disposition history; :func:`scoring.aapor.final_disposition` decides whether the
case is finished, and the calling rules when it may be tried next.

The service functions take a ``Session`` and a ``now`` (an aware datetime): the
dialer and the scheduler run on a virtual clock in tests and in the demo.
Callers commit.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Interval, and_, bindparam, exists, func, literal, or_, select, text, update
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session

from minping import calling, experiment
from minping.errors import MinpingError
from minping.models import (
    DIALABLE_SQL,
    Answer,
    Appointment,
    AttemptEvent,
    AuditLog,
    CallAttempt,
    CaseUnit,
    DispositionEvent,
    DoNotCall,
    FrameContact,
    SampleCase,
    Unit,
)
from scoring.aapor import disposition, final_disposition

#: Retry outcome (``[calling.retry_delay_minutes]`` key) for a temporary code.
RETRY_OUTCOME = {
    "3.12": "busy",
    "3.13": "no-answer",
    "3.21": "no-answer",
    "3.14": "machine",
    "2.22": "machine",
    "2.221": "machine",
    "2.222": "machine",
    "3.15": "failed",
    "3.16": "failed",
    "3.11": "failed",
    "2.1111": "soft-refusal",
    "2.1121": "soft-refusal",
    "2.12": "break-off",
    "1.2": "break-off",
    "2.211": "appointment-missed",
    "2.21": "no-answer",
}
DEFAULT_RETRY_OUTCOME = "no-answer"

#: How long a hold lasts when its holder goes silent (crashed dialer, closed browser).
IVR_HOLD = timedelta(minutes=20)
CATI_HOLD = timedelta(minutes=30)

IN_FIELD_STATES = ("pending", "in_field", "handoff_cati")
#: CATI priority of a case whose caller asked for an interviewer and found none free
#: (:mod:`ivr.handoff`); reset once an interviewer has called it or the case is final.
HANDOFF_PRIORITY = 1000


class CaseError(MinpingError):
    """A case cannot do what was asked (held by someone else, already final, ...)."""


class Refused(CaseError):
    """A refused action, with an English ``template`` and its ``values`` to translate
    (the CATI screens show it in the user's language; the case is named by its public
    identifier, the pseudo id 样本 R…)."""

    def __init__(self, template: str, **values: object):
        super().__init__(template.format(**values))
        self.template = template
        self.values = values


def new_pseudo_id() -> str:
    """A pseudonymous respondent id for exports (never derived from the number)."""
    return "R" + secrets.token_hex(6).upper()


# --- holds ------------------------------------------------------------------------------


def _free_or_expired(now: datetime):
    return or_(SampleCase.lock_channel.is_(None), SampleCase.lock_expires_at < now)


def holdable(now: datetime, states: Sequence[str] = IN_FIELD_STATES) -> tuple:
    """The conditions of a hold's conditional ``UPDATE``: in the field, nobody holds it
    (the states as ``OR``: a statement compiled once to driver SQL has no expanding ``IN``)."""
    return (or_(*(SampleCase.state == state for state in states)), _free_or_expired(now))


def hold_values(channel: str, *, now: datetime, user_id: int | None = None,
                hold: timedelta | None = None) -> dict:
    """What a hold sets on the case (:func:`try_hold`, and statements that hold and start
    an attempt at once, :mod:`ivr.inbound`)."""
    hold = hold or (IVR_HOLD if channel == "ivr" else CATI_HOLD)
    # ``now`` may be a bound parameter of a statement compiled once: the hold an interval
    expires = now + hold if isinstance(now, datetime) else now + literal(hold, Interval())
    return {"lock_channel": channel, "locked_by": user_id, "locked_at": now,
            "lock_expires_at": expires, "version": SampleCase.version + 1}


def attempt_start_values(now: datetime) -> dict:
    """What opening an attempt sets on its case: one more attempt, tried now, in the field
    (:func:`start_attempt`; :mod:`ivr.inbound` in its one statement)."""
    return {"attempts": SampleCase.attempts + 1, "last_attempt_at": now,
            "state": sql_case((SampleCase.state == "pending", "in_field"), else_=SampleCase.state)}


def try_hold(
    session: Session,
    case_id: int,
    *,
    channel: str,
    now: datetime,
    user_id: int | None = None,
    hold: timedelta | None = None,
) -> bool:
    """Hold a case for ``channel`` if nobody holds it; True when this caller got it."""
    result = session.execute(
        update(SampleCase)
        .where(SampleCase.id == case_id, *holdable(now))
        .values(hold_values(channel, now=now, user_id=user_id, hold=hold))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    cached = session.identity_map.get(session.identity_key(SampleCase, case_id))
    if cached is not None:
        session.expire(cached)  # the UPDATE bypassed it
    return True


def extend_hold(session: Session, case: SampleCase, *, now: datetime, hold: timedelta) -> None:
    case.lock_expires_at = now + hold


def release_hold(session: Session, case: SampleCase) -> None:
    case.lock_channel = None
    case.locked_by = None
    case.locked_at = None
    case.lock_expires_at = None


def is_held(case: SampleCase, now: datetime) -> bool:
    return case.lock_channel is not None and (
        case.lock_expires_at is None or case.lock_expires_at >= now
    )


def _not_on_do_not_call():
    return ~exists().where(
        DoNotCall.phone == FrameContact.phone, FrameContact.id == SampleCase.contact_id
    )


def due_for_ivr(now: datetime, *, max_attempts: int):
    """The condition a case must meet for the dialer to call it now (calling window aside).

    Cases that belong to interviewers are left to them: a case reassigned to a
    named interviewer, a case in the refusal-conversion queue, a case with a
    pending appointment (the respondent agreed a time with a person), and a
    case the mode experiment routed CATI-first until an interviewer has tried it
    (:func:`minping.experiment.ivr_may_dial`).
    """
    return and_(
        SampleCase.release_state == "released",
        SampleCase.state.in_(("pending", "in_field")),
        _free_or_expired(now),
        or_(SampleCase.next_attempt_at.is_(None), SampleCase.next_attempt_at <= now),
        SampleCase.attempts < max_attempts,
        SampleCase.refusal_conversion.is_(False),
        SampleCase.assigned_to.is_(None),
        ~exists().where(Appointment.case_id == SampleCase.id, Appointment.status == "pending"),
        _not_on_do_not_call(),
        # the mode experiment: a CATI-first case waits for an interviewer's attempt
        experiment.ivr_may_dial(),
    )


def hold_cases_for_ivr(
    session: Session, *, now: datetime, limit: int, max_attempts: int, draw_id: int | None = None
) -> list[SampleCase]:
    """Hold up to ``limit`` due cases for the dialer, oldest due first."""
    if limit <= 0:
        return []
    query = _due_cases_query(limit, max_attempts, draw_id,
                             session.get_bind().dialect.name == "postgresql")
    held = []
    for case_id in session.scalars(query, {"now": now}).all():
        if len(held) == limit:
            break
        if try_hold(session, case_id, channel="ivr", now=now):
            held.append(case_id)
    if not held:
        return []
    return list(session.scalars(select(SampleCase).where(SampleCase.id.in_(held))).all())


@functools.lru_cache(maxsize=32)
def _due_cases_query(limit: int, max_attempts: int, draw_id: int | None, postgresql: bool):
    """The due cases' ids in the dialer's order (``now`` a parameter), built once per shape.

    The dialer runs it for every call it places: building the statement and its
    cache key each time cost more than running it.  The order is the one of the
    ``ix_sample_case_due`` index.
    """
    query = (
        select(SampleCase.id)
        .where(due_for_ivr(bindparam("now"), max_attempts=max_attempts),
               # due_for_ivr's own terms, spelled as the index's predicate: the database
               # uses a partial index only for a query that states it in literals
               text(DIALABLE_SQL))
        .order_by(
            SampleCase.next_attempt_at.is_not(None),
            SampleCase.next_attempt_at,
            SampleCase.priority.desc(),
            SampleCase.id,
        )
        .limit(limit * 2)
    )
    if draw_id is not None:
        query = query.where(SampleCase.draw_id == draw_id)
    if postgresql:
        query = query.with_for_update(skip_locked=True, of=SampleCase)
    return query


# --- attempts ---------------------------------------------------------------------------


def start_attempt(
    session: Session,
    case: SampleCase,
    *,
    channel: str,
    now: datetime,
    interviewer_id: int | None = None,
    call_sid: str | None = None,
    direction: str = "outbound",
) -> CallAttempt:
    """Open an attempt on a case the caller holds; counts towards the attempt cap."""
    if case.state == "final":
        raise Refused("Case {case} is already final ({code}).", case=case.pseudo_id,
                      code=case.final_disposition)
    attempt = CallAttempt(
        case_id=case.id,
        channel=channel,
        interviewer_id=interviewer_id,
        call_sid=call_sid,
        direction=direction,
        started_at=now,
        status="queued",
    )
    session.add(attempt)
    case.attempts += 1
    case.last_attempt_at = now
    if case.state == "pending":
        case.state = "in_field"
    session.flush()
    add_event(session, attempt, "started", now=now, payload={"channel": channel})
    return attempt


def add_event(
    session: Session,
    attempt: CallAttempt,
    kind: str,
    *,
    now: datetime,
    payload: dict | None = None,
    sequence_number: int | None = None,
    idempotency_token: str | None = None,
) -> AttemptEvent:
    event = AttemptEvent(
        attempt_id=attempt.id,
        at=now,
        kind=kind,
        payload=payload or {},
        sequence_number=sequence_number,
        idempotency_token=idempotency_token,
    )
    session.add(event)
    return event


@dataclass(frozen=True)
class Finish:
    """What :func:`finish_attempt` decided."""

    code: str
    final: str | None
    next_attempt_at: datetime | None


def finish_attempt(
    session: Session,
    case: SampleCase,
    attempt: CallAttempt,
    code: str,
    *,
    now: datetime,
    rules,
    max_attempts: int,
    by_user_id: int | None = None,
    note: str | None = None,
    next_attempt_at: datetime | None = None,
) -> Finish:
    """Close an attempt with its AAPOR code and move the case on.

    ``rules`` is the campaign's :class:`~minping.config.CallingRules`.  The case
    is finished when the code is final or the attempts are used up (the final
    code then comes from :func:`scoring.aapor.final_disposition`); otherwise the
    next attempt is due after the outcome's delay, at the next moment inside a
    calling window (``next_attempt_at`` overrides it, e.g. an appointment).  The
    hold is released either way.  Finishing an attempt twice is a no-op.
    What the case becomes is :func:`plan_finish` (the IVR's end of a call applies
    the same plan in one statement, :mod:`ivr.callstate`).
    """
    info = disposition(code)  # raises for an unknown code
    if attempt.outcome is not None:
        return Finish(attempt.outcome, case.final_disposition, case.next_attempt_at)
    attempt.outcome = info.code
    attempt.ended_at = attempt.ended_at or now
    if note:
        attempt.note = note
    session.add(
        DispositionEvent(case_id=case.id, attempt_id=attempt.id, code=info.code,
                         is_final=info.final, at=now, by_user_id=by_user_id, note=note)
    )
    session.flush()
    plan = plan_finish(info.code, codes=case_codes(session, case.id), attempts=case.attempts,
                       max_attempts=max_attempts, rules=rules, now=now,
                       next_attempt_at=next_attempt_at, state=case.state,
                       priority=case.priority, channel=attempt.channel)
    if plan.known_eligible:
        case.known_eligible = True
    case.current_disposition = info.code
    case.state = plan.state
    case.next_attempt_at = plan.next_attempt_at
    if plan.final is not None:
        case.final_disposition = plan.final
        if plan.final_event:
            session.add(DispositionEvent(case_id=case.id, attempt_id=None, code=plan.final,
                                         is_final=True, at=now, by_user_id=by_user_id,
                                         note=FINAL_CHOSEN_NOTE))
    case.priority = plan.priority
    release_hold(session, case)
    return Finish(info.code, plan.final, case.next_attempt_at)


#: The note of the disposition event that records a final code chosen from the attempts.
FINAL_CHOSEN_NOTE = "final code chosen from the attempts"


@dataclass(frozen=True)
class FinishPlan:
    """What closing an attempt with ``code`` makes of its case (:func:`plan_finish`)."""

    code: str
    is_final_code: bool
    known_eligible: bool  # the code proves the case eligible (set, never cleared)
    final: str | None  # the case's final disposition, or None (still in the field)
    final_event: bool  # a second disposition event records ``final`` (it differs from code)
    state: str
    next_attempt_at: datetime | None
    priority: int


def plan_finish(code: str, *, codes: Sequence[str], attempts: int, max_attempts: int, rules,
                now: datetime, next_attempt_at: datetime | None = None, state: str,
                priority: int, channel: str) -> FinishPlan:
    """The case after an attempt closed with ``code`` (pure: no database).

    ``codes`` are the case's attempt codes oldest first, this attempt's included
    (:func:`case_codes` once its disposition event is stored); ``attempts`` the
    case's attempts so far; ``state`` and ``priority`` the case's before the close.
    The one home of the rules :func:`finish_attempt` applies.
    """
    info = disposition(code)  # raises for an unknown code
    exhausted = attempts >= max_attempts
    due = None
    if not exhausted:
        if next_attempt_at is not None:
            due = next_attempt_at
        else:
            due = calling.next_attempt(rules, now,
                                       RETRY_OUTCOME.get(info.code, DEFAULT_RETRY_OUTCOME))
        if due is None:  # the field period is over
            exhausted = True
    final = final_disposition(list(codes), attempts_exhausted=exhausted)
    if final is not None:
        state, due = "final", None
    elif state == "pending":
        state = "in_field"
    if priority == HANDOFF_PRIORITY and (final is not None or channel == "cati"):
        priority = 0  # the hand-over's urgency is served
    return FinishPlan(code=info.code, is_final_code=info.final,
                      known_eligible=info.eligibility == "eligible" or info.category in ("I", "P"),
                      final=final, final_event=final is not None and final != info.code,
                      state=state, next_attempt_at=due, priority=priority)


def case_codes(session: Session, case_id: int) -> list[str]:
    """The codes of a case's attempts, oldest first."""
    return list(
        session.scalars(
            select(DispositionEvent.code)
            .where(DispositionEvent.case_id == case_id, DispositionEvent.attempt_id.is_not(None))
            .order_by(DispositionEvent.at, DispositionEvent.id)
        ).all()
    )


def case_code(final: str | None, attempt_codes: Sequence[str]) -> str:
    """The AAPOR code of a case: its final disposition, else the *interim* code.

    The one home of this rule (field statistics, the IVR field-period summary and the
    scoring report all call it): a finished case counts with its final code; an open
    case with the code :func:`scoring.aapor.final_disposition` would give it if its
    attempts ended now (a case never reached counts as non-contact 2.2x or unknown
    3.1x, a soft refusal as 2.112, ...).
    """
    if final:
        return final
    return final_disposition(list(attempt_codes), attempts_exhausted=True)


def attempt_codes(session: Session, *, draw_id: int | None = None,
                  released_only: bool = False) -> dict[int, list[str]]:
    """The attempt codes of every case (oldest first), as :func:`case_codes` gives one case's."""
    query = (select(DispositionEvent.case_id, DispositionEvent.code)
             .where(DispositionEvent.attempt_id.is_not(None))
             .order_by(DispositionEvent.case_id, DispositionEvent.at, DispositionEvent.id))
    if draw_id is not None or released_only:
        query = query.join(SampleCase, SampleCase.id == DispositionEvent.case_id)
        if draw_id is not None:
            query = query.where(SampleCase.draw_id == draw_id)
        if released_only:
            query = query.where(SampleCase.release_state == "released")
    codes: dict[int, list[str]] = {}
    for case_id, code in session.execute(query):
        codes.setdefault(case_id, []).append(code)
    return codes


# --- answers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseUnitState:
    position: int
    unit_id: int
    unit_code: str
    unit_name: str
    unit_name_en: str
    rating: str | None
    answered: bool


def case_units(session: Session, case_id: int) -> list[CaseUnitState]:
    """The case's assigned units in order, with the answers given so far."""
    rows = session.execute(
        select(CaseUnit.position, Unit.id, Unit.code, Unit.name, Unit.name_en, Answer.id,
               Answer.rating)
        .join(Unit, Unit.id == CaseUnit.unit_id)
        .outerjoin(Answer, and_(Answer.case_id == CaseUnit.case_id,
                                Answer.unit_id == CaseUnit.unit_id))
        .where(CaseUnit.case_id == case_id)
        .order_by(CaseUnit.position)
    ).all()
    return [
        CaseUnitState(pos, uid, code, name, name_en, rating, answer_id is not None)
        for pos, uid, code, name, name_en, answer_id, rating in rows
    ]


def next_unanswered(session: Session, case_id: int) -> CaseUnitState | None:
    for state in case_units(session, case_id):
        if not state.answered:
            return state
    return None


def record_answer(
    session: Session,
    case: SampleCase,
    unit_id: int,
    rating: str | None,
    *,
    channel: str,
    now: datetime,
    attempt_id: int | None = None,
    actor: str,
    user_id: int | None = None,
) -> Answer:
    """Save one rating (``None`` = asked, no valid answer).  Idempotent.

    The unit must be assigned to the case.  Saving the same rating again
    changes nothing; a different rating replaces the old one and the change is
    written to the audit log with who, when, the old and the new value.
    """
    assigned = session.scalar(
        select(CaseUnit.id).where(CaseUnit.case_id == case.id, CaseUnit.unit_id == unit_id)
    )
    if assigned is None:
        raise Refused("Case {case}: unit {unit} is not assigned to this case.", case=case.pseudo_id,
                      unit=unit_id)
    answer = session.scalar(
        select(Answer).where(Answer.case_id == case.id, Answer.unit_id == unit_id)
    )
    if answer is None:
        answer = Answer(case_id=case.id, unit_id=unit_id, rating=rating, channel=channel,
                        attempt_id=attempt_id, answered_at=now, updated_at=now)
        session.add(answer)
        session.flush()
        return answer
    if answer.rating == rating:
        return answer
    session.add(AuditLog(at=now, user_id=user_id, actor=actor, action="answer.change",
                         entity="answer", entity_id=str(answer.id),
                         old={"rating": answer.rating, "channel": answer.channel},
                         new={"rating": rating, "channel": channel},
                         detail=f"case {case.id} unit {unit_id}"))
    answer.rating = rating
    answer.channel = channel
    answer.attempt_id = attempt_id
    answer.updated_at = now
    session.flush()
    return answer


def answer_counts(session: Session, case_id: int) -> tuple[int, int]:
    """(units with a valid answer, units assigned) for the partial/complete rule."""
    total = session.scalar(select(func.count()).where(CaseUnit.case_id == case_id)) or 0
    answered = session.scalar(
        select(func.count()).where(Answer.case_id == case_id, Answer.rating.is_not(None))
    ) or 0
    return answered, total


# --- hand-over, opt-out, release --------------------------------------------------------------


def hand_to_cati(session: Session, case: SampleCase, *, now: datetime, actor: str,
                 reason: str) -> None:
    """Move a case to the CATI queue with the answers so far."""
    if case.state == "final":
        raise Refused("Case {case} is already final ({code}).", case=case.pseudo_id,
                      code=case.final_disposition)
    case.state = "handoff_cati"
    case.next_attempt_at = now
    session.add(AuditLog(at=now, actor=actor, action="case.handoff_cati", entity="case",
                         entity_id=str(case.id), detail=reason))


def hand_to_ivr(session: Session, case: SampleCase, *, now: datetime, actor: str,
                user_id: int | None = None) -> None:
    if case.state == "final":
        raise Refused("Case {case} is already final ({code}).", case=case.pseudo_id,
                      code=case.final_disposition)
    case.state = "in_field"
    case.next_attempt_at = now
    session.add(AuditLog(at=now, user_id=user_id, actor=actor, action="case.handoff_ivr",
                         entity="case", entity_id=str(case.id)))


def opt_out(session: Session, case: SampleCase, *, now: datetime, source: str) -> None:
    """Put the case's number on the do-not-call list at once."""
    phone = session.scalar(select(FrameContact.phone).where(FrameContact.id == case.contact_id))
    if session.get(DoNotCall, phone) is None:
        session.add(DoNotCall(phone=phone, source=source, added_at=now))
    session.add(AuditLog(at=now, actor=source, action="case.opt_out", entity="case",
                         entity_id=str(case.id)))


def reap_expired_holds(session: Session, *, now: datetime) -> int:
    """Clear holds whose holder went silent (their attempts stay as they are)."""
    result = session.execute(
        update(SampleCase)
        .where(SampleCase.lock_channel.is_not(None), SampleCase.lock_expires_at < now)
        .values(lock_channel=None, locked_by=None, locked_at=None, lock_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def open_attempts(session: Session, *, channel: str | None = None) -> Sequence[CallAttempt]:
    query = select(CallAttempt).where(CallAttempt.outcome.is_(None))
    if channel:
        query = query.where(CallAttempt.channel == channel)
    return session.scalars(query).all()
