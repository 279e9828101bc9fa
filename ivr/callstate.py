"""Status and AMD callbacks, and the end of an IVR attempt.

Status callbacks are appended as :class:`~minping.models.AttemptEvent` rows
(their idempotency token is unique: a repeated callback is stored once) and only
move the attempt's state forward (:data:`~ivr.live.STATUS_RANK`); the final
status closes the attempt with an AAPOR code
(:func:`scoring.aapor.from_twilio_status`) and moves the case on as
:func:`minping.cases.plan_finish` says.

**Statements.**  A callback is one write: the event goes in with ``INSERT ...
ON CONFLICT (idempotency_token) DO NOTHING``, and the attempt's forward-only
update (:data:`_STATUS_SET`, a ``CASE`` per column: the row's own values decide,
so two callbacks racing cannot move it back) runs only if the event was new.  On
PostgreSQL both are one statement (``WITH ev AS (INSERT ...) UPDATE ... WHERE
EXISTS (SELECT FROM ev)``), which the webhook's lazy connection runs as a
transaction of its own (:mod:`ivr.fastsql`): with the webhook's read of the
attempt, two round trips.  The end of a call reads what it decides on -- the
case, the attempt's event kinds, the answers, the case's codes and the attempts
nobody answered -- in one statement (:func:`_end_facts`) and writes the event,
the attempt, its disposition events and the case in one more
(:func:`_apply_close`), each part conditional on the part before (the token new,
the attempt still open).  SQLite runs the same parts one after the other in the
caller's transaction.

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
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ivr import fastsql
from ivr.live import (
    _A,
    _ANS,
    _C,
    _CU,
    _E,
    ANSWERED_BY,
    FINAL_RANK,
    NOT_A_PERSON,
    STATUS_FIELDS,
    STATUS_RANK,
    Live,
    bounded_int,
    insert_once,
)
from minping import calltimes, cases
from minping.models import CallAttempt, DispositionEvent, SampleCase, UTCDateTime
from scoring.aapor import from_twilio_status

_D = DispositionEvent.__table__


def _p(name: str, type_=None):
    return bindparam(name, type_=type_) if type_ is not None else bindparam(name)


# --- what a callback changes on the attempt ------------------------------------------------

#: The forward-only update of a callback (status, rank, sequence, answered_by,
#: answered_at), decided by the row's own values: a rank or a sequence number only
#: grows, answered_by and answered_at are set once.  Parameters ``s_status``,
#: ``s_rank`` (None: not a status that moves the call), ``s_seq``, ``s_answered_by``
#: (None: keep), ``s_answered`` (the call was answered now: ``s_now``).
_STATUS_SET = {
    "answered_by": case((or_(_A.c.answered_by.is_(None), _A.c.answered_by == ""),
                         func.coalesce(_p("s_answered_by", String), _A.c.answered_by)),
                        else_=_A.c.answered_by),
    "last_sequence": case((_A.c.last_sequence < _p("s_seq", Integer), _p("s_seq", Integer)),
                          else_=_A.c.last_sequence),
    "answered_at": case((and_(_A.c.answered_at.is_(None), _p("s_answered", Boolean)),
                         _p("s_now", UTCDateTime)), else_=_A.c.answered_at),
    "status": case((_A.c.status_rank < _p("s_rank", Integer), _p("s_status", String)),
                   else_=_A.c.status),
    "status_rank": case((_A.c.status_rank < _p("s_rank", Integer), _p("s_rank", Integer)),
                        else_=_A.c.status_rank),
}
#: The close of an attempt (``c_code``; ``c_ended``, ``c_duration`` and ``c_error`` kept
#: when None).
_CLOSE_SET = {
    "outcome": _p("c_code", String),
    "ended_at": func.coalesce(_A.c.ended_at, _p("c_ended", UTCDateTime)),
    "duration_seconds": func.coalesce(_p("c_duration", Integer), _A.c.duration_seconds),
    "error": func.coalesce(_p("c_error", String), _A.c.error),
}
#: The case after the close (:class:`minping.cases.FinishPlan`); ``k_release``: the hold ends.
_CASE_SET = {
    "known_eligible": or_(_C.c.known_eligible, _p("k_eligible", Boolean)),
    "current_disposition": _p("c_code", String),
    "state": _p("k_state", String),
    "final_disposition": func.coalesce(_p("k_final", String), _C.c.final_disposition),
    "next_attempt_at": _p("k_next", UTCDateTime),
    "priority": _p("k_priority", Integer),
    **{name: case((_p("k_release", Boolean), null()), else_=_C.c[name])
       for name in ("lock_channel", "locked_by", "locked_at", "lock_expires_at")},
}


def _event_row(attempt_id: int, kind: str, *, now: datetime, payload: dict,
               token: str | None, sequence_number: int | None = None) -> dict:
    return {"attempt_id": attempt_id, "at": now, "kind": kind, "payload": payload,
            "sequence_number": sequence_number, "idempotency_token": token}


def _pg_event_cte():
    """``INSERT INTO attempt_event ... ON CONFLICT (idempotency_token) DO NOTHING
    RETURNING id`` as a CTE (a row without a token is always new)."""
    return (pg_insert(_E).values({c: bindparam(f"e_{c}") for c in
                                  ("attempt_id", "at", "kind", "payload", "sequence_number",
                                   "idempotency_token")})
            .on_conflict_do_nothing(index_elements=[_E.c.idempotency_token])
            .returning(_E.c.id).cte("ev"))


def _pg_event_params(row: dict) -> dict:
    return {f"e_{k}": v for k, v in fastsql.bind(_E, row).items()}


def _build_pg_callback():
    ev = _pg_event_cte()
    up = (update(_A).where(_A.c.id == bindparam("e_attempt_id"), exists(select(ev.c.id)))
          .values(_STATUS_SET).returning(_A.c.id).cte("up"))
    return select(select(ev.c.id).scalar_subquery().label("event_id"),
                  select(up.c.id).scalar_subquery().label("updated"))


#: PostgreSQL: a callback's event and the attempt's forward-only update, one statement.
_PG_CALLBACK = _build_pg_callback()
#: The AMD result sets answered_by unless a person or a machine was already recorded.
_AMD_SET = {"answered_by": case(
    (or_(_A.c.answered_by.is_(None), _A.c.answered_by == "unknown"),
     _p("s_answered_by", String)), else_=_A.c.answered_by)}
#: Whether a key pressed on the call reached the webhooks.
_KEYS_PRESSED = exists(select(_E.c.id).where(
    _E.c.attempt_id == bindparam("e_attempt_id"), _E.c.kind == "digits",
    func.coalesce(_E.c.payload["digits"].as_string(), "") != ""))


def _build_pg_amd():
    ev = _pg_event_cte()
    up = (update(_A).where(_A.c.id == bindparam("e_attempt_id"), exists(select(ev.c.id)))
          .values(_AMD_SET).returning(_A.c.answered_by).cte("up"))
    return select(select(ev.c.id).scalar_subquery().label("event_id"),
                  select(up.c.answered_by).scalar_subquery().label("answered_by"),
                  _KEYS_PRESSED.label("keys"))


_PG_AMD = _build_pg_amd()


def _status_params(params: Mapping[str, str], *, now: datetime) -> dict:
    status = params.get("CallStatus", "")
    answered_by = params.get("AnsweredBy")
    return {"s_status": status, "s_rank": STATUS_RANK.get(status),
            "s_seq": bounded_int(params.get("SequenceNumber")),
            "s_answered_by": answered_by if answered_by in ANSWERED_BY else None,
            "s_answered": status == "in-progress", "s_now": now}


def _as_read(attempt, **values) -> None:
    """Give the in-memory attempt the values the database now holds (nothing to write)."""
    for name, value in values.items():
        if isinstance(attempt, Live):
            object.__setattr__(attempt, name, value)
        else:
            set_committed_value(attempt, name, value)


def _forward(attempt, p: dict) -> None:
    """:data:`_STATUS_SET` applied to the in-memory attempt."""
    values = {}
    if p["s_answered_by"] and not attempt.answered_by:
        values["answered_by"] = p["s_answered_by"]
    if p["s_seq"] is not None and p["s_seq"] > attempt.last_sequence:
        values["last_sequence"] = p["s_seq"]
    if p["s_answered"] and attempt.answered_at is None:
        values["answered_at"] = p["s_now"]
    if p["s_rank"] is not None and p["s_rank"] > attempt.status_rank:
        values["status"], values["status_rank"] = p["s_status"], p["s_rank"]
    _as_read(attempt, **values)


def _pending_first(session: Session, attempt) -> None:
    """Write what the request changed before these statements (an ORM object, a Live's
    pending events): they read and write the rows themselves."""
    if isinstance(attempt, Live):
        attempt.save(session)
    elif session.dirty or session.new or session.deleted:
        session.flush()


def _insert_event(session: Session, row: dict) -> bool:
    """SQLite: the callback's event unless its token is stored; True if new."""
    if row["idempotency_token"]:
        return insert_once(session, _E, row, "idempotency_token")
    session.connection().execute(insert(_E), row)
    return True


