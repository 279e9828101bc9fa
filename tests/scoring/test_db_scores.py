"""Scores from the database (``minping.scores``) against the plain-file mode.

``scored_field`` builds a small campaign on the real configuration: two strata
(deputies N=200, business N=300), respondents (1.1 and one 1.2 partial with a
unit left unanswered), non-respondents whose break-off answers must not count,
"don't know" answers, and known ratings of five units (three departments,
two windows).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import insert, select

from minping.campaign import codes, sync_campaign
from minping.cases import new_pseudo_id
from minping.config import load_config
from minping.models import (
    Answer,
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

UNITS = ("fgw", "jxj", "kjj", "win-tax", "win-scj")
STRATA = {"deputies": (200, 14), "business": (300, 18)}  # N_h, cases drawn
AT = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


@dataclass
class ScoredField:
    cfg: object
    draw_id: int
    #: (pseudo_id, stratum, unit, rating) of every respondent's non-empty answer
    ratings: list[tuple[str, str, str, str]]
    #: (pseudo_id, stratum, unit, rating or "") of every unit assigned to a respondent
    assigned: list[tuple[str, str, str, str]]
    population: dict[str, int]
    phones: list[str]
    respondents: int


def scored_field(db, *, seed: int = 7, cfg=None) -> ScoredField:
    """Respondents with known ratings; see the module notes."""
    cfg = cfg or load_config()
    rng = np.random.default_rng(seed)
    ratings: list[tuple[str, str, str, str]] = []
    assigned: list[tuple[str, str, str, str]] = []
    phones: list[str] = []
    respondents = 0
    with db.transaction() as s:
        campaign = sync_campaign(s, cfg)
        groups = codes(s, RespondentGroup, campaign.id)
        towns = codes(s, Town, campaign.id)
        units = codes(s, Unit, campaign.id)
        frame = Frame(campaign_id=campaign.id, name="scoring test frame", synthetic=True)
        s.add(frame)
        s.flush()
        town_ids = [towns[t.id] for t in cfg.towns]
        rows = []
        i = 0
        for group, (n_pop, _) in STRATA.items():
            for k in range(n_pop):
                rows.append({"frame_id": frame.id, "phone": f"+86139{i:08d}",
                             "group_id": groups[group], "town_id": town_ids[k % 3],
                             "source_row": i + 2, "attributes": {}})
                i += 1
        s.execute(insert(FrameContact), rows)
        draw = SampleDraw(campaign_id=campaign.id, frame_id=frame.id, frame_hash="0" * 64,
                          seed="1", stratification="group", method="proportional",
                          sample_size=sum(n for _, n in STRATA.values()), software_version="test")
        s.add(draw)
        s.flush()
        order = 0
        for group, (n_pop, n_cases) in STRATA.items():
            stratum = Stratum(draw_id=draw.id, code=group, group_id=groups[group], town_id=None,
                              population=n_pop, target=n_cases - 2)
            s.add(stratum)
            s.flush()
            contacts = s.execute(
                select(FrameContact.id, FrameContact.phone)
                .where(FrameContact.frame_id == frame.id, FrameContact.group_id == groups[group])
                .order_by(FrameContact.id).limit(n_cases)).all()
            for j, (contact_id, phone) in enumerate(contacts):
                # the last case of each stratum refused after two answers; one is a partial
                disposition = "2.112" if j == n_cases - 1 else ("1.2" if j == 0 else "1.1")
                case = SampleCase(draw_id=draw.id, contact_id=contact_id, stratum_id=stratum.id,
                                  pseudo_id=new_pseudo_id(), inclusion_prob=n_cases / n_pop,
                                  weight=n_pop / n_cases, replicate=1, draw_order=order,
                                  release_state="released", released_at=AT, state="final",
                                  final_disposition=disposition)
                order += 1
                s.add(case)
                s.flush()
                phones.append(phone)
                mine = [UNITS[(j + p) % len(UNITS)] for p in range(4)]
                respondent = disposition in ("1.1", "1.2")
                respondents += respondent
                for pos, code in enumerate(mine):
                    s.add(CaseUnit(case_id=case.id, unit_id=units[code], position=pos))
                    if disposition == "2.112" and pos >= 2:
                        continue
                    if disposition == "1.2" and pos == 3:
                        assigned.append((case.pseudo_id, group, code, ""))
                        continue  # partial: never asked
                    if disposition == "1.2" and pos == 2:
                        key = None  # asked, no answer
                    else:
                        key = str(rng.choice(["1", "1", "2", "2", "3", "0"]))
                    s.add(Answer(case_id=case.id, unit_id=units[code], rating=key, channel="cati",
                                 answered_at=AT))
                    if respondent and key is not None:
                        ratings.append((case.pseudo_id, group, code, key))
                    if respondent:
                        assigned.append((case.pseudo_id, group, code, key or ""))
        return ScoredField(cfg, draw.id, ratings, assigned, {g: n for g, (n, _) in STRATA.items()},
                           phones, respondents)


def write_plain_files(field: ScoredField, tmp_path):
    ratings = tmp_path / "ratings.csv"
    population = tmp_path / "population.csv"
    ratings.write_text("respondent_id,stratum,unit,rating\n" + "".join(
        f"{r},{s},{u},{k}\n" for r, s, u, k in field.ratings), encoding="utf-8")
    population.write_text("stratum,N\n" + "".join(
        f"{s},{n}\n" for s, n in field.population.items()), encoding="utf-8")
    return ratings, population


def test_database_scores_are_the_per_unit_designs(db, runner, tmp_path):
    """Each unit from the database equals the plain-file mode run on that unit's design.

    The plain-file mode weights a respondent N_h/n_h with n_h the stratum's
    respondents in the file; given only the respondents assigned unit u (an
    unanswered unit written as "0", outside the domain like an empty answer),
    n_h is n_hu and the file mode is unit u's per-unit design N_h/n_hu.
    """
    field = scored_field(db)
    from_db = runner.invoke(["score", "--json", "--min-raters", "5"])
    assert from_db.exit_code == 0, from_db.output
    b = {u["unit"]: u for u in json.loads(from_db.stdout)["units"]}
    assert sorted(b) == sorted(UNITS)
    population = tmp_path / "population.csv"
    population.write_text("stratum,N\n" + "".join(
        f"{s},{n}\n" for s, n in field.population.items()), encoding="utf-8")
    for unit in UNITS:
        ratings = tmp_path / f"ratings_{unit}.csv"
        ratings.write_text("respondent_id,stratum,unit,rating\n" + "".join(
            f"{r},{s},{u},{k or '0'}\n" for r, s, u, k in field.assigned if u == unit),
            encoding="utf-8")
        from_file = runner.invoke(["score", "--ratings", str(ratings), "--population",
                                   str(population), "--json", "--min-raters", "5"])
        assert from_file.exit_code == 0, from_file.output
        (a,) = json.loads(from_file.stdout)["units"]
        assert set(b[unit]) == set(a)
        for key, value in a.items():
            if isinstance(value, float):
                assert b[unit][key] == pytest.approx(value, rel=1e-12, abs=1e-12), (unit, key)
            else:
                assert b[unit][key] == value, (unit, key)


def test_database_scores_differ_from_one_weight_per_respondent(db, runner, tmp_path):
    """The whole-sample weight N_h/n_h (the plain-file contract) is not the database design here."""
    field = scored_field(db)
    ratings, population = write_plain_files(field, tmp_path)
    from_file = runner.invoke(["score", "--ratings", str(ratings), "--population",
                               str(population), "--json", "--min-raters", "5"])
    from_db = runner.invoke(["score", "--json", "--min-raters", "5"])
    a = {u["unit"]: u for u in json.loads(from_file.stdout)["units"]}
    b = {u["unit"]: u for u in json.loads(from_db.stdout)["units"]}
    # deputies (n_h = 13) and business (n_h = 17) are assigned each unit unequally often
    assert max(abs(a[u]["score"] - b[u]["score"]) for u in UNITS) > 0.01
    assert all(a[u]["n"] == b[u]["n"] for u in UNITS)


def test_weights_count_every_respondent(db):
    """n_h counts 1.1 and 1.2 cases; the refusals' answers are not scored."""
    from minping.scores import load_phone_data

    field = scored_field(db)
    with db.session() as s:
        data = load_phone_data(s, field.cfg)
    assert len(data.respondents) == field.respondents == 30
    assert data.n_h == {"deputies": 13, "business": 17}
    assert data.weight("deputies") == pytest.approx(200 / 13)
    n_hu = Counter((s, u) for _, s, u, _ in field.assigned)
    assert data.n_hu == dict(n_hu)
    assert data.unit_weight("deputies", "fgw") == pytest.approx(200 / n_hu[("deputies", "fgw")])
    assert {r.disposition for r in data.respondents} == {"1.1", "1.2"}
    # the partial's never-asked and unanswered units are in the table as "" (outside the domain)
    assert data.rating.count("") == 4


