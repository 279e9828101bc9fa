"""Calls to the survey number: a sampled respondent is recognised and interviewed.

Caller ID alone could be anyone's: when the advance SMS carried a code
(``[ivr] inbound_code_digits``), the caller confirms with it first.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime

from sqlalchemy import (
    JSON,
    String,
    bindparam,
    cast,
    exists,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from ivr import fastsql, flow
from ivr.interview import start_call
from ivr.live import _A, _C, _E, STATUS_RANK, Urls, find_attempt, language_of
from minping import cases
from minping.models import AuditLog, DoNotCall, FrameContact, SampleCase

_F = FrameContact.__table__
_DNC = DoNotCall.__table__
_AUDIT = AuditLog.__table__

#: The released, unfinished case whose number is ``phone`` (newest draw first), unless
#: the number is on the do-not-call list.
_CALLER_CASE = (
    select(_C.c.id, _C.c.state, _C.c.language, _C.c.notified_at, _C.c.sms_code,
           _C.c.lock_channel)
    .join_from(_C, _F, _F.c.id == _C.c.contact_id)
    .where(_F.c.phone == bindparam("phone"), _C.c.release_state == "released",
           or_(*(_C.c.state == state for state in cases.IN_FIELD_STATES)),
           ~exists(select(_DNC.c.phone).where(_DNC.c.phone == bindparam("phone"))))
    .order_by(_C.c.draw_id.desc(), _C.c.id).limit(1)
    .subquery("caller")
)
_ONE = select(literal(1).label("one")).subquery("one")
#: An inbound request in one read: the attempt of this CallSid if Twilio retried the
#: request (``existing``), and the caller's case (its columns None when there is none).
_INBOUND = (
    select(select(_A.c.id).where(_A.c.call_sid == bindparam("sid"), _A.c.channel == "ivr")
           .scalar_subquery().label("existing"), *_CALLER_CASE.c)
    .select_from(_ONE.outerjoin(_CALLER_CASE, true()))
)


def _read(session: Session, *, phone: str, call_sid: str):
    conn = session.connection()
    params = {"phone": phone or "", "sid": call_sid or ""}  # no number: no case
    if fastsql.is_postgresql(conn):
        return fastsql.run_alone(conn, fastsql.run, conn, _INBOUND, params).one()
    return conn.execute(_INBOUND, params).one()


def _caller(session: Session, cfg, *, caller: str, call_sid: str, urls: Urls, now: datetime):
    """An inbound request's one read: (the caller's case -- its ``id`` None when caller ID
    names none --, the TwiML when Twilio retried a request whose call has its attempt)."""
    fastsql.begin_lazily(session.connection())  # PostgreSQL: BEGIN only when needed
    row = _read(session, phone=caller, call_sid=call_sid)
    if row.existing is not None:  # Twilio retried the request
        existing = find_attempt(session, attempt_id=None, call_sid=call_sid)
        if existing is not None:
            return row, start_call(session, cfg, existing, urls=urls, now=now)
    return row, None


def inbound(session: Session, cfg, *, caller: str, call_sid: str, urls: Urls,
            now: datetime) -> str:
    """A call to the survey number: a known respondent resumes; others hear who we are.

    A sampled respondent whose case is being dialled, is open on an interviewer's
    screen, or waits for an interviewer (hand-over) is recognised and told that
    they will be called (prompt ``callback_pending``): that call is already under
    way or queued.

    On PostgreSQL three round trips for a new call: one read (this CallSid's
    attempt, the caller's case), one statement that holds the case, opens the
    attempt and its first event -- or, the case being busy, writes the audit line
    -- and the greeting's write (:func:`ivr.interview.start_call`).
    """
    row, retried = _caller(session, cfg, caller=caller, call_sid=call_sid, urls=urls, now=now)
    if retried is not None:
        return retried
    if row.id is None:
        return flow.goodbye(cfg, cfg.campaign.default_language, "unknown_caller")
    if needs_code(cfg, row):  # caller ID alone could be anyone's: the SMS's code first
        return flow.ask_code(cfg, language_of(cfg, row), digits=len(row.sms_code),
                             action=urls.verify(row.id))
    return _take_inbound(session, cfg, row, call_sid=call_sid, urls=urls, now=now)


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
    case, retried = _caller(session, cfg, caller=caller, call_sid=call_sid, urls=urls, now=now)
    if retried is not None:
        return retried
    if case.id is None or case.id != case_id:
        return flow.goodbye(cfg, cfg.campaign.default_language, "unknown_caller")
    lang = language_of(cfg, case)
    if not needs_code(cfg, case) or hmac.compare_digest(digits.encode(), case.sms_code.encode()):
        return _take_inbound(session, cfg, case, call_sid=call_sid, urls=urls, now=now)
    session.connection().execute(insert(_AUDIT), {
        "at": now, "actor": "ivr", "action": "case.inbound_code_wrong", "entity": "case",
        "entity_id": str(case.id), "detail": f"try {tries}"})
    if tries < cfg.ivr.max_reasks:
        return flow.ask_code(cfg, lang, digits=len(case.sms_code),
                             action=urls.verify(case.id, tries + 1), notice="invalid_key")
    return flow.goodbye(cfg, lang, "code_mismatch")


def _hold(now_param):
    """The case is held for the IVR and its attempt counted (free, or its hold expired;
    not handed over)."""
    return (update(_C).where(_C.c.id == bindparam("k_case"),
                             *cases.holdable(now_param, ("pending", "in_field")))
            .values({**cases.hold_values("ivr", now=now_param), **cases.attempt_start_values(
                now_param)}))


#: The inbound attempt: answered by a person, in progress.
_ATTEMPT_COLUMNS = ("case_id", "channel", "call_sid", "direction", "started_at", "status",
                    "status_rank", "last_sequence", "answered_at", "answered_by")


def _attempt_values(case_id, now) -> tuple:
    return (case_id, literal("ivr"), cast(bindparam("k_sid"), String), literal("inbound"), now,
            literal("in-progress"), literal(STATUS_RANK["in-progress"]), literal(-1), now,
            literal("human"))


_BUSY_ACTION = "case.inbound_while_busy"


def _busy_detail(row) -> str:
    return f"state {row.state}, held by {row.lock_channel or '-'}"


def _build_pg_take():
    """PostgreSQL: hold the case, open the attempt and its ``started`` event -- or, when
    the hold is refused, write the audit line -- in one statement."""
    now = bindparam("k_now", type_=_C.c.locked_at.type)
    h = _hold(now).returning(_C.c.id).cte("h")
    a = (insert(_A).from_select(list(_ATTEMPT_COLUMNS), select(*_attempt_values(h.c.id, now)))
         .returning(_A.c.id).cte("a"))
    e = insert(_E).from_select(["attempt_id", "at", "kind", "payload"], select(
        a.c.id, now, literal("started"), cast(bindparam("k_started"), JSON))).cte("e")
    audit = insert(_AUDIT).from_select(
        ["at", "actor", "action", "entity", "entity_id", "detail"],
        select(now, literal("ivr"), literal(_BUSY_ACTION), literal("case"),
               cast(bindparam("k_case"), String), cast(bindparam("k_detail"), String))
        .where(~exists(select(h.c.id)))).cte("audit")
    return select(select(a.c.id).scalar_subquery().label("attempt_id")).add_cte(h, e, audit)


_PG_TAKE = _build_pg_take()


def _take_inbound(session: Session, cfg, row, *, call_sid: str, urls: Urls,
                  now: datetime) -> str:
    """Hold the caller's case and start the interview, or say they will be called."""
    conn = session.connection()
    if fastsql.is_postgresql(conn):
        params = {"k_case": row.id, "k_now": now, "k_sid": call_sid,
                  "k_started": fastsql.bind(_E, {"payload": {"channel": "ivr"}})["payload"],
                  "k_detail": _busy_detail(row)}
        taken = fastsql.run_alone(conn, fastsql.run, conn, _PG_TAKE, params).scalar()
    else:
        held = conn.execute(_hold(now), {"k_case": row.id}).rowcount == 1
        taken = None
        if held:
            taken = conn.execute(insert(_A).values(
                dict(zip(_ATTEMPT_COLUMNS, _attempt_values(row.id, now), strict=True)))
                .returning(_A.c.id), {"k_sid": call_sid}).scalar()
            conn.execute(insert(_E), {"attempt_id": taken, "at": now, "kind": "started",
                                      "payload": {"channel": "ivr"}})
        else:
            conn.execute(insert(_AUDIT), {"at": now, "actor": "ivr", "action": _BUSY_ACTION,
                                          "entity": "case", "entity_id": str(row.id),
                                          "detail": _busy_detail(row)})
    if taken is None:
        return flow.goodbye(cfg, language_of(cfg, row), "callback_pending")
    cached = session.identity_map.get(session.identity_key(SampleCase, row.id))
    if cached is not None:
        session.expire(cached)  # the statement bypassed it
    attempt = find_attempt(session, attempt_id=taken, call_sid=call_sid)
    # the greeting's event: one statement, a transaction of its own on a lazy connection
    return fastsql.run_alone(conn, lambda: start_call(session, cfg, attempt, urls=urls, now=now))
