"""The frame of a draw: counts per stratum, and the contacts in canonical order."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import numpy as np
from sqlalchemy import func, select, text
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

@dataclass(frozen=True)
class FrameColumns:
    """A frame in canonical order (sorted by phone), column by column.

    ``phones`` are ASCII byte strings (``numpy.bytes_``); ``groups`` and
    ``towns`` hold each contact's group and town ids as codes (town code
    ``-1``: no town).  The database ids of drawn contacts are looked up by
    phone (:func:`contact_ids`), so the frame is read without them.
    """

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
        cell = self.groups.codes.astype(np.int64) * T + t
        # the cells present, in (group, town) order, numbered through a table: no sort
        uniq = np.flatnonzero(np.bincount(cell, minlength=len(self.groups.labels) * T))
        table = np.full(len(self.groups.labels) * T, -1, dtype=np.int64)
        table[uniq] = np.arange(len(uniq))
        labels = tuple(stratum_code(self.groups.labels[u // T], self.towns.labels[u % T],
                                    stratification) for u in uniq.tolist())
        return CodedColumn(table[cell], labels)

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


def _canonical(phones: np.ndarray, groups: CodedColumn, towns: CodedColumn) -> FrameColumns:
    order = canonical_order(phones)
    return FrameColumns(
        phones=phones[order],
        groups=CodedColumn(groups.codes[order], groups.labels),
        towns=CodedColumn(towns.codes[order], towns.labels),
    )


#: Session settings for the read of a frame on PostgreSQL (restored afterwards): one
#: process, so that the two aggregates of the read see the rows in one order.
_ONE_PROCESS = {"max_parallel_workers_per_gather": "0"}
#: ... and, when the planner has no statistics for ``frame_contact.frame_id`` (a table
#: never analysed since the import), a sequential scan: the planner would otherwise
#: guess a few thousand rows and visit a million through the index's bitmap.
_NO_STATISTICS = {"enable_bitmapscan": "off", "enable_indexscan": "off"}


def _fetch_columns(session: Session, frame_id: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The frame's phones (ASCII byte strings), group ids and town ids (``-1``: none).

    Only the three columns the draw needs, as two values built by the database
    in one pass over the rows and taken apart by numpy, without a Python object
    per row: the phones joined by commas, and each row's group id and town id
    + 1 (0: no town) as two 4-byte integers (PostgreSQL: ``int4send``; SQLite: fixed-width text).
    The rows come in storage order; :func:`load_frame` sorts them.  ``None``
    when the values are not as expected (then :func:`load_frame` reads row by
    row).
    """
    conn = session.connection()
    fid = int(frame_id)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor(binary=True) as cur:
            cur.execute("SELECT NOT EXISTS (SELECT 1 FROM pg_stats WHERE schemaname = "
                        "current_schema() AND tablename = 'frame_contact' "
                        "AND attname = 'frame_id')")
            settings = dict(_ONE_PROCESS, **(_NO_STATISTICS if cur.fetchone()[0] else {}))
            names = list(settings)
            cur.execute("SELECT " + ", ".join(["current_setting(%s)"] * len(names)), names)
            before = dict(zip(names, cur.fetchone(), strict=True))
            _set_local(cur, settings)  # an error aborts the transaction, and undoes them
            cur.execute(
                "SELECT count(*), string_agg(phone, ','), string_agg(int4send(group_id) "
                "|| int4send(coalesce(town_id + 1, 0)), ''::bytea) FROM frame_contact "
                "WHERE frame_id = %s", (fid,))
            n, text, ids = cur.fetchone()
            _set_local(cur, before)
        n = int(n)
        ids = np.frombuffer(ids or b"", dtype=">i4")
    elif conn.dialect.name == "sqlite":
        n, text, ids = conn.exec_driver_sql(
            "SELECT count(*), group_concat(phone, ','), group_concat(printf('%10d%10d', "
            "group_id, coalesce(town_id + 1, 0)), '') FROM frame_contact NOT INDEXED "
            "WHERE frame_id = ?", (fid,)).one()
        n = int(n)
        ids = _fixed_width_ints(ids or "", 10)
    else:
        return None
    if len(ids) != 2 * n:
        return None
    phones = _split_phones(text or "", n)
    if phones is None:
        return None
    ids = ids.astype(np.int64).reshape(n, 2)
    gids, tids = ids[:, 0].copy(), ids[:, 1] - 1  # town id + 1, 0 for none: -1 for none
    return phones, gids, tids


