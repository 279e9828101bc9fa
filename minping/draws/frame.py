"""The frame of a draw: counts per stratum, and the contacts in canonical order."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minping.campaign import codes
from minping.errors import MinpingError
from minping.frame_file import read_frame
from minping.frames import frame_labels
from minping.models import (
    FrameContact,
    RespondentGroup,
    Town,
)
from sampling.draw import CodedColumn, canonical_frame_hash, canonical_order
from sampling.errors import SamplingError

STRATIFICATIONS = ("group", "group_town")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def user_errors(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Show the sampling core's errors as this application's: ``SamplingError`` -> ``MinpingError``."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except SamplingError as exc:
            raise MinpingError(str(exc)) from exc

    return wrapper


def stratum_code(group: str, town: str | None, stratification: str) -> str:
    """``group`` or ``group/town``."""
    if stratification == "group":
        return group
    if town is None:
        raise MinpingError("strata by town (--strata group_town) need a town for every contact, "
                           "but the frame has contacts without one (its file had no 乡镇/town "
                           "column, or empty cells): re-import the frame with a 乡镇 column, or "
                           "stratify with --strata group")
    return f"{group}/{town}"


# --- the frame ----------------------------------------------------------------------------

#: Fixed-width text of one contact as SQLite writes it for :func:`load_frame`:
#: id, group id, town id (-1 for none), phone (E.164, space-padded), newline.
_WIDTHS = (("id", 19), ("g", 10), ("t", 10), ("p", 20))
_LINE = np.dtype([(name, f"S{w}") for name, w in _WIDTHS] + [("nl", "S1")])
#: The same as binary records (PostgreSQL): big-endian 64-bit integers, then the phone.
_BINARY = np.dtype([("id", ">i8"), ("g", ">i8"), ("t", ">i8"), ("p", "S20")])


@dataclass(frozen=True)
class FrameColumns:
    """A frame in canonical order (sorted by phone), column by column.

    ``phones`` are ASCII byte strings (``numpy.bytes_``); ``groups`` and
    ``towns`` hold each contact's group and town ids as codes (town code
    ``-1``: no town); ``contact_ids`` are the database ids (``-1`` for a file).
    """

    contact_ids: np.ndarray
    phones: np.ndarray
    groups: CodedColumn
    towns: CodedColumn

    def __len__(self) -> int:
        return len(self.phones)

    def digest(self) -> str:
        """:func:`sampling.draw.frame_hash` of the frame, streamed."""
        return canonical_frame_hash(self.phones, self.groups, self.towns)

    def group_at(self, positions) -> list[str]:
        """The group ids of the contacts at these canonical positions."""
        labels = self.groups.labels
        return [labels[c] for c in self.groups.codes[np.asarray(positions, dtype=np.int64)]]

    def strata(self, stratification: str) -> CodedColumn:
        """Each contact's stratum (group id, or ``group/town``) as codes."""
        if stratification == "group":
            return self.groups
        t = self.towns.codes
        if len(t) and t.min() < 0:
            n = int((t < 0).sum())
            try:
                stratum_code("", None, stratification)  # raises: contacts without a town
            except MinpingError as exc:
                raise MinpingError(f"{n:,} of {len(t):,} contacts have no town; {exc}") from None
        T = max(len(self.towns.labels), 1)
        uniq, inv = np.unique(self.groups.codes.astype(np.int64) * T + t, return_inverse=True)
        labels = tuple(stratum_code(self.groups.labels[u // T], self.towns.labels[u % T],
                                    stratification) for u in uniq.tolist())
        return CodedColumn(inv.astype(np.int64), labels)

    def counts(self, stratification: str) -> dict[str, int]:
        """Contacts per stratum, sorted by stratum code."""
        st = self.strata(stratification)
        n = np.bincount(st.codes, minlength=len(st.labels))
        return dict(sorted((lab, int(k)) for lab, k in zip(st.labels, n.tolist(), strict=True)
                           if k))

    def positions(self, phones: list[str]) -> np.ndarray:
        """Canonical position of each E.164 number, ``-1`` when it is not in the frame."""
        if not phones:
            return np.zeros(0, dtype=np.int64)
        want = np.array([p.encode() for p in phones])
        at = np.searchsorted(self.phones, want)
        at = np.minimum(at, len(self.phones) - 1)
        found = self.phones[at] == want
        return np.where(found, at, -1).astype(np.int64)


def _coded(values: list, labels: dict) -> CodedColumn:
    """Codes for the values through ``labels`` (value -> label)."""
    names = tuple(sorted({labels[v] for v in set(values)}))
    pos = {name: i for i, name in enumerate(names)}
    return CodedColumn(np.fromiter((pos[labels[v]] for v in values), dtype=np.int64,
                                   count=len(values)), names)


def _canonical(contact_ids: np.ndarray, phones: np.ndarray, groups: CodedColumn,
               towns: CodedColumn) -> FrameColumns:
    order = canonical_order(phones)
    return FrameColumns(
        contact_ids=np.asarray(contact_ids, dtype=np.int64)[order],
        phones=phones[order],
        groups=CodedColumn(groups.codes[order], groups.labels),
        towns=CodedColumn(towns.codes[order], towns.labels),
    )


def _fetch_columns(session: Session, frame_id: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The frame's ids, group ids, town ids (``-1``: none) and phones, or ``None``.

    Only the four columns the draw needs, in one value built by the database
    and viewed by numpy without a Python object per row: PostgreSQL sends
    fixed-width binary records (``int8send``, the phone padded to 20 bytes),
    SQLite fixed-width text.  ``None`` when a value does not fit (then
    :func:`load_frame` reads row by row).
    """
    conn = session.connection()
    fid = int(frame_id)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor(binary=True) as cur:
            cur.execute(
                "SELECT string_agg(int8send(id) || int8send(group_id::int8) || "
                "int8send(coalesce(town_id, -1)::int8) || convert_to(rpad(phone, 20), "
                "'SQL_ASCII'), ''::bytea) FROM frame_contact WHERE frame_id = %s", (fid,))
            data = cur.fetchone()[0]
        if data is None:
            data = b""
        if len(data) % _BINARY.itemsize:
            return None
        rec = np.frombuffer(data, dtype=_BINARY)
    elif conn.dialect.name == "sqlite":
        text = conn.exec_driver_sql(
            "SELECT group_concat(printf('%19d%10d%10d%-20s', id, group_id, "
            "coalesce(town_id, -1), phone), char(10)) FROM frame_contact NOT INDEXED "
            "WHERE frame_id = ?", (fid,)).scalar()
        data = b"" if text is None else text.encode("utf-8") + b"\n"
        del text
        if len(data) % _LINE.itemsize:
            return None
        rec = np.frombuffer(data, dtype=_LINE)
        if not (rec["nl"] == b"\n").all():
            return None
    else:
        return None
    ids = rec["id"].astype(np.int64)
    gids = rec["g"].astype(np.int64)
    tids = rec["t"].astype(np.int64)
    # the phone is padded with spaces (never part of an E.164 number): make it NUL padding
    phones = np.frombuffer(np.ascontiguousarray(rec["p"]).tobytes().replace(b" ", b"\x00"),
                           dtype="S20")
    return ids, gids, tids, phones


def load_frame(session: Session, campaign_id: int, frame_id: int) -> FrameColumns:
    """Read a frame's contacts from the database (only the columns the draw needs), canonical."""
    gcode = {v: k for k, v in codes(session, RespondentGroup, campaign_id).items()}
    tcode = {v: k for k, v in codes(session, Town, campaign_id).items()}
    fetched = _fetch_columns(session, frame_id)
    if fetched is not None:
        ids, gids, tids, phones = fetched
        if len(ids) == 0:
            raise MinpingError("the frame is empty; import contacts with `minping frame import`")
    else:
        rows = session.execute(
            select(FrameContact.id, FrameContact.phone, FrameContact.group_id,
                   FrameContact.town_id).where(FrameContact.frame_id == frame_id)
        ).all()
        if not rows:
            raise MinpingError("the frame is empty; import contacts with `minping frame import`")
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        phones = np.array([r[1].encode() for r in rows])
        gids = np.array([r[2] for r in rows], dtype=np.int64)
        tids = np.array([-1 if r[3] is None else r[3] for r in rows], dtype=np.int64)
    g_ids = sorted(gcode, key=lambda i: gcode[i])
    t_ids = sorted(tcode, key=lambda i: tcode[i])
    groups = _recode(gids, g_ids, tuple(gcode[i] for i in g_ids), "group")
    towns = _recode(tids, t_ids, tuple(tcode[i] for i in t_ids), "town")
    return _canonical(ids, phones, groups, towns)


def _recode(db_ids: np.ndarray, ids: list[int], labels: tuple[str, ...], what: str
            ) -> CodedColumn:
    """Database ids -> codes into ``labels`` (``-1`` stays ``-1``)."""
    top = int(max(ids, default=0))
    if len(db_ids) and int(db_ids.max()) > top:
        raise MinpingError(f"the frame has a {what} that is not in the campaign")
    table = np.full(top + 2, -2, dtype=np.int64)  # index -1 -> last slot
    table[ids] = np.arange(len(ids))
    table[-1] = -1
    out = table[db_ids]
    if len(out) and out.min() < -1:
        raise MinpingError(f"the frame has a {what} that is not in the campaign")
    return CodedColumn(out, labels)


def frame_from_file(path: str | os.PathLike, cfg, *, encoding: str | None = None) -> FrameColumns:
    """Read an external copy of the frame (CSV or XLSX) in canonical order."""
    known_groups, known_towns = frame_labels(cfg)
    ff = read_frame(path, encoding=encoding, known_groups=known_groups, known_towns=known_towns)
    ff.raise_for_problems()
    phones = np.array([p.encode() for p in ff.phones]) if len(ff) else np.zeros(0, "S20")
    groups = _coded(list(ff.groups), {g: g for g in ff.groups})
    town_names = tuple(sorted({t for t in ff.towns if t is not None}))
    tpos = {t: i for i, t in enumerate(town_names)}
    towns = CodedColumn(np.array([-1 if t is None else tpos[t] for t in ff.towns],
                                 dtype=np.int64), town_names)
    return _canonical(np.full(len(ff), -1), phones, groups, towns)


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