def _callback(session: Session, attempt, row: dict, p: dict) -> bool:
    """Store a callback's event; if new, the attempt's forward-only update.  True if new."""
    conn = session.connection()
    if fastsql.is_postgresql(conn):
        result = fastsql.run_alone(conn, fastsql.run, conn, _PG_CALLBACK,
                                   {**_pg_event_params(row), **p}).first()
        new = result.event_id is not None
    else:
        new = _insert_event(session, row)
        if new:
            conn.execute(update(_A).where(_A.c.id == attempt.id).values(_STATUS_SET), p)
    if new:
        _forward(attempt, p)
    return new


def record_status(session: Session, cfg, attempt: Live | CallAttempt, params: Mapping[str, str], *,
                  token: str | None, now: datetime) -> str:
    """Store one status callback; move the attempt forward; close it on a final status.

    Returns ``"duplicate"`` (already stored: nothing changed), ``"stale"``
    (stored, but older than the attempt's state), ``"advanced"`` or ``"closed"``.
    """
    status = params.get("CallStatus", "")
    p = _status_params(params, now=now)
    rank, before = p["s_rank"], attempt.status_rank
    row = _event_row(attempt.id, "status", now=now, token=token, sequence_number=p["s_seq"],
                     payload={k: params[k] for k in STATUS_FIELDS if k in params})
    _pending_first(session, attempt)
    if rank is not None and rank >= FINAL_RANK and rank > before:
        if attempt.outcome is None:  # the end of the call: the callback and the close at once
            finish = _close(session, cfg, attempt, call_status=status,
                            answered_by=params.get("AnsweredBy"),
                            sip_code=bounded_int(params.get("SipResponseCode")),
                            duration=bounded_int(params.get("CallDuration")), now=now,
                            callback=(row, p))
            if finish == "duplicate":
                return "duplicate"
            if finish == _STORED:  # closed meanwhile by another request: the callback stored
                _forward(attempt, p)
                return "closed"
            if finish is not _NOT_CLOSED:
                return "closed"
        # closed already (the dialer, another request): the callback is stored alone
        return "closed" if _callback(session, attempt, row, p) else "duplicate"
    if not _callback(session, attempt, row, p):
        return "duplicate"
    return "stale" if rank is None or rank <= before else "advanced"


