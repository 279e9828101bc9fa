"""The frame of a draw: counts per stratum, and the contacts in canonical order."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minping.campaign import codes
from minping.errors import MinpingError
from minping.frames import frame_labels
from minping.models import (
    FrameContact,
    RespondentGroup,
    Town,
)
from sampling.draw import (
    canonical_order,
    frame_hash,
)
from sampling.frame import read_frame

STRATIFICATIONS = ("group", "group_town")


def stratum_code(group: str, town: str | None, stratification: str) -> str:
    """``group`` or ``group/town``."""
    if stratification == "group":
        return group
    if town is None:
        raise MinpingError("the frame has contacts without a town; stratify with --strata group")
    return f"{group}/{town}"


# --- the frame ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameColumns:
    """A frame in canonical order (sorted by phone), column by column."""

    contact_ids: np.ndarray
    phones: np.ndarray
    groups: tuple[str, ...]
    towns: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.phones)

    def digest(self) -> str:
        return frame_hash(self.phones, self.groups, self.towns)

    def strata(self, stratification: str) -> np.ndarray:
        if stratification == "group":
            return np.asarray(self.groups, dtype=str)
        return np.asarray(
            [stratum_code(g, t, stratification) for g, t in zip(self.groups, self.towns,
                                                                strict=True)],
            dtype=str,
        )

    def index_of(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.phones.tolist())}


def _canonical(contact_ids, phones, groups, towns) -> FrameColumns:
    order = canonical_order(phones)
    return FrameColumns(
        contact_ids=np.asarray(contact_ids, dtype=np.int64)[order],
        phones=np.asarray(phones, dtype=str)[order],
        groups=tuple(groups[i] for i in order),
        towns=tuple(towns[i] for i in order),
    )


def load_frame(session: Session, campaign_id: int, frame_id: int) -> FrameColumns:
    """Read a frame's contacts from the database, in canonical order."""
    gcode = {v: k for k, v in codes(session, RespondentGroup, campaign_id).items()}
    tcode = {v: k for k, v in codes(session, Town, campaign_id).items()}
    rows = session.execute(
        select(FrameContact.id, FrameContact.phone, FrameContact.group_id, FrameContact.town_id)
        .where(FrameContact.frame_id == frame_id)
    ).all()
    if not rows:
        raise MinpingError("the frame is empty; import contacts with `minping frame import`")
    ids, phones, gids, tids = zip(*rows, strict=True)
    groups = [gcode[g] for g in gids]
    towns = [tcode[t] if t is not None else None for t in tids]
    return _canonical(ids, phones, groups, towns)


def frame_from_file(path: str | os.PathLike, cfg, *, encoding: str | None = None) -> FrameColumns:
    """Read an external copy of the frame (CSV or XLSX) in canonical order."""
    known_groups, known_towns = frame_labels(cfg)
    ff = read_frame(path, encoding=encoding, known_groups=known_groups, known_towns=known_towns)
    ff.raise_for_problems()
    return _canonical(np.full(len(ff), -1), ff.phones, ff.groups, ff.towns)


def frame_counts(session: Session, frame_id: int, stratification: str, campaign_id: int
                  ) -> dict[str, int]:
    gcode = {v: k for k, v in codes(session, RespondentGroup, campaign_id).items()}
    tcode = {v: k for k, v in codes(session, Town, campaign_id).items()}
    out: dict[str, int] = {}
    if stratification == "group":
        q = (select(FrameContact.group_id, func.count()).where(FrameContact.frame_id == frame_id)
             .group_by(FrameContact.group_id))
        for g, n in session.execute(q):
            out[gcode[g]] = int(n)
    else:
        q = (select(FrameContact.group_id, FrameContact.town_id, func.count())
             .where(FrameContact.frame_id == frame_id)
             .group_by(FrameContact.group_id, FrameContact.town_id))
        for g, t, n in session.execute(q):
            out[stratum_code(gcode[g], tcode.get(t) if t is not None else None,
                             stratification)] = int(n)
    return dict(sorted(out.items()))