def test_rake_and_bootstrap_options(db, runner):
    scored_field(db)
    raked = runner.invoke(["score", "--json", "--rake", "groups,towns", "--min-raters", "5"])
    assert raked.exit_code == 0, raked.output
    plain = runner.invoke(["score", "--json", "--min-raters", "5"])
    r = {u["unit"]: u for u in json.loads(raked.stdout)["units"]}
    p = {u["unit"]: u for u in json.loads(plain.stdout)["units"]}
    # group margins equal the strata here, so raking acts through the towns only
    assert any(abs(r[u]["score"] - p[u]["score"]) > 1e-9 for u in UNITS)
    boot1 = runner.invoke(["score", "--json", "--variance", "bootstrap", "--replicates", "200",
                           "--seed", "3", "--min-raters", "5"])
    boot2 = runner.invoke(["score", "--json", "--variance", "bootstrap", "--replicates", "200",
                           "--seed", "3", "--min-raters", "5"])
    assert boot1.exit_code == 0, boot1.output
    assert boot1.stdout == boot2.stdout
    b = {u["unit"]: u for u in json.loads(boot1.stdout)["units"]}
    for u in UNITS:
        assert b[u]["score"] == pytest.approx(p[u]["score"])
        assert b[u]["se"] == pytest.approx(p[u]["se"], rel=0.35)
    bad = runner.invoke(["score", "--rake", "ages"])
    assert bad.exit_code != 0
    assert "ages" in bad.stderr


