"""Practice mode: a training sample for interviewers that never counts and never dials.

``minping practice create --size N`` makes a practice draw (``SampleDraw.practice``)
from a synthetic practice frame.  Its cases are in release state ``"practice"``, never
``"released"``: that one value is the filter — every statistic (dashboard, balance,
scores, report, export), the IVR dialer and the CATI queue take released cases only,
and :func:`minping.draws.draw.current_draw` never returns a practice draw.  Their
numbers are not telephone numbers (``+860000…``), and the CATI screen dials them by a
simulated call only (:func:`cati.service.dial_through_gateway` refuses them), at any hour.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from minping import __version__
from minping.campaign import codes, sync_campaign
from minping.cases import CATI_HOLD, new_pseudo_id, try_hold
from minping.errors import MinpingError
from minping.models import (
    CaseUnit,
    Frame,
    FrameContact,
    RespondentGroup,
    SampleCase,
    SampleDraw,
    Stratum,
    Unit,
)

__all__ = ["PRACTICE", "PRACTICE_FRAME", "counted_draws", "create_practice", "take_practice_case"]

#: The release state of practice cases (nothing that counts or dials takes it).
PRACTICE = "practice"
PRACTICE_FRAME = "practice (synthetic, never dialled)"


def counted_draws():
    """The draws statistics count (every draw but the practice ones), as a subquery:
    ``SampleCase.draw_id.in_(counted_draws())`` — the one filter for queries that do not
    already take released cases of the current draw only."""
    return select(SampleDraw.id).where(SampleDraw.practice.is_(False))


def _fake_phone(i: int) -> str:
    return f"+860000{i:07d}"  # no Chinese number starts +86 0: never a real line


def create_practice(session: Session, cfg, *, size: int, now: datetime) -> dict:
    """A practice draw of ``size`` cases spread over the groups, each with the campaign's
    number of units; returns ``{"draw_id", "cases", "by_group"}``."""
    if size < 1:
        raise MinpingError("--size: at least 1")
    campaign = sync_campaign(session, cfg)
    groups = codes(session, RespondentGroup, campaign.id)
    units = codes(session, Unit, campaign.id)
    frame = session.scalar(select(Frame).where(Frame.campaign_id == campaign.id,
                                               Frame.name == PRACTICE_FRAME))
    if frame is None:
        frame = Frame(campaign_id=campaign.id, name=PRACTICE_FRAME, synthetic=True)
        session.add(frame)
        session.flush()
    start = session.scalar(select(func.count()).select_from(FrameContact)
                           .where(FrameContact.frame_id == frame.id)) or 0
    group_ids = [g.id for g in cfg.groups]
    session.execute(insert(FrameContact), [
        {"frame_id": frame.id, "phone": _fake_phone(start + i),
         "group_id": groups[group_ids[i % len(group_ids)]], "town_id": None,
         "source_row": start + i + 2, "attributes": {"practice": True}} for i in range(size)])
    contacts = session.execute(
        select(FrameContact.id, FrameContact.group_id).where(FrameContact.frame_id == frame.id)
        .order_by(FrameContact.id).offset(start)).all()
    draw = SampleDraw(campaign_id=campaign.id, frame_id=frame.id, frame_hash="0" * 64,
                      seed="practice", stratification="group", method="practice",
                      sample_size=size, software_version=__version__, practice=True,
                      created_by="minping practice create")
    session.add(draw)
    session.flush()
    strata = {}
    for gid in group_ids:
        st = Stratum(draw_id=draw.id, code=gid, group_id=groups[gid], town_id=None,
                     population=0, target=0)
        session.add(st)
        strata[groups[gid]] = (st, gid)
    session.flush()
    k = cfg.campaign.units_per_respondent
    by_group: dict[str, int] = {}
    for order, (contact_id, group_db_id) in enumerate(contacts):
        st, gid = strata[group_db_id]
        case = SampleCase(draw_id=draw.id, contact_id=contact_id, stratum_id=st.id,
                          pseudo_id=new_pseudo_id(), inclusion_prob=1.0, weight=0.0,
                          replicate=1, draw_order=order, release_state=PRACTICE,
                          released_at=now)
        session.add(case)
        session.flush()
        eligible = [u.id for u in cfg.units_for_group(gid)]
        for pos in range(min(k, len(eligible))):
            code = eligible[(order * k + pos) % len(eligible)]
            session.add(CaseUnit(case_id=case.id, unit_id=units[code], position=pos))
        by_group[gid] = by_group.get(gid, 0) + 1
    return {"draw_id": draw.id, "cases": size, "by_group": by_group}


def take_practice_case(session: Session, user_id: int, *, now: datetime) -> SampleCase | None:
    """Hold the first open practice case nobody holds, for ``user_id`` (at any hour)."""
    rows = session.scalars(
        select(SampleCase.id).join(SampleDraw, SampleDraw.id == SampleCase.draw_id)
        .where(SampleDraw.practice.is_(True), SampleCase.release_state == PRACTICE,
               SampleCase.state != "final")
        .order_by(SampleCase.attempts, SampleCase.id).limit(20)).all()
    for case_id in rows:
        if try_hold(session, case_id, channel="cati", now=now, user_id=user_id, hold=CATI_HOLD):
            return session.get(SampleCase, case_id)
    return None


def is_practice(case: SampleCase) -> bool:
    return case.release_state == PRACTICE
