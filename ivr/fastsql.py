"""The webhooks' statements as driver SQL, compiled once (PostgreSQL).

A webhook runs the same few statements on every request.  SQLAlchemy's
compiled cache spares their compilation, but each execution still builds a
cache key and walks the statement; a statement whose shape varies (the
attempt's changed fields, the events of this request) was compiled afresh every
time.  Here each statement, or each *shape* of the webhook's one write
statement, is turned into PostgreSQL text once and run by :func:`execute` on the
psycopg connection under the request's SQLAlchemy connection, prepared on the
server at its first run: same transaction, the same errors as SQLAlchemy raises
(``IntegrityError``, a lost connection invalidated), and none of SQLAlchemy's
per-execution work (events, result metadata, row processing), which cost three
times the driver's own.  Rows come back as named tuples.  Values are bound as
SQLAlchemy would bind them for our columns: aware datetimes in UTC, JSON columns
as ``json``.

SQLite keeps the Core statements (the tests run both).

**Two round trips for a plain step** (:func:`begin_lazily`).  A webhook's
transaction was ``BEGIN``, the read, the write, ``COMMIT``: four round trips, each
a wake-up of the database backend and of the worker thread, which on a busy
machine is what a caller's wait is made of.  PostgreSQL runs a lone statement as a
transaction of its own, committed (``synchronous_commit`` on: flushed) before it
answers.  So the webhook's read runs outside a transaction -- at READ COMMITTED a
statement sees what was committed when it starts, inside a transaction or not, and
the read takes no lock -- and then:

- the webhook's one write statement (:meth:`ivr.live.Live.save` from the
  webhook's commit, nothing else written) runs alone: it is its own transaction,
  all of its parts or none, durable when it returns.  Twilio hears back after it,
  as after a ``COMMIT``;
- any other statement (an idempotent callback's ``INSERT ... ON CONFLICT``, a
  ``SELECT ... FOR UPDATE``, the ORM's work at the end of a call) first opens a
  transaction (``BEGIN``), which the webhook's commit ends: those steps stay
  all-or-nothing, as before.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Json
from sqlalchemy import JSON
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound

#: (Core statement's id, parameter names) -> (driver SQL, constant parameters, statement).
_COMPILED: dict[tuple, tuple[str, dict, object]] = {}
#: Write shape -> driver SQL.
_WRITES: dict[tuple, str] = {}


def is_postgresql(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def run(conn: Connection, stmt, params: dict):
    """Run the Core ``stmt`` (built once, at import) as driver SQL compiled once (per
    set of parameter names: an ``INSERT`` names the columns given); returns its
    :class:`Rows`."""
    key = (id(stmt), tuple(params))
    entry = _COMPILED.get(key)
    if entry is None or entry[2] is not stmt:
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(params))
        entry = _COMPILED[key] = (str(compiled), dict(compiled.params), stmt)
    sql, constants, _ = entry
    return Rows(execute(conn, sql, {**constants, **params} if constants else params))


class Rows:
    """The rows of :func:`run` with the methods of SQLAlchemy's ``Result`` the callers
    use; a row is a named tuple (``row.case_id``, ``row[1]``)."""

    __slots__ = ("cursor",)

    def __init__(self, cursor):
        self.cursor = cursor

    def fetchone(self):
        return self.cursor.fetchone()

    def fetchall(self) -> list:
        return self.cursor.fetchall()

    first = fetchone
    all = fetchall

    def one(self):
        rows = self.cursor.fetchall()
        if len(rows) != 1:
            raise (NoResultFound if not rows else MultipleResultsFound)(
                f"{len(rows)} rows where one was required")
        return rows[0]

    def scalar(self):
        row = self.cursor.fetchone()
        return None if row is None else row[0]


def execute(conn: Connection, sql: str, params: dict):
    """Run ``sql`` on the request's psycopg connection itself, prepared on the server.

    SQLAlchemy's execution path (events, result metadata, row processing) cost three
    times the driver's own work per statement; rows are named tuples.  On a
    lazy connection a statement that may not run alone opens the transaction first,
    as :func:`_before_execute` does for SQLAlchemy's statements.  Errors are raised as
    SQLAlchemy raises them (``IntegrityError``; a lost connection invalidated, with
    ``connection_invalidated`` set, for the webhook's retry).
    """
    raw = conn.connection.driver_connection
    info = conn.info
    try:
        if info.get(_LAZY) and not info.get(_ALONE) and raw.pgconn.transaction_status == 0:
            raw.execute("BEGIN")
        cursor = raw.cursor(row_factory=namedtuple_row)
        cursor.execute(sql, params, prepare=True)
    except psycopg.Error as error:
        lost = raw.broken or raw.closed
        if lost:
            conn.invalidate(error)
        raise DBAPIError.instance(sql, params, error, psycopg.Error, hide_parameters=True,
                                  connection_invalidated=lost) from error
    return cursor


def end(conn: Connection, *, commit: bool) -> None:
    """Commit (or roll back) what the request's connection still has open: SQLAlchemy's
    transaction, else one the statements of :func:`execute` opened (PostgreSQL)."""
    if conn.in_transaction():
        if commit:
            conn.commit()
        else:
            conn.rollback()
    if not is_postgresql(conn) or conn.invalidated:
        return
    raw = conn.connection.driver_connection
    if raw.pgconn.transaction_status != 0:  # not IDLE: a transaction of execute()'s
        try:
            raw.commit() if commit else raw.rollback()
        except psycopg.Error as error:
            lost = raw.broken or raw.closed
            if lost:
                conn.invalidate(error)
            raise DBAPIError.instance("COMMIT" if commit else "ROLLBACK", {}, error,
                                      psycopg.Error, connection_invalidated=lost) from error


def _value(column, value):
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a time zone")
        return value.astimezone(UTC)
    if isinstance(column.type, JSON):
        return Json(value)
    return value


def bind(table, row: dict) -> dict:
    """``row``'s values as SQLAlchemy would bind them for ``table``'s columns."""
    columns = table.c
    return {name: _value(columns[name], value) for name, value in row.items()}


def write(conn: Connection, parts: list[tuple]) -> None:
    """Run ``parts`` -- ``("insert", table, [row, ...])`` (rows with the same keys),
    ``("update", table, values, id)`` or ``("with", None, ctes, params)`` (named
    statements, see below) -- as one statement: ``WITH w0 AS (...), w1 AS (...) <last
    part>``.

    A ``"with"`` part's ``ctes`` is a tuple of ``(suffix, template)``: each becomes
    ``w<i><suffix> AS (<template>)``, where ``{w}`` in the template stands for
    ``w<i>`` (the names of its other statements) and ``{p}`` for the prefix of its
    parameters (``%({p}rating)s``); ``params`` are its values, bound already.
    The parts succeed or fail together (one statement); the rows of one insert go
    in in their order.  The SQL is built once per shape (the tables, the columns
    given, the number of rows, the order).
    """
    shape = tuple((op, table.name, tuple(rows[0]), len(rows)) if op == "insert"
                  else (op, rows) if op == "with"
                  else (op, table.name, tuple(rows)) for op, table, rows, *_ in parts)
    sql = _WRITES.get(shape)
    if sql is None:
        quote = conn.dialect.identifier_preparer.quote
        ctes, last = [], "SELECT 1"
        for i, (op, table, rows, *_rest) in enumerate(parts):
            if op == "with":
                ctes += [f"w{i}{suffix} AS ({template.format(w=f'w{i}', p=f'p{i}_')})"
                         for suffix, template in rows]
                continue
            if op == "insert":
                names = ", ".join(quote(c) for c in rows[0])
                values = ", ".join(
                    "(" + ", ".join(f"%(p{i}_{k}_{c})s" for c in rows[0]) + ")"
                    for k in range(len(rows)))
                text = f"INSERT INTO {quote(table.name)} ({names}) VALUES {values}"
            else:
                sets = ", ".join(f"{quote(c)} = %(p{i}_{c})s" for c in rows)
                text = f"UPDATE {quote(table.name)} SET {sets} WHERE id = %(p{i}_id_)s"
            if i == len(parts) - 1:
                last = text
            else:
                ctes.append(f"w{i} AS ({text})")
        sql = _WRITES[shape] = (f"WITH {', '.join(ctes)} " if ctes else "") + last
    params = {}
    for i, (op, table, rows, *rest) in enumerate(parts):
        if op == "with":
            params.update({f"p{i}_{name}": value for name, value in rest[0].items()})
            continue
        columns = table.c
        if op == "insert":
            for k, row in enumerate(rows):
                for name, value in row.items():
                    params[f"p{i}_{k}_{name}"] = _value(columns[name], value)
        else:
            for name, value in rows.items():
                params[f"p{i}_{name}"] = _value(columns[name], value)
            params[f"p{i}_id_"] = rest[0]
    execute(conn, sql, params)


# --- the lazy transaction ---------------------------------------------------------------

_LAZY = "ivr.lazy"  # conn.info: the request's connection runs statements alone until BEGIN
_ALONE = "ivr.alone"  # conn.info: this statement may run alone (a read, the final write)


def begin_lazily(conn: Connection) -> bool:
    """Put the request's connection in autocommit until a statement needs a transaction.

    Only on PostgreSQL and on a connection with nothing done yet; True if done.  The
    pool turns autocommit off again when the connection comes back (:func:`_checked_in`,
    listening on the engine from the first lazy request).
    """
    if conn.info.get(_LAZY) or not is_postgresql(conn):
        return False
    raw = conn.connection.driver_connection
    if raw.info.transaction_status != 0:  # not IDLE: something ran already
        return False
    raw.autocommit = True
    conn.info[_LAZY] = True
    _listen(conn.engine)
    return True


def run_alone(conn: Connection, fn, *args):
    """``fn(*args)``: its statements may run without a transaction (a lazy connection)."""
    if not conn.info.get(_LAZY):
        return fn(*args)
    conn.info[_ALONE] = True
    try:
        return fn(*args)
    finally:
        conn.info[_ALONE] = False


_LISTENING: set[int] = set()


def _listen(engine) -> None:
    from sqlalchemy import event

    if id(engine) in _LISTENING:
        return
    _LISTENING.add(id(engine))
    event.listen(engine, "before_cursor_execute", _before_execute)
    event.listen(engine, "checkin", _checked_in)


def _checked_in(dbapi_conn, record) -> None:
    """The pool takes a connection back: a lazy one leaves autocommit (and its flags)."""
    if record.info.pop(_LAZY, None):
        record.info.pop(_ALONE, None)
        if dbapi_conn is not None and dbapi_conn.autocommit:
            try:
                dbapi_conn.autocommit = False
            except Exception:  # noqa: BLE001 - a broken connection: the pool drops it
                record.invalidate()


def _before_execute(conn, cursor, statement, parameters, context, executemany):
    info = conn.info
    if not info.get(_LAZY) or info.get(_ALONE):
        return
    raw = conn.connection.driver_connection
    if raw.info.transaction_status == 0:  # IDLE: this statement joins a transaction
        raw.execute("BEGIN")
