"""IVR service functions: what each Twilio webhook does to the database.

The webhooks stay thin (:mod:`ivr.webhooks`): they check the signature, parse
the request and call one of these functions with a session, the survey
configuration and ``now``; the function changes the database and returns the
TwiML to answer with.  The caller commits -- at once, so that an answer is
stored the moment it arrives.

Where the call stands travels in the action URLs (``attempt``, ``pos`` = the
position of the unit asked, ``try`` = re-asks so far), so the webhooks keep no
state between requests; the attempt's ``call_sid`` must match the request's
``CallSid``.

Status callbacks are appended as :class:`~minping.models.AttemptEvent` rows
(their idempotency token is unique: a repeated callback is stored once) and only
move the attempt's state forward (:data:`STATUS_RANK`); the final status closes
the attempt with an AAPOR code (:func:`scoring.aapor.from_twilio_status`) through
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

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.orm import Session

from ivr import flow
from minping import calltimes, cases
from minping.models import (
    Answer,
    AttemptEvent,
    AuditLog,
    CallAttempt,
    CaseUnit,
    DispositionEvent,
    DoNotCall,
    FrameContact,
    Recording,
    SampleCase,
    Unit,
    User,
)
from scoring import callstatus
from scoring.aapor import from_twilio_status

# Twilio's call vocabulary and its meaning: one home, scoring.callstatus.
STATUS_RANK = callstatus.STATUS_RANK
FINAL_RANK = callstatus.FINAL_RANK
ANSWERED_BY = callstatus.ANSWERED_BY
NOT_A_PERSON = callstatus.NOT_A_PERSON
#: Status callback fields kept in the event payload.
STATUS_FIELDS = ("CallStatus", "SequenceNumber", "Timestamp", "CallDuration", "SipResponseCode",
                 "AnsweredBy", "Direction", "ErrorCode", "CallbackSource")


@dataclass(frozen=True)
class Urls:
    """Builds the absolute public URLs of the webhooks (``base`` = the public URL)."""

    base: str

    def _url(self, name: str, **query: object) -> str:
        return f"{self.base}/ivr/{name}" + (f"?{urlencode(query)}" if query else "")

    def voice(self, attempt_id: int) -> str:
        return self._url("voice", attempt=attempt_id)

    def consent(self, attempt_id: int, tries: int = 0) -> str:
        return self._url("consent", attempt=attempt_id, **{"try": tries})

    def answer(self, attempt_id: int, pos: int, tries: int = 0) -> str:
        return self._url("answer", attempt=attempt_id, pos=pos, **{"try": tries})

    def comment(self, attempt_id: int) -> str:
        return self._url("comment", attempt=attempt_id)

    def status(self, attempt_id: int | None = None) -> str:
        return self._url("status", attempt=attempt_id) if attempt_id else self._url("status")

    def amd(self, attempt_id: int) -> str:
        return self._url("amd", attempt=attempt_id)

    def verify(self, case_id: int, tries: int = 0) -> str:
        return self._url("verify", case=case_id, **{"try": tries})

    def handoff(self, attempt_id: int, interviewer_id: int) -> str:
        return self._url("handoff", attempt=attempt_id, interviewer=interviewer_id)


# --- lookups ------------------------------------------------------------------------------
#
# The webhooks' statements are built once, as SQLAlchemy Core statements with bound
# parameters, and run on the session's connection: no ORM loading, identity map or
# flush on the path of a call.  The ORM is used where a call changes the case itself
# (opt-out, hand-over, the end of the attempt), which happens once per call.

_A = CallAttempt.__table__
_C = SampleCase.__table__
_E = AttemptEvent.__table__
_ANS = Answer.__table__
_CU = CaseUnit.__table__
_U = Unit.__table__
_REC = Recording.__table__

#: The attempt's columns a call needs (and may change), then its case's.
LIVE_FIELDS = ("id", "case_id", "channel", "call_sid", "status", "status_rank", "last_sequence",
               "answered_by", "answered_at", "outcome")
_OPTED_OUT = (select(_E.c.id).where(_E.c.attempt_id == _A.c.id, _E.c.kind == "opt_out")
              .exists().label("opted_out"))
_LIVE_COLUMNS = [*(_A.c[name] for name in LIVE_FIELDS), _C.c.state.label("case_state"),
                 _C.c.language.label("case_language"), _OPTED_OUT]
_BY_ID = (select(*_LIVE_COLUMNS).join_from(_A, _C, _C.c.id == _A.c.case_id)
          .where(_A.c.id == bindparam("attempt_id")))
_BY_SID = (select(*_LIVE_COLUMNS).join_from(_A, _C, _C.c.id == _A.c.case_id)
           .where(_A.c.call_sid == bindparam("call_sid"), _A.c.channel == "ivr"))
#: The attempt, its case and the case's units with their answers, in one statement
#: (one row per unit, in order; the attempt's columns repeat).
_BY_ID_WITH_UNITS = (
    select(*_LIVE_COLUMNS, _CU.c.position, _U.c.id.label("unit_id"), _U.c.code, _U.c.name,
           _U.c.name_en, _ANS.c.id.label("answer_id"), _ANS.c.rating)
    .join_from(_A, _C, _C.c.id == _A.c.case_id)
    .outerjoin(_CU, _CU.c.case_id == _A.c.case_id)
    .outerjoin(_U, _U.c.id == _CU.c.unit_id)
    .outerjoin(_ANS, and_(_ANS.c.case_id == _CU.c.case_id, _ANS.c.unit_id == _CU.c.unit_id))
    .where(_A.c.id == bindparam("attempt_id"))
    .order_by(_CU.c.position)
)
_INSERT_EVENT = insert(_E)
_INSERT_ANSWER = insert(_ANS)
_UPDATE_ANSWER = (update(_ANS).where(_ANS.c.id == bindparam("answer_id"))
                  .values(rating=bindparam("rating"), channel="ivr",
                          attempt_id=bindparam("attempt"), updated_at=bindparam("now")))
_INSERT_AUDIT = insert(AuditLog.__table__)
_SET_CALL_SID = (update(_A).where(_A.c.id == bindparam("attempt_id"), _A.c.call_sid.is_(None))
                 .values(call_sid=bindparam("sid")))


class Live:
    """An IVR attempt as a webhook sees it: the attempt's row, its case's state and
    language, whether the call opted out, and (for the interview steps) the case's
    units with their answers -- read in one statement.

    Attributes of the attempt (:data:`LIVE_FIELDS`) may be assigned like an ORM
    object's; :meth:`save` writes the changed ones back in one ``UPDATE``.
    """

    __slots__ = (*LIVE_FIELDS, "case_state", "case_language", "opted_out", "units", "_changed")

    def __init__(self, row, units: list | None = None):
        for name in (*LIVE_FIELDS, "case_state", "case_language", "opted_out"):
            object.__setattr__(self, name, getattr(row, name))
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "_changed", {})

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        if name in LIVE_FIELDS:
            self._changed[name] = value

    def save(self, session: Session) -> None:
        """Write the attempt's changed fields (one ``UPDATE``; nothing if none changed)."""
        if self._changed:
            session.connection().execute(update(_A).where(_A.c.id == self.id)
                                         .values(**self._changed))
            object.__setattr__(self, "_changed", {})

    def orm(self, session: Session) -> CallAttempt:
        """The attempt as an ORM object, with this object's changes written first."""
        self.save(session)
        return session.get(CallAttempt, self.id, populate_existing=True)


