"""The phone survey and the composites' other parts read with plain SQL.

``minping.scores`` (the report, ``--json``, raking, replicates) runs these
statements through its SQLAlchemy session; the plain table of ``minping score``
runs the very same statements on a bare DBAPI connection (``sqlite3`` or
``psycopg``, see ``connect``), so that the command imports neither the ORM nor
the models: the rows, and therefore the scores, are the same either way.
Nothing here is imported at start-up beyond the standard library and
``minping.errors``; numpy and the scoring core are imported when scores are
computed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minping.errors import MinpingError

__all__ = [
    "RESPONDENT_CODES",
    "UNANSWERED",
    "PhoneData",
    "Respondent",
    "check_respondents",
    "composite_tracks",
    "connect",
    "eligible_strata",
    "load_phone_data",
    "other_part_rows",
    "other_parts_from_rows",
    "rating_scale",
    "score_phone_data",
    "session_reader",
]

#: Final dispositions whose cases are respondents (AAPOR I and P).
RESPONDENT_CODES = ("1.1", "1.2")
#: The key an unanswered (or never asked) unit gets in the long table.
UNANSWERED = ""
_RESPONDENT_IN = "('1.1', '1.2')"

#: ``reader(sql, params) -> list of tuples``; ``sql`` names its parameters ``:name``.
Reader = Callable[[str, dict], list]


def session_reader(session) -> Reader:
    """A reader on a SQLAlchemy session (the ORM path of ``minping.scores``)."""
    from sqlalchemy import text

    return lambda sql, params: [tuple(r) for r in session.execute(text(sql), params)]


def connect(database_url: str) -> tuple[Reader, Callable[[], None]] | None:
    """A reader on a bare DBAPI connection to ``database_url`` and its ``close``, or
    ``None`` when the URL is not a plain SQLite file or PostgreSQL database, or the
    database cannot be opened (the caller then takes the SQLAlchemy path, which
    explains what is wrong)."""
    scheme, _, rest = database_url.partition("://")
    if scheme in ("sqlite", "sqlite+pysqlite"):
        return _connect_sqlite(rest[1:] if rest.startswith("/") else "")
    if scheme in ("postgresql", "postgresql+psycopg", "postgres"):
        return _connect_postgresql("postgresql://" + rest)
    return None


def _connect_sqlite(path: str) -> tuple[Reader, Callable[[], None]] | None:
    import sqlite3
    from urllib.parse import quote

    if not path or path.startswith(":memory:") or "?" in path or not os.path.isfile(path):
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
    except sqlite3.Error:
        return None

    def read(sql: str, params: dict) -> list:
        return conn.execute(sql, params).fetchall()

    return read, conn.close


def _connect_postgresql(conninfo: str) -> tuple[Reader, Callable[[], None]] | None:
    import re

    try:
        import psycopg

        conn = psycopg.connect(conninfo, autocommit=True)
    except Exception:  # noqa: BLE001 - any failure: the SQLAlchemy path explains it
        return None

    def read(sql: str, params: dict) -> list:
        with conn.cursor() as cur:
            # :name -> %(name)s (a PostgreSQL cast, ::type, is left alone)
            cur.execute(re.sub(r"(?<!:):(\w+)", r"%(\1)s", sql), params)
            return cur.fetchall()

    return read, conn.close


def rating_scale(cfg):
    """The configured scale, plus the empty key for "not answered" (outside the domain)."""
    from scoring.scale import RatingScale

    base = RatingScale.from_options(cfg.scale.options)
    return RatingScale(points={**base.points, UNANSWERED: None}, satisfied=base.satisfied,
                       labels={**base.labels, UNANSWERED: ""})


@dataclass(frozen=True)
class Respondent:
    case_id: int
    pseudo_id: str
    stratum: str
    group: str
    town: str
    disposition: str


@dataclass(frozen=True)
class PhoneData:
    """The phone survey as the core needs it: respondents, long ratings table, N_h.

    ``rating`` holds scale keys, ``""`` for a unit not answered; ``assigned``
    is ``True`` for the rows of units assigned to the case (``CaseUnit``) and
    ``False`` for an answer to a unit that was not assigned (not scored).
    """

    campaign_id: int
    draw_id: int
    stratification: str
    respondents: tuple[Respondent, ...]
    respondent_id: tuple[str, ...]
    stratum: tuple[str, ...]
    unit: tuple[str, ...]
    rating: tuple[str, ...]
    population: dict[str, float]
    frame_id: int
    assigned: tuple[bool, ...] = ()

    @property
    def n_h(self) -> dict[str, int]:
        return dict(Counter(r.stratum for r in self.respondents))

    @property
    def n_hu(self) -> dict[tuple[str, str], int]:
        """Respondents of each stratum assigned each unit: {(stratum, unit): n_hu}."""
        return dict(Counter((s, u) for s, u, a in zip(self.stratum, self.unit, self.assigned,
                                                      strict=True) if a))

    def weight(self, stratum: str) -> float:
        """The respondent weight N_h/n_h of ``stratum`` (before the per-unit subsampling)."""
        return self.population[stratum] / self.n_h[stratum]

    def unit_weight(self, stratum: str, unit: str) -> float:
        """The weight N_h/n_hu of a respondent of ``stratum`` assigned ``unit``."""
        return self.population[stratum] / self.n_hu[(stratum, unit)]


def campaign_id(read: Reader, cfg) -> int:
    rows = read("SELECT id FROM campaign WHERE code = :code", {"code": cfg.campaign.id})
    if not rows:
        raise MinpingError(f"campaign {cfg.campaign.id!r} is not in the database "
                           "(run the demo or load the campaign first)")
    return rows[0][0]


def latest_draw(read: Reader, campaign: int, draw_id: int | None) -> tuple[int, str, int]:
    """(id, stratification, frame id) of the campaign's latest draw (practice never counts)."""
    sql = ("SELECT id, stratification, frame_id FROM sample_draw "
           "WHERE campaign_id = :campaign AND NOT practice")
    params: dict[str, Any] = {"campaign": campaign}
    if draw_id is not None:
        sql += " AND id = :draw"
        params["draw"] = draw_id
    rows = read(sql + " ORDER BY id DESC LIMIT 1", params)
    if not rows:
        raise MinpingError("no sample has been drawn yet" if draw_id is None
                           else f"there is no draw {draw_id} in this campaign")
    return rows[0]


