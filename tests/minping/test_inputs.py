"""``minping input import``: ballots, votes and inspections, all or nothing, idempotent."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from minping.campaign import sync_campaign
from minping.config import load_config
from minping.errors import InputError
from minping.inputs import import_input
from minping.models import AssessmentBallot, InputImport, InspectionRecord, OnlineVote


def _count(db, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_good_files_import_and_reimport_is_a_noop(db, runner, tmp_path):
    ballots = tmp_path / "ballots.csv"
    ballots.write_text("venue,unit,rating\n城关镇会场,ag-xwb,1\n城关镇会场,ag-xwb,2\n"
                       "企业家座谈会,fgw,3\n企业家座谈会,fgw,0\n", encoding="utf-8")
    first = runner.invoke(["input", "import", "--kind", "assessment", str(ballots), "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["ok"] is True and data["rows"] == 4 and data["already_imported"] is False
    again = runner.invoke(["input", "import", "--kind", "assessment", str(ballots)])
    assert again.exit_code == 0, again.output
    assert "already imported" in again.stdout
    assert _count(db, AssessmentBallot) == 4
    assert _count(db, InputImport) == 1

    votes = tmp_path / "votes.xlsx"
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["unit", "option", "count"])
    book.active.append(["win-tax", 1, 900])
    book.active.append(["win-tax", 3, 100])
    book.save(votes)
    out = runner.invoke(["input", "import", "--kind", "online", str(votes)])
    assert out.exit_code == 0, out.output
    assert "2 online rows imported" in out.stdout

    inspections = tmp_path / "inspections.csv"
    inspections.write_text("unit,date,kind,points\nfgw,2026-11-20,conduct,1\n"
                           "win-tax,2026-11-21,日常工作不到位,0.1\n", encoding="utf-8")
    out = runner.invoke(["input", "import", "--kind", "inspection", str(inspections)])
    assert out.exit_code == 0, out.output
    with db.session() as s:
        kinds = sorted(s.scalars(select(InspectionRecord.kind)).all())
        counts = sorted(s.scalars(select(OnlineVote.count)).all())
    assert kinds == ["conduct", "routine-lapse"]  # names are stored as the kind's id
    assert counts == [100, 900]


def test_bad_file_names_every_row_and_stores_nothing(db, runner, tmp_path):
    bad = tmp_path / "votes.csv"
    bad.write_text("unit,option,count\n"
                   "win-tax,1,10\n"          # fine
                   "nope,1,5\n"              # unknown unit
                   "win-scj,7,5\n"           # not on the scale
                   "win-gaj,1,-3\n"          # negative count
                   "fgw,1,4\n",              # department: no online part
                   encoding="utf-8")
    out = runner.invoke(["input", "import", "--kind", "online", str(bad), "--json"])
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    assert data["ok"] is False
    where = {(p["row"], p["field"]) for p in data["problems"]}
    assert where == {(3, "unit"), (4, "option"), (5, "count"), (6, "unit")}
    assert all(p["file"] == str(bad) for p in data["problems"])
    assert f"{bad}, row 3, field 'unit': unknown unit (value 'nope')" in out.stderr
    assert "whose composite does not use the online part" in out.stderr
    assert _count(db, OnlineVote) == 0 and _count(db, InputImport) == 0


def test_votes_already_counted_from_another_file_are_refused(db, tmp_path):
    cfg = load_config()
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text("unit,option,count\nwin-tax,1,10\n", encoding="utf-8")
    b.write_text("unit,option,count\nwin-tax,2,3\nwin-tax,1,11\n", encoding="utf-8")
    import_input(db, cfg, "online", a)
    with pytest.raises(InputError) as info:
        import_input(db, cfg, "online", b)
    problems = info.value.problems
    assert [(p.row, p.field) for p in problems] == [(3, "option")]
    assert str(a) in problems[0].message
    assert _count(db, OnlineVote) == 1


def test_inspection_problems(db, tmp_path):
    cfg = load_config()
    with db.transaction() as s:
        sync_campaign(s, cfg)
    f = tmp_path / "inspections.csv"
    f.write_text("unit,date,kind,points\nfgw,2026-13-01,conduct,1\nfgw,2026-11-02,parking,1\n"
                 "fgw,2026-11-03,conduct,-1\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        import_input(db, cfg, "inspection", f)
    problems = [(p.row, p.field) for p in info.value.problems]
    assert problems == [(2, "date"), (3, "kind"), (4, "points")]
    assert _count(db, InspectionRecord) == 0



def test_bundled_synthetic_samples_are_valid():
    from minping.input_files import read_ballots, read_inspections, read_votes
    from minping.inputs import sample_files
    from scoring.scale import RatingScale

    cfg = load_config()
    scale = RatingScale.from_options(cfg.scale.options)
    units = [u.id for u in cfg.units]
    files = sample_files()
    assert [k for k, _ in files].count("assessment") == 9
    venues = set()
    for kind, path in files:
        if kind == "assessment":
            ballots = read_ballots(path, scale=scale, units=units)
            venues |= set(ballots.venue)
            tracks = {cfg.unit(u).track for u in ballots.unit}
            assert tracks in ({"departments"}, {"agencies"}), path
            assert len(ballots.unit) == (109 * 39 if tracks == {"departments"} else 140 * 76)
        elif kind == "online":
            votes = read_votes(path, scale=scale, units=units)
            assert votes.count.sum() == 300_000
            assert {cfg.unit(u).track for u in votes.unit} == {"windows"}
            assert len(set(votes.unit)) == 30
        else:
            records = read_inspections(path, units=units)
            assert set(records.kind) == {"conduct", "routine-lapse"}
            assert ((records.points >= 0.1) & (records.points <= 2.0)).all()
    assert len(venues) == 9  # 8 town venues and the enterprise session


def test_bundled_sample_files_import(db):
    from minping.inputs import import_input, sample_files

    cfg = load_config()
    files = [(k, p) for k, p in sample_files() if "enterprises" in p.name or k != "assessment"]
    first = [import_input(db, cfg, k, p) for k, p in files]
    assert not any(r.already for r in first)
    assert _count(db, AssessmentBallot) == 109 * 39
    with db.session() as s:
        assert s.scalar(select(func.sum(OnlineVote.count))) == 300_000
    assert all(import_input(db, cfg, k, p).already for k, p in files)