def find_attempt(session: Session, *, attempt_id: int | None, call_sid: str | None,
                 with_units: bool = False) -> Live | None:
    """The IVR attempt a request belongs to, or ``None``.

    With ``attempt_id`` the attempt's CallSid must match (it is filled in on the
    first request if the dialer has not stored it yet); without it the CallSid
    alone identifies the attempt (inbound calls, status callbacks configured at
    the phone number).  ``with_units``: read the case's units and answers too.
    """
    conn = session.connection()
    if attempt_id is not None:
        if with_units:
            rows = conn.execute(_BY_ID_WITH_UNITS, {"attempt_id": attempt_id}).all()
            if not rows:
                return None
            units = [cases.CaseUnitState(r.position, r.unit_id, r.code, r.name, r.name_en,
                                         r.rating, r.answer_id is not None)
                     for r in rows if r.position is not None]
            attempt = Live(rows[0], units)
        else:
            row = conn.execute(_BY_ID, {"attempt_id": attempt_id}).first()
            if row is None:
                return None
            attempt = Live(row)
        if attempt.channel != "ivr":
            return None
        if call_sid:
            if attempt.call_sid is None:
                # written at once, guarded: two first requests of one call agree
                conn.execute(_SET_CALL_SID, {"attempt_id": attempt.id, "sid": call_sid})
                object.__setattr__(attempt, "call_sid", call_sid)
            elif attempt.call_sid != call_sid:
                return None
        return attempt
    if not call_sid:
        return None
    row = conn.execute(_BY_SID, {"call_sid": call_sid}).first()
    return Live(row) if row is not None else None


def forget_loaded(session: Session) -> None:
    """Kept for callers of the former ORM cache: nothing is remembered between tries."""


def language_of(cfg, case) -> str:
    """The case's prompt language (``case``: a :class:`SampleCase` or a :class:`Live`)."""
    language = case.case_language if isinstance(case, Live) else case.language
    return language if language in cfg.languages else cfg.campaign.default_language


def add_event(session: Session, attempt, kind: str, *, now: datetime, payload: dict | None = None,
              sequence_number: int | None = None, idempotency_token: str | None = None) -> None:
    """Append an event at once (one ``INSERT``; ``attempt``: anything with an ``id``)."""
    session.connection().execute(_INSERT_EVENT, {
        "attempt_id": attempt.id, "at": now, "kind": kind, "payload": payload or {},
        "sequence_number": sequence_number, "idempotency_token": idempotency_token})


def _event_kinds(session: Session, attempt_id: int) -> set[str]:
    return set(session.scalars(select(AttemptEvent.kind).where(
        AttemptEvent.attempt_id == attempt_id)).all())