def _set_local(cur, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        cur.execute("SELECT set_config(%s, %s, true)", (name, value))


def _fixed_width_ints(text: str, width: int) -> np.ndarray:
    """Non-negative integers written right-aligned in ``width`` characters, side by side."""
    buf = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    if len(buf) % width:
        return np.zeros(0, dtype=np.int64)
    digits = buf.reshape(-1, width).astype(np.int64) - 0x30
    digits[digits == 0x20 - 0x30] = 0  # the padding
    if len(digits) and (digits.min() < 0 or digits.max() > 9):
        return np.zeros(0, dtype=np.int64)
    return digits @ (10 ** np.arange(width - 1, -1, -1, dtype=np.int64))


def _split_phones(text: str, n: int) -> np.ndarray | None:
    """``n`` phones joined by commas -> a NUL-padded byte-string array, or ``None``."""
    if n == 0:
        return np.zeros(0, dtype="S1")
    try:
        raw = text.encode("ascii") + b","
    except UnicodeEncodeError:
        return None
    buf = np.frombuffer(raw, dtype=np.uint8)
    comma = np.flatnonzero(buf == 0x2C)
    if len(comma) != n:
        return None
    width = int(comma[0])
    if len(buf) == n * (width + 1) and width > 0:  # all of one length (a county's mobiles)
        return np.ascontiguousarray(buf.reshape(n, width + 1)[:, :width]).view(f"S{width}"
                                                                                ).ravel()
    start = np.concatenate(([0], comma[:-1] + 1))
    length = comma - start
    width = int(length.max())
    if width == 0 or length.min() == 0:
        return None
    out = np.zeros((n, width), dtype=np.uint8)
    for j in range(width):
        has = length > j
        out[has, j] = buf[start[has] + j]
    return out.view(f"S{width}").ravel()


def load_frame(session: Session, campaign_id: int, frame_id: int) -> FrameColumns:
    """Read a frame's contacts from the database (only the columns the draw needs), canonical."""
    gcode = {v: k for k, v in codes(session, RespondentGroup, campaign_id).items()}
    tcode = {v: k for k, v in codes(session, Town, campaign_id).items()}
    fetched = _fetch_columns(session, frame_id)
    if fetched is not None:
        phones, gids, tids = fetched
    else:
        rows = session.execute(
            select(FrameContact.phone, FrameContact.group_id, FrameContact.town_id)
            .where(FrameContact.frame_id == frame_id)
        ).all()
        phones = np.array([r[0].encode() for r in rows]) if rows else np.zeros(0, "S1")
        gids = np.array([r[1] for r in rows], dtype=np.int64)
        tids = np.array([-1 if r[2] is None else r[2] for r in rows], dtype=np.int64)
    if len(phones) == 0:
        raise MinpingError("the frame is empty; import contacts with `minping frame import`")
    g_ids = sorted(gcode, key=lambda i: gcode[i])
    t_ids = sorted(tcode, key=lambda i: tcode[i])
    groups = _recode(gids, g_ids, tuple(gcode[i] for i in g_ids), "group")
    towns = _recode(tids, t_ids, tuple(tcode[i] for i in t_ids), "town")
    return _canonical(phones, groups, towns)


def contact_ids(session: Session, frame_id: int, phones) -> np.ndarray:
    """The ids of the frame's contacts with these E.164 numbers (bytes or str), in that order."""
    want = [p.decode() if isinstance(p, bytes | np.bytes_) else str(p) for p in phones]
    found: dict[str, int] = {}
    if session.connection().dialect.name == "postgresql":
        # one index probe per number: ``phone IN (...)`` lets a planner without statistics
        # filter the whole frame through the (frame_id, group_id, town_id) index instead
        found.update(session.execute(text(
            "SELECT c.phone, c.id FROM unnest(CAST(:phones AS text[])) AS u(phone) "
            "JOIN frame_contact c ON c.frame_id = :frame AND c.phone = u.phone"),
            {"phones": want, "frame": int(frame_id)}).all())
    else:
        for start in range(0, len(want), 500):
            part = want[start:start + 500]
            found.update(session.execute(
                select(FrameContact.phone, FrameContact.id)
                .where(FrameContact.frame_id == frame_id, FrameContact.phone.in_(part))).all())
    missing = [p for p in want if p not in found]
    if missing:
        raise MinpingError(f"the frame changed while the sample was drawn: {missing[0]} "
                           "is gone; draw again")
    return np.array([found[p] for p in want], dtype=np.int64)


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
    return _canonical(phones, groups, towns)


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