def record_amd(session: Session, attempt: Live | CallAttempt, *, answered_by: str,
               token: str | None, now: datetime) -> bool:
    """Store an AsyncAmd result; True when the call reached a machine or a fax."""
    row = _event_row(attempt.id, "amd", now=now, payload={"AnsweredBy": answered_by},
                     token=token)
    p = {"s_answered_by": answered_by if answered_by in ANSWERED_BY else None}
    _pending_first(session, attempt)
    conn = session.connection()
    if fastsql.is_postgresql(conn):
        result = fastsql.run_alone(conn, fastsql.run, conn, _PG_AMD,
                                   {**_pg_event_params(row), **p}).first()
        if result.event_id is None:
            return False
        if result.answered_by is not None:
            _as_read(attempt, answered_by=result.answered_by)
        keys = result.keys
    else:
        if not _insert_event(session, row):
            return False
        conn.execute(update(_A).where(_A.c.id == attempt.id).values(_AMD_SET), p)
        if p["s_answered_by"] and attempt.answered_by in (None, "unknown"):
            _as_read(attempt, answered_by=p["s_answered_by"])
        keys = conn.scalar(select(_KEYS_PRESSED), {"e_attempt_id": attempt.id})
    # keys pressed prove a person (a late machine verdict keeps the interview)
    return (attempt.outcome is None and answered_by in NOT_A_PERSON
            and attempt.answered_by != "human" and not keys)


