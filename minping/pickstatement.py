"""The CATI scheduler's pick as one SQL statement (see :mod:`minping.scheduler`).

:func:`pick_statement` builds, once per shape, ``UPDATE sample_case … WHERE id = (the best
case of a window) RETURNING``; :func:`run_postgresql` runs it on psycopg in one round trip.
The rules themselves are here once, for both databases (SQLite runs the same statement
through SQLAlchemy).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy import (
    Float,
    String,
    and_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.orm import Session, aliased, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

from minping.cases import IN_FIELD_STATES
from minping.models import (
    Appointment,
    CallAttempt,
    CaseUnit,
    DoNotCall,
    FrameContact,
    SampleCase,
)

#: Candidates read per pick and ranked on the whole order key (the least-advanced unit
#: included); only the case given is locked.
WINDOW = 32


_raw: dict[tuple, tuple[bytes, list[str], list[str]]] = {}


def run_postgresql(session: Session, shape: tuple, stmt, params: dict) -> tuple[SampleCase, bool] | None:
    """Run the pick's statement on PostgreSQL in one round trip (with the transaction's
    ``BEGIN`` and the plan setting, pipelined), straight on psycopg.

    The statement is compiled once per shape to PostgreSQL's own ``$n`` form: psycopg
    would otherwise parse the long statement again at every pick (it caches only short
    ones) and SQLAlchemy would render its constants again; together that cost more
    than the database's work.  The row returned becomes the session's ``SampleCase``.
    """
    import psycopg

    raw = _raw.get(shape)
    if raw is None:
        dialect = session.get_bind().dialect
        sql = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}).string
        names: list[str] = []

        def number(match):
            if match.group(0) == "%%":
                return "%"
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        sql = re.sub(r"%%|%\((\w+)\)s", number, sql)
        keys = [SampleCase.__mapper__.get_property_by_column(c).key
                for c in SampleCase.__table__.columns]
        raw = _raw[shape] = (sql.encode(), names, keys)
    query, names, keys = raw
    conn = session.connection().connection.driver_connection
    with conn.pipeline():
        conn.execute(_GENERIC_SQL)
        cur = psycopg.RawCursor(conn)
        cur.execute(query, [params.get(n) for n in names], prepare=True)
    row = cur.fetchone()
    if row is None:
        return None
    return _as_case(session, dict(zip(keys, row[:-1], strict=True))), bool(row[-1])


def _as_case(session: Session, values: dict) -> SampleCase:
    """The session's ``SampleCase`` for a row read outside the ORM (as if it had loaded
    it: clean, in the identity map, refreshed if it was there already)."""
    key = session.identity_key(SampleCase, values["id"])
    case_ = session.identity_map.get(key)
    if case_ is None:
        case_ = SampleCase(**values)
        make_transient_to_detached(case_)
        session.add(case_)
    else:
        for name, value in values.items():
            set_committed_value(case_, name, value)
    return case_



#: The pick's statement has one good plan whatever its parameters (its constants are
#: written into it): PostgreSQL should keep it instead of planning the statement again at
#: every pick, which costs more than running it.
_GENERIC_SQL = b"SET LOCAL plan_cache_mode = force_generic_plan"


def _p(name: str, **kw):
    """A named parameter of the pick's statement (always given at execution)."""
    return bindparam(name, required=False, **kw)


_shares_cache: dict[tuple[int, str, str], tuple[Mapping, str]] = {}


def shares(dialect: str, values: Mapping[int, float], digits: int | None) -> str:
    """A share per id as one text parameter: an array literal indexed by id (PostgreSQL,
    ``{0.5,NULL,…}``) or a JSON list (SQLite).  Built once per :class:`Progress` (the
    mapping is the cache's key; a cached progress gives the same text until recomputed)."""
    key = (id(values), dialect, str(digits))
    cached = _shares_cache.get(key)
    if cached is not None and cached[0] is values:
        return cached[1]
    top = max(values, default=0)
    out: list[float | None] = [None] * (top + 1)  # position = id
    for k, v in values.items():
        if k >= 0:
            out[k] = round(float(v), digits) if digits else float(v)
    if dialect == "postgresql":  # arrays count from 1: position 0 is left out
        text_ = "{" + ",".join("NULL" if v is None else repr(v) for v in out[1:]) + "}"
    else:
        import json

        text_ = json.dumps(out)
    if len(_shares_cache) > 64:
        _shares_cache.clear()
    _shares_cache[key] = (values, text_)
    return text_


