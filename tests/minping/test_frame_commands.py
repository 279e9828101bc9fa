"""``minping frame list`` and ``minping frame delete`` (refused once a sample was drawn)."""

from __future__ import annotations

import json

from tests.builders import build_field

FRAME = "电话,类别,乡镇\n13812345678,工商代表,城关镇\n13912345679,各类群众代表,城关镇\n"


def test_frame_list_and_delete(runner, db, tmp_path):
    path = tmp_path / "f.csv"
    path.write_text(FRAME, encoding="utf-8")
    assert "no frame yet" in runner.invoke(["frame", "list"]).output
    assert runner.invoke(["frame", "import", str(path), "--frame", "trial"]).exit_code == 0
    rows = json.loads(runner.invoke(["frame", "list", "--json"]).output)
    assert [(r["frame"], r["contacts"], r["draws"]) for r in rows] == [("trial", 2, 0)]
    r = runner.invoke(["frame", "delete", "nope", "--yes"])
    assert r.exit_code == 1 and "no frame named 'nope' (frames: 'trial')" in r.output
    r = runner.invoke(["frame", "delete", "trial"], input="y\n")
    assert r.exit_code == 0 and "deleted (2 contacts)" in r.output
    assert json.loads(runner.invoke(["frame", "list", "--json"]).output) == []


def test_a_frame_with_draws_is_not_deleted(runner, db):
    field = build_field(db, n_cases=4)
    rows = json.loads(runner.invoke(["frame", "list", "--json"]).output)
    assert rows[0]["draws"] == 1 and rows[0]["cases_drawn"] == len(field.case_ids)
    r = runner.invoke(["frame", "delete", rows[0]["frame"], "--yes"])
    assert r.exit_code == 1 and "cases were drawn from it" in r.output
    assert len(json.loads(runner.invoke(["frame", "list", "--json"]).output)) == 1