def codes_by_id(read: Reader, table: str, campaign: int) -> dict[int, str]:
    """{database id: configuration id} of the campaign's respondent groups, towns or units."""
    assert table in ("respondent_group", "town", "unit")
    return dict(read(f"SELECT id, code FROM {table} WHERE campaign_id = :campaign",
                     {"campaign": campaign}))


def load_phone_data(read: Reader, cfg, *, draw_id: int | None = None) -> PhoneData:
    """Respondents (final 1.1/1.2) of the draw, their ratings and the strata's N_h."""
    campaign = campaign_id(read, cfg)
    draw, stratification, frame_id = latest_draw(read, campaign, draw_id)
    at = {"draw": draw}
    strata = {sid: (code, n) for sid, code, n in read(
        "SELECT id, code, population FROM stratum WHERE draw_id = :draw", at)}
    groups = codes_by_id(read, "respondent_group", campaign)
    towns = codes_by_id(read, "town", campaign)
    rows = read(
        "SELECT sample_case.id, sample_case.pseudo_id, sample_case.stratum_id, "
        "frame_contact.group_id, frame_contact.town_id, sample_case.final_disposition "
        "FROM sample_case JOIN frame_contact ON frame_contact.id = sample_case.contact_id "
        f"WHERE sample_case.draw_id = :draw AND sample_case.final_disposition IN {_RESPONDENT_IN} "
        "ORDER BY sample_case.id", at)
    respondents = tuple(
        Respondent(cid, pid, strata[sid][0], groups[gid], towns.get(tid, "") if tid else "", disp)
        for cid, pid, sid, gid, tid, disp in rows
    )
    by_case = {r.case_id: r for r in respondents}
    unit_code = codes_by_id(read, "unit", campaign)
    cells: dict[tuple[int, int], str] = {}
    assigned: set[tuple[int, int]] = set()
    respondent_cases = ("JOIN sample_case ON sample_case.id = {0}.case_id "
                        "WHERE sample_case.draw_id = :draw "
                        f"AND sample_case.final_disposition IN {_RESPONDENT_IN}")
    for case_id, unit_id in read("SELECT case_unit.case_id, case_unit.unit_id FROM case_unit "
                                 + respondent_cases.format("case_unit"), at):
        cells[(case_id, unit_id)] = UNANSWERED
        assigned.add((case_id, unit_id))
    for case_id, unit_id, rating in read(
            "SELECT answer.case_id, answer.unit_id, answer.rating FROM answer "
            + respondent_cases.format("answer"), at):
        cells[(case_id, unit_id)] = UNANSWERED if rating is None else str(rating).strip()
    order = sorted(cells, key=lambda k: (k[0], unit_code[k[1]]))
    return PhoneData(
        campaign_id=campaign,
        draw_id=draw,
        stratification=stratification,
        respondents=respondents,
        respondent_id=tuple(by_case[c].pseudo_id for c, _ in order),
        stratum=tuple(by_case[c].stratum for c, _ in order),
        unit=tuple(unit_code[u] for _, u in order),
        rating=tuple(cells[k] for k in order),
        population={code: float(n) for code, n in strata.values()},
        frame_id=frame_id,
        assigned=tuple(k in assigned for k in order),
    )