# --- the end of an attempt ---------------------------------------------------------------


@dataclass(frozen=True)
class EndFacts:
    """What closing an IVR attempt decides on, read in one statement (:func:`_end_facts`)."""

    case_id: int
    state: str
    known_eligible: bool
    lock_channel: str | None
    attempts: int
    stratum_id: int
    priority: int
    outcome: str | None
    answered_by: str | None
    channel: str
    kinds: frozenset
    answered: int  # units with a valid answer
    total: int  # units assigned
    unasked: bool  # a unit without an answer row is left
    codes: tuple  # (at, code) of the case's attempt dispositions, oldest first
    tried: tuple  # (started, outcome) of the case's attempts nobody answered


_KINDS = select(_E.c.kind).where(_E.c.attempt_id == _A.c.id).distinct()
_ANSWERED = (select(func.count()).select_from(_ANS)
             .where(_ANS.c.case_id == _A.c.case_id, _ANS.c.rating.is_not(None)).scalar_subquery())
_TOTAL = select(func.count()).select_from(_CU).where(_CU.c.case_id == _A.c.case_id).scalar_subquery()
_UNASKED = exists(select(_CU.c.id).where(
    _CU.c.case_id == _A.c.case_id,
    ~exists(select(_ANS.c.id).where(_ANS.c.case_id == _CU.c.case_id,
                                    _ANS.c.unit_id == _CU.c.unit_id))))
_KINDS_OF = select(_E.c.kind).where(_E.c.attempt_id == bindparam("a_id")).distinct()
_CODES_OF = (select(_D.c.at, _D.c.code).where(_D.c.case_id == bindparam("a_case"),
                                              _D.c.attempt_id.is_not(None))
             .order_by(_D.c.at, _D.c.id))
_TRIED = (select(_A.c.started_at, _A.c.outcome)
          .where(_A.c.case_id == bindparam("a_case"), _A.c.answered_at.is_(None))
          .order_by(_A.c.id))
_FACT_COLUMNS = (_A.c.case_id, _C.c.state, _C.c.known_eligible, _C.c.lock_channel, _C.c.attempts,
                 _C.c.stratum_id, _C.c.priority, _A.c.outcome, _A.c.answered_by, _A.c.channel)
_FACTS = (select(*_FACT_COLUMNS, _ANSWERED.label("answered"), _TOTAL.label("total"),
                 _UNASKED.label("unasked"))
          .join_from(_A, _C, _C.c.id == _A.c.case_id).where(_A.c.id == bindparam("a_id")))
