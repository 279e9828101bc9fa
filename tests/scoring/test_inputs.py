"""Plain-file readers: all-or-nothing validation naming file, row and field."""

from __future__ import annotations

import datetime as dt

import pytest

from minping.errors import InputError
from minping.input_files import (
    load_phone,
    read_ballots,
    read_inspections,
    read_population,
    read_ratings,
    read_votes,
)


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def problems(exc_info):
    return [(p.row, p.field, p.value) for p in exc_info.value.problems]


def test_ratings_read_in_utf8_bom_and_gb18030(tmp_path):
    text = "respondent_id,stratum,unit,rating\nr1,城关,公安局,1\nr2,城关,公安局,0\n"
    for name, data in (("bom.csv", b"\xef\xbb\xbf" + text.encode()),
                       ("gbk.csv", text.encode("gb18030"))):
        path = tmp_path / name
        path.write_bytes(data)
        got = read_ratings(path)
        assert got.stratum == ("城关", "城关")
        assert got.unit == ("公安局", "公安局")
        assert got.rating == ("1", "0")
        assert got.row == (2, 3)


def test_ratings_report_every_problem(tmp_path):
    path = write(tmp_path / "r.csv",
                 "Respondent_ID, stratum ,unit,rating\n"
                 "r1,a,U1,1\n"
                 "r1,b,U2,2\n"      # row 3: r1 was in stratum a
                 "r2,a,U1,7\n"      # row 4: not on the scale
                 "r1,a,U1,3\n"      # row 5: r1 rated U1 on row 2
                 ",a,U9,1\n")       # row 6: empty id, unknown unit
    with pytest.raises(InputError) as exc_info:
        read_ratings(path, units=["U1", "U2"])
    assert problems(exc_info) == [
        (3, "stratum", "b"),
        (4, "rating", "7"),
        (5, "unit", "U1"),
        (6, "respondent_id", None),
        (6, "unit", "U9"),
    ]
    text = str(exc_info.value)
    assert f"{path}, row 4, field 'rating': not on the rating scale" in text
    assert "already rated this unit on row 2" in text


def test_missing_columns_are_named(tmp_path):
    path = write(tmp_path / "r.csv", "respondent_id,unit\nr1,U1\n")
    with pytest.raises(InputError) as exc_info:
        read_ratings(path)
    assert problems(exc_info) == [(1, "stratum", None), (1, "rating", None)]


def test_population_checks(tmp_path):
    path = write(tmp_path / "p.csv", "stratum,N\na,100\nb,x\na,5\nc,2.5\n")
    with pytest.raises(InputError) as exc_info:
        read_population(path)
    assert problems(exc_info) == [(3, "N", "x"), (4, "stratum", "a"), (5, "N", "2.5")]
    ok = write(tmp_path / "ok.csv", "stratum,N\na,100\nb,50\n")
    assert read_population(ok) == {"a": 100.0, "b": 50.0}


def test_load_phone_cross_checks(tmp_path):
    ratings = write(tmp_path / "r.csv",
                    "respondent_id,stratum,unit,rating\n"
                    "r1,a,U1,1\nr2,a,U1,2\nr3,a,U1,3\n"
                    "r4,b,U1,1\n"
                    "r5,c,U1,1\nr6,c,U1,1\n")
    pop = write(tmp_path / "p.csv", "stratum,N\na,2\nb,10\n")
    with pytest.raises(InputError) as exc_info:
        load_phone(ratings, pop)
    got = [(p.file, p.row, p.field) for p in exc_info.value.problems]
    assert got == [
        (str(pop), 2, "N"),          # N_a = 2 < 3 respondents
        (str(ratings), 5, "stratum"),  # b has a single respondent
        (str(ratings), 6, "stratum"),  # c is not in the population file
    ]
    assert "smaller than the 3 respondents of stratum 'a'" in str(exc_info.value)


def test_load_phone_reports_both_files_at_once(tmp_path):
    ratings = write(tmp_path / "r.csv", "respondent_id,stratum,unit,rating\nr1,a,U1,5\n")
    pop = write(tmp_path / "p.csv", "stratum,N\na,-3\n")
    with pytest.raises(InputError) as exc_info:
        load_phone(ratings, pop)
    assert [(p.file, p.field) for p in exc_info.value.problems] == [
        (str(ratings), "rating"), (str(pop), "N")]


def test_xlsx_ratings(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["respondent_id", "stratum", "unit", "rating"])
    sheet.append(["r1", "a", "U1", 1])
    sheet.append([2, "a", "U1", 3.0])
    path = tmp_path / "r.xlsx"
    book.save(path)
    got = read_ratings(path)
    assert got.respondent_id == ("r1", "2")
    assert got.rating == ("1", "3")


def test_unreadable_file(tmp_path):
    with pytest.raises(InputError, match="cannot read the file"):
        read_ratings(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\xfa\x00\x81")
    with pytest.raises(InputError, match="neither UTF-8 nor GB18030"):
        read_ratings(bad)


def test_ballots_votes_inspections(tmp_path):
    ballots = write(tmp_path / "b.csv", "venue,unit,rating\n城关,U1,1\n新安,U1,2\n")
    assert read_ballots(ballots).rating == ("1", "2")
    votes = write(tmp_path / "v.csv", "unit,option,count\nW1,1,300\nW1,3,-2\nW1,1,5\nW1,9,1\n")
    with pytest.raises(InputError) as exc_info:
        read_votes(votes)
    assert problems(exc_info) == [(3, "count", "-2"), (4, "option", "1"), (5, "option", "9")]
    good = write(tmp_path / "v2.csv", "unit,option,count\nW1,1,300\nW1,3,100\n")
    assert list(read_votes(good).count) == [300.0, 100.0]
    insp = write(tmp_path / "i.csv",
                 "unit,date,kind,points\nU1,2026-11-20,conduct,0.5\nU1,20/11/2026,lapse,x\nU2,2026-12-01,,-1\n")
    with pytest.raises(InputError) as exc_info:
        read_inspections(insp, units=["U1"])
    assert problems(exc_info) == [
        (3, "date", "20/11/2026"), (3, "points", "x"),
        (4, "unit", "U2"), (4, "kind", None), (4, "points", "-1")]
    ok = write(tmp_path / "i2.csv", "unit,date,kind,points\nU1,2026-11-20,conduct,0.5\n")
    got = read_inspections(ok)
    assert got.date == (dt.date(2026, 11, 20),) and list(got.points) == [0.5]
