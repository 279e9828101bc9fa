"""Which case an interviewer calls next (the CATI scheduler).

:func:`next_case` picks the best case for one interviewer and holds it for
them with :func:`minping.cases.try_hold` (a conditional ``UPDATE``), so two
interviewers, or an interviewer and the IVR dialer, never get one case.  On
PostgreSQL the candidate rows are read ``FOR UPDATE SKIP LOCKED``: concurrent
pickers step over each other's candidates instead of queueing on them.

Eligibility (every rule must hold):

* the case is released and still in the field (``pending``, ``in_field`` or
  ``handoff_cati``), and its number is not on the do-not-call list;
* nobody holds it (an expired hold counts as free): not an interviewer, not
  the dialer in the middle of an IVR call;
* the outcome's delay has passed (``next_attempt_at`` is empty or due);
* its attempts are under the cap;
* ``now`` is inside the calling window (one time zone per campaign);
* a refusal-conversion case goes only to an ``experienced`` interviewer;
* a case reassigned to an interviewer (``assigned_to``) goes only to them;
* a pending *hard* appointment belongs to its interviewer: nobody else gets
  the case until :data:`HARD_APPOINTMENT_GRACE` after the agreed time.

Order, best first:

1. due appointments (oldest first);
2. cases handed over from the IVR (``state == "handoff_cati"``);
3. the supervisor's ``priority`` (higher first);
4. the stratum furthest behind its target (lowest share of completes to
   target), then the case whose least-advanced unit is furthest behind (share
   of the unit's target rated so far);
5. the oldest last attempt (never-tried cases first), then the case id.

How a pick stays fast on a large field (every query reads a few rows):

* the urgent cases (due appointments, hand-overs, raised priority) are found
  through their own indexes (``ix_appointment_due``, the partial
  ``ix_sample_case_urgent``) and sorted on the whole order key;
* the ordinary cases are taken one tier at a time, a tier being the strata
  that share the lowest share of target still having eligible cases; the
  stratum ranking comes from :class:`Progress` (computed once per refresh by
  :class:`ProgressCache`, not per pick), so within a tier the order is only
  the last attempt, read straight off the partial indexes
  ``ix_sample_case_pick_stratum`` / ``ix_sample_case_pick`` and stopped after
  :data:`WINDOW` rows (never-tried cases first: two queries, because
  PostgreSQL cannot walk a plain index ``NULLS FIRST``);
* appointments are conditions on ``appointment`` read once per query (hashed
  subqueries), and the do-not-call list is checked only on the candidates
  read (:func:`on_do_not_call`);
* the unit ranking is applied in Python within the :data:`WINDOW` candidates
  of a tier (units are a case's secondary balance: within the most-behind
  stratum the candidates are re-ranked by their units).

An interviewer who already holds a case gets that case back (a reloaded page
or a second tab does not take a second case).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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

from minping import calling
from minping.cases import CATI_HOLD, IN_FIELD_STATES
from minping.models import (
    Answer,
    Appointment,
    CallAttempt,
    CaseUnit,
    DoNotCall,
    FrameContact,
    SampleCase,
    Stratum,
    User,
)

#: After a hard appointment's time, how long only its interviewer may take the case.
HARD_APPOINTMENT_GRACE = timedelta(minutes=15)

#: Candidates read (and, on PostgreSQL, row-locked) per pick.
WINDOW = 32


@dataclass(frozen=True)
class Progress:
    """Share of target reached per stratum and per unit (0 = nothing yet).

    ``stratum`` maps stratum id to completes / target; ``unit`` maps unit id to
    rated answers / unit target (the number of released, non-reserve cases the
    unit is assigned to).  Missing keys count as 0.
    """

    stratum: Mapping[int, float] = field(default_factory=dict)
    unit: Mapping[int, float] = field(default_factory=dict)


def field_progress(session: Session, *, draw_id: int | None = None) -> Progress:
    """Compute :class:`Progress` from the database (two aggregate queries)."""
    strata = select(Stratum.id, Stratum.target)
    completes = select(SampleCase.stratum_id, func.count()).where(
        SampleCase.final_disposition == "1.1"
    ).group_by(SampleCase.stratum_id)
    unit_target = (
        select(CaseUnit.unit_id, func.count())
        .join(SampleCase, SampleCase.id == CaseUnit.case_id)
        .where(SampleCase.release_state == "released", SampleCase.is_reserve.is_(False))
        .group_by(CaseUnit.unit_id)
    )
    rated = (
        select(Answer.unit_id, func.count())
        .where(Answer.rating.is_not(None))
        .group_by(Answer.unit_id)
    )
    if draw_id is not None:
        strata = strata.where(Stratum.draw_id == draw_id)
        completes = completes.where(SampleCase.draw_id == draw_id)
        unit_target = unit_target.where(SampleCase.draw_id == draw_id)
        rated = rated.join(SampleCase, SampleCase.id == Answer.case_id).where(
            SampleCase.draw_id == draw_id
        )
    done = dict(session.execute(completes).all())
    stratum = {
        sid: (done.get(sid, 0) / target if target else 1.0)
        for sid, target in session.execute(strata).all()
    }
    got = dict(session.execute(rated).all())
    unit = {uid: got.get(uid, 0) / n for uid, n in session.execute(unit_target).all() if n}
    return Progress(stratum=stratum, unit=unit)


class ProgressCache:
    """:func:`field_progress`, recomputed at most every ``seconds`` (thread-safe).

    Progress moves slowly (a complete every few minutes per interviewer), so a
    busy call center need not aggregate the whole field on every pick.
    """

    def __init__(self, seconds: float = 10.0):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._value: dict[int | None, tuple[float, Progress]] = {}

    def get(self, session: Session, *, draw_id: int | None = None) -> Progress:
        """The cached progress; one caller at a time recomputes it, the others keep
        the previous value meanwhile (the first call of all waits for it)."""
        stamp = time.monotonic()
        cached = self._value.get(draw_id)
        if cached is not None and stamp - cached[0] < self.seconds:
            return cached[1]
        if cached is not None and not self._lock.acquire(blocking=False):
            return cached[1]  # somebody else is recomputing it
        if cached is None:
            self._lock.acquire()
        try:
            cached = self._value.get(draw_id)
            if cached is not None and time.monotonic() - cached[0] < self.seconds:
                return cached[1]
            progress = field_progress(session, draw_id=draw_id)
            self._value[draw_id] = (time.monotonic(), progress)
            return progress
        finally:
            self._lock.release()


def on_do_not_call(session: Session, contact_ids: list[int]) -> set[int]:
    """Which of ``contact_ids`` have their number on the do-not-call list.

    Asked of the few candidates a pick reads (primary-key lookups), not as a
    condition over the whole field: the planner would otherwise join the whole
    frame to the list on every pick.
    """
    if not contact_ids:
        return set()
    return set(session.scalars(
        select(FrameContact.id).join(DoNotCall, DoNotCall.phone == FrameContact.phone)
        .where(FrameContact.id.in_(contact_ids))
    ))


def _due_appointment(now: datetime):
    return SampleCase.id.in_(
        select(Appointment.case_id).where(Appointment.status == "pending",
                                          Appointment.due_at <= now)
    )


def _hard_appointment_of_another(now: datetime, user_id: int):
    return SampleCase.id.in_(
        select(Appointment.case_id).where(
            Appointment.status == "pending",
            Appointment.due_at > now - HARD_APPOINTMENT_GRACE,
            Appointment.kind == "hard",
            Appointment.interviewer_id.is_not(None),
            Appointment.interviewer_id != user_id,
        )
    )


def eligible_for(interviewer: User, *, now: datetime, max_attempts: int):
    """The SQL condition a case must meet to be given to ``interviewer`` now.

    The do-not-call list is not part of it: :func:`on_do_not_call` checks the
    candidates.
    """
    conditions = [
        SampleCase.release_state == "released",
        SampleCase.state.in_(IN_FIELD_STATES),
        or_(SampleCase.lock_channel.is_(None), SampleCase.lock_expires_at < now),
        or_(SampleCase.next_attempt_at.is_(None), SampleCase.next_attempt_at <= now),
        SampleCase.attempts < max_attempts,
        or_(SampleCase.assigned_to.is_(None), SampleCase.assigned_to == interviewer.id),
        ~_hard_appointment_of_another(now, interviewer.id),
    ]
    if not interviewer.experienced:
        conditions.append(SampleCase.refusal_conversion.is_(False))
    return and_(*conditions)


def held_by(session: Session, user_id: int, *, now: datetime) -> SampleCase | None:
    """The case ``user_id`` holds for CATI now, if any."""
    return session.scalar(
        select(SampleCase).where(
            SampleCase.lock_channel == "cati",
            SampleCase.locked_by == user_id,
            SampleCase.lock_expires_at >= now,
            SampleCase.state.in_(IN_FIELD_STATES),
        ).order_by(SampleCase.locked_at.desc()).limit(1)
    )


def _unit_floor(session: Session, case_ids: list[int], progress: Progress) -> dict[int, float]:
    """Per case, the progress of its least-advanced unit."""
    floor: dict[int, float] = {cid: 1.0 for cid in case_ids}
    if not case_ids:
        return floor
    rows = session.execute(
        select(CaseUnit.case_id, CaseUnit.unit_id).where(CaseUnit.case_id.in_(case_ids))
    ).all()
    for cid, uid in rows:
        floor[cid] = min(floor[cid], progress.unit.get(uid, 0.0))
    return floor


class Pick:
    """What :func:`pick` did: the case held (``None`` if none) and whether CATI attempts
    were found left open on cases nobody holds (``stale``: close them with
    :func:`cati.service.reap_abandoned`; the pick never gives such a case)."""

    __slots__ = ("case", "stale")

    def __init__(self, case: SampleCase | None, stale: bool):
        self.case, self.stale = case, stale


def next_case(
    session: Session,
    interviewer: User,
    *,
    now: datetime,
    rules,
    max_attempts: int | None = None,
    draw_id: int | None = None,
    progress: Progress | None = None,
    hold: timedelta = CATI_HOLD,
) -> SampleCase | None:
    """Hold and return the best case for ``interviewer`` at ``now``; ``None`` if none.

    Parameters
    ----------
    session : Session
        The caller commits (the hold is an ``UPDATE`` in this transaction).
    interviewer : User
        The interviewer asking.
    now : datetime
        Aware "current" time (a virtual clock in tests and the demo).
    rules : minping.config.CallingRules
        Calling windows and the attempt cap.
    max_attempts : int, optional
        Overrides ``rules.max_attempts``.
    draw_id : int, optional
        Restrict to one draw.
    progress : Progress, optional
        Share of target per stratum and unit; computed when omitted (pass
        :meth:`ProgressCache.get` in a busy call center).
    hold : timedelta
        How long the hold lasts without a keep-alive.
    """
    return pick(session, interviewer, now=now, rules=rules, max_attempts=max_attempts,
                draw_id=draw_id, progress=progress, hold=hold).case


def pick(session: Session, interviewer: User, *, now: datetime, rules,
         max_attempts: int | None = None, draw_id: int | None = None,
         progress: Progress | None = None, hold: timedelta = CATI_HOLD) -> Pick:
    """:func:`next_case`, also saying whether abandoned CATI attempts wait to be closed.

    One statement: ``UPDATE sample_case … WHERE id = (the best of the window) RETURNING``.
    """
    if not calling.is_allowed(rules, now):
        current = held_by(session, interviewer.id, now=now)
        return Pick(current, False)
    cap = rules.max_attempts if max_attempts is None else max_attempts
    if progress is None:
        progress = field_progress(session, draw_id=draw_id)
    tiers = stratum_tiers(session, progress, draw_id=draw_id)
    dialect = session.get_bind().dialect.name
    shape = (dialect, bool(interviewer.experienced), draw_id is not None,
             tuple(len(t) for t in tiers[:MAX_TIERS]), len(tiers) > MAX_TIERS)
    stmt = _statements.get(shape)
    if stmt is None:
        stmt = _statements[shape] = _pick_statement(
            dialect, experienced=bool(interviewer.experienced), by_draw=draw_id is not None,
            tiers=shape[3], rest=shape[4])
    params = {"me": interviewer.id, "now": now, "cap": cap, "until": now + hold,
              "grace": now - HARD_APPOINTMENT_GRACE, "draw": draw_id,
              "sshare": _shares(dialect, progress.stratum, 9),
              "ushare": _shares(dialect, progress.unit, None)}
    for k, strata in enumerate(tiers[:MAX_TIERS]):
        for j, sid in enumerate(strata):
            params[f"t{k}_{j}"] = sid
    for _ in range(2):  # once more if concurrent pickers took every candidate it saw
        if dialect == "postgresql":
            got = _run_postgresql(session, shape, stmt, params)
        else:
            row = session.execute(stmt, params,
                                  execution_options={"populate_existing": True}).first()
            got = None if row is None else Pick(row[0], bool(
                session.scalar(select(_stale()), {"now": now})))
        if got is not None:
            return got
    return Pick(None, bool(session.scalar(select(_stale()), {"now": now})))


_raw: dict[tuple, tuple[bytes, list[str], list[str]]] = {}


def _run_postgresql(session: Session, shape: tuple, stmt, params: dict) -> Pick | None:
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
    return Pick(_as_case(session, dict(zip(keys, row[:-1], strict=True))), bool(row[-1]))


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


#: Strata tiers read one by one (the tiers beyond these share one ordered walk; the
#: window is then still sorted by every stratum's share).
MAX_TIERS = 4

_statements: dict[tuple, object] = {}

#: The pick's statement has one good plan whatever its parameters (its constants are
#: written into it): PostgreSQL should keep it instead of planning the statement again at
#: every pick, which costs more than running it.
_GENERIC_SQL = b"SET LOCAL plan_cache_mode = force_generic_plan"


def _p(name: str, **kw):
    """A named parameter of the pick's statement (always given at execution)."""
    return bindparam(name, required=False, **kw)