def test_composite_table_and_json(db, runner):
    scored_field(db)
    out = runner.invoke(["score", "--json", "--composite", "--min-raters", "5"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    tracks = {t["track"]: t for t in data["tracks"]}
    assert set(tracks) == {"departments", "agencies", "windows"}
    fgw = next(u for u in tracks["departments"]["units"] if u["unit"] == "fgw")
    phone = next(u for u in data["units"] if u["unit"] == "fgw")
    # no assessment ballots imported: the phone part alone, weight renormalised to 1
    assert fgw["composite"] == pytest.approx(phone["score"])
    assert fgw["missing"] == ["assessment"] and fgw["status"] == "incomplete"
    text = runner.invoke(["score", "--composite", "--min-raters", "5"])
    assert text.exit_code == 0, text.output
    assert "departments" in text.stdout and "composite" in text.stdout


def test_no_draw_is_an_error(db, runner):
    with db.transaction() as s:
        sync_campaign(s, load_config())
    out = runner.invoke(["score"])
    assert out.exit_code == 1
    assert "no sample has been drawn yet" in out.stderr


def test_single_respondent_stratum_is_named(db, runner):
    field = scored_field(db)
    with db.transaction() as s:
        cases = s.scalars(select(SampleCase).join(Stratum, Stratum.id == SampleCase.stratum_id)
                          .where(Stratum.code == "deputies", SampleCase.draw_id == field.draw_id)
                          .order_by(SampleCase.id)).all()
        for case in cases[1:]:
            case.final_disposition = "2.112"
    out = runner.invoke(["score"])
    assert out.exit_code == 1
    assert "stratum 'deputies' has a single respondent" in out.stderr


def test_plain_table_reads_without_the_orm_and_equals_the_report_path(db, db_url, runner):
    """``minping score --composite`` (no ``--json``) reads with bare SQL on a DBAPI
    connection (``minping.score_data``); its tables are those of ``run_scoring``."""
    from minping import score_data
    from minping.commands.score import render_composites, render_table
    from minping.scores import run_scoring
    from minping.settings import normalise_database_url

    field = scored_field(db)
    opened = score_data.connect(normalise_database_url(db_url))
    assert opened is not None  # SQLite and PostgreSQL both take the quick path
    read, close = opened
    try:
        data = score_data.load_phone_data(read, field.cfg)
    finally:
        close()
    assert len(data.respondents) == field.respondents
    out = runner.invoke(["score", "--composite", "--min-raters", "5"])
    assert out.exit_code == 0, out.output
    results = run_scoring(db, field.cfg, level=0.95, min_raters=5)
    assert out.stdout == render_table(results.phone) + "\n" + render_composites(results) + "\n"


def test_plain_table_imports_neither_sqlalchemy_nor_the_models(db, db_url, tmp_path):
    """The whole ``minping score --composite`` in a fresh interpreter: no ORM on its path."""
    import os
    import subprocess
    import sys

    scored_field(db)
    code = ("import sys\nfrom minping.cli import cli\n"
            "try:\n    cli(['score', '--composite', '--min-raters', '5'], prog_name='minping')\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in ('sqlalchemy', 'minping.models', 'minping.db') "
            "if m in sys.modules))")
    env = {**os.environ, "DATABASE_URL": db_url, "MINPING_INSTANCE_PATH": str(tmp_path / "i")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert "composite" in out.stdout
    assert out.stdout.rstrip().splitlines()[-1] == "[]"
