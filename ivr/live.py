"""What every IVR webhook shares: its URLs, the lookup of its call, and small writes.

The webhooks stay thin (:mod:`ivr.webhooks`): they check the signature, parse
the request and call one function of the IVR service modules with a session,
the survey configuration and ``now``; the function changes the database and
returns the TwiML to answer with.  The caller commits -- at once, so that an
answer is stored the moment it arrives.  The modules, one job each:

- :mod:`ivr.live` (this one): the webhook URLs, the attempt a request belongs
  to (:func:`find_attempt`, one statement), events, bounded numbers;
- :mod:`ivr.interview`: greeting, consent, questions, answers, comments, and a
  key whose request arrives after the call ended;
- :mod:`ivr.handoff`: the hand-over key, a live transfer to a free interviewer;
- :mod:`ivr.inbound`: calls to the survey number, with the SMS code check;
- :mod:`ivr.callstate`: status and AMD callbacks and the end of an attempt.

Where the call stands travels in the action URLs (``attempt``, ``pos`` = the
position of the unit asked, ``try`` = re-asks so far), so the webhooks keep no
state between requests; the attempt's ``call_sid`` must match the request's
``CallSid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ivr import fastsql
from minping import cases
from minping.models import (
    Answer,
    AttemptEvent,
    CallAttempt,
    CaseUnit,
    SampleCase,
    Unit,
)
from scoring import callstatus

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

    def _url(self, name: str, query: str = "") -> str:
        return f"{self.base}/ivr/{name}?{query}" if query else f"{self.base}/ivr/{name}"

    # The query's values are whole numbers (ids, positions, counts): nothing to quote.
    def voice(self, attempt_id: int) -> str:
        return self._url("voice", f"attempt={int(attempt_id)}")

    def consent(self, attempt_id: int, tries: int = 0) -> str:
        return self._url("consent", f"attempt={int(attempt_id)}&try={int(tries)}")

    def answer(self, attempt_id: int, pos: int, tries: int = 0) -> str:
        return self._url("answer", f"attempt={int(attempt_id)}&pos={int(pos)}&try={int(tries)}")

    def comment(self, attempt_id: int) -> str:
        return self._url("comment", f"attempt={int(attempt_id)}")

    def status(self, attempt_id: int | None = None) -> str:
        return self._url("status", f"attempt={int(attempt_id)}" if attempt_id else "")

    def amd(self, attempt_id: int) -> str:
        return self._url("amd", f"attempt={int(attempt_id)}")

    def verify(self, case_id: int, tries: int = 0) -> str:
        return self._url("verify", f"case={int(case_id)}&try={int(tries)}")

    def handoff(self, attempt_id: int, interviewer_id: int) -> str:
        return self._url("handoff", f"attempt={int(attempt_id)}&interviewer={int(interviewer_id)}")

    def callback(self, attempt_id: int, tries: int = 0) -> str:
        return self._url("callback", f"attempt={int(attempt_id)}&try={int(tries)}")


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

#: The attempt's columns a call needs (and may change), then its case's.
LIVE_FIELDS = ("id", "case_id", "channel", "call_sid", "status", "status_rank", "last_sequence",
               "answered_by", "answered_at", "outcome")


def _opted_out(attempt_id):
    """Whether the attempt has an ``opt_out`` event (``attempt_id``: its column, or the
    statement's parameter: a subquery run once, off the index on ``attempt_id``; the
    column's correlated form was hashed over every ``opt_out`` event of the table in
    PostgreSQL's generic plan)."""
    return (select(_E.c.id).where(_E.c.attempt_id == attempt_id, _E.c.kind == "opt_out")
            .exists().label("opted_out"))


_ATTEMPT = [*(_A.c[name] for name in LIVE_FIELDS), _C.c.state.label("case_state"),
            _C.c.language.label("case_language")]
_LIVE_COLUMNS = [*_ATTEMPT, _opted_out(bindparam("attempt_id"))]
_BY_ID = (select(*_LIVE_COLUMNS).join_from(_A, _C, _C.c.id == _A.c.case_id)
          .where(_A.c.id == bindparam("attempt_id")))
_BY_SID = (select(*_ATTEMPT, _opted_out(_A.c.id)).join_from(_A, _C, _C.c.id == _A.c.case_id)
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
_ROW_FIELDS = (*LIVE_FIELDS, "case_state", "case_language", "opted_out")
_INSERT_EVENT = insert(_E)
_SET_CALL_SID = (update(_A).where(_A.c.id == bindparam("attempt_id"), _A.c.call_sid.is_(None))
                 .values(call_sid=bindparam("sid")))


class Live:
    """An IVR attempt as a webhook sees it: the attempt's row, its case's state and
    language, whether the call opted out, and (for the interview steps) the case's
    units with their answers -- read in one statement.

    Attributes of the attempt (:data:`LIVE_FIELDS`) may be assigned like an ORM
    object's; :meth:`save` writes the changed ones back in one ``UPDATE``.
    """

    __slots__ = (*LIVE_FIELDS, "case_state", "case_language", "opted_out", "units", "_changed",
                 "_events", "_writes")

    def __init__(self, row, units: list | None = None):
        """``row``: the columns of :data:`_LIVE_COLUMNS` in their order (a tuple)."""
        for name, value in zip(_ROW_FIELDS, row, strict=False):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "_changed", {})
        object.__setattr__(self, "_events", [])
        object.__setattr__(self, "_writes", [])

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        if name in LIVE_FIELDS:
            self._changed[name] = value

    def write_insert(self, table, values: dict) -> None:
        """Insert ``values`` into ``table`` with :meth:`save`."""
        self._writes.append(("insert", table, [values]))

    def write_update(self, table, row_id: int, values: dict) -> None:
        """Set ``values`` on ``table``'s row ``row_id`` with :meth:`save`."""
        self._writes.append(("update", table, values, row_id))

    def write_with(self, ctes: tuple, params: dict) -> None:
        """Run the named statements ``ctes`` with :meth:`save` (PostgreSQL only; see
        :func:`ivr.fastsql.write`)."""
        self._writes.append(("with", None, ctes, params))

    def save(self, session: Session) -> None:
        """Write what is pending -- rows given to :meth:`write_insert` and
        :meth:`write_update`, the attempt's changed fields, its new events -- in one
        statement.

        On PostgreSQL one statement, one round trip: ``WITH w0 AS (INSERT ...), w1 AS
        (UPDATE ...) INSERT INTO attempt_event ...`` (its parts succeed or fail
        together), its text built once per shape (:mod:`ivr.fastsql`); on SQLite the
        parts one after the other.  Nothing if nothing is pending.
        """
        parts = list(self._writes)
        if self._changed:
            parts.append(("update", _A, self._changed, self.id))
        if self._events:
            parts.append(("insert", _E, self._events))
        if not parts:
            return
        object.__setattr__(self, "_changed", {})
        object.__setattr__(self, "_events", [])
        object.__setattr__(self, "_writes", [])
        conn = connection(session)
        if fastsql.is_postgresql(conn):
            fastsql.write(conn, parts)
            return
        for op, table, values, *rest in parts:  # SQLite has no INSERT/UPDATE inside WITH
            if op == "insert":
                conn.execute(insert(table), values)
            else:
                conn.execute(update(table).where(table.c.id == rest[0]).values(values))

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
    conn = connection(session)
    if fastsql.is_postgresql(conn):
        def execute(conn, stmt, params):  # a read (and a guarded, idempotent UPDATE)
            return fastsql.run_alone(conn, fastsql.run, conn, stmt, params)
    else:
        execute = _core
    if attempt_id is not None:
        if with_units:
            rows = execute(conn, _BY_ID_WITH_UNITS, {"attempt_id": attempt_id}).fetchall()
            if not rows:
                return None
            n = len(_ROW_FIELDS)
            units = [cases.CaseUnitState(*r[n:n + 5], r[n + 6], r[n + 5] is not None)
                     for r in rows if r[n] is not None]
            attempt = Live(rows[0], units)
        else:
            row = execute(conn, _BY_ID, {"attempt_id": attempt_id}).fetchone()
            if row is None:
                return None
            attempt = Live(row)
        if attempt.channel != "ivr":
            return None
        if call_sid:
            if attempt.call_sid is None:
                # written at once, guarded: two first requests of one call agree
                execute(conn, _SET_CALL_SID, {"attempt_id": attempt.id, "sid": call_sid})
                object.__setattr__(attempt, "call_sid", call_sid)
            elif attempt.call_sid != call_sid:
                return None
        return attempt
    if not call_sid:
        return None
    row = execute(conn, _BY_SID, {"call_sid": call_sid}).fetchone()
    return Live(row) if row is not None else None


def connection(session: Session):
    """The session's connection: the one it is bound to (a webhook's, :mod:`ivr.webhooks`:
    used as it stands, without starting the session's transaction), else its own."""
    bind = session.bind
    return bind if isinstance(bind, Connection) else session.connection()


def _core(conn, stmt, params: dict):
    return conn.execute(stmt, params)


def forget_loaded(session: Session) -> None:
    """Kept for callers of the former ORM cache: nothing is remembered between tries."""


def language_of(cfg, case) -> str:
    """The case's prompt language (``case``: a :class:`SampleCase` or a :class:`Live`)."""
    language = case.case_language if isinstance(case, Live) else case.language
    return language if language in cfg.languages else cfg.campaign.default_language


def add_event(session: Session, attempt, kind: str, *, now: datetime, payload: dict | None = None,
              sequence_number: int | None = None, idempotency_token: str | None = None) -> None:
    """Append an event (``attempt``: anything with an ``id``).

    A :class:`Live` attempt's plain events (no sequence number or token to check)
    are written with its other changes by :meth:`Live.save` -- in the same
    transaction, before the webhook commits, and before anything reads the
    attempt's events or its ORM object -- which saves a round trip each; other
    events are inserted at once.
    """
    row = {"attempt_id": attempt.id, "at": now, "kind": kind, "payload": payload or {},
           "sequence_number": sequence_number, "idempotency_token": idempotency_token}
    if isinstance(attempt, Live) and sequence_number is None and idempotency_token is None:
        attempt._events.append(row)
        return
    connection(session).execute(_INSERT_EVENT, row)


def event_kinds(session: Session, attempt) -> set[str]:
    """The kinds of the attempt's events (``attempt``: an id, or a :class:`Live` -- its
    pending events written first)."""
    if isinstance(attempt, Live):
        attempt.save(session)
        attempt = attempt.id
    return set(session.scalars(select(AttemptEvent.kind).where(
        AttemptEvent.attempt_id == attempt)).all())


def unit_texts(cfg, state: cases.CaseUnitState, lang: str) -> tuple[str, str]:
    chinese = lang.split("-")[0] in ("cmn", "zh", "yue")
    name = state.unit_name if chinese else state.unit_name_en
    try:
        track = cfg.track(cfg.unit(state.unit_code).track).label(lang)
    except KeyError:
        track = ""
    return name, track


_INSERT_ONCE = {}


def insert_once(session: Session, table, row: dict, unique: str) -> bool:
    """Insert ``row`` unless a row with the same ``unique`` value exists; True if new."""
    conn = connection(session)
    dialect = conn.dialect.name
    key = (table.name, dialect)
    stmt = _INSERT_ONCE.get(key)
    if stmt is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            dialect_insert = None
        stmt = (dialect_insert(table).on_conflict_do_nothing(index_elements=[table.c[unique]])
                .returning(table.c.id)) if dialect_insert is not None else False
        _INSERT_ONCE[key] = stmt
    if stmt is False:
        if conn.execute(select(table.c.id).where(table.c[unique] == row[unique])).first():
            return False
        conn.execute(insert(table), row)
        return True
    if dialect == "postgresql":
        return fastsql.run(conn, stmt, fastsql.bind(table, row)).fetchone() is not None
    return conn.execute(stmt, row).first() is not None



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