def check_respondents(data: PhoneData) -> None:
    """Refuse a draw without respondents, or with a stratum of a single respondent."""
    if not data.respondents:
        raise MinpingError(f"draw {data.draw_id} has no respondents yet "
                           f"(cases with final disposition {' or '.join(RESPONDENT_CODES)})")
    for stratum, n in sorted(data.n_h.items()):
        if n == 1 and data.population[stratum] > 1:
            raise MinpingError(
                f"stratum {stratum!r} has a single respondent (N_h = {data.population[stratum]:g}), "
                "so its variance cannot be estimated; score when it has at least 2")


def eligible_strata(read: Reader, cfg, data: PhoneData) -> dict[str, list[str]]:
    """The draw's strata (N_h > 0) whose group may rate each unit."""
    groups = codes_by_id(read, "respondent_group", data.campaign_id)
    out: dict[str, list[str]] = {}
    for code, group_id, n in read("SELECT code, group_id, population FROM stratum "
                                  "WHERE draw_id = :draw ORDER BY code", {"draw": data.draw_id}):
        if n and group_id in groups:
            for unit in cfg.units_for_group(groups[group_id]):
                out.setdefault(unit.id, []).append(code)
    return out


def other_part_rows(read: Reader, campaign: int) -> tuple[list, list, list]:
    """Assessment ballots tallied by (unit, rating), online votes (unit, option, count)
    and inspection deductions (unit, points) of the campaign's imports."""
    at = {"campaign": campaign}
    imports = ("JOIN unit ON unit.id = {0}.unit_id "
               "JOIN input_import ON input_import.id = {0}.import_id "
               "WHERE input_import.campaign_id = :campaign")
    ballots = read("SELECT unit.code, assessment_ballot.rating, count(*) FROM assessment_ballot "
                   + imports.format("assessment_ballot")
                   + " GROUP BY unit.code, assessment_ballot.rating", at)
    votes = read("SELECT unit.code, online_vote.option, online_vote.count FROM online_vote "
                 + imports.format("online_vote"), at)
    deductions = read("SELECT unit.code, inspection_record.points FROM inspection_record "
                      + imports.format("inspection_record"), at)
    return ballots, votes, deductions


def other_parts_from_rows(cfg, ballots, vote_rows, deductions) -> tuple[dict, dict, dict[str, float]]:
    """The assessment and online part scores and the deductions from ``other_part_rows``."""
    from scoring.composite import assessment_scores, deduction_totals, online_scores
    from scoring.scale import RatingScale

    scale = RatingScale.from_options(cfg.scale.options)
    votes: dict[tuple[str, str], float] = {}
    for code, option, count in vote_rows:
        votes[(code, option)] = votes.get((code, option), 0.0) + count
    assessment = assessment_scores([u for u, _, _ in ballots], [r for _, r, _ in ballots],
                                   scale=scale, count=[n for _, _, n in ballots])
    online = online_scores([u for u, _ in votes], [o for _, o in votes], list(votes.values()),
                           scale=scale)
    return assessment, online, deduction_totals([u for u, _ in deductions], [p for _, p in deductions])


def composite_tracks(cfg, phone, assessment: dict, online: dict, deductions: dict[str, float], *,
                     threshold: float, correction: str, level: float, min_raters: int,
                     ranks: str) -> tuple:
    """Every track's composites, flags and rank intervals (``minping.report.TrackResult``)."""
    from minping.report import TrackResult
    from scoring.composite import composite_scores, phone_parts

    parts = {"phone": phone_parts(phone), "assessment": assessment, "online": online, "onsite": {}}
    tracks = []
    for track in cfg.tracks:
        scores = composite_scores(
            track.id, [u.id for u in track.units], dict(track.weights), parts, deductions,
            covariances={"phone": phone.cov}, threshold=threshold,
            correction=correction, level=level, min_raters=min_raters,  # type: ignore[arg-type]
            ranks=ranks)  # type: ignore[arg-type]
        tracks.append(TrackResult(
            id=track.id, name=track.name, name_en=track.name_en, weights=dict(track.weights),
            units=tuple(track.units),
            scores=scores))
    return tuple(tracks)


def score_phone_data(data: PhoneData, cfg, eligible: dict[str, list[str]], *, level: float,
                     ci_method: str, min_raters: int | None, margins=(),
                     variance: str = "linearised", replicates: int = 500,
                     seed: int | None = None):
    """The per-unit phone scores (``scoring.units.UnitScores``) of ``data``."""
    import numpy as np

    from scoring.units import score_units

    rng = np.random.default_rng(seed) if variance == "bootstrap" else None
    try:
        return score_units(
            data.respondent_id, data.stratum, data.unit, data.rating, data.population,
            scale=rating_scale(cfg), level=level, ci_method=ci_method,  # type: ignore[arg-type]
            min_raters=cfg.campaign.min_raters if min_raters is None else min_raters,
            margins=margins, variance=variance, replicates=replicates, rng=rng,  # type: ignore[arg-type]
            assigned=np.asarray(data.assigned, dtype=bool), eligible_strata=eligible)
    except ValueError as exc:
        raise MinpingError(f"draw {data.draw_id}: {exc}") from exc