def _unit_texts(cfg, state: cases.CaseUnitState, lang: str) -> tuple[str, str]:
    chinese = lang.split("-")[0] in ("cmn", "zh", "yue")
    name = state.unit_name if chinese else state.unit_name_en
    try:
        track = cfg.track(cfg.unit(state.unit_code).track).label(lang)
    except KeyError:
        track = ""
    return name, track


# --- the interview -----------------------------------------------------------------------


def _is_machine(attempt) -> bool:
    return attempt.answered_by in NOT_A_PERSON


def _over(attempt: Live) -> bool:
    return attempt.outcome is not None or attempt.case_state == "final"


def start_call(session: Session, cfg, attempt: Live, *, urls: Urls, now: datetime,
               answered_by: str | None = None) -> str:
    """The call's first document: greeting and consent (nothing for a machine)."""
    if answered_by and not attempt.answered_by:
        attempt.answered_by = answered_by
    attempt.save(session)
    if _over(attempt):
        return flow.hangup()
    if _is_machine(attempt):
        add_event(session, attempt, "machine_hangup", now=now,
                  payload={"answered_by": attempt.answered_by})
        return flow.hangup()
    add_event(session, attempt, "greeting", now=now)
    return flow.greeting(cfg, language_of(cfg, attempt), action=urls.consent(attempt.id))


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
        return _hand_over(session, cfg, case, orm, lang, now=now, urls=urls)
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
        return _hand_over(session, cfg, case, orm, lang, now=now, urls=urls)
    name, track = _unit_texts(cfg, current, lang)
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
        _hand_over(session, cfg, case, attempt, lang, now=now)
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
    conn = session.connection()
    if not unit.answered:
        conn.execute(_INSERT_ANSWER, {"case_id": attempt.case_id, "unit_id": unit.unit_id,
                                      "rating": rating, "channel": "ivr",
                                      "attempt_id": attempt.id, "answered_at": now,
                                      "updated_at": now})
        return
    row = conn.execute(select(_ANS.c.id, _ANS.c.rating, _ANS.c.channel).where(
        _ANS.c.case_id == attempt.case_id, _ANS.c.unit_id == unit.unit_id)
        .with_for_update()).first()
    if row.rating == rating:
        return
    conn.execute(_INSERT_AUDIT, {
        "at": now, "user_id": None, "actor": "ivr", "action": "answer.change",
        "entity": "answer", "entity_id": str(row.id),
        "old": {"rating": row.rating, "channel": row.channel},
        "new": {"rating": rating, "channel": "ivr"},
        "detail": f"case {attempt.case_id} unit {unit.unit_id}"})
    conn.execute(_UPDATE_ANSWER, {"answer_id": row.id, "rating": rating, "attempt": attempt.id,
                                  "now": now})


def _next_question(session: Session, cfg, attempt: Live, lang: str, *, urls: Urls,
                   units: list | None = None) -> str:
    units = units if units is not None else _units(session, attempt)
    nxt = next((u for u in units if not u.answered), None)
    if nxt is None:
        comment = urls.comment(attempt.id) if cfg.ivr.record_comment else None
        return flow.closing(cfg, lang, comment_action=comment)
    name, track = _unit_texts(cfg, nxt, lang)
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


def _hand_over(session: Session, cfg, case: SampleCase, attempt: CallAttempt, lang: str, *,
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


_INSERT_RECORDING = {}


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
        stored = _insert_once(session, _REC, row, "recording_sid") if recording_sid else True
        if stored:
            add_event(session, attempt, "comment", now=now,
                      payload={"recording_sid": recording_sid, "duration": duration})
    return flow.hangup()


def _insert_once(session: Session, table, row: dict, unique: str) -> bool:
    """Insert ``row`` unless a row with the same ``unique`` value exists; True if new."""
    conn = session.connection()
    dialect = conn.dialect.name
    key = (table.name, dialect)
    stmt = _INSERT_RECORDING.get(key)
    if stmt is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            dialect_insert = None
        stmt = (dialect_insert(table).on_conflict_do_nothing(index_elements=[table.c[unique]])
                .returning(table.c.id)) if dialect_insert is not None else False
        _INSERT_RECORDING[key] = stmt
    if stmt is False:
        if conn.execute(select(table.c.id).where(table.c[unique] == row[unique])).first():
            return False
        conn.execute(insert(table), row)
        return True
    return conn.execute(stmt, row).first() is not None


# --- inbound calls --------------------------------------------------------------------------


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


#: The largest number stored from a request (the columns are 32-bit integers).
MAX_INT = 2**31 - 1


def bounded_int(value: object) -> int | None:
    """A whole number from 0 to :data:`MAX_INT` from a request field, else ``None``."""
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip()[:20])
    except ValueError:
        return None
    return number if 0 <= number <= MAX_INT else None


# --- status callbacks and the end of an attempt ---------------------------------------------------


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
    return _insert_once(session, _E, row, "idempotency_token")


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
    kinds = _event_kinds(session, attempt.id)
    if answered_by not in ANSWERED_BY:
        answered_by = attempt.answered_by if attempt.answered_by in ANSWERED_BY else None
    handoff = "handoff" in kinds
    had_consent = "consent" in kinds or handoff
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
