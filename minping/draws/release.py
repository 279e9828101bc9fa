"""Release of drawn cases into the field: the one place that decides what goes out.

A draw's cases start held.  The sample replicates ``1..R`` go out one at a
time; the reserve (replicate ``R + 1``, ``is_reserve``) is never released
wholesale: :func:`release_reserve` sends out, per stratum, one reserve case for
each ineligible (AAPOR 4.x) case.  Both the CLI (``minping sample release``) and
the supervisors' "release the next replicate" button
(:func:`cati.service.release_next_replicate`) release through
:func:`release_next` / :func:`release_replicate`, so the next replicate is
always the lowest *sample* replicate with held cases, and once replicates
``1..R`` are out there is nothing left to release that way.

:func:`next_release` says what :func:`release_next` would release (the
replicate and its cases per stratum) without changing anything, for a
confirmation screen.

Every release also gives the released cases their arm of the embedded mode
experiment when one is configured (``experiment``, the campaign's
``[experiment]``: :func:`minping.experiment.assign_released`, audited).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from minping import experiment as mode_experiment
from minping.draws.draw import _now, current_draw
from minping.errors import MinpingError
from minping.models import AuditLog, SampleCase, SampleDraw, Stratum

__all__ = [
    "ReleasePlan",
    "held_replicates",
    "next_release",
    "release",
    "release_all",
    "release_next",
    "release_replicate",
    "release_reserve",
]


@dataclass(frozen=True)
class ReleasePlan:
    """What a replicate release does (or did).

    ``replicate`` is ``None`` when no sample replicate has held cases: nothing
    is left to release (the reserve goes out only for ineligible numbers).
    ``by_stratum`` counts the replicate's held cases per stratum code;
    ``held_replicates`` are the sample replicates still held afterwards.
    """

    draw_id: int
    replicate: int | None
    by_stratum: dict[str, int] = field(default_factory=dict)
    held_replicates: tuple[int, ...] = ()
    released: int = 0

    @property
    def cases(self) -> int:
        return sum(self.by_stratum.values())

    def as_dict(self) -> dict:
        return {"draw_id": self.draw_id, "replicate": self.replicate,
                "cases": self.cases, "by_stratum": dict(self.by_stratum),
                "held_replicates": list(self.held_replicates), "released": self.released}


def held_replicates(session: Session, draw_id: int) -> dict[int, int]:
    """Held cases per sample replicate (the reserve is not a sample replicate)."""
    return {int(r): int(n) for r, n in session.execute(
        select(SampleCase.replicate, func.count()).where(
            SampleCase.draw_id == draw_id, SampleCase.release_state == "held",
            SampleCase.is_reserve.is_(False))
        .group_by(SampleCase.replicate))}


def _held_by_stratum(session: Session, draw_id: int, replicate: int) -> dict[str, int]:
    return {code: int(n) for code, n in session.execute(
        select(Stratum.code, func.count()).select_from(SampleCase)
        .join(Stratum, Stratum.id == SampleCase.stratum_id)
        .where(SampleCase.draw_id == draw_id, SampleCase.replicate == replicate,
               SampleCase.release_state == "held", SampleCase.is_reserve.is_(False))
        .group_by(Stratum.code).order_by(Stratum.code))}


def next_release(session: Session, draw_id: int) -> ReleasePlan:
    """What :func:`release_next` would release now (nothing is changed)."""
    held = held_replicates(session, draw_id)
    if not held:
        return ReleasePlan(draw_id, None)
    r = min(held)
    return ReleasePlan(draw_id, r, _held_by_stratum(session, draw_id, r),
                       tuple(sorted(set(held) - {r})))


def _log(session: Session, draw_id: int, now: datetime, actor: str, detail: str, n: int, *,
         user_id: int | None = None, replicate: int | None = None) -> None:
    new: dict = {"released": n}
    if replicate is not None:
        new["replicate"] = replicate
    session.add(AuditLog(at=now, user_id=user_id, actor=actor, action="sample.release",
                         entity="sample_draw", entity_id=str(draw_id), new=new, detail=detail))


def _check_replicate(sd: SampleDraw, replicate: int) -> None:
    if replicate == sd.replicates + 1 and sd.reserve:
        raise MinpingError(
            f"replicate {replicate} is the reserve; it replaces ineligible numbers one by one: "
            "use `minping sample release --reserve-for-ineligible`")
    if not 1 <= replicate <= sd.replicates:
        raise MinpingError(f"draw {sd.id} has replicates 1 to {sd.replicates}, not {replicate}")


def _release_cases(session: Session, draw_id: int, replicate: int, now: datetime) -> int:
    result = session.execute(
        update(SampleCase)
        .where(SampleCase.draw_id == draw_id, SampleCase.replicate == replicate,
               SampleCase.release_state == "held", SampleCase.is_reserve.is_(False))
        .values(release_state="released", released_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def release_replicate(session: Session, draw_id: int, replicate: int, *, now: datetime,
                      actor: str = "minping", user_id: int | None = None,
                      experiment=None) -> int:
    """Release the held cases of sample replicate ``replicate``; returns how many.

    Refused for the reserve replicate and for a replicate the draw does not
    have.  Releasing a replicate again releases nothing.
    """
    sd = session.get(SampleDraw, draw_id)
    if sd is None:
        raise MinpingError(f"no draw {draw_id}")
    _check_replicate(sd, replicate)
    n = _release_cases(session, draw_id, replicate, now)
    _log(session, draw_id, now, actor, f"replicate {replicate}", n, user_id=user_id,
         replicate=replicate)
    # the mode experiment's arms of the cases just released (minping.experiment)
    mode_experiment.assign_released(session, draw_id, experiment, now=now, actor=actor,
                                    user_id=user_id)
    return n


def release_next(session: Session, draw_id: int, *, now: datetime, actor: str = "minping",
                 user_id: int | None = None, experiment=None,
                 expected: int | None = None) -> ReleasePlan:
    """Release the lowest sample replicate that has held cases.

    Returns what was released; ``replicate`` is ``None`` (and nothing changes)
    when every sample replicate is out.  The reserve is never taken here.

    ``expected`` is the replicate a confirmation screen showed: when the next
    replicate is no longer that one (a second click, another supervisor was
    quicker), nothing is released and the plan returned has ``released == 0``.
    """
    plan = next_release(session, draw_id)
    if plan.replicate is None or (expected is not None and plan.replicate != expected):
        return plan
    n = _release_cases(session, draw_id, plan.replicate, now)
    _log(session, draw_id, now, actor, f"replicate {plan.replicate}", n, user_id=user_id,
         replicate=plan.replicate)
    # the mode experiment's arms of the cases just released (minping.experiment)
    mode_experiment.assign_released(session, draw_id, experiment, now=now, actor=actor,
                                    user_id=user_id)
    return ReleasePlan(draw_id, plan.replicate, plan.by_stratum, plan.held_replicates, n)


def release(session: Session, cfg, *, replicate: int | None = None, next_: bool = False,
            now: datetime | None = None, actor: str = "minping") -> dict:
    """Release one replicate of the current draw (``replicate``, or with ``next_`` the next).

    Returns ``{"draw_id", "replicate", "released", "by_stratum", "held_replicates"}``.
    """
    now = _now(now)
    sd = current_draw(session, cfg)
    if (replicate is None) == (not next_):
        raise MinpingError("give either --replicate N or --next")
    if next_:
        plan = release_next(session, sd.id, now=now, actor=actor, experiment=cfg.experiment)
        if plan.replicate is None:
            raise MinpingError(f"draw {sd.id}: every replicate is already released; nothing "
                               "is left to release (the reserve goes out only with "
                               "--reserve-for-ineligible)")
    else:
        assert replicate is not None
        _check_replicate(sd, replicate)
        by_stratum = _held_by_stratum(session, sd.id, replicate)
        n = release_replicate(session, sd.id, replicate, now=now, actor=actor,
                              experiment=cfg.experiment)
        plan = ReleasePlan(sd.id, replicate, by_stratum,
                           tuple(sorted(held_replicates(session, sd.id))), n)
    return {"draw_id": sd.id, "replicate": plan.replicate, "released": plan.released,
            "by_stratum": dict(plan.by_stratum), "held_replicates": list(plan.held_replicates)}


def release_all(session: Session, cfg, *, now: datetime | None = None,
                actor: str = "minping") -> dict:
    """Release every sample replicate still held (not the reserve)."""
    now = _now(now)
    sd = current_draw(session, cfg)
    out = {}
    for r in sorted(held_replicates(session, sd.id)):
        out[r] = _release_cases(session, sd.id, r, now)
    _log(session, sd.id, now, actor, "all replicates", sum(out.values()))
    # the mode experiment's arms of the cases just released (minping.experiment)
    mode_experiment.assign_released(session, sd.id, cfg.experiment, now=now, actor=actor)
    return {"draw_id": sd.id, "released": sum(out.values()),
            "by_replicate": {str(k): v for k, v in out.items()}}


def release_reserve(session: Session, cfg, *, now: datetime | None = None,
                    actor: str = "minping") -> dict:
    """Release reserve cases to replace ineligible (AAPOR 4.x) numbers, stratum by stratum.

    In each stratum: ``to_release = ineligible − reserve already released``,
    where ``ineligible`` counts the stratum's released cases (reserve cases
    included) whose final disposition is 4.x; the held reserve cases are
    released in release order.  A stratum whose reserve runs out is reported
    in ``short``.
    """
    now = _now(now)
    sd = current_draw(session, cfg)
    strata = dict(session.execute(
        select(Stratum.id, Stratum.code).where(Stratum.draw_id == sd.id)).all())
    inelig = Counter(dict(session.execute(
        select(SampleCase.stratum_id, func.count()).where(
            SampleCase.draw_id == sd.id, SampleCase.release_state == "released",
            SampleCase.final_disposition.like("4.%"))
        .group_by(SampleCase.stratum_id)).all()))
    used = Counter(dict(session.execute(
        select(SampleCase.stratum_id, func.count()).where(
            SampleCase.draw_id == sd.id, SampleCase.release_state == "released",
            SampleCase.is_reserve.is_(True))
        .group_by(SampleCase.stratum_id)).all()))
    released: dict[str, int] = {}
    short: dict[str, int] = {}
    for sid, code in sorted(strata.items(), key=lambda kv: kv[1]):
        need = inelig[sid] - used[sid]
        if need <= 0:
            continue
        ids = session.scalars(
            select(SampleCase.id).where(
                SampleCase.draw_id == sd.id, SampleCase.stratum_id == sid,
                SampleCase.is_reserve.is_(True), SampleCase.release_state == "held")
            .order_by(SampleCase.draw_order).limit(need)).all()
        if ids:
            session.execute(
                update(SampleCase).where(SampleCase.id.in_(ids))
                .values(release_state="released", released_at=now)
                .execution_options(synchronize_session=False))
            released[code] = len(ids)
        if len(ids) < need:
            short[code] = need - len(ids)
    total = sum(released.values())
    _log(session, sd.id, now, actor, "reserve for ineligible numbers", total)
    # the mode experiment's arms of the cases just released (minping.experiment)
    mode_experiment.assign_released(session, sd.id, cfg.experiment, now=now, actor=actor)
    return {"draw_id": sd.id, "released": total, "by_stratum": released, "short": short,
            "ineligible": {strata[s]: n for s, n in inelig.items()}}
