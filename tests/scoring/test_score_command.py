"""``minping score`` on small plain files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from minping.commands.score import score
from minping.resources import CAMPAIGN_TEMPLATE

DATA = Path(__file__).parent / "data"


@pytest.fixture
def files(tmp_path):
    ratings = tmp_path / "ratings.csv"
    population = tmp_path / "population.csv"
    shutil.copy(DATA / "units_small.csv", ratings)
    shutil.copy(DATA / "units_small_population.csv", population)
    return ratings, population


def test_json_output(files):
    ratings, population = files
    result = CliRunner().invoke(score, ["--ratings", str(ratings), "--population",
                                        str(population), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    units = {u["unit"]: u for u in data["units"]}
    assert sorted(units) == ["U1", "U2", "U3", "U4"]
    assert set(units["U1"]) == {"unit", "n", "score", "se", "df", "ci_low", "ci_high", "sat",
                                "sat_low", "sat_high", "n_eff", "deff", "reliable", "status", "uncovered"}
    # R survey (tests/scoring/data/reference.R), unit U2.
    assert units["U2"]["score"] == pytest.approx(64.2268041237113, abs=1e-9)
    assert units["U2"]["ci_low"] == pytest.approx(47.1228404419552, abs=1e-9)
    assert units["U2"]["sat_high"] == pytest.approx(0.918416456108789, abs=1e-9)
    assert units["U2"]["reliable"] is False


def test_table_output_and_options(files):
    ratings, population = files
    result = CliRunner().invoke(score, ["--ratings", str(ratings), "--population",
                                        str(population), "--min-raters", "24",
                                        "--level", "0.9", "--ci-method", "wilson"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["unit", "n", "score", "90%"]
    u1 = next(line for line in lines if line.startswith("U1"))
    u3 = next(line for line in lines if line.startswith("U3"))
    assert "81.3" in u1 and "insufficient data (n < 24)" in u1
    assert "80.7" in u3 and "insufficient data" not in u3
    assert "Satisfaction interval: wilson" in result.stdout


def test_bad_file_names_row_and_field(files):
    ratings, population = files
    text = ratings.read_text().splitlines()
    text[3] = text[3].rsplit(",", 1)[0] + ",5"
    ratings.write_text("\n".join(text) + "\n")
    population.write_text("stratum,N\nA,500\nB,abc\nC,200\n")
    result = CliRunner().invoke(score, ["--ratings", str(ratings), "--population", str(population)])
    assert result.exit_code == 1
    assert f"{ratings}, row 4, field 'rating': not on the rating scale" in result.stderr
    assert f"{population}, row 3, field 'N': is not a number (value 'abc')" in result.stderr
    assert result.stdout == ""


def test_files_are_required(files):
    ratings, _ = files
    result = CliRunner().invoke(score, ["--ratings", str(ratings)])
    assert result.exit_code == 2
    assert "--ratings and --population go together" in result.stderr


def test_plain_file_per_unit_design_matches_r(tmp_path):
    """A campaign's long export (a row per assigned unit, '0' don't know, '' unanswered)
    scored with ``--design per-unit`` gives the per-unit design of reference_assigned.R."""
    from tests.scoring.test_assigned import R_UNITS

    data = Path(__file__).parent / "data"
    with open(data / "assigned_units.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["assigned"] == "1"]
    ratings = tmp_path / "export.csv"
    with open(ratings, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["respondent_id", "stratum", "unit", "rating"])
        w.writerows((r["respondent_id"], r["stratum"], r["unit"], r["rating"]) for r in rows)
    population = data / "assigned_units_population.csv"
    result = CliRunner().invoke(score, ["--ratings", str(ratings), "--population", str(population),
                                        "--design", "per-unit", "--json", "--min-raters", "5"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["design"] == "per-unit" and out["weights"] == "N_h/n_hu"
    assert out["scale"]["points"] == {"1": 100.0, "2": 60.0, "3": 0.0, "0": None}
    got = {u["unit"]: u for u in out["units"]}
    for unit, (n, mean, se, df, lo, hi, sat, _, slo, shi) in R_UNITS.items():
        u = got[unit]
        assert (u["n"], u["df"]) == (n, df), unit
        for key, ref in (("score", mean), ("se", se), ("ci_low", lo), ("ci_high", hi),
                         ("sat", sat), ("sat_low", slo), ("sat_high", shi)):
            assert u[key] == pytest.approx(ref, abs=1e-6), (unit, key)
    # without --design the empty ratings are refused, and the text names the design used
    plain = CliRunner().invoke(score, ["--ratings", str(ratings), "--population", str(population)])
    assert plain.exit_code != 0 and "'rating': is empty" in plain.output
    text = CliRunner().invoke(score, ["--ratings", str(ratings), "--population", str(population),
                                      "--design", "per-unit"])
    assert "Design: per unit, weight N_h/n_hu" in text.output


def test_plain_file_uses_the_configured_scale(files, tmp_path):
    ratings, population = files
    cfg = CAMPAIGN_TEMPLATE
    result = CliRunner().invoke(score, ["--ratings", str(ratings), "--population", str(population),
                                        "--config", str(cfg), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["design"] == "whole-sample"
    assert out["scale"]["source"] == f"configured in {cfg}"
