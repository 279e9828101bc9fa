"""Import the other inputs of the composite score into the database.

``import_input(db, cfg, kind, path)`` reads one file of in-person assessment
ballots (``venue, unit, rating``), online vote counts (``unit, option,
count``) or inspection records (``unit, date, kind, points``) with the
readers of ``minping.input_files`` and stores it in one transaction:

* all or nothing: any problem stores nothing, and the ``InputError`` lists
  every bad row (file, row, field, value, why);
* the same file content imported again is a no-op (its SHA-256 is kept in
  ``InputImport``);
* units are the configuration's unit ids, and a unit must belong to a track
  whose composite uses the part (ballots: tracks weighing ``assessment``;
  votes: ``online``); inspection records may name any unit;
* an inspection ``kind`` is a configured deduction kind (its id, Chinese or
  English name) and is stored as the id;
* a unit and option already holding votes from an earlier file, or a unit
  already holding ballots from the same venue in an earlier file, is refused
  (it would count twice).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from minping.campaign import codes, sync_campaign
from minping.errors import InputError, MinpingError, Problem
from minping.input_files import read_ballots, read_inspections, read_table, read_votes
from minping.models import AssessmentBallot, InputImport, InspectionRecord, OnlineVote, Unit
from minping.resources import SAMPLE_INPUTS  # the demo's synthetic inputs
from scoring.scale import RatingScale

__all__ = ["KINDS", "SAMPLE_INPUTS", "InputImportResult", "import_input", "import_samples",
           "sample_files"]

KINDS = ("assessment", "online", "inspection")
_PART = {"assessment": "assessment", "online": "online"}
_COLUMNS = {"assessment": ("venue", "unit", "rating"), "online": ("unit", "option", "count"),
            "inspection": ("unit", "date", "kind", "points")}


@dataclass(frozen=True)
class InputImportResult:
    """What an import did; ``already`` is True when the same content was imported before."""

    kind: str
    file: str
    content_hash: str
    rows: int
    import_id: int
    already: bool

    def as_dict(self) -> dict:
        return {"kind": self.kind, "file": self.file, "content_hash": self.content_hash,
                "rows": self.rows, "import_id": self.import_id, "already_imported": self.already}


def _unit_problems(cfg, kind: str, file: str, rows) -> list[Problem]:
    part = _PART.get(kind)
    problems = []
    for row, rec in rows:
        code = rec["unit"]
        if not code:
            continue  # the reader reports empty fields
        try:
            unit = cfg.unit(code)
        except KeyError:
            problems.append(Problem(file, row, "unit", code, "unknown unit"))
            continue
        if part is not None and not cfg.track(unit.track).weights.get(part, 0.0):
            problems.append(Problem(file, row, "unit", code,
                                    f"unit is in track {unit.track!r}, whose composite does not "
                                    f"use the {part} part"))
    return problems


def _deduction_kinds(cfg) -> dict[str, str]:
    out = {}
    for k in cfg.deductions:
        for name in (k.id, k.name, k.name_en):
            out[name.strip().lower()] = k.id
    return out


def import_input(db, cfg, kind: str, path: str | Path, *,
                 imported_by: str | None = None) -> InputImportResult:
    """Import one file of ``kind`` (see the module notes); raises ``InputError`` on any problem."""
    if kind not in KINDS:
        raise MinpingError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    path = Path(path)
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError([Problem(name, None, None, None,
                                  f"cannot read the file: {exc.strerror}")]) from exc
    digest = hashlib.sha256(data).hexdigest()
    # looked up without committing: a refused file leaves the database as it was,
    # even on a database the campaign has not been written to yet
    with db.session() as session:
        campaign = sync_campaign(session, cfg)
        earlier = session.scalar(select(InputImport).where(
            InputImport.campaign_id == campaign.id, InputImport.kind == kind,
            InputImport.content_hash == digest))
        if earlier is not None:
            return InputImportResult(kind, name, digest, earlier.rows, earlier.id, True)

    content, table, kinds, problems = _read_checked(cfg, kind, path)
    file = table.file

    try:
        with db.transaction() as session:
            campaign = sync_campaign(session, cfg)
            units = codes(session, Unit, campaign.id)
            if content is not None:
                problems.extend(_already_counted(session, campaign.id, kind, file, table.rows,
                                                 content, units))
            if problems:
                problems.sort(key=lambda p: (p.row or 0, p.field or ""))
                raise InputError(problems, f"{file}: {len(problems)} problem(s) found; nothing was stored")
            record = InputImport(campaign_id=campaign.id, kind=kind, file_name=name[-500:],
                                 content_hash=digest, rows=len(table.rows), imported_by=imported_by)
            session.add(record)
            session.flush()
            source_rows = [row for row, _ in table.rows]
            if kind == "assessment":
                session.connection().execute(insert(AssessmentBallot.__table__), [
                    {"import_id": record.id, "venue": v[:100], "ballot": None, "unit_id": units[u],
                     "rating": r, "source_row": sr}
                    for v, u, r, sr in zip(content.venue, content.unit, content.rating, source_rows,
                                           strict=True)])
            elif kind == "online":
                session.connection().execute(insert(OnlineVote.__table__), [
                    {"import_id": record.id, "unit_id": units[u], "option": o, "count": int(c),
                     "source_row": sr}
                    for u, o, c, sr in zip(content.unit, content.option, content.count.tolist(),
                                           source_rows, strict=True)])
            else:
                session.connection().execute(insert(InspectionRecord.__table__), [
                    {"import_id": record.id, "unit_id": units[u], "on": d,
                     "kind": kinds[k.strip().lower()], "points": float(p), "note": None,
                     "source_row": sr}
                    for u, d, k, p, sr in zip(content.unit, content.date, content.kind,
                                              content.points.tolist(), source_rows, strict=True)])
            return InputImportResult(kind, name, digest, len(table.rows), record.id, False)
    except IntegrityError:  # the same content imported at the same moment elsewhere
        with db.session() as session:
            again = session.scalar(select(InputImport).where(
                InputImport.campaign_id == campaign.id, InputImport.kind == kind,
                InputImport.content_hash == digest))
        if again is None:
            raise
        return InputImportResult(kind, name, digest, again.rows, again.id, True)


def _read_checked(cfg, kind: str, path: Path):
    """The file's content (``None`` when the reader refused it), its table, the deduction
    kinds, and every problem of the file against the configuration."""
    scale = RatingScale.from_options(cfg.scale.options)
    problems: list[Problem] = []
    content = None
    try:
        if kind == "assessment":
            content = read_ballots(path, scale=scale)
        elif kind == "online":
            content = read_votes(path, scale=scale)
        else:
            content = read_inspections(path)
    except InputError as exc:
        problems.extend(exc.problems)
    table = read_table(path, _COLUMNS[kind])  # header problems were reported above
    file = table.file
    problems.extend(_unit_problems(cfg, kind, file, table.rows))
    kinds = _deduction_kinds(cfg)
    if kind == "inspection":
        for row, rec in table.rows:
            if rec["kind"] and rec["kind"].strip().lower() not in kinds:
                problems.append(Problem(file, row, "kind", rec["kind"],
                                        "not a configured deduction kind (known: "
                                        + ", ".join(k.id for k in cfg.deductions) + ")"))
    if not table.rows:
        problems.append(Problem(file, None, None, None, "the file has no data rows"))

    return content, table, kinds, problems


def _already_counted(session, campaign_id: int, kind: str, file: str, rows, content,
                     units: dict[str, int]) -> list[Problem]:
    """Rows that would count a second time what an earlier file holds."""
    problems = []
    if kind == "online":
        held = {}
        for unit_id, option, fname in session.execute(
            select(OnlineVote.unit_id, OnlineVote.option, InputImport.file_name)
            .join(InputImport, InputImport.id == OnlineVote.import_id)
            .where(InputImport.campaign_id == campaign_id)):
            held[(unit_id, option)] = fname
        for (row, rec), u, o in zip(rows, content.unit, content.option, strict=True):
            prior = held.get((units.get(u), o))
            if prior is not None:
                problems.append(Problem(file, row, "option", rec["option"],
                                        f"unit {u!r} already has votes for this option from {prior}"))
    elif kind == "assessment":
        held = {}
        for unit_id, venue, fname in session.execute(
            select(AssessmentBallot.unit_id, AssessmentBallot.venue, InputImport.file_name)
            .join(InputImport, InputImport.id == AssessmentBallot.import_id)
            .where(InputImport.campaign_id == campaign_id).distinct()):
            held[(unit_id, venue)] = fname
        for (row, rec), v, u in zip(rows, content.venue, content.unit, strict=True):
            prior = held.get((units.get(u), v))
            if prior is not None:
                problems.append(Problem(file, row, "venue", rec["venue"],
                                        f"unit {u!r} already has ballots from this venue in {prior}"))
    return problems


def sample_files(folder: str | Path = SAMPLE_INPUTS) -> list[tuple[str, Path]]:
    """The bundled synthetic inputs (``synthetic-*.csv``) with their kinds."""
    folder = Path(folder)
    return ([("assessment", p) for p in sorted(folder.glob("synthetic-assessment-*.csv"))]
             + [("online", folder / "synthetic-online-votes.csv"),
                ("inspection", folder / "synthetic-inspections.csv")])


def import_samples(db, cfg, folder: str | Path = SAMPLE_INPUTS) -> list[InputImportResult]:
    """Import the bundled synthetic inputs: ballots, votes, inspections (a no-op the second time)."""
    return [import_input(db, cfg, kind, path, imported_by="sample")
            for kind, path in sample_files(folder)]
