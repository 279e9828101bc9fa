"""Builders for test data: a campaign from the real configuration, and drawn cases.

``build_field(db, n_cases=...)`` gives a database with the campaign, a small
frame, a draw, strata, released cases each assigned ``units_per_case`` units —
what the IVR and CATI tests start from, without going through the draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select

from minping.campaign import codes, sync_campaign
from minping.cases import new_pseudo_id
from minping.config import load_config
from minping.models import (
    CaseUnit,
    Frame,
    FrameContact,
    RespondentGroup,
    SampleCase,
    SampleDraw,
    Stratum,
    Town,
    Unit,
)

#: A Wednesday morning inside the default calling window (Asia/Shanghai 10:00).
FIELD_START = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


@dataclass
class Field:
    cfg: object
    campaign_id: int
    draw_id: int
    case_ids: list[int]
    phones: dict[int, str]  # case id -> E.164
    unit_ids: dict[str, int]  # unit code -> database id


def phone_for(i: int) -> str:
    return f"+86138{i:08d}"


def build_field(db, *, n_cases: int = 10, units_per_case: int = 3, released: bool = True,
                cfg=None, group: str = "deputies") -> Field:
    cfg = cfg or load_config()
    with db.transaction() as s:
        campaign = sync_campaign(s, cfg)
        groups = codes(s, RespondentGroup, campaign.id)
        towns = codes(s, Town, campaign.id)
        units = codes(s, Unit, campaign.id)
        frame = Frame(campaign_id=campaign.id, name=f"test frame {len(units)}", synthetic=True)
        s.add(frame)
        s.flush()
        s.execute(insert(FrameContact), [
            {"frame_id": frame.id, "phone": phone_for(i), "group_id": groups[group],
             "town_id": towns[cfg.towns[0].id], "source_row": i + 2, "attributes": {}}
            for i in range(n_cases)
        ])
        contacts = s.execute(
            select(FrameContact.id, FrameContact.phone).where(FrameContact.frame_id == frame.id)
            .order_by(FrameContact.id)
        ).all()
        draw = SampleDraw(campaign_id=campaign.id, frame_id=frame.id, frame_hash="0" * 64,
                          seed="1", stratification="group", method="proportional",
                          sample_size=n_cases, software_version="test")
        s.add(draw)
        s.flush()
        stratum = Stratum(draw_id=draw.id, code=group, group_id=groups[group], town_id=None,
                          population=n_cases * 10, target=n_cases)
        s.add(stratum)
        s.flush()
        unit_codes = [u.id for u in cfg.units_for_group(group)]
        case_ids, phones = [], {}
        for order, (contact_id, phone) in enumerate(contacts):
            case = SampleCase(draw_id=draw.id, contact_id=contact_id, stratum_id=stratum.id,
                              pseudo_id=new_pseudo_id(), inclusion_prob=0.1, weight=10.0,
                              replicate=1, draw_order=order,
                              release_state="released" if released else "held",
                              released_at=FIELD_START if released else None)
            s.add(case)
            s.flush()
            for pos in range(units_per_case):
                code = unit_codes[(order * units_per_case + pos) % len(unit_codes)]
                s.add(CaseUnit(case_id=case.id, unit_id=units[code], position=pos))
            case_ids.append(case.id)
            phones[case.id] = phone
        return Field(cfg, campaign.id, draw.id, case_ids, phones, units)
