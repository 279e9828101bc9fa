"""Frame import: read a frame file and store its contacts, all or nothing.

:func:`import_frame` reads a CSV or XLSX frame file with
:class:`minping.frame_file.FrameReader` (a chunk of rows at a time), checking it against the campaign's groups
and towns (their ids, Chinese and English names are all accepted), the
do-not-call list and the numbers already in the frame, and stores the contacts
in one transaction:

* a file with problems imports nothing; :class:`~minping.errors.InputError`
  lists every bad row (row, column, value, why);
* with ``skip_invalid=True`` the good rows are imported and the bad ones are
  written to a rejects file (:func:`minping.frame_file.write_rejects`) that can be
  fixed and imported again;
* importing the same file again changes nothing: the file's SHA-256 is stored
  in :class:`~minping.models.FrameImport`, and numbers already in the frame are
  skipped;
* numbers on the do-not-call list are not imported (counted as suppressed).

Each chunk is stored as soon as it is checked (:class:`minping.frame_store.ContactWriter`):
PostgreSQL one ``COPY ... FROM STDIN`` for the file (psycopg 3, fed from a
thread), SQLite ``executemany``, both on the session's connection, so the
contacts and the import record commit or roll back together.  After the first bad row nothing more is stored, the rest
of the file is only checked, and the error makes the caller roll back: the
memory used does not grow with the file.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minping.campaign import codes, sync_campaign
from minping.errors import InputError, MinpingError, Problem
from minping.frame_file import FrameReader, write_rejects
from minping.frame_store import ContactWriter as _ContactWriter
from minping.frame_store import insert_chunk
from minping.models import (
    DoNotCall,
    Frame,
    FrameContact,
    FrameImport,
    RespondentGroup,
    SampleCase,
    SampleDraw,
    Town,
)

__all__ = [
    "delete_frame",
    "list_frames",
    "BATCH",
    "DEFAULT_FRAME",
    "FrameImportResult",
    "frame_labels",
    "get_frame",
    "import_frame",
    "insert_chunk",
]

#: Name of the frame when the user names none.
DEFAULT_FRAME = "main"
#: Rows checked and stored at a time (and per progress report).
BATCH = 50_000

#: ``progress(stage, done, total)``: how far a long step is (import, draw, verify).
ProgressCallback = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class FrameImportResult:
    """What :func:`import_frame` did.

    ``noop`` is true when this very file (same SHA-256) was imported before
    into the frame; nothing was read or stored then.  ``problems`` are the bad
    rows (only non-empty with ``skip_invalid``: otherwise they raise).
    """

    frame: str
    frame_id: int
    file: str
    sha256: str
    encoding: str | None
    rows_read: int
    imported: int
    rejected_rows: int
    suppressed: int
    already_in_frame: int
    frame_size: int
    noop: bool
    problems: tuple[Problem, ...] = ()
    rejects_file: str | None = None
    seconds: float = 0.0
    import_id: int | None = None
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        return {
            "frame": self.frame,
            "frame_id": self.frame_id,
            "file": self.file,
            "sha256": self.sha256,
            "encoding": self.encoding,
            "rows_read": self.rows_read,
            "imported": self.imported,
            "rejected_rows": self.rejected_rows,
            "suppressed": self.suppressed,
            "already_in_frame": self.already_in_frame,
            "frame_size": self.frame_size,
            "noop": self.noop,
            "problems": [p.as_dict() for p in self.problems],
            "rejects_file": self.rejects_file,
            "seconds": round(self.seconds, 3),
            "import_id": self.import_id,
        }


def frame_labels(cfg) -> tuple[dict[str, str], dict[str, str]]:
    """Accepted labels → id for the configured groups and towns (id, Chinese and English name)."""
    groups: dict[str, str] = {}
    for g in cfg.groups:
        for label in (g.id, g.name, g.name_en):
            groups[label] = g.id
    towns: dict[str, str] = {}
    for t in cfg.towns:
        for label in (t.id, t.name, t.name_en):
            towns[label] = t.id
    return groups, towns


def get_frame(session: Session, campaign_id: int, name: str | None, *, create: bool = False
              ) -> Frame:
    """The campaign's frame called ``name``; with ``name=None`` the only frame there is.

    With ``create=True`` a missing frame is created (``name`` defaults to
    :data:`DEFAULT_FRAME`).
    """
    if name is None:
        from minping.practice import PRACTICE_FRAME

        frames = session.scalars(
            select(Frame).where(Frame.campaign_id == campaign_id, Frame.name != PRACTICE_FRAME)
            .order_by(Frame.id)
        ).all()
        if len(frames) == 1:
            return frames[0]
        if len(frames) > 1:
            names = ", ".join(repr(f.name) for f in frames)
            raise MinpingError(f"the campaign has {len(frames)} frames ({names}); name one with --frame")
        if not create:
            raise MinpingError("the campaign has no frame yet; import one with `minping frame import`")
        name = DEFAULT_FRAME
    frame = session.scalar(
        select(Frame).where(Frame.campaign_id == campaign_id, Frame.name == name)
    )
    if frame is None:
        if not create:
            raise MinpingError(f"no frame named {name!r} in the campaign")
        frame = Frame(campaign_id=campaign_id, name=name, synthetic=False)
        session.add(frame)
        session.flush()
    return frame


def _frame_size(session: Session, frame_id: int) -> int:
    return int(session.scalar(
        select(func.count()).select_from(FrameContact).where(FrameContact.frame_id == frame_id)
    ) or 0)


def import_frame(
    session: Session,
    cfg,
    path: str | os.PathLike,
    *,
    frame_name: str | None = None,
    encoding: str | None = None,
    skip_invalid: bool = False,
    rejects_path: str | os.PathLike | None = None,
    imported_by: str | None = None,
    region: str = "CN",
    progress: ProgressCallback | None = None,
) -> FrameImportResult:
    """Import a frame file into the campaign's frame (the caller commits).

    Parameters
    ----------
    session : Session
        Everything happens on this session; on any error nothing is stored
        once the caller rolls back (``Database.transaction`` does).
    cfg : SurveyConfig
        The campaign configuration (groups and towns).
    path : path-like
        CSV (UTF-8, UTF-8 with BOM, GB18030) or XLSX file.
    frame_name : str, optional
        The frame to import into; created if missing.  Default: the
        campaign's only frame, or :data:`DEFAULT_FRAME`.
    encoding : str, optional
        The CSV's encoding (detected when omitted).
    skip_invalid : bool
        Import the good rows when some rows have problems, and write the bad
        ones to ``rejects_path`` (default ``<file>.rejects.csv``).
    imported_by : str, optional
        Who imported (stored on the import record).
    progress : callable(stage, done, total), optional
        Called while reading (``stage="read"``) and storing (``"store"``).

    Returns
    -------
    FrameImportResult

    Raises
    ------
    minping.errors.InputError
        The file cannot be read, or (without ``skip_invalid``) some rows have
        problems: every one is listed and nothing is stored.
    """
    started = time.perf_counter()
    campaign = sync_campaign(session, cfg)
    frame = get_frame(session, campaign.id, frame_name, create=True)
    name = str(path)
    digest = _file_sha256(path, name)
    earlier = session.scalar(
        select(FrameImport).where(FrameImport.frame_id == frame.id,
                                  FrameImport.content_hash == digest)
    )
    if earlier is not None:
        return FrameImportResult(
            frame=frame.name, frame_id=frame.id, file=name, sha256=digest, encoding=None,
            rows_read=0, imported=0, rejected_rows=0, suppressed=0, already_in_frame=0,
            frame_size=_frame_size(session, frame.id), noop=True,
            seconds=time.perf_counter() - started, import_id=earlier.id,
            notes=(f"this file was imported on {earlier.imported_at:%Y-%m-%d %H:%M} UTC "
                   f"(import {earlier.id}); nothing to do",),
        )

    # the reader: labels, do-not-call list and the numbers already in the frame
    group_ids = codes(session, RespondentGroup, campaign.id)
    town_ids = codes(session, Town, campaign.id)
    reader = _reader(session, cfg, path, frame.id, group_ids, town_ids, encoding=encoding,
                     region=region, progress=progress, sha256=digest)
    record = FrameImport(frame_id=frame.id, file_name=Path(name).name[:500], content_hash=digest,
                         rows_read=0, rows_imported=0, rows_rejected=0, rows_suppressed=0,
                         imported_by=imported_by)
    session.add(record)
    session.flush()
    # store while reading; after the first bad row only check (the caller rolls back)
    imported = 0
    file_bytes = os.path.getsize(path)
    with contextlib.ExitStack() as stack:
        if gc.isenabled():  # a chunk's many small objects hold no cycles: no collector passes
            gc.disable()
            stack.callback(gc.enable)
        writer: _ContactWriter | None = None
        for chunk in reader.chunks():
            if reader.problems and not skip_invalid:
                continue
            if writer is None:
                writer = stack.enter_context(_ContactWriter(
                    session, frame.id, record.id,
                    group_ids=[group_ids[g] for g in reader.group_ids],
                    town_ids=[town_ids[t] for t in reader.town_ids],
                    large=reader.rows_read >= BATCH // 2, file_bytes=file_bytes))
            imported += writer.write(chunk)
    # (the writer's exit finished the copy and put back the keys and indexes it set aside,
    # also before refusing the file: they are back even if the caller commits)
    rejected_rows = len({p.row for p in reader.problems})
    rejects_file = None
    if reader.problems:
        if not skip_invalid:
            raise InputError(
                list(reader.problems),
                f"{name}: {len(reader.problems)} problem(s) in {rejected_rows} row(s); "
                "nothing was imported",
            )
        rejects_file = str(rejects_path or Path(name).with_suffix(".rejects.csv"))
        write_rejects(reader, rejects_file)
    record.rows_read = reader.rows_read
    record.rows_imported = imported
    record.rows_rejected = rejected_rows
    record.rows_suppressed = len(reader.suppressed)
    session.flush()
    return FrameImportResult(
        frame=frame.name, frame_id=frame.id, file=name, sha256=digest, encoding=reader.encoding,
        rows_read=reader.rows_read, imported=imported, rejected_rows=rejected_rows,
        suppressed=len(reader.suppressed), already_in_frame=len(reader.already_in_frame),
        frame_size=_frame_size(session, frame.id), noop=False, problems=tuple(reader.problems),
        rejects_file=rejects_file, seconds=time.perf_counter() - started, import_id=record.id,
    )


def _file_sha256(path, name: str) -> str:
    """The file's SHA-256 (hex); an unreadable file is an :class:`InputError` naming it."""
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise InputError([Problem(name, None, None, None,
                                  f"cannot read file: {exc.strerror or exc}")]) from None