_T = _A.alias("t")
#: PostgreSQL: the facts and the lists in one statement (arrays).
_PG_FACTS = (select(*_FACT_COLUMNS, _ANSWERED.label("answered"), _TOTAL.label("total"),
                    _UNASKED.label("unasked"),
                    func.array(_KINDS.scalar_subquery()).label("kinds"),
                    func.array(select(_D.c.at).where(_D.c.case_id == _A.c.case_id,
                                                     _D.c.attempt_id.is_not(None))
                               .order_by(_D.c.at, _D.c.id).scalar_subquery()).label("code_at"),
                    func.array(select(_D.c.code).where(_D.c.case_id == _A.c.case_id,
                                                       _D.c.attempt_id.is_not(None))
                               .order_by(_D.c.at, _D.c.id).scalar_subquery()).label("codes"),
                    func.array(select(_T.c.started_at).where(
                        _T.c.case_id == _A.c.case_id, _T.c.answered_at.is_(None))
                        .order_by(_T.c.id).scalar_subquery()).label("tried_at"),
                    func.array(select(_T.c.outcome).where(
                        _T.c.case_id == _A.c.case_id, _T.c.answered_at.is_(None))
                        .order_by(_T.c.id).scalar_subquery()).label("tried_outcome"))
             .join_from(_A, _C, _C.c.id == _A.c.case_id)
             .where(_A.c.id == bindparam("a_id")))


def _end_facts(session: Session, attempt_id: int) -> EndFacts:
    conn = session.connection()
    if fastsql.is_postgresql(conn):
        r = fastsql.run_alone(conn, fastsql.run, conn, _PG_FACTS,
                              {"a_id": attempt_id}).one()
        kinds, codes = r.kinds, tuple(zip(r.code_at, r.codes, strict=True))
        tried = tuple(zip(r.tried_at, r.tried_outcome, strict=True))
    else:
        r = conn.execute(_FACTS, {"a_id": attempt_id}).one()
        kinds = conn.scalars(_KINDS_OF, {"a_id": attempt_id}).all()
        codes = tuple(conn.execute(_CODES_OF, {"a_case": r.case_id}).all())
        tried = tuple(conn.execute(_TRIED, {"a_case": r.case_id}).all())
    return EndFacts(case_id=r.case_id, state=r.state, known_eligible=r.known_eligible,
                    lock_channel=r.lock_channel, attempts=r.attempts, stratum_id=r.stratum_id,
                    priority=r.priority, outcome=r.outcome, answered_by=r.answered_by,
                    channel=r.channel, kinds=frozenset(kinds), answered=r.answered,
                    total=r.total, unasked=r.unasked, codes=codes, tried=tried)


#: :func:`_close` found the attempt closed already (by another request, the dialer).
_NOT_CLOSED = None
#: ... and stored the callback it was given (the attempt closed between its read and write).
_STORED = "stored"


def close_attempt(session: Session, cfg, attempt: CallAttempt | Live, *, call_status: str,
                  answered_by: str | None = None, sip_code: int | None = None,
                  duration: int | None = None, now: datetime, error: str | None = None):
    """Close an IVR attempt from the call's final status; returns the ``Finish`` (or None).

    The code: :func:`scoring.aapor.from_twilio_status` with the answers of the
    case (answers are kept across calls), whether this call passed the consent
    step, the AMD result, the SIP code.  A hand-over keeps the case out of the
    dialer's queue for an interviewer; an interview that asked every unit
    leaves nothing to retry, so its code is made final.  The case moves on as
    :func:`minping.cases.plan_finish` says.  Pending ORM changes are written
    first; the attempt and its case are read again after.
    """
    _pending_first(session, attempt)
    return _close(session, cfg, attempt, call_status=call_status, answered_by=answered_by,
                  sip_code=sip_code, duration=duration, now=now, error=error)


