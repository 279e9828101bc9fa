"""Which case an interviewer calls next (the CATI scheduler).

:func:`next_case` picks the best case for one interviewer and holds it for
them with one conditional ``UPDATE … RETURNING``, so two interviewers, or an
interviewer and the IVR dialer, never get one case.  On PostgreSQL the case
chosen is locked ``FOR UPDATE SKIP LOCKED`` and every rule of its own row is
checked again on its latest version: concurrent pickers step over each other's
cases instead of queueing on them, and a case changed while the pick ran (held,
called and put back) is not given.

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

How a pick stays fast on a large field: it is one statement
(:mod:`minping.pickstatement`), one round trip on PostgreSQL, about a millisecond
of the server's time at 100,000 cases.

* A window of :data:`~minping.pickstatement.WINDOW` candidates is read in
  calling order, branch after branch, each an ordered index walk that stops
  when the window is full (only the first branches that fill it run): the
  interviewer's own held case, due appointments (``ix_appointment_due``, oldest
  first), hand-overs and raised priorities (``ix_sample_case_urgent``, sorted on
  the whole key), the ordinary cases one stratum tier at a time (never-tried by
  id, then the oldest attempt, off ``ix_sample_case_pick``; a tier is the
  strata sharing one share of target, from :class:`Progress`, computed once per
  refresh by :class:`ProgressCache`; after :data:`MAX_TIERS` tiers the rest are
  one walk), last the cases a supervisor pushed back.
* The window is ranked on the whole order key in SQL: the stratum's and the
  units' shares are array parameters indexed by id, built once per
  :class:`Progress` (units are a case's secondary balance, applied within the
  window).
* Appointments are hashed subqueries read once per statement; the do-not-call
  list and open CATI attempts are probed per candidate row.
* The statement is built once per shape; its constants are written into it and
  PostgreSQL keeps one generic plan (planning it took longer than running it).
* A case with a CATI attempt left open (a closed browser) is not given; the
  statement reports such attempts and :func:`cati.service.take_next` closes
  them in the same transaction.

An interviewer who already holds a case gets that case back (a reloaded page
or a second tab does not take a second case).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import (
    Engine,
    func,
    select,
)
from sqlalchemy.orm import Session

from minping import calling
from minping.cases import CATI_HOLD, IN_FIELD_STATES
from minping.models import (
    Answer,
    CaseUnit,
    SampleCase,
    Stratum,
    User,
)
from minping.pickstatement import pick_statement, run_postgresql, shares, stale

log = logging.getLogger(__name__)

#: After a hard appointment's time, how long only its interviewer may take the case.
HARD_APPOINTMENT_GRACE = timedelta(minutes=15)

#: Strata tiers read one by one (the tiers beyond these share one ordered walk; the
#: window is then still sorted by every stratum's share).
MAX_TIERS = 4

#: Picks tried before saying no case is free: 50 interviewers picking in the same
#: moment read the same window, and a pick finds every candidate taken by picks not yet
#: committed when more pick at once than the window holds (each try is a new snapshot).
PICK_TRIES = 4

_statements: dict[tuple, object] = {}


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
    busy call center need not aggregate the whole field on every pick.  Once the
    value is older than ``seconds`` it is recomputed in a background thread (its own
    session on the same engine) while callers keep the previous value: no pick waits
    for the aggregate (about 0.3 s of the database's time at 100,000 cases).  Only
    the first call of all waits for it, and so does every call with ``seconds == 0``
    or a session bound to a connection rather than an engine.
    """

    def __init__(self, seconds: float = 10.0):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._value: dict[int | None, tuple[float, Progress]] = {}
        self._refreshing: set[int | None] = set()

    def get(self, session: Session, *, draw_id: int | None = None) -> Progress:
        """The cached progress (see the class)."""
        stamp = time.monotonic()
        cached = self._value.get(draw_id)
        if cached is not None and stamp - cached[0] < self.seconds:
            return cached[1]
        bind = session.get_bind()
        if cached is not None and self.seconds > 0 and isinstance(bind, Engine):
            with self._lock:
                if draw_id not in self._refreshing:
                    self._refreshing.add(draw_id)
                    threading.Thread(target=self._refresh, args=(bind, draw_id),
                                     name="minping-progress", daemon=True).start()
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

    def _refresh(self, engine: Engine, draw_id: int | None) -> None:
        try:
            with Session(engine) as session:
                progress = field_progress(session, draw_id=draw_id)
            self._value[draw_id] = (time.monotonic(), progress)
        except Exception:  # the previous value stays; the next get tries again
            log.exception("recomputing the field's progress failed")
        finally:
            with self._lock:
                self._refreshing.discard(draw_id)


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
        stmt = _statements[shape] = pick_statement(
            dialect, experienced=bool(interviewer.experienced), by_draw=draw_id is not None,
            tiers=shape[3], rest=shape[4])
    params = {"me": interviewer.id, "now": now, "cap": cap, "until": now + hold,
              "grace": now - HARD_APPOINTMENT_GRACE, "draw": draw_id,
              "sshare": shares(dialect, progress.stratum, 9),
              "ushare": shares(dialect, progress.unit, None)}
    for k, strata in enumerate(tiers[:MAX_TIERS]):
        for j, sid in enumerate(strata):
            params[f"t{k}_{j}"] = sid
    for _ in range(PICK_TRIES):  # again if concurrent pickers took every candidate it saw
        if dialect == "postgresql":
            got = run_postgresql(session, shape, stmt, params)
        else:
            row = session.execute(stmt, params,
                                  execution_options={"populate_existing": True}).first()
            got = None if row is None else (
                row[0], session.scalar(select(stale()), {"now": now}))
        if got is not None:
            return Pick(got[0], bool(got[1]))
    return Pick(None, bool(session.scalar(select(stale()), {"now": now})))


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
