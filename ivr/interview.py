"""The interview on an IVR call: greeting, consent, one question per unit, comment.

Each function answers one ``<Gather>`` (or ``<Record>``) request with the next
TwiML document.  An answer is written in the request's transaction, which the
webhook commits before it answers Twilio.  Twilio does not order the final
status callback and the last ``<Gather>`` action request: a key whose request
arrives after the call ended still counts (:func:`_late_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ivr import fastsql, flow
from ivr.callstate import close_attempt
from ivr.handoff import hand_over
from ivr.live import (
    _ANS,
    _E,
    NOT_A_PERSON,
    Live,
    Urls,
    add_event,
    bounded_int,
    connection,
    insert_once,
    language_of,
    unit_texts,
)
from minping import cases
from minping.models import (
    AttemptEvent,
    AuditLog,
    CallAttempt,
    DispositionEvent,
    Recording,
    SampleCase,
)
from scoring import callstatus

_INSERT_ANSWER = insert(_ANS)
_UPDATE_ANSWER = (update(_ANS).where(_ANS.c.id == bindparam("answer_id"))
                  .values(rating=bindparam("rating"), channel="ivr",
                          attempt_id=bindparam("attempt"), updated_at=bindparam("now")))
_AUDIT = AuditLog.__table__
_INSERT_AUDIT = insert(_AUDIT)
_ANSWER_FOR_UPDATE = (select(_ANS.c.id, _ANS.c.rating, _ANS.c.channel)
                      .where(_ANS.c.case_id == bindparam("case_id"),
                             _ANS.c.unit_id == bindparam("unit_id")).with_for_update())
_REC = Recording.__table__
#: A changed answer on PostgreSQL, in the attempt's write statement
#: (:meth:`ivr.live.Live.write_with`): the answer locked, changed if the rating differs,
#: and the change audited with the old and the new value, as :func:`_save_answer` does
#: on SQLite with its ``SELECT ... FOR UPDATE`` first.
#: A comment's recording stored once (its SID is unique) and, if new, its event: on
#: PostgreSQL in the attempt's write statement, as :func:`ivr.live.insert_once` and
#: :func:`ivr.live.add_event` do it in two.
_COMMENT_ONCE = (
    ("rec", "INSERT INTO recording (case_id, attempt_id, kind, url, recording_sid, "
            "duration_seconds, created_at) VALUES (%({p}case_id)s, %({p}attempt_id)s, "
            "%({p}kind)s, %({p}url)s, %({p}recording_sid)s, %({p}duration_seconds)s, "
            "%({p}created_at)s) ON CONFLICT (recording_sid) DO NOTHING RETURNING id"),
    ("event", "INSERT INTO attempt_event (attempt_id, at, kind, payload) "
              "SELECT %({p}attempt_id)s, %({p}at)s, 'comment', %({p}payload)s FROM {w}rec"),
)
_CHANGE_ANSWER = (
    ("old", "SELECT id, rating, channel FROM answer WHERE case_id = %({p}case_id)s "
            "AND unit_id = %({p}unit_id)s FOR UPDATE"),
    ("new", "UPDATE answer SET rating = %({p}rating)s, channel = 'ivr', "
            "attempt_id = %({p}attempt_id)s, updated_at = %({p}updated_at)s FROM {w}old "
            "WHERE answer.id = {w}old.id AND {w}old.rating IS DISTINCT FROM %({p}rating)s "
            "RETURNING {w}old.id, {w}old.rating, {w}old.channel"),
    ("audit", "INSERT INTO audit_log (at, actor, action, entity, entity_id, old, new, detail) "
              "SELECT %({p}updated_at)s, 'ivr', 'answer.change', 'answer', {w}new.id::text, "
              "jsonb_build_object('rating', {w}new.rating, 'channel', {w}new.channel)::json, "
              "%({p}new)s, %({p}detail)s FROM {w}new"),
)



def _is_machine(attempt) -> bool:
    return attempt.answered_by in NOT_A_PERSON


def _over(attempt: Live) -> bool:
    return attempt.outcome is not None or attempt.case_state == "final"


def start_call(session: Session, cfg, attempt: Live, *, urls: Urls, now: datetime,
               answered_by: str | None = None, save: bool = True) -> str:
    """The call's first document: greeting and consent (nothing for a machine).

    ``save=False``: the caller writes the attempt's changes (the voice webhook's commit).
    """
    if answered_by and not attempt.answered_by:
        attempt.answered_by = answered_by
    if _over(attempt):
        twiml = flow.hangup()
    elif _is_machine(attempt):
        add_event(session, attempt, "machine_hangup", now=now,
                  payload={"answered_by": attempt.answered_by})
        twiml = flow.hangup()
    else:
        add_event(session, attempt, "greeting", now=now)
        twiml = flow.greeting(cfg, language_of(cfg, attempt), action=urls.consent(attempt.id))
    if save:  # the change and the event in one statement (inbound calls)
        attempt.save(session)
    return twiml


def consent(session: Session, cfg, attempt: Live, *, digits: str, tries: int,
            urls: Urls, now: datetime) -> str:
    """The answer to the consent question: start, opt out, hand over, or re-ask."""
    lang = language_of(cfg, attempt)
    if attempt.opted_out or (attempt.outcome is None and attempt.case_state == "final"):
        return flow.hangup()
    if attempt.outcome is not None:  # the call ended before this key's request arrived
        return _late_key(session, cfg, attempt, lang, step="consent", pos=None, digits=digits,
                         tries=tries, now=now)
    add_event(session, attempt, "digits", now=now,
              payload={"step": "consent", "digits": digits, "try": tries})
    _keys_prove_a_person(attempt, digits)
    ivr = cfg.ivr
    if digits == ivr.opt_out_key:
        return _opt_out(session, cfg, attempt, lang, now=now)
    if ivr.handoff_key and digits == ivr.handoff_key:
        case, orm = _orm_pair(session, attempt)
        return hand_over(session, cfg, case, orm, lang, now=now, urls=urls)
    if digits == ivr.start_key:
        add_event(session, attempt, "consent", now=now)
        return _next_question(session, cfg, attempt, lang, urls=urls)
    if digits == ivr.repeat_key:
        return flow.greeting(cfg, lang, action=urls.consent(attempt.id, tries))
    if tries < ivr.max_reasks:
        notice = "invalid_key" if digits else "no_answer"
        return flow.greeting(cfg, lang, action=urls.consent(attempt.id, tries + 1), notice=notice)
    add_event(session, attempt, "no_consent", now=now)
    return flow.goodbye(cfg, lang, "no_answer")


def _units(session: Session, attempt: Live) -> list[cases.CaseUnitState]:
    if attempt.units is None:
        object.__setattr__(attempt, "units", cases.case_units(session, attempt.case_id))
    return attempt.units


def answer(session: Session, cfg, attempt: Live, *, pos: int, digits: str, tries: int,
           urls: Urls, now: datetime) -> str:
    """A key pressed (or silence) at the question about the unit at position ``pos``."""
    lang = language_of(cfg, attempt)
    if attempt.opted_out or (attempt.outcome is None and attempt.case_state == "final"):
        return flow.hangup()
    if attempt.outcome is not None:  # the call ended before this key's request arrived
        return _late_key(session, cfg, attempt, lang, step="question", pos=pos, digits=digits,
                         tries=tries, now=now)
    units = _units(session, attempt)
    current = next((u for u in units if u.position == pos), None)
    if current is None:  # a position this case does not have: carry on where it stands
        return _next_question(session, cfg, attempt, lang, urls=urls)
    add_event(session, attempt, "digits", now=now,
              payload={"step": "question", "pos": pos, "digits": digits, "try": tries})
    _keys_prove_a_person(attempt, digits)
    ivr = cfg.ivr
    if digits == ivr.opt_out_key:
        return _opt_out(session, cfg, attempt, lang, now=now)
    if ivr.handoff_key and digits == ivr.handoff_key:
        case, orm = _orm_pair(session, attempt)
        return hand_over(session, cfg, case, orm, lang, now=now, urls=urls)
    name, track = unit_texts(cfg, current, lang)
    if digits == ivr.repeat_key:
        return flow.question(cfg, lang, unit=name, track=track,
                             action=urls.answer(attempt.id, pos, tries))
    if digits and digits in cfg.scale.keys:
        _save_answer(session, attempt, current, digits, now=now)
    elif tries < ivr.max_reasks:
        notice = "invalid_key" if digits else "no_answer"
        return flow.question(cfg, lang, unit=name, track=track,
                             action=urls.answer(attempt.id, pos, tries + 1), notice=notice)
    elif not current.answered:
        _save_answer(session, attempt, current, None, now=now)
    # the unit asked now has its answer: the next question is the first other one unanswered
    return _next_question(session, cfg, attempt, lang, urls=urls,
                          units=[u for u in units if u.position != pos])


def _orm_pair(session: Session, attempt: Live) -> tuple[SampleCase, CallAttempt]:
    """The case and the attempt as ORM objects (the rare steps that change the case)."""
    orm = attempt.orm(session)
    return session.get(SampleCase, attempt.case_id), orm


def _late_key(session: Session, cfg, attempt: Live, lang: str, *, step: str, pos: int | None,
              digits: str, tries: int, now: datetime) -> str:
    """A key whose request arrived after the call's final status closed the attempt.

    Twilio does not order the final status callback and the last ``<Gather>``
    action request: the key counts whenever it arrives (an answer is stored, a
    consent, opt-out or hand-over key is taken into account), the attempt is
    closed again with it, and nothing more is said.
    """
    case, orm = _orm_pair(session, attempt)
    closed = _reopen_for_late_key(session, orm, case, now=now)
    ivr = cfg.ivr
    if step == "consent":
        if closed is False:
            return flow.hangup()
        cases.add_event(session, orm, "digits", now=now,
                        payload={"step": "consent", "digits": digits, "try": tries})
        _keys_prove_a_person(orm, digits)
        return _after_late_key(session, cfg, case, orm, lang, closed, step="consent",
                               digits=digits, now=now)
    units = cases.case_units(session, case.id)
    current = next((u for u in units if u.position == pos), None)
    if closed is False:  # the case has moved on (called again, say): keep the rating only
        if current is not None and digits in cfg.scale.keys and case.state != "final":
            _save_answer(session, orm, current, digits, now=now)
        return flow.hangup()
    if current is None:
        return _after_late_key(session, cfg, case, orm, lang, closed, step=None, digits="",
                               now=now)
    cases.add_event(session, orm, "digits", now=now,
                    payload={"step": "question", "pos": pos, "digits": digits, "try": tries})
    _keys_prove_a_person(orm, digits)
    if digits and digits in cfg.scale.keys:
        _save_answer(session, orm, current, digits, now=now)
    elif not digits and tries >= ivr.max_reasks and not current.answered:
        _save_answer(session, orm, current, None, now=now)
    return _after_late_key(session, cfg, case, orm, lang, closed, step="question",
                           digits=digits, now=now)


@dataclass(frozen=True)
class _Closed:
    """How a call ended, kept while a late key reopens its attempt."""

    status: str
    sip_code: int | None
    duration: int | None
    ended_at: datetime
    code: str


def _keys_prove_a_person(attempt: CallAttempt, digits: str) -> None:
    """A key pressed proves a person: a machine verdict (AsyncAmd) gives way."""
    if digits and attempt.answered_by != "human":
        attempt.answered_by = "human"


def _reopen_for_late_key(session: Session, attempt: CallAttempt, case: SampleCase, *,
                         now: datetime) -> _Closed | None | bool:
    """Undo the close of an attempt whose call ended before this key's request arrived.

    Twilio does not order the final status callback and the last ``<Gather>``
    action request; a key pressed on the call is an answer whenever its request
    arrives.  Returns ``None`` when the attempt is still open, the
    :class:`_Closed` to close it again with (the case is back where it stood
    before the close) or ``False`` when it cannot be reopened: a later attempt
    was started, the case is held for another call, or something else decided its code.
    """
    if attempt.outcome is None:
        return None
    if cases.is_held(case, now):
        return False
    later = session.scalar(select(CallAttempt.id).where(
        CallAttempt.case_id == case.id, CallAttempt.id > attempt.id).limit(1))
    own = session.scalars(select(DispositionEvent).where(
        DispositionEvent.attempt_id == attempt.id).order_by(DispositionEvent.id)).all()
    if later is not None or not own:
        return False
    after = session.scalars(select(DispositionEvent).where(
        DispositionEvent.case_id == case.id, DispositionEvent.id > own[-1].id)).all()
    if any(e.attempt_id is not None or e.by_user_id is not None for e in after):
        return False
    final_status = session.scalars(select(AttemptEvent.payload).where(
        AttemptEvent.attempt_id == attempt.id, AttemptEvent.kind == "status")
        .order_by(AttemptEvent.id)).all()
    sip = next((p.get("SipResponseCode") for p in reversed(final_status)
                if callstatus.is_final(p.get("CallStatus"))), None)
    closed = _Closed(status=attempt.status if callstatus.is_final(attempt.status) else "completed",
                     sip_code=bounded_int(sip),
                     duration=attempt.duration_seconds, ended_at=attempt.ended_at or now,
                     code=attempt.outcome)
    for event in (*own, *after):
        session.delete(event)
    attempt.outcome = None
    if case.state == "final":
        case.state, case.final_disposition = "in_field", None
    session.flush()
    return closed


def _after_late_key(session: Session, cfg, case: SampleCase, attempt: CallAttempt, lang: str,
                    closed: _Closed, *, step: str | None, digits: str, now: datetime) -> str:
    """Close a reopened attempt again, with the late key counted; nothing more is said."""
    ivr = cfg.ivr
    if step == "consent" and digits == ivr.start_key:
        cases.add_event(session, attempt, "consent", now=now)
    elif step is not None and digits == ivr.opt_out_key:
        _opt_out_orm(session, cfg, case, attempt, lang, now=now)
    elif step is not None and ivr.handoff_key and digits == ivr.handoff_key:
        hand_over(session, cfg, case, attempt, lang, now=now)
    close_attempt(session, cfg, attempt, call_status=closed.status,
                  answered_by=attempt.answered_by, sip_code=closed.sip_code,
                  duration=closed.duration, now=closed.ended_at)
    if attempt.outcome != closed.code:
        session.add(AuditLog(at=now, actor="ivr", action="attempt.late_key", entity="attempt",
                             entity_id=str(attempt.id), old={"code": closed.code},
                             new={"code": attempt.outcome},
                             detail=f"case {case.id}: a key's request arrived after the call "
                                    f"ended ({closed.status})"))
    return flow.hangup()


def _save_answer(session: Session, attempt, unit: cases.CaseUnitState,
                 rating: str | None, *, now: datetime) -> None:
    """Store the answer about ``unit`` (``None``: asked, no valid answer).

    ``unit`` was read in this transaction: a unit without an answer gets its first
    one inserted at once (a simultaneous duplicate request fails on the answer's
    unique constraint and is run again by the webhook); a different rating replaces
    the stored one and the change is written to the audit log with the old and the
    new value, as :func:`minping.cases.record_answer` does; the same rating again
    changes nothing.
    """
    conn = connection(session)
    if not unit.answered:
        row = {"case_id": attempt.case_id, "unit_id": unit.unit_id, "rating": rating,
               "channel": "ivr", "attempt_id": attempt.id, "answered_at": now, "updated_at": now}
        if isinstance(attempt, Live):  # written with the attempt's event, one round trip
            attempt.write_insert(_ANS, row)
        else:
            conn.execute(_INSERT_ANSWER, row)
        return
    postgresql = fastsql.is_postgresql(conn)
    if postgresql and isinstance(attempt, Live):
        # lock, compare, change and audit in the attempt's one write statement
        attempt.write_with(_CHANGE_ANSWER, fastsql.bind(_ANS, {
            "case_id": attempt.case_id, "unit_id": unit.unit_id, "rating": rating,
            "attempt_id": attempt.id, "updated_at": now}) | fastsql.bind(_AUDIT, {
                "new": {"rating": rating, "channel": "ivr"},
                "detail": f"case {attempt.case_id} unit {unit.unit_id}"}))
        return
    execute = fastsql.run if postgresql else Connection.execute
    row = execute(conn, _ANSWER_FOR_UPDATE, {"case_id": attempt.case_id,
                                             "unit_id": unit.unit_id}).fetchone()
    if row[1] == rating:
        return
    audit = {"at": now, "user_id": None, "actor": "ivr", "action": "answer.change",
             "entity": "answer", "entity_id": str(row[0]),
             "old": {"rating": row[1], "channel": row[2]},
             "new": {"rating": rating, "channel": "ivr"},
             "detail": f"case {attempt.case_id} unit {unit.unit_id}"}
    if isinstance(attempt, Live):  # the row is locked: written with the attempt's event
        attempt.write_insert(_AUDIT, audit)
        attempt.write_update(_ANS, row[0], {"rating": rating, "channel": "ivr",
                                            "attempt_id": attempt.id, "updated_at": now})
        return
    conn.execute(_INSERT_AUDIT, audit)
    conn.execute(_UPDATE_ANSWER, {"answer_id": row[0], "rating": rating, "attempt": attempt.id,
                                  "now": now})


def _next_question(session: Session, cfg, attempt: Live, lang: str, *, urls: Urls,
                   units: list | None = None) -> str:
    units = units if units is not None else _units(session, attempt)
    nxt = next((u for u in units if not u.answered), None)
    if nxt is None:
        comment = urls.comment(attempt.id) if cfg.ivr.record_comment else None
        return flow.closing(cfg, lang, comment_action=comment)
    name, track = unit_texts(cfg, nxt, lang)
    return flow.question(cfg, lang, unit=name, track=track,
                         action=urls.answer(attempt.id, nxt.position))


def _opt_out(session: Session, cfg, attempt: Live, lang: str, *, now: datetime) -> str:
    """The opt-out key: do-not-call at once; the call's end closes the case as 2.112.

    The attempt stays open until the final status callback (the call is still
    live while the confirmation plays, and open attempts are what the dialer's
    concurrency limit counts); the code is then the final refusal 2.112.
    """
    cases.opt_out(session, session.get(SampleCase, attempt.case_id), now=now,
                  source="ivr-keypad")
    add_event(session, attempt, "opt_out", now=now)
    attempt.opted_out = True
    return flow.goodbye(cfg, lang, "opt_out_confirmation")


def _opt_out_orm(session: Session, cfg, case: SampleCase, attempt: CallAttempt, lang: str, *,
                 now: datetime) -> str:
    """:func:`_opt_out` on ORM objects (a late key's request)."""
    cases.opt_out(session, case, now=now, source="ivr-keypad")
    cases.add_event(session, attempt, "opt_out", now=now)
    return flow.goodbye(cfg, lang, "opt_out_confirmation")




def save_comment(session: Session, attempt: Live, *, recording_url: str | None,
                 recording_sid: str | None, duration: int | None, now: datetime) -> str:
    """Store the link to a spoken comment (once per recording) and hang up.

    The recording's SID is unique: ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
    stores it and tells whether it was new, in one statement.
    """
    if recording_url:
        row = {"case_id": attempt.case_id, "attempt_id": attempt.id, "kind": "comment",
               "url": recording_url[:500], "recording_sid": recording_sid,
               "duration_seconds": duration, "created_at": now}
        payload = {"recording_sid": recording_sid, "duration": duration}
        if (recording_sid and isinstance(attempt, Live)
                and fastsql.is_postgresql(connection(session))):
            # the recording and its event in the attempt's one write statement
            attempt.write_with(_COMMENT_ONCE, fastsql.bind(_REC, row)
                               | fastsql.bind(_E, {"at": now, "payload": payload}))
            return flow.hangup()
        stored = insert_once(session, _REC, row, "recording_sid") if recording_sid else True
        if stored:
            add_event(session, attempt, "comment", now=now, payload=payload)
    return flow.hangup()
