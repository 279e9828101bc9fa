"""``minping demo --database-url`` runs the whole job on PostgreSQL, as it does on SQLite.

Both demos run side by side as separate processes with the same seed and short
field periods (the IVR and CATI phases dominate the run time); the PostgreSQL one
must finish, write its report and exports, and give the same design -- units,
strata, frame sizes, targets and draws -- as the SQLite one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from minping.db import Database
from minping.models import CallAttempt, SampleCase

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["--size", "300", "--frame-size", "5000", "--ivr-days", "0.5", "--cati-days", "0.2",
         "--interviewers", "2", "--seed", "20261126", "--json"]


def design(summary: dict) -> dict:
    """What the draw decides, whatever the database: units, strata, tracks' units."""
    return {
        "units": summary["units"],
        "strata": [{k: s[k] for k in ("stratum", "frame_size", "target", "drawn")}
                   for s in summary["strata"]],
        "tracks": {t["track"]: sorted(r["unit"] for r in t["rows"]) for t in summary["tracks"]},
        "cases": summary["rates"]["cases"],
    }


def test_demo_runs_on_postgresql_with_the_design_it_has_on_sqlite(pg_server, tmp_path):
    url = pg_server.create_database("minping_demo")
    minping = str(Path(sys.executable).with_name("minping"))
    runs = {
        "postgresql": subprocess.Popen(
            [minping, "demo", "--dir", str(tmp_path / "pg"), "--database-url", url, *SHORT],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "sqlite": subprocess.Popen(
            [minping, "demo", "--dir", str(tmp_path / "sqlite"), *SHORT],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    summaries = {}
    for name, process in runs.items():
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name}: {err[-3000:]}"
        summaries[name] = json.loads(out)
    pg, lite = summaries["postgresql"], summaries["sqlite"]

    assert pg["database"].startswith("postgresql") and "minping_demo" in pg["database"]
    assert lite["database"].startswith("sqlite")
    assert design(pg) == design(lite)
    assert pg["units"] == 145  # 39 departments + 76 agencies + 30 windows (source document)
    assert [s["stratum"] for s in pg["strata"]] == ["business", "deputies", "residents"]
    assert sum(s["drawn"] for s in pg["strata"]) == 300
    assert pg["phases"]["ivr"]["calls"] > 0 and pg["completed"] > 0

    report = Path(pg["report"])
    assert report.is_file() and report.is_relative_to(tmp_path / "pg")
    assert report.read_text(encoding="utf-8").count("<svg") >= 3  # the plots are drawn
    for path in pg["phases"]["exports"]["files"]:
        assert Path(path).is_file() and Path(path).stat().st_size > 0, path

    # the fieldwork really is in the PostgreSQL database
    db = Database(url)
    try:
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(SampleCase)) == 300 + pg["phases"][
                "draw"]["reserve_cases"]
            attempts = s.scalar(select(func.count()).select_from(CallAttempt))
    finally:
        db.dispose()
    assert attempts >= pg["phases"]["ivr"]["calls"]