def _share_of(dialect: str, name: str, key):
    """The share of ``key`` (an id column) from the :func:`_shares` parameter ``name``;
    an id without one counts as 0."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY
        from sqlalchemy.sql.elements import Grouping

        arr = Grouping(cast(_p(name), ARRAY(Float)))
        return func.coalesce(arr[key], 0.0)
    path = literal("$[").concat(cast(key, String)).concat(literal("]"))
    return func.coalesce(cast(func.json_extract(_p(name, type_=String), path), Float),
                         0.0)


def stale():
    """Some CATI attempt is open on a case nobody holds (a screen was left)."""
    held = aliased(SampleCase)
    return exists().where(
        CallAttempt.outcome.is_(None), CallAttempt.channel == "cati",
        held.id == CallAttempt.case_id,
        or_(held.lock_channel.is_(None), held.lock_expires_at < _p("now")),
    )


def _own_conditions(entity, *, experienced: bool, by_draw: bool) -> list:
    """The rules a case meets on its own row (the appointments, the do-not-call list and
    open attempts are other tables)."""
    now = _p("now")
    out = [
        entity.release_state == "released",
        entity.state.in_(IN_FIELD_STATES),
        or_(entity.lock_channel.is_(None), entity.lock_expires_at < now),
        or_(entity.next_attempt_at.is_(None), entity.next_attempt_at <= now),
        entity.attempts < _p("cap"),
        or_(entity.assigned_to.is_(None), entity.assigned_to == _p("me")),
    ]
    if not experienced:
        out.append(entity.refusal_conversion.is_(False))
    if by_draw:
        out.append(entity.draw_id == _p("draw"))
    return out


def pick_statement(dialect: str, *, experienced: bool, by_draw: bool,
                    tiers: tuple[int, ...], rest: bool):
    """The one statement of a pick (built once per shape, then run with parameters).

    A window of :data:`WINDOW` candidates is read in calling order, branch after branch,
    each an ordered walk that stops after the window (only the first branches that
    fill it run): the interviewer's own held case, due appointments (oldest first), the
    hand-overs and raised priorities, then the ordinary cases tier by tier (never-tried
    first, then the oldest attempt), last the lowered priorities.  The window is read
    without row locks and sorted on the whole order key, the stratum's share and the
    least-advanced unit included; the first case still free is locked (``FOR UPDATE
    SKIP LOCKED``, its row's rules checked again) and held by the ``UPDATE`` around it.
    """
    now, me = _p("now"), _p("me")
    handoff = SampleCase.state == "handoff_cati"
    due_ids = select(Appointment.case_id).where(Appointment.status == "pending",
                                                 Appointment.due_at <= now)
    conditions = [
        *_own_conditions(SampleCase, experienced=experienced, by_draw=by_draw),
        SampleCase.id.not_in(select(Appointment.case_id).where(
            Appointment.status == "pending", Appointment.due_at > _p("grace"),
            Appointment.kind == "hard", Appointment.interviewer_id.is_not(None),
            Appointment.interviewer_id != me)),
        _callable_number(),
        ~exists().where(CallAttempt.case_id == SampleCase.id, CallAttempt.outcome.is_(None),
                        CallAttempt.channel == "cati"),
    ]
    base = and_(*conditions)
    share = _share_of(dialect, "sshare", SampleCase.stratum_id)
    last_first = SampleCase.last_attempt_at.asc().nulls_first()

    def cols(*, mine=False, due=False, due_at=None):
        return (SampleCase.id, SampleCase.stratum_id, SampleCase.priority,
                SampleCase.last_attempt_at, handoff.label("handoff"),
                (true() if mine else false()).label("mine"),
                (true() if due else false()).label("due"),
                (due_at if due_at is not None else cast(null(), Appointment.due_at.type))
                .label("due_at"))

    ordinary = and_(base, SampleCase.id.not_in(due_ids), ~handoff, SampleCase.priority == 0)
    branches = [
        select(*cols(mine=True)).where(
            SampleCase.lock_channel == "cati", SampleCase.locked_by == me,
            SampleCase.lock_expires_at >= now, SampleCase.state.in_(IN_FIELD_STATES),
        ).order_by(SampleCase.locked_at.desc()).limit(1),
        select(*cols(due=True, due_at=Appointment.due_at))
        .join(Appointment, Appointment.case_id == SampleCase.id)
        .where(base, Appointment.status == "pending", Appointment.due_at <= now)
        .order_by(Appointment.due_at).limit(WINDOW),
        select(*cols()).where(base, SampleCase.id.not_in(due_ids),
                              or_(handoff, SampleCase.priority > 0))
        .order_by(handoff.desc(), SampleCase.priority.desc(), share, last_first,
                  SampleCase.id).limit(WINDOW),
    ]
    groups = [[_p(f"t{k}_{j}") for j in range(n)] for k, n in enumerate(tiers)]
    if rest:  # the strata of every tier after these
        groups.append(None)
    earlier = [p for group in groups if group is not None for p in group]
    for strata in groups:
        where = and_(ordinary, SampleCase.stratum_id.in_(strata) if strata is not None
                     else SampleCase.stratum_id.not_in(earlier))
        # ordered on the whole index key (last_attempt_at is NULL in this walk, so this is
        # the id order): the walk reads the never-tried range of ix_sample_case_pick (or of
        # ix_sample_case_pick_stratum for a tier of one stratum) instead of every case by id
        branches.append(select(*cols()).where(where, SampleCase.last_attempt_at.is_(None))
                        .order_by(SampleCase.last_attempt_at, SampleCase.id).limit(WINDOW))
        branches.append(select(*cols()).where(where, SampleCase.last_attempt_at.is_not(None))
                        .order_by(SampleCase.last_attempt_at, SampleCase.id).limit(WINDOW))
    branches.append(
        select(*cols()).where(base, SampleCase.id.not_in(due_ids), ~handoff,
                              SampleCase.priority < 0)
        .order_by(SampleCase.priority.desc(), share, last_first, SampleCase.id)
        .limit(WINDOW))
    queue = union_all(*[select(b.subquery()) for b in branches]).subquery("queue")
    window = select(queue).limit(WINDOW).subquery("window")
    floor = (select(func.min(_share_of(dialect, "ushare", CaseUnit.unit_id)))
             .where(CaseUnit.case_id == window.c.id).scalar_subquery())
    # The window is read from the statement's snapshot without locks, so concurrent
    # pickers see the same best cases; the first that locks a case gets it and the
    # others step over it (SKIP LOCKED on the candidates in rank order, each re-checked
    # against its latest version): one row locked per pick instead of a whole window.
    cand = aliased(SampleCase, name="cand")
    # re-checked on the latest version of the row once it is locked: a case held, called
    # and put back while this statement ran is not due any more
    free = or_(and_(*_own_conditions(cand, experienced=experienced, by_draw=by_draw)),
               and_(cand.lock_channel == "cati", cand.locked_by == me,
                    cand.lock_expires_at >= now, cand.state.in_(IN_FIELD_STATES)))
    best = (
        select(cand.id)
        .join(window, window.c.id == cand.id)
        .where(free)
        .order_by(window.c.mine.desc(), window.c.due.desc(), window.c.due_at,
                  window.c.handoff.desc(), window.c.priority.desc(),
                  _share_of(dialect, "sshare", window.c.stratum_id),
                  func.coalesce(floor, 1.0), window.c.last_attempt_at.asc().nulls_first(),
                  window.c.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=cand)
        .scalar_subquery()
    )
    mine = and_(SampleCase.lock_channel == "cati", SampleCase.locked_by == me,
                SampleCase.lock_expires_at >= now)
    return _inline_constants(
        update(SampleCase)
        .where(SampleCase.id == best, SampleCase.state.in_(IN_FIELD_STATES),
               or_(SampleCase.lock_channel.is_(None), SampleCase.lock_expires_at < now, mine))
        .values(lock_channel="cati", locked_by=me,
                locked_at=case((mine, SampleCase.locked_at), else_=now),
                lock_expires_at=case((mine, SampleCase.lock_expires_at),
                                     else_=_p("until")),
                version=case((mine, SampleCase.version), else_=SampleCase.version + 1))
        # SQLite writes RETURNING's columns without their table, which would make the
        # subquery's ambiguous: there the stale attempts are asked separately
        .returning(SampleCase, *([stale()] if dialect == "postgresql" else []))
        .execution_options(synchronize_session=False)
    )


def _inline_constants(stmt):
    """Write the statement's constants (states, limits, codes) into its SQL text; only
    the named parameters stay parameters.  PostgreSQL can then match the partial indexes
    and the limits in a prepared statement's generic plan, and keeps that plan instead of
    planning the large statement again at every pick."""
    def inline(element):
        if isinstance(element, BindParameter) and element.unique:
            element = element._clone()
            element.literal_execute = True
            return element
        return None

    return visitors.replacement_traverse(stmt, {}, inline)


_CALLABLE: list = []


def _callable_number():
    """The case's number is not on the do-not-call list (probed per candidate); the
    expression is built once (it has no parameters)."""
    if not _CALLABLE:
        _CALLABLE.append(~exists().where(FrameContact.id == SampleCase.contact_id,
                                         DoNotCall.phone == FrameContact.phone))
    return _CALLABLE[0]
