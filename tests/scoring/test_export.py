"""``minping export``: respondent-level files that re-estimate to the same numbers."""

from __future__ import annotations

import json
import re

import pandas as pd
import pyreadstat
import pytest

from minping.export import RespondentTable, assigned_column, unit_column, write_export
from tests.scoring.test_db_scores import UNITS, scored_field

#: A phone number standing alone (the digits of a weight such as 15.384615384615385 are not one).
#: Cells are matched whole: a random pseudonymous id may hold a run of digits.
PHONE = re.compile(r"\+86\d{11}|(?<![\d.])1[3-9]\d{9}(?!\d)")


def _export(runner, fmt, path):
    out = runner.invoke(["export", "--format", fmt, "--out", str(path), "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_csv_reestimates_to_the_same_scores(db, runner, tmp_path):
    field = scored_field(db)
    info = _export(runner, "csv", tmp_path / "respondents.csv")
    assert info["respondents"] == field.respondents
    text = (tmp_path / "respondents.csv").read_text(encoding="utf-8")
    cells = [c for line in text.splitlines() for c in line.split(",")]
    assert not [c for c in cells if PHONE.fullmatch(c.removeprefix("+86"))]
    assert not any(phone[3:] in text for phone in field.phones)
    d = pd.read_csv(tmp_path / "respondents.csv", dtype={"disposition": str})
    assert list(d.columns[:9]) == ["respondent_id", "stratum", "group", "town", "weight", "N_h",
                                   "n_h", "disposition", "disposition_n"]
    assert len(d) == d["respondent_id"].nunique() == 30
    assert set(d["disposition"]) == {"1.1", "1.2"}
    assert (d["weight"] == d["N_h"] / d["n_h"]).all()
    assert d["n_h"].to_dict() == d["stratum"].map(d.groupby("stratum").size()).to_dict()
    # Unit u's design: the respondents with a_u == 1, weight N_h/n_hu.  The plain-file mode
    # on those respondents alone (n_h in the file = n_hu) is that design; an empty cell is
    # outside the unit's domain, like "0".
    population = tmp_path / "population.csv"
    d.groupby("stratum")["N_h"].first().rename("N").reset_index().to_csv(population, index=False)
    direct = runner.invoke(["score", "--json", "--min-raters", "5"])
    b = {u["unit"]: u for u in json.loads(direct.stdout)["units"]}
    assert sorted(b) == sorted(UNITS)
    for unit in UNITS:
        du = d[d[assigned_column(unit)] == 1]
        assert (d[assigned_column(unit)].isin([0, 1])).all()
        long = pd.DataFrame({"respondent_id": du["respondent_id"], "stratum": du["stratum"],
                             "unit": unit,
                             "rating": du[unit_column(unit)].fillna(0).astype(int).astype(str)})
        ratings = tmp_path / f"ratings_{unit}.csv"
        long.to_csv(ratings, index=False)
        again = runner.invoke(["score", "--ratings", str(ratings), "--population", str(population),
                               "--json", "--min-raters", "5"])
        assert again.exit_code == 0, again.output
        (a,) = json.loads(again.stdout)["units"]
        for key in ("n", "score", "se", "df", "ci_low", "ci_high", "sat", "sat_low", "sat_high"):
            assert a[key] == pytest.approx(b[unit][key], rel=1e-12, abs=1e-12), (unit, key)


@pytest.mark.parametrize("fmt,reader", [("sav", pyreadstat.read_sav), ("dta", pyreadstat.read_dta)])
def test_spss_and_stata_files_carry_labels(db, runner, tmp_path, fmt, reader):
    field = scored_field(db)
    path = tmp_path / f"respondents.{fmt}"
    _export(runner, fmt, path)
    df, meta = reader(str(path))
    assert len(df) == field.respondents
    labels = dict(zip(meta.column_names, meta.column_labels, strict=True))
    assert labels["u_fgw"] == "县发展和改革委员会 (fgw)"
    assert labels["u_win_tax"] == "县税务局窗口 (win-tax)"
    values = {k: {int(v): t for v, t in m.items()} for k, m in meta.variable_value_labels.items()}
    assert values["u_fgw"] == {1: "满意", 2: "基本满意", 3: "不满意", 0: "不了解"}
    assert values["disposition_n"][11].startswith("1.1 ") and values["disposition_n"][12].startswith("1.2 ")
    assert set(df["disposition_n"]) == {11, 12}
    # the ratings read back equal what was answered
    answered = {(r, u): int(k) for r, _, u, k in field.ratings}
    for _, row in df.iterrows():
        for unit in UNITS:
            value = row[unit_column(unit)]
            key = answered.get((row["respondent_id"], unit))
            assert (pd.isna(value) and key is None) or value == key


def test_xlsx_has_a_codebook(db, runner, tmp_path):
    scored_field(db)
    path = tmp_path / "respondents.xlsx"
    _export(runner, "xlsx", path)
    book = pd.read_excel(path, sheet_name=None)
    assert set(book) == {"data", "codebook"}
    assert len(book["data"]) == 30
    code = book["codebook"].set_index("variable")
    assert code.loc["u_fgw", "values"] == "1 = 满意; 2 = 基本满意; 3 = 不满意; 0 = 不了解"


def test_phone_numbers_are_refused():
    with pytest.raises(ValueError, match="phone number"):
        RespondentTable(columns={"respondent_id": ["+8613912345678"]}, variable_labels={},
                        value_labels={})


def test_unknown_format(tmp_path):
    table = RespondentTable(columns={"a": [1]}, variable_labels={}, value_labels={})
    with pytest.raises(ValueError, match="format must be one of"):
        write_export(table, tmp_path / "x.txt", "txt")


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "sav", "dta"])
def test_every_format_identifies_respondents_by_pseudonymous_id_only(db, runner, tmp_path, fmt):
    field = scored_field(db)
    path = tmp_path / f"respondents.{fmt}"
    _export(runner, fmt, path)
    if fmt == "csv":
        df = pd.read_csv(path, dtype=str)
    elif fmt == "xlsx":
        df = pd.read_excel(path, sheet_name="data", dtype=str)
    else:
        df = (pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta)(str(path))[0]
    pseudo = {r[0] for r in field.assigned}
    assert set(df["respondent_id"]) <= pseudo and len(df) == field.respondents
    values = [str(v) for v in df.astype(str).to_numpy().ravel()]
    # no cell is a phone number (a pseudonymous id may happen to hold a run of digits)
    assert not [v for v in values if PHONE.fullmatch(v.removeprefix("+86"))]
    cells = " ".join(values)
    for phone in field.phones:
        assert phone not in cells and phone[3:] not in cells
    raw = path.read_bytes()
    for phone in field.phones:
        assert phone[3:].encode() not in raw
