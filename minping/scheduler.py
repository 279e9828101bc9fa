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

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import (
    String,
    and_,
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
from sqlalchemy.orm import Session

from minping import calling
from minping.cases import CATI_HOLD, IN_FIELD_STATES, try_hold
from minping.models import (
    Answer,
    Appointment,
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
    current = held_by(session, interviewer.id, now=now)
    if current is not None:
        return current
    if not calling.is_allowed(rules, now):
        return None
    cap = rules.max_attempts if max_attempts is None else max_attempts
    if progress is None:
        progress = field_progress(session, draw_id=draw_id)

    due = _due_appointment(now)
    handoff = SampleCase.state == "handoff_cati"
    base = eligible_for(interviewer, now=now, max_attempts=cap)
    if draw_id is not None:
        base = and_(base, SampleCase.draw_id == draw_id)
    pick = dict(session=session, interviewer=interviewer, now=now, progress=progress,
                hold=hold)
    # The few urgent cases (due appointments, hand-overs, cases a supervisor
    # raised), found through their own indexes and sorted on the whole order key.
    urgent = SampleCase.id.in_(union_all(
        select(Appointment.case_id).where(Appointment.status == "pending",
                                          Appointment.due_at <= now),
        select(SampleCase.id).where(SampleCase.state == "handoff_cati"),
        select(SampleCase.id).where(SampleCase.priority > 0),
    ))
    case_ = _pick_sorted(where=and_(base, urgent), due=due, handoff=handoff, **pick)
    if case_ is not None:
        return case_
    # The ordinary cases, stratum by stratum from the furthest behind (strata
    # that tie are one tier), each in calling order straight off an index.
    ordinary = and_(base, ~due, ~handoff, SampleCase.priority == 0)
    for strata in stratum_tiers(session, progress, draw_id=draw_id):
        case_ = _pick_in_order(where=and_(ordinary, SampleCase.stratum_id.in_(strata)),
                               **pick)
        if case_ is not None:
            return case_
    # Last, the cases a supervisor pushed back.
    return _pick_sorted(where=and_(base, ~due, ~handoff, SampleCase.priority < 0), due=due,
                        handoff=handoff, **pick)


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


def _lock(session: Session, query):
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True, of=SampleCase)
    return query


_share_expr: tuple[Progress | None, object] = (None, None)


def _stratum_share(progress: Progress):
    """``CASE stratum_id WHEN ... THEN share END``; built once per :class:`Progress`."""
    global _share_expr
    cached, expr = _share_expr
    if cached is progress:
        return expr
    if not progress.stratum:
        expr = literal(0.0)
    else:
        expr = case(
            *[(SampleCase.stratum_id == sid, literal(share))
              for sid, share in progress.stratum.items()],
            else_=literal(0.0),
        )
    _share_expr = (progress, expr)
    return expr


def _window(session: Session, fetch) -> list:
    """Up to :data:`WINDOW` candidates from ``fetch(excluded_ids)``.  The do-not-call
    list is a condition of the query itself (an anti-join probed per candidate row of
    the ordered walk), so one statement reads the window."""
    return fetch([])


def _not_in(excluded: list[int]):
    return SampleCase.id.not_in(excluded) if excluded else true()


_CALLABLE: list = []


def _callable_number():
    """The case's number is not on the do-not-call list (probed per candidate); the
    expression is built once (it has no parameters)."""
    if not _CALLABLE:
        _CALLABLE.append(~exists().where(FrameContact.id == SampleCase.contact_id,
                                         DoNotCall.phone == FrameContact.phone))
    return _CALLABLE[0]


def _read_window(session: Session, query) -> list:
    """Run the (locked) candidate ``query`` and read, in the same statement, each
    candidate's unit ids as one text column (the unit ranking needs no second query).

    SQLite runs in the process (a statement is no round trip): there the units are
    read by a second, simpler statement, which costs less Python than the wrapper."""
    if session.get_bind().dialect.name != "postgresql":
        rows = session.execute(query).all()
        units: dict[int, list[str]] = {}
        if rows:
            for cid, uid in session.execute(
                    select(CaseUnit.case_id, CaseUnit.unit_id)
                    .where(CaseUnit.case_id.in_([r.id for r in rows]))):
                units.setdefault(cid, []).append(str(uid))
        return [SimpleNamespace(**r._mapping, units=",".join(units.get(r.id, ())))
                for r in rows]
    window = _lock(session, query).subquery("window")
    agg = func.string_agg(cast(CaseUnit.unit_id, String), ",")
    units_ = select(agg).where(CaseUnit.case_id == window.c.id).scalar_subquery()
    return session.execute(select(window, units_.label("units"))).all()


def _pick_sorted(*, session, interviewer, now, where, due, handoff, progress, hold):
    """Pick from a small tier: the database sorts it on the whole order key."""
    stratum_share = _stratum_share(progress)
    # The due appointments, aggregated once per query and joined (hashed), not
    # looked up per candidate.
    due_appts = (
        select(Appointment.case_id, func.min(Appointment.due_at).label("due_at"))
        .where(Appointment.status == "pending", Appointment.due_at <= now)
        .group_by(Appointment.case_id)
        .subquery("due_appts")
    )
    is_due = due_appts.c.due_at.is_not(None)

    def fetch(excluded):
        query = (
            select(SampleCase.id, SampleCase.contact_id, is_due.label("due"),
                   due_appts.c.due_at.label("due_at"), handoff.label("handoff"),
                   SampleCase.priority, SampleCase.stratum_id, SampleCase.last_attempt_at)
            .outerjoin(due_appts, due_appts.c.case_id == SampleCase.id)
            .where(where, _callable_number(), _not_in(excluded))
            .order_by(
                is_due.desc(),
                due_appts.c.due_at,
                handoff.desc(),
                SampleCase.priority.desc(),
                stratum_share,
                SampleCase.last_attempt_at.is_not(None),
                SampleCase.last_attempt_at,
                SampleCase.id,
            )
            .limit(WINDOW)
        )
        return _read_window(session, query)

    rows = _window(session, fetch)
    return _hold_best(session, interviewer, rows, now=now, progress=progress, hold=hold)


def _pick_in_order(*, session, interviewer, now, where, progress, hold):
    """Pick from a tier of equal strata: never-tried cases by id, then the oldest last
    attempt first.  Two queries, each an ordered walk of a partial index that stops
    after :data:`WINDOW` rows (``NULLS FIRST`` would need a sort on PostgreSQL)."""
    cols = (SampleCase.id, SampleCase.contact_id, false().label("due"),
            null().label("due_at"), false().label("handoff"), SampleCase.priority, SampleCase.stratum_id,
            SampleCase.last_attempt_at)
    where = and_(where, _callable_number())

    def fetch(excluded):
        never = (
            select(*cols).where(where, _not_in(excluded), SampleCase.last_attempt_at.is_(None))
            .order_by(SampleCase.id).limit(WINDOW)
        )
        rows = list(_read_window(session, never))
        if len(rows) < WINDOW:
            tried = (
                select(*cols)
                .where(where, _not_in(excluded), SampleCase.last_attempt_at.is_not(None))
                .order_by(SampleCase.last_attempt_at, SampleCase.id).limit(WINDOW - len(rows))
            )
            rows += _read_window(session, tried)
        return rows

    rows = _window(session, fetch)
    return _hold_best(session, interviewer, rows, now=now, progress=progress, hold=hold)


def _hold_best(session, interviewer, rows, *, now, progress, hold):
    """Re-rank the candidates by their least-advanced unit and hold the first free one."""
    if not rows:
        return None
    floor = {r.id: min((progress.unit.get(int(u), 0.0) for u in (r.units or "").split(",")
                        if u), default=1.0) for r in rows}
    epoch = datetime.min.replace(tzinfo=now.tzinfo)

    def key(r):
        return (
            not r.due,
            r.due_at or epoch,
            not r.handoff,
            -r.priority,
            round(float(progress.stratum.get(r.stratum_id, 0.0)), 9),
            floor[r.id],
            r.last_attempt_at is not None,
            r.last_attempt_at or epoch,
            r.id,
        )

    for row in sorted(rows, key=key):
        case_ = _hold(session, row.id, interviewer_id=interviewer.id, now=now, hold=hold)
        if case_ is not None:
            return case_
    return None


def _hold(session: Session, case_id: int, *, interviewer_id: int, now: datetime,
          hold: timedelta) -> SampleCase | None:
    """:func:`minping.cases.try_hold` for CATI, returning the held case from the same
    statement (``UPDATE … RETURNING``): one round trip, not two."""
    if not session.get_bind().dialect.update_returning:
        if try_hold(session, case_id, channel="cati", now=now, user_id=interviewer_id,
                    hold=hold):
            return session.get(SampleCase, case_id)
        return None
    stmt = (
        update(SampleCase)
        .where(SampleCase.id == case_id, SampleCase.state.in_(IN_FIELD_STATES),
               or_(SampleCase.lock_channel.is_(None), SampleCase.lock_expires_at < now))
        .values(lock_channel="cati", locked_by=interviewer_id, locked_at=now,
                lock_expires_at=now + hold, version=SampleCase.version + 1)
        .returning(SampleCase)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return session.scalars(stmt).first()
