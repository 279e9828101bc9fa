"""Load the campaign configuration into the database.

The configuration file is the source of truth for tracks, units, groups and
towns; :func:`sync_campaign` makes the database match it (idempotent: running it
twice changes nothing), keyed by the configuration's stable ids.  A unit, group
or town is never deleted here, because answers and cases refer to it.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from minping.models import Campaign, RespondentGroup, Town, Track, Unit


def config_fingerprint(cfg) -> str:
    """A hash of what the database mirrors from the configuration."""
    data = {
        "campaign": [cfg.campaign.id, cfg.campaign.name, cfg.campaign.name_en],
        "towns": [[t.id, t.name, t.name_en] for t in cfg.towns],
        "groups": [[g.id, g.name, g.name_en, list(g.tracks)] for g in cfg.groups],
        "tracks": [
            [t.id, t.name, t.name_en, dict(t.weights),
             [[u.id, u.name, u.name_en, u.category] for u in t.units]]
            for t in cfg.tracks
        ],
    }
    return hashlib.sha256(json.dumps(data, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def _upsert(session: Session, model, campaign_id: int, code: str, **values):
    row = session.scalar(select(model).where(model.campaign_id == campaign_id, model.code == code))
    if row is None:
        row = model(campaign_id=campaign_id, code=code, **values)
        session.add(row)
    else:
        for key, value in values.items():
            if getattr(row, key) != value:
                setattr(row, key, value)
    return row


def sync_campaign(session: Session, cfg) -> Campaign:
    """Create or update the campaign and its tracks, units, groups and towns."""
    fingerprint = config_fingerprint(cfg)
    campaign = session.scalar(select(Campaign).where(Campaign.code == cfg.campaign.id))
    if campaign is None:
        campaign = Campaign(code=cfg.campaign.id, name=cfg.campaign.name,
                            name_en=cfg.campaign.name_en, config_hash=fingerprint)
        session.add(campaign)
        session.flush()
    elif campaign.config_hash == fingerprint:
        return campaign
    else:
        campaign.name, campaign.name_en = cfg.campaign.name, cfg.campaign.name_en
        campaign.config_hash = fingerprint

    for town in cfg.towns:
        _upsert(session, Town, campaign.id, town.id, name=town.name, name_en=town.name_en)
    for group in cfg.groups:
        _upsert(session, RespondentGroup, campaign.id, group.id, name=group.name,
                name_en=group.name_en, track_codes=list(group.tracks))
    for t_pos, track in enumerate(cfg.tracks):
        row = _upsert(session, Track, campaign.id, track.id, name=track.name,
                      name_en=track.name_en, position=t_pos, weights=dict(track.weights))
        session.flush()
        for u_pos, unit in enumerate(track.units):
            _upsert(session, Unit, campaign.id, unit.id, track_id=row.id, name=unit.name,
                    name_en=unit.name_en, category=unit.category, position=u_pos)
    session.flush()
    return campaign


def codes(session: Session, model, campaign_id: int) -> dict[str, int]:
    """Map configuration ids to database ids for one kind of row."""
    rows = session.execute(select(model.code, model.id).where(model.campaign_id == campaign_id))
    return {code: id_ for code, id_ in rows}