def _reader(session: Session, cfg, path, frame_id: int, group_ids: dict[str, int],
            town_ids: dict[str, int], *, encoding: str | None, region: str,
            progress: ProgressCallback | None, sha256: str | None = None) -> FrameReader:
    """A :class:`FrameReader` of ``path`` checking against the campaign and the frame's numbers."""
    group_code = {v: k for k, v in group_ids.items()}
    town_code = {v: k for k, v in town_ids.items()}
    existing = {
        phone: (group_code[g], town_code.get(t) if t is not None else None)
        for phone, g, t in session.execute(
            select(FrameContact.phone, FrameContact.group_id, FrameContact.town_id)
            .where(FrameContact.frame_id == frame_id)
        )
    }
    dnc = set(session.scalars(select(DoNotCall.phone)).all())
    known_groups, known_towns = frame_labels(cfg)
    return FrameReader(
        path,
        encoding=encoding,
        region=region,
        known_groups=known_groups,
        known_towns=known_towns,
        do_not_call=dnc,
        existing_phones=existing,
        progress=(lambda n: progress("read", n, None)) if progress else None,
        chunk_rows=BATCH,
        sha256=sha256,
    )


# --- listing and deleting frames ---------------------------------------------------------


def list_frames(session: Session) -> list[dict]:
    """Every frame: name, contacts, imports, draws and cases drawn from it."""
    contacts = dict(session.execute(select(FrameContact.frame_id, func.count())
                                    .group_by(FrameContact.frame_id)).all())
    imports = dict(session.execute(select(FrameImport.frame_id, func.count())
                                   .group_by(FrameImport.frame_id)).all())
    draws = dict(session.execute(select(SampleDraw.frame_id, func.count())
                                 .group_by(SampleDraw.frame_id)).all())
    cases = dict(session.execute(select(SampleDraw.frame_id, func.count(SampleCase.id))
                                 .join(SampleCase, SampleCase.draw_id == SampleDraw.id)
                                 .group_by(SampleDraw.frame_id)).all())
    return [{"frame": f.name, "id": f.id, "contacts": int(contacts.get(f.id, 0)),
             "imports": int(imports.get(f.id, 0)), "draws": int(draws.get(f.id, 0)),
             "cases_drawn": int(cases.get(f.id, 0)), "synthetic": f.synthetic,
             "created_at": f.created_at.isoformat(timespec="seconds")}
            for f in session.scalars(select(Frame).order_by(Frame.id))]


