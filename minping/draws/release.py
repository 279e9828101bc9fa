"""Release of drawn cases into the field (see :mod:`minping.draws`)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from minping.draws.draw import _now, current_draw
from minping.errors import MinpingError
from minping.models import (
    AuditLog,
    SampleCase,
    Stratum,
)

# --- release ------------------------------------------------------------------------------


def _held_by_replicate(session: Session, draw_id: int) -> dict[int, int]:
    return {int(r): int(n) for r, n in session.execute(
        select(SampleCase.replicate, func.count()).where(
            SampleCase.draw_id == draw_id, SampleCase.release_state == "held",
            SampleCase.is_reserve.is_(False))
        .group_by(SampleCase.replicate))}


def _release_log(session, sd, now, actor, detail, n):
    session.add(AuditLog(at=now, actor=actor, action="sample.release", entity="sample_draw",
                         entity_id=str(sd.id), new={"released": n}, detail=detail))


def release(session: Session, cfg, *, replicate: int | None = None, next_: bool = False,
            now: datetime | None = None, actor: str = "minping") -> dict:
    """Release one replicate (``replicate``, or with ``next_`` the lowest still held).

    Returns ``{"draw_id", "replicate", "released", "held_replicates"}``.
    """
    now = _now(now)
    sd = current_draw(session, cfg)
    if (replicate is None) == (not next_):
        raise MinpingError("give either --replicate N or --next")
    held = _held_by_replicate(session, sd.id)
    if next_:
        if not held:
            raise MinpingError(f"draw {sd.id}: every replicate is already released")
        replicate = min(held)
    assert replicate is not None
    if replicate == sd.replicates + 1 and sd.reserve:
        raise MinpingError(
            f"replicate {replicate} is the reserve; it replaces ineligible numbers one by one: "
            "use `minping sample release --reserve-for-ineligible`")
    if not 1 <= replicate <= sd.replicates:
        raise MinpingError(f"draw {sd.id} has replicates 1 to {sd.replicates}, not {replicate}")
    from minping.cases import release_replicate

    n = release_replicate(session, sd.id, replicate, now=now)
    _release_log(session, sd, now, actor, f"replicate {replicate}", n)
    held.pop(replicate, None)
    return {"draw_id": sd.id, "replicate": replicate, "released": n,
            "held_replicates": sorted(held)}


def release_all(session: Session, cfg, *, now: datetime | None = None,
                actor: str = "minping") -> dict:
    """Release every sample replicate still held (not the reserve)."""
    now = _now(now)
    sd = current_draw(session, cfg)
    from minping.cases import release_replicate

    out = {}
    for r in sorted(_held_by_replicate(session, sd.id)):
        out[r] = release_replicate(session, sd.id, r, now=now)
    _release_log(session, sd, now, actor, "all replicates", sum(out.values()))
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
    _release_log(session, sd, now, actor, "reserve for ineligible numbers", total)
    return {"draw_id": sd.id, "released": total, "by_stratum": released, "short": short,
            "ineligible": {strata[s]: n for s, n in inelig.items()}}
