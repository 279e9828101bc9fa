"""Readers for the plain input files of the scores, with all-or-nothing validation.

Every reader checks the whole file and raises one ``InputError`` listing every
problem (file, row, field, value) or returns the complete, validated content;
nothing is half-read.  Rows are numbered as a spreadsheet shows them: the
header is row 1.

Files are CSV (UTF-8 with or without a byte-order mark, or GB18030) or XLSX
(first sheet).  Column names are matched ignoring case and surrounding spaces.

========================  =============================================
file                      columns
========================  =============================================
ratings (phone survey)    ``respondent_id, stratum, unit, rating``
population                ``stratum, N``
in-person ballots         ``venue, unit, rating``
online votes              ``unit, option, count``
inspection records        ``unit, date, kind, points`` (points deducted)
========================  =============================================
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minping.errors import InputError, Problem

# The CSV/XLSX reader of every input file; it moves to the adapter layer with the frame import.
from minping.tables import cell_text as _cell
from minping.tables import open_table
from scoring.scale import RatingScale

__all__ = [
    "Ballots",
    "Inspections",
    "Ratings",
    "Table",
    "Votes",
    "load_phone",
    "read_ballots",
    "read_inspections",
    "read_population",
    "read_ratings",
    "read_table",
    "read_votes",
]


@dataclass(frozen=True)
class Table:
    """A file's data rows as text, each with its spreadsheet row number."""

    file: str
    columns: tuple[str, ...]
    rows: tuple[tuple[int, dict[str, str]], ...]


@dataclass(frozen=True)
class Ratings:
    """Phone ratings, one row per (respondent, unit); ``row`` is the file row."""

    file: str
    respondent_id: tuple[str, ...]
    stratum: tuple[str, ...]
    unit: tuple[str, ...]
    rating: tuple[str, ...]
    row: tuple[int, ...]


@dataclass(frozen=True)
class Ballots:
    """In-person assessment ballots: one rating of one unit at one venue per row."""

    file: str
    venue: tuple[str, ...]
    unit: tuple[str, ...]
    rating: tuple[str, ...]


@dataclass(frozen=True)
class Votes:
    """Online vote counts per unit and option (an option is a scale key)."""

    file: str
    unit: tuple[str, ...]
    option: tuple[str, ...]
    count: np.ndarray


@dataclass(frozen=True)
class Inspections:
    """Daily inspection records: points deducted from a unit on a date."""

    file: str
    unit: tuple[str, ...]
    date: tuple[dt.date, ...]
    kind: tuple[str, ...]
    points: np.ndarray


def read_table(path: str | Path, required: Sequence[str]) -> Table:
    """Read a CSV or XLSX file and check that the required columns are there.

    The file is read by :func:`minping.tables.open_table` (the readers of
    frames and of the CLI's per-stratum files use it too).  Raises
    ``InputError`` for an unreadable file, an empty file, or missing columns
    (row 1, naming each missing column).
    """
    name = str(path)
    records = open_table(path).rows
    first = next(records, None)
    if first is None or first[0] != 1 or not any(first[1]):
        raise InputError([Problem(name, 1, None, None, "the file has no header row")])
    header = first[1]
    lookup = {c.lower(): i for i, c in enumerate(header) if c}
    missing = [c for c in required if c.lower() not in lookup]
    if missing:
        raise InputError([Problem(name, 1, c, None, "missing column") for c in missing])
    at = [(c, lookup[c.lower()]) for c in required]
    rows = []
    for number, record in records:
        if not any(record):
            continue
        n = len(record)
        rows.append((number, {c: (record[j] if j < n else "") for c, j in at}))
    return Table(file=name, columns=tuple(header), rows=tuple(rows))


def _required_text(problems: list[Problem], file: str, row: int, record: dict[str, str],
                   field: str) -> str:
    value = record[field]
    if not value:
        problems.append(Problem(file, row, field, None, "is empty"))
    return value


def _check_unit(problems: list[Problem], file: str, row: int, unit: str,
                units: frozenset[str] | None) -> None:
    if unit and units is not None and unit not in units:
        problems.append(Problem(file, row, "unit", unit, "unknown unit"))


def _check_rating(problems: list[Problem], file: str, row: int, field: str, value: str,
                  scale: RatingScale) -> str:
    key = scale.normalise_key(value)
    if value and not scale.is_key(key):
        problems.append(Problem(file, row, field, value,
                                f"not on the rating scale (keys: {', '.join(scale.keys)})"))
    return key