def _close(session: Session, cfg, attempt, *, call_status: str, answered_by: str | None,
           sip_code: int | None, duration: int | None, now: datetime,
           error: str | None = None, callback: tuple[dict, dict] | None = None):
    facts = _end_facts(session, attempt.id)
    if facts.outcome is not None:
        return _NOT_CLOSED
    kinds = facts.kinds
    if callback is not None and callback[1]["s_answered_by"] and not facts.answered_by:
        facts_answered_by = callback[1]["s_answered_by"]
    else:
        facts_answered_by = facts.answered_by
    if answered_by not in ANSWERED_BY:
        answered_by = facts_answered_by if facts_answered_by in ANSWERED_BY else None
    had_consent = "consent" in kinds or "handoff" in kinds
    handoff = "handoff" in kinds and "callback_declined" not in kinds
    status = call_status if call_status in STATUS_RANK and STATUS_RANK[call_status] == FINAL_RANK \
        else "failed"
    if sip_code is not None and not 100 <= sip_code <= 699:
        sip_code = None
    code = from_twilio_status(status, answered_by=answered_by, sip_code=sip_code,
                              had_consent=had_consent,
                              answered_units=facts.answered if had_consent else 0,
                              total_units=facts.total, refused="opt_out" in kinds,
                              known_eligible=facts.known_eligible)
    rules = cfg.calling
    max_attempts, next_at, keep_lock = rules.max_attempts, None, False
    if facts.state == "final":
        pass
    elif handoff and facts.lock_channel == "cati":  # the interviewer keeps the case on screen
        max_attempts, next_at, keep_lock = max(max_attempts, facts.attempts + 1), now, True
    elif handoff:
        max_attempts, next_at = max(max_attempts, facts.attempts + 1), now
    elif had_consent and not facts.unasked:
        max_attempts = min(max_attempts, facts.attempts)  # nothing left to ask
    else:
        outcome = cases.RETRY_OUTCOME.get(code, cases.DEFAULT_RETRY_OUTCOME)
        if outcome in ("busy", "no-answer", "machine"):
            next_at = calltimes.retry_after(session, rules, stratum_id=facts.stratum_id,
                                            attempts=facts.attempts, tried=facts.tried,
                                            now=now, outcome=outcome)
    # this attempt's disposition event goes after those at or before now (at, id order)
    codes = [c for at, c in facts.codes if at <= now] + [code] + \
        [c for at, c in facts.codes if at > now]
    plan = cases.plan_finish(code, codes=codes, attempts=facts.attempts,
                             max_attempts=max_attempts, rules=rules, now=now,
                             next_attempt_at=next_at, state=facts.state,
                             priority=facts.priority, channel=facts.channel)
    closed = _apply_close(session, attempt.id, facts.case_id, plan, now=now, duration=duration,
                          error=error, release=not keep_lock, callback=callback)
    if closed is not True:
        return closed
    if callback is not None:
        _forward(attempt, callback[1])
    _as_read(attempt, outcome=plan.code)
    if not isinstance(attempt, Live):
        session.expire(attempt)
    cached = session.identity_map.get(session.identity_key(SampleCase, facts.case_id))
    if cached is not None:
        session.expire(cached)  # the statement bypassed it
    return cases.Finish(plan.code, plan.final, plan.next_attempt_at)


def _close_params(attempt_id: int, case_id: int, plan: cases.FinishPlan, *, now: datetime,
                  duration: int | None, error: str | None, release: bool) -> dict:
    return {"a_id": attempt_id, "a_case": case_id, "c_code": plan.code,
            "c_ended": now, "c_duration": duration, "c_error": error, "c_at": now,
            "c_is_final": plan.is_final_code, "k_eligible": plan.known_eligible,
            "k_state": plan.state, "k_final": plan.final, "k_next": plan.next_attempt_at,
            "k_priority": plan.priority, "k_release": release,
            "k_note": cases.FINAL_CHOSEN_NOTE}


_PG_CLOSE: dict[tuple[bool, bool], object] = {}