_shares_cache: dict[tuple[int, str, str], tuple[Mapping, str]] = {}


def _shares(dialect: str, values: Mapping[int, float], digits: int | None) -> str:
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


def _stale():
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


def _pick_statement(dialect: str, *, experienced: bool, by_draw: bool,
                    tiers: tuple[int, ...], rest: bool):
    """The one statement of a pick (built once per shape, then run with parameters).

    A window of :data:`WINDOW` candidates is read in calling order, branch after branch,
    each an ordered walk that stops after the window (only the first branches that
    fill it run): the interviewer's own held case, due appointments (oldest first), the
    hand-overs and raised priorities, then the ordinary cases tier by tier (never-tried
    first, then the oldest attempt), last the lowered priorities.  Every branch but the
    first reads ``FOR UPDATE SKIP LOCKED`` on PostgreSQL.  The window is sorted on the
    whole order key, the stratum's share and the least-advanced unit included, and the
    first case is held by the ``UPDATE`` around it.
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

    def locked(query):  # the window is read without row locks (see above)
        return query

    ordinary = and_(base, SampleCase.id.not_in(due_ids), ~handoff, SampleCase.priority == 0)
    branches = [
        select(*cols(mine=True)).where(
            SampleCase.lock_channel == "cati", SampleCase.locked_by == me,
            SampleCase.lock_expires_at >= now, SampleCase.state.in_(IN_FIELD_STATES),
        ).order_by(SampleCase.locked_at.desc()).limit(1),
        locked(select(*cols(due=True, due_at=Appointment.due_at))
               .join(Appointment, Appointment.case_id == SampleCase.id)
               .where(base, Appointment.status == "pending", Appointment.due_at <= now)
               .order_by(Appointment.due_at).limit(WINDOW)),
        locked(select(*cols()).where(base, SampleCase.id.not_in(due_ids),
                                     or_(handoff, SampleCase.priority > 0))
               .order_by(handoff.desc(), SampleCase.priority.desc(), share, last_first,
                         SampleCase.id).limit(WINDOW)),
    ]
    groups = [[_p(f"t{k}_{j}") for j in range(n)] for k, n in enumerate(tiers)]
    if rest:  # the strata of every tier after these
        groups.append(None)
    earlier = [p for group in groups if group is not None for p in group]
    for strata in groups:
        where = and_(ordinary, SampleCase.stratum_id.in_(strata) if strata is not None
                     else SampleCase.stratum_id.not_in(earlier))
        branches.append(locked(select(*cols()).where(where, SampleCase.last_attempt_at.is_(None))
                               .order_by(SampleCase.id).limit(WINDOW)))
        branches.append(locked(select(*cols()).where(where,
                                                     SampleCase.last_attempt_at.is_not(None))
                               .order_by(SampleCase.last_attempt_at, SampleCase.id)
                               .limit(WINDOW)))
    branches.append(locked(
        select(*cols()).where(base, SampleCase.id.not_in(due_ids), ~handoff,
                              SampleCase.priority < 0)
        .order_by(SampleCase.priority.desc(), share, last_first, SampleCase.id)
        .limit(WINDOW)))
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
        .returning(SampleCase, *([_stale()] if dialect == "postgresql" else []))
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


_tiers: dict[tuple[int, int | None], tuple[Progress, list[list[int]]]] = {}


def stratum_tiers(session: Session, progress: Progress, *,
                  draw_id: int | None = None) -> list[list[int]]:
    """Stratum ids grouped by share of target, furthest behind first.

    Strata missing from ``progress`` count as share 0; strata that tie (to 9
    decimals) form one group.  Computed once per :class:`Progress` (a cached
    progress gives the same tiers until it is recomputed).
    """
    key = (id(progress), draw_id)
    cached = _tiers.get(key)
    if cached is not None and cached[0] is progress:
        return cached[1]
    tiers = _stratum_tiers(session, progress, draw_id=draw_id)
    if len(_tiers) > 64:
        _tiers.clear()
    _tiers[key] = (progress, tiers)
    return tiers


def _stratum_tiers(session: Session, progress: Progress, *,
                   draw_id: int | None = None) -> list[list[int]]:
    query = select(Stratum.id)
    if draw_id is not None:
        query = query.where(Stratum.draw_id == draw_id)
    by_share: dict[float, list[int]] = {}
    for sid in session.scalars(query):
        share = round(float(progress.stratum.get(sid, 0.0)), 9)
        by_share.setdefault(share, []).append(sid)
    return [sorted(by_share[share]) for share in sorted(by_share)]


_CALLABLE: list = []


def _callable_number():
    """The case's number is not on the do-not-call list (probed per candidate); the
    expression is built once (it has no parameters)."""
    if not _CALLABLE:
        _CALLABLE.append(~exists().where(FrameContact.id == SampleCase.contact_id,
                                         DoNotCall.phone == FrameContact.phone))
    return _CALLABLE[0]
