"""``minping demo``: the whole job on a synthetic campaign.

This version loads the configuration into a fresh database and generates a
synthetic sampling frame (clearly marked: the frame is named "synthetic" and
every contact carries ``synthetic: true``), then prints what the database holds.
Numbers are valid Chinese mobile numbers, and no call ever leaves the machine:
the demo only talks to the local Twilio simulator.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import phonenumbers
from sqlalchemy import func, insert, select

from minping.campaign import codes, sync_campaign
from minping.config import load_config
from minping.db import Database
from minping.errors import MinpingError
from minping.models import Campaign, Frame, FrameContact, RespondentGroup, Town, Unit

SYNTHETIC_FRAME = "synthetic demo frame (合成演示样本框)"

#: Share of each respondent group in the synthetic frame.
GROUP_SHARES = {"residents": 0.72, "deputies": 0.06, "business": 0.22}
#: Mobile prefixes of the three mainland carriers (China Mobile, Unicom, Telecom).
MOBILE_PREFIXES = [
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "147",
    "150",
    "151",
    "152",
    "157",
    "158",
    "159",
    "178",
    "182",
    "183",
    "184",
    "187",
    "188",
    "198",
    "130",
    "131",
    "132",
    "145",
    "155",
    "156",
    "166",
    "175",
    "176",
    "185",
    "186",
    "133",
    "149",
    "153",
    "173",
    "177",
    "180",
    "181",
    "189",
    "191",
    "199",
]


@dataclass(frozen=True)
class SyntheticContact:
    phone: str
    group: str
    town: str


def synthetic_frame(cfg, size: int, *, rng: np.random.Generator) -> list[SyntheticContact]:
    """Generate ``size`` distinct contacts across the configured groups and towns.

    Groups follow :data:`GROUP_SHARES` (equal shares for groups it does not
    name); the county seat (the first town) holds about a third of the contacts
    and the other towns share the rest with some spread, as real county
    registers look.  Every number passes ``phonenumbers.is_valid_number``.
    """
    groups = [g.id for g in cfg.groups]
    g_share = np.array([GROUP_SHARES.get(g, 1.0) for g in groups], dtype=float)
    g_share /= g_share.sum()
    towns = [t.id for t in cfg.towns]
    t_share = rng.uniform(0.6, 1.4, size=len(towns))
    t_share[0] = t_share[1:].sum() / 2 if len(towns) > 1 else 1.0
    t_share /= t_share.sum()

    phones: set[str] = set()
    out: list[SyntheticContact] = []
    group_idx = rng.choice(len(groups), size=size, p=g_share)
    town_idx = rng.choice(len(towns), size=size, p=t_share)
    prefixes = np.array(MOBILE_PREFIXES)
    i = 0
    while len(out) < size:
        batch = size - len(out)
        pre = rng.choice(prefixes, size=batch * 2)
        rest = rng.integers(0, 10**8, size=batch * 2)
        for p, r in zip(pre, rest, strict=True):
            national = f"{p}{r:08d}"
            e164 = "+86" + national
            if e164 in phones:
                continue
            if not phonenumbers.is_valid_number(phonenumbers.parse(e164)):
                continue
            phones.add(e164)
            out.append(SyntheticContact(e164, groups[group_idx[i]], towns[town_idx[i]]))
            i += 1
            if len(out) == size:
                break
    return out


def run_demo(
    *,
    directory: str | Path,
    database_url: str | None = None,
    frame_size: int = 60_000,
    seed: int = 20261126,
    config_path: str | None = None,
    echo: Callable[[str], None] | None = print,
) -> dict:
    """Run the demo and return its summary (what ``--json`` prints)."""
    say = echo or (lambda _msg: None)
    started = time.perf_counter()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if database_url is None:
        path = directory / "minping.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        database_url = f"sqlite:///{path.resolve()}"

    cfg = load_config(config_path)
    db = Database(database_url)
    try:
        say(f"[1/2] database {db.dialect}: creating the schema")
        db.upgrade()
        with db.transaction() as session:
            if session.scalar(select(func.count()).select_from(Frame)):
                raise MinpingError(
                    f"the database {database_url!r} already holds a frame; the demo needs an "
                    "empty database (give a new --dir, or an empty --database-url)"
                )
            campaign = sync_campaign(session, cfg)
            say(
                f"      campaign {cfg.campaign.id}: {len(cfg.tracks)} tracks, "
                f"{len(cfg.units)} units, {len(cfg.groups)} groups, {len(cfg.towns)} towns"
            )

            say(f"[2/2] synthetic frame: generating {frame_size:,} contacts (seed {seed})")
            contacts = synthetic_frame(cfg, frame_size, rng=np.random.default_rng(seed))
            frame = Frame(campaign_id=campaign.id, name=SYNTHETIC_FRAME, synthetic=True)
            session.add(frame)
            session.flush()
            group_ids = codes(session, RespondentGroup, campaign.id)
            town_ids = codes(session, Town, campaign.id)
            rows = [
                {
                    "frame_id": frame.id,
                    "phone": c.phone,
                    "group_id": group_ids[c.group],
                    "town_id": town_ids[c.town],
                    "source_row": n + 2,
                    "attributes": {"synthetic": True},
                }
                for n, c in enumerate(contacts)
            ]
            for start in range(0, len(rows), 5_000):
                session.execute(insert(FrameContact), rows[start : start + 5_000])
        summary = describe(db, cfg)
    finally:
        db.dispose()
    summary["database"] = database_url
    summary["seconds"] = round(time.perf_counter() - started, 2)
    say("")
    for line in format_summary(summary):
        say(line)
    return summary


def describe(db: Database, cfg) -> dict:
    """What the database holds: campaign, units per track, frame by group and town."""
    with db.session() as session:
        campaign = session.scalar(select(Campaign).where(Campaign.code == cfg.campaign.id))
        units = Counter(
            session.scalars(select(Unit.track_id).where(Unit.campaign_id == campaign.id)).all()
        )
        track_units = {t.code: units[t.id] for t in campaign.tracks}
        group_names = {
            gid: code for code, gid in codes(session, RespondentGroup, campaign.id).items()
        }
        town_names = {tid: code for code, tid in codes(session, Town, campaign.id).items()}
        cells = session.execute(
            select(FrameContact.group_id, FrameContact.town_id, func.count()).group_by(
                FrameContact.group_id, FrameContact.town_id
            )
        ).all()
    frame = {g.id: {t.id: 0 for t in cfg.towns} for g in cfg.groups}
    for gid, tid, n in cells:
        frame[group_names[gid]][town_names[tid]] = n
    return {
        "campaign": cfg.campaign.id,
        "tracks": track_units,
        "units": sum(track_units.values()),
        "frame": {
            "name": SYNTHETIC_FRAME,
            "synthetic": True,
            "contacts": sum(n for _, _, n in cells),
            "by_group_town": frame,
        },
    }


def format_summary(summary: dict) -> list[str]:
    frame = summary["frame"]
    by = frame["by_group_town"]
    towns = list(next(iter(by.values())).keys())
    width = max(len(t) for t in towns + ["total"]) + 1
    lines = [
        f"campaign {summary['campaign']}: {summary['units']} units "
        + "("
        + ", ".join(f"{k} {v}" for k, v in summary["tracks"].items())
        + ")",
        f"frame '{frame['name']}': {frame['contacts']:,} contacts (SYNTHETIC)",
        "group".ljust(10) + "".join(t.rjust(width) for t in towns) + "total".rjust(width),
    ]
    for group, row in by.items():
        lines.append(
            group.ljust(10)
            + "".join(f"{row[t]:>{width},}" for t in towns)
            + f"{sum(row.values()):>{width},}"
        )
    lines.append(f"database: {summary['database']}")
    return lines