def read_ratings(path: str | Path, *, scale: RatingScale | None = None,
                 units: Iterable[str] | None = None) -> Ratings:
    """Read and check the phone ratings file (``respondent_id, stratum, unit, rating``).

    Checks: missing columns, empty fields, ratings not on the scale, unknown
    units (when ``units`` is given), a respondent in two strata, and the same
    (respondent, unit) twice.
    """
    scale = scale or RatingScale.default()
    known = None if units is None else frozenset(str(u) for u in units)
    table = read_table(path, ("respondent_id", "stratum", "unit", "rating"))
    problems: list[Problem] = []
    out: dict[str, list] = {"respondent_id": [], "stratum": [], "unit": [], "rating": [], "row": []}
    stratum_of: dict[str, tuple[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    for row, rec in table.rows:
        rid = _required_text(problems, table.file, row, rec, "respondent_id")
        stratum = _required_text(problems, table.file, row, rec, "stratum")
        unit = _required_text(problems, table.file, row, rec, "unit")
        # an empty rating is accepted when the scale has an empty key (unanswered)
        raw = rec["rating"] if scale.is_key("") else _required_text(problems, table.file, row, rec, "rating")
        _check_unit(problems, table.file, row, unit, known)
        key = _check_rating(problems, table.file, row, "rating", raw, scale)
        if rid and stratum:
            first = stratum_of.setdefault(rid, (stratum, row))
            if first[0] != stratum:
                problems.append(Problem(
                    table.file, row, "stratum", stratum,
                    f"respondent {rid!r} is in stratum {first[0]!r} on row {first[1]}"))
        if rid and unit:
            earlier = seen.setdefault((rid, unit), row)
            if earlier != row:
                problems.append(Problem(
                    table.file, row, "unit", unit,
                    f"respondent {rid!r} already rated this unit on row {earlier}"))
        out["respondent_id"].append(rid)
        out["stratum"].append(stratum)
        out["unit"].append(unit)
        out["rating"].append(key)
        out["row"].append(row)
    if not table.rows:
        problems.append(Problem(table.file, None, None, None, "the file has no ratings"))
    if problems:
        raise InputError(problems)
    return Ratings(file=table.file, **{k: tuple(v) for k, v in out.items()})


def _number(problems: list[Problem], file: str, row: int, field: str, value: str) -> float | None:
    if not value:
        problems.append(Problem(file, row, field, None, "is empty"))
        return None
    try:
        number = float(value)
    except ValueError:
        problems.append(Problem(file, row, field, value, "is not a number"))
        return None
    if not math.isfinite(number):
        problems.append(Problem(file, row, field, value, "is not a finite number"))
        return None
    return number


def read_population(path: str | Path) -> dict[str, float]:
    """Read the population file (``stratum, N``): N_h of every stratum.

    Checks: missing columns, empty or repeated strata, N that is not a whole
    number of at least 1.
    """
    table = read_table(path, ("stratum", "N"))
    problems: list[Problem] = []
    population: dict[str, float] = {}
    first_row: dict[str, int] = {}
    for row, rec in table.rows:
        stratum = _required_text(problems, table.file, row, rec, "stratum")
        n = _number(problems, table.file, row, "N", rec["N"])
        if n is not None and (n < 1 or not float(n).is_integer()):
            problems.append(Problem(table.file, row, "N", rec["N"], "must be a whole number of at least 1"))
            n = None
        if stratum:
            if stratum in first_row:
                problems.append(Problem(table.file, row, "stratum", stratum,
                                        f"repeats the stratum of row {first_row[stratum]}"))
            else:
                first_row[stratum] = row
                if n is not None:
                    population[stratum] = n
    if not table.rows:
        problems.append(Problem(table.file, None, None, None, "the file has no strata"))
    if problems:
        raise InputError(problems)
    return population


def load_phone(ratings_path: str | Path, population_path: str | Path, *,
               scale: RatingScale | None = None,
               units: Iterable[str] | None = None) -> tuple[Ratings, dict[str, float]]:
    """Read the ratings and population files and check them against each other.

    Besides each file's own checks: every stratum of the ratings must be in
    the population file, N_h must be at least n_h (the distinct respondents
    of stratum h in the ratings), and a stratum needs two respondents unless
    it is a census (n_h = N_h) — otherwise its variance cannot be estimated.
    All problems of both files are reported together.
    """
    problems: list[Problem] = []
    ratings = population = None
    try:
        ratings = read_ratings(ratings_path, scale=scale, units=units)
    except InputError as exc:
        problems.extend(exc.problems)
    try:
        population = read_population(population_path)
    except InputError as exc:
        problems.extend(exc.problems)
    if ratings is not None and population is not None:
        problems.extend(_cross_check(ratings, population, str(population_path)))
    if problems:
        raise InputError(problems)
    return ratings, population


def _cross_check(ratings: Ratings, population: dict[str, float], pop_file: str) -> list[Problem]:
    problems: list[Problem] = []
    members: dict[str, set[str]] = {}
    first_row: dict[str, int] = {}
    for rid, stratum, row in zip(ratings.respondent_id, ratings.stratum, ratings.row, strict=True):
        members.setdefault(stratum, set()).add(rid)
        first_row.setdefault(stratum, row)
    pop_rows = _population_rows(pop_file)
    for stratum, ids in members.items():
        n_h = len(ids)
        if stratum not in population:
            problems.append(Problem(ratings.file, first_row[stratum], "stratum", stratum,
                                    f"stratum is not in the population file {pop_file}"))
            continue
        big_n = population[stratum]
        if big_n < n_h:
            problems.append(Problem(pop_file, pop_rows.get(stratum), "N", _cell(big_n),
                                    f"smaller than the {n_h} respondents of stratum {stratum!r} "
                                    f"in {ratings.file}"))
        elif n_h == 1 and big_n > 1:
            problems.append(Problem(ratings.file, first_row[stratum], "stratum", stratum,
                                    "the stratum has a single respondent, so its variance "
                                    "cannot be estimated (at least 2 are needed)"))
    return problems


def _population_rows(path: str) -> dict[str, int]:
    table = read_table(path, ("stratum", "N"))
    return {rec["stratum"]: row for row, rec in reversed(table.rows)}


def read_ballots(path: str | Path, *, scale: RatingScale | None = None,
                 units: Iterable[str] | None = None) -> Ballots:
    """Read in-person assessment ballots (``venue, unit, rating``)."""
    scale = scale or RatingScale.default()
    known = None if units is None else frozenset(str(u) for u in units)
    table = read_table(path, ("venue", "unit", "rating"))
    problems: list[Problem] = []
    venue, unit, rating = [], [], []
    for row, rec in table.rows:
        venue.append(_required_text(problems, table.file, row, rec, "venue"))
        u = _required_text(problems, table.file, row, rec, "unit")
        _check_unit(problems, table.file, row, u, known)
        unit.append(u)
        raw = _required_text(problems, table.file, row, rec, "rating")
        rating.append(_check_rating(problems, table.file, row, "rating", raw, scale))
    if problems:
        raise InputError(problems)
    return Ballots(file=table.file, venue=tuple(venue), unit=tuple(unit), rating=tuple(rating))


def read_votes(path: str | Path, *, scale: RatingScale | None = None,
               units: Iterable[str] | None = None) -> Votes:
    """Read online vote counts (``unit, option, count``); options are scale keys."""
    scale = scale or RatingScale.default()
    known = None if units is None else frozenset(str(u) for u in units)
    table = read_table(path, ("unit", "option", "count"))
    problems: list[Problem] = []
    unit, option, count = [], [], []
    seen: dict[tuple[str, str], int] = {}
    for row, rec in table.rows:
        u = _required_text(problems, table.file, row, rec, "unit")
        _check_unit(problems, table.file, row, u, known)
        raw = _required_text(problems, table.file, row, rec, "option")
        key = _check_rating(problems, table.file, row, "option", raw, scale)
        c = _number(problems, table.file, row, "count", rec["count"])
        if c is not None and (c < 0 or not c.is_integer()):
            problems.append(Problem(table.file, row, "count", rec["count"], "must be a whole number of 0 or more"))
            c = None
        if u and raw:
            earlier = seen.setdefault((u, key), row)
            if earlier != row:
                problems.append(Problem(table.file, row, "option", raw,
                                        f"unit {u!r} already has this option on row {earlier}"))
        unit.append(u)
        option.append(key)
        count.append(0.0 if c is None else c)
    if problems:
        raise InputError(problems)
    return Votes(file=table.file, unit=tuple(unit), option=tuple(option), count=np.asarray(count))


def read_inspections(path: str | Path, *, units: Iterable[str] | None = None) -> Inspections:
    """Read inspection records (``unit, date, kind, points``); points are deducted (≥ 0)."""
    known = None if units is None else frozenset(str(u) for u in units)
    table = read_table(path, ("unit", "date", "kind", "points"))
    problems: list[Problem] = []
    unit, date, kind, points = [], [], [], []
    for row, rec in table.rows:
        u = _required_text(problems, table.file, row, rec, "unit")
        _check_unit(problems, table.file, row, u, known)
        raw_date = _required_text(problems, table.file, row, rec, "date")
        day = dt.date.min
        if raw_date:
            try:
                day = dt.date.fromisoformat(raw_date[:10])
            except ValueError:
                problems.append(Problem(table.file, row, "date", raw_date, "is not a date (YYYY-MM-DD)"))
        k = _required_text(problems, table.file, row, rec, "kind")
        p = _number(problems, table.file, row, "points", rec["points"])
        if p is not None and p < 0:
            problems.append(Problem(table.file, row, "points", rec["points"],
                                    "points deducted must be 0 or more"))
            p = None
        unit.append(u)
        date.append(day)
        kind.append(k)
        points.append(0.0 if p is None else p)
    if problems:
        raise InputError(problems)
    return Inspections(file=table.file, unit=tuple(unit), date=tuple(date), kind=tuple(kind),
                       points=np.asarray(points))
