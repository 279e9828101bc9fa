"""Status and AMD callbacks, and the end of an IVR attempt.

Status callbacks are appended as :class:`~minping.models.AttemptEvent` rows
(their idempotency token is unique: a repeated callback is stored once) and only
move the attempt's state forward (:data:`~ivr.live.STATUS_RANK`); the final
status closes the attempt with an AAPOR code
(:func:`scoring.aapor.from_twilio_status`) through
:func:`minping.cases.finish_attempt`.

References
----------
.. [1] Twilio, Status callbacks and ``SequenceNumber``,
   https://www.twilio.com/docs/voice/api/call-resource#statuscallbackevent
.. [2] Twilio, Answering Machine Detection (AsyncAmd),
   https://www.twilio.com/docs/voice/answering-machine-detection
.. [3] AAPOR, Standard Definitions (2016), telephone dispositions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.live import (
    _E,
    ANSWERED_BY,
    FINAL_RANK,
    NOT_A_PERSON,
    STATUS_FIELDS,
    STATUS_RANK,
    Live,
    add_event,
    bounded_int,
    event_kinds,
    insert_once,
)
from minping import calltimes, cases
from minping.models import AttemptEvent, CallAttempt, SampleCase
from scoring.aapor import from_twilio_status


def _store_event(session: Session, attempt, kind: str, *, now: datetime,
                 payload: dict, token: str | None, sequence_number: int | None = None) -> bool:
    """Append a callback's event unless its idempotency token is stored; True if new.

    With a token the row goes in with ``INSERT ... ON CONFLICT (idempotency_token)
    DO NOTHING RETURNING id`` (SQLite and PostgreSQL): the unique constraint, not a
    lookup first, decides whether the callback was seen, in one statement.
    """
    row = {"attempt_id": attempt.id, "at": now, "kind": kind, "payload": payload,
           "sequence_number": sequence_number, "idempotency_token": token}
    if not token:
        add_event(session, attempt, kind, now=now, payload=payload,
                  sequence_number=sequence_number)
        return True
    return insert_once(session, _E, row, "idempotency_token")


def record_status(session: Session, cfg, attempt: Live | CallAttempt, params: Mapping[str, str], *,
                  token: str | None, now: datetime) -> str:
    """Store one status callback; move the attempt forward; close it on a final status.

    Returns ``"duplicate"`` (already stored: nothing changed), ``"stale"``
    (stored, but older than the attempt's state), ``"advanced"`` or ``"closed"``.
    """
    status = params.get("CallStatus", "")
    seq = bounded_int(params.get("SequenceNumber"))
    if not _store_event(session, attempt, "status", now=now,
                        payload={k: params[k] for k in STATUS_FIELDS if k in params},
                        sequence_number=seq, token=token):
        return "duplicate"
    rank = STATUS_RANK.get(status)
    answered_by = params.get("AnsweredBy")
    if answered_by in ANSWERED_BY and not attempt.answered_by:
        attempt.answered_by = answered_by
    if seq is not None and seq > attempt.last_sequence:
        attempt.last_sequence = seq
    if status == "in-progress" and attempt.answered_at is None:
        attempt.answered_at = now
    if rank is None or rank <= attempt.status_rank:
        return "stale"
    attempt.status, attempt.status_rank = status, rank
    if rank < FINAL_RANK:
        return "advanced"
    if isinstance(attempt, Live):
        attempt = attempt.orm(session)
    close_attempt(session, cfg, attempt, call_status=status, answered_by=answered_by,
                  sip_code=bounded_int(params.get("SipResponseCode")),
                  duration=bounded_int(params.get("CallDuration")), now=now)
    return "closed"


def record_amd(session: Session, attempt: Live | CallAttempt, *, answered_by: str,
               token: str | None, now: datetime) -> bool:
    """Store an AsyncAmd result; True when the call reached a machine or a fax."""
    if not _store_event(session, attempt, "amd", now=now, payload={"AnsweredBy": answered_by},
                        token=token):
        return False
    if answered_by in ANSWERED_BY and attempt.answered_by in (None, "unknown"):
        attempt.answered_by = answered_by
    # keys pressed prove a person (a late machine verdict keeps the interview)
    return (attempt.outcome is None and answered_by in NOT_A_PERSON
            and attempt.answered_by != "human" and not _keys_pressed(session, attempt))


def _keys_pressed(session: Session, attempt) -> bool:
    """True once a key pressed on the call reached the webhooks."""
    if isinstance(attempt, Live):
        attempt.save(session)  # its pending events first
    digits = session.scalars(select(AttemptEvent.payload).where(
        AttemptEvent.attempt_id == attempt.id, AttemptEvent.kind == "digits")).all()
    return any(p.get("digits") for p in digits)


def close_attempt(session: Session, cfg, attempt: CallAttempt, *, call_status: str,
                  answered_by: str | None = None, sip_code: int | None = None,
                  duration: int | None = None, now: datetime, error: str | None = None):
    """Close an IVR attempt from the call's final status; returns the ``Finish`` (or None).

    The code: :func:`scoring.aapor.from_twilio_status` with the answers of the
    case (answers are kept across calls), whether this call passed the consent
    step, the AMD result, the SIP code.  A hand-over keeps the case out of the
    dialer's queue for an interviewer; an interview that asked every unit
    leaves nothing to retry, so its code is made final.
    """
    if attempt.outcome is not None:
        return None
    case = session.get(SampleCase, attempt.case_id)
    attempt.ended_at = attempt.ended_at or now
    if duration is not None:
        attempt.duration_seconds = duration
    if error:
        attempt.error = error
    kinds = event_kinds(session, attempt.id)
    if answered_by not in ANSWERED_BY:
        answered_by = attempt.answered_by if attempt.answered_by in ANSWERED_BY else None
    had_consent = "consent" in kinds or "handoff" in kinds
    handoff = "handoff" in kinds and "callback_declined" not in kinds
    answered, total = cases.answer_counts(session, case.id)
    status = call_status if call_status in STATUS_RANK and STATUS_RANK[call_status] == FINAL_RANK \
        else "failed"
    if sip_code is not None and not 100 <= sip_code <= 699:
        sip_code = None
    code = from_twilio_status(status, answered_by=answered_by, sip_code=sip_code,
                              had_consent=had_consent,
                              answered_units=answered if had_consent else 0,
                              total_units=total, refused="opt_out" in kinds,
                              known_eligible=case.known_eligible)
    if case.state == "final":
        return cases.finish_attempt(session, case, attempt, code, now=now, rules=cfg.calling,
                                    max_attempts=cfg.calling.max_attempts)
    if handoff and case.lock_channel == "cati":  # the interviewer keeps the case on screen
        lock = (case.lock_channel, case.locked_by, case.locked_at, case.lock_expires_at)
        finish = close_attempt_for_handoff(session, cfg, case, attempt, code, now=now)
        case.lock_channel, case.locked_by, case.locked_at, case.lock_expires_at = lock
        return finish
    max_attempts = cfg.calling.max_attempts
    next_at = None
    if handoff:
        max_attempts = max(max_attempts, case.attempts + 1)
        next_at = now
    elif had_consent and cases.next_unanswered(session, case.id) is None:
        max_attempts = min(max_attempts, case.attempts)  # nothing left to ask
    else:
        outcome = cases.RETRY_OUTCOME.get(code, cases.DEFAULT_RETRY_OUTCOME)
        if outcome in ("busy", "no-answer", "machine"):
            next_at = calltimes.retry_at(session, cfg.calling, case, now=now, outcome=outcome)
    return cases.finish_attempt(session, case, attempt, code, now=now, rules=cfg.calling,
                                max_attempts=max_attempts, next_attempt_at=next_at)


def close_attempt_for_handoff(session: Session, cfg, case: SampleCase, attempt: CallAttempt,
                              code: str, *, now: datetime):
    """Close a handed-over attempt: the case stays in the CATI queue, due now."""
    return cases.finish_attempt(session, case, attempt, code, now=now, rules=cfg.calling,
                                max_attempts=max(cfg.calling.max_attempts, case.attempts + 1),
                                next_attempt_at=now)