def _pg_close(with_event: bool, final_event: bool):
    """PostgreSQL: the close in one statement -- [the callback's event,] the attempt (if
    still open [and the event new]), its disposition event(s), the case."""
    key = (with_event, final_event)
    stmt = _PG_CLOSE.get(key)
    if stmt is not None:
        return stmt
    where = [_A.c.id == bindparam("a_id"), _A.c.outcome.is_(None)]
    values = dict(_CLOSE_SET)
    ctes = []
    if with_event:
        ev = _pg_event_cte()
        where.append(exists(select(ev.c.id)))
        values.update(_STATUS_SET)
        ctes.append(ev)
    a = update(_A).where(*where).values(values).returning(_A.c.id).cte("a")
    rows = select(cast(bindparam("a_case"), Integer), a.c.id, cast(_p("c_code"), String),
                  cast(_p("c_is_final"), Boolean), cast(_p("c_at", UTCDateTime), UTCDateTime),
                  cast(null(), Integer), cast(null(), String))
    if final_event:
        rows = union_all(rows, select(
            cast(bindparam("a_case"), Integer), cast(null(), Integer),
            cast(_p("k_final"), String), true(), cast(_p("c_at", UTCDateTime), UTCDateTime),
            cast(null(), Integer), cast(_p("k_note"), String)).where(exists(select(a.c.id))))
    d = insert(_D).from_select(["case_id", "attempt_id", "code", "is_final", "at", "by_user_id",
                                "note"], rows).cte("d")
    c = (update(_C).where(_C.c.id == bindparam("a_case"), exists(select(a.c.id)))
         .values(_CASE_SET).cte("c"))
    main = select(select(a.c.id).scalar_subquery().label("closed"),
                  (select(ev.c.id).scalar_subquery() if with_event else literal(None))
                  .label("event_id")).add_cte(*ctes, d, c)
    _PG_CLOSE[key] = main
    return main


def _apply_close(session: Session, attempt_id: int, case_id: int, plan: cases.FinishPlan, *,
                 now: datetime, duration: int | None, error: str | None, release: bool,
                 callback: tuple[dict, dict] | None):
    """Write the close; True, ``"duplicate"`` (the callback was stored already),
    :data:`_STORED` (the attempt was closed meanwhile: the callback stored and applied
    alone) or :data:`_NOT_CLOSED` (closed meanwhile, no callback given)."""
    params = _close_params(attempt_id, case_id, plan, now=now, duration=duration, error=error,
                           release=release)
    conn = session.connection()
    if fastsql.is_postgresql(conn):
        if callback is not None:
            params.update(_pg_event_params(callback[0]), **callback[1])
        stmt = _pg_close(callback is not None, plan.final_event)
        result = fastsql.run_alone(conn, fastsql.run, conn, stmt, params).one()
        if callback is not None and result.event_id is None:
            return "duplicate"
        if result.closed is not None:
            return True
        if callback is None:
            return _NOT_CLOSED
        # closed between the read and this statement: the callback's own update, alone
        update_only = update(_A).where(_A.c.id == bindparam("e_attempt_id")).values(_STATUS_SET)
        fastsql.run_alone(conn, conn.execute, update_only,
                          {"e_attempt_id": attempt_id, **callback[1]})
        return _STORED
    if callback is not None:
        row, p = callback
        if not _insert_event(session, row):
            return "duplicate"
        conn.execute(update(_A).where(_A.c.id == attempt_id).values(_STATUS_SET), p)
    done = conn.execute(update(_A).where(_A.c.id == attempt_id, _A.c.outcome.is_(None))
                        .values(_CLOSE_SET), params).rowcount
    if not done:
        return _NOT_CLOSED if callback is None else _STORED
    events = [{"case_id": case_id, "attempt_id": attempt_id, "code": plan.code,
               "is_final": plan.is_final_code, "at": now, "by_user_id": None, "note": None}]
    if plan.final_event:
        events.append({"case_id": case_id, "attempt_id": None, "code": plan.final,
                       "is_final": True, "at": now, "by_user_id": None,
                       "note": cases.FINAL_CHOSEN_NOTE})
    for event in events:  # one by one: their ids keep their order
        conn.execute(insert(_D), event)
    conn.execute(update(_C).where(_C.c.id == case_id).values(_CASE_SET), params)
    return True