def delete_frame(session: Session, name: str) -> dict:
    """Delete the frame ``name`` with its contacts and import records.

    Refused when a draw was made from it (its cases' phone numbers live in the frame,
    and the draw's audit needs the frame to be verified); a frame without draws goes.
    """
    frames = session.scalars(select(Frame).where(Frame.name == name)).all()
    if not frames:
        known = ", ".join(repr(n) for n in session.scalars(select(Frame.name).order_by(Frame.id)))
        raise MinpingError(f"no frame named {name!r}" + (f" (frames: {known})" if known else ""))
    if len(frames) > 1:
        raise MinpingError(f"{len(frames)} campaigns have a frame named {name!r}; "
                           "delete it from the campaign's own database")
    frame = frames[0]
    row = next(r for r in list_frames(session) if r["id"] == frame.id)
    if row["draws"]:
        raise MinpingError(
            f"frame {name!r}: {row['cases_drawn']:,} cases were drawn from it "
            f"({row['draws']} draw(s)); a frame with draws cannot be deleted")
    from sqlalchemy import delete

    session.execute(delete(FrameContact).where(FrameContact.frame_id == frame.id))
    session.execute(delete(FrameImport).where(FrameImport.frame_id == frame.id))
    session.execute(delete(Frame).where(Frame.id == frame.id))
    return {"frame": name, "deleted": True, "contacts": row["contacts"], "imports": row["imports"]}
