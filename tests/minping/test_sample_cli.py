"""``minping frame import`` and ``minping sample ...`` as a user runs them (both databases)."""

from __future__ import annotations

import csv
import json

from sqlalchemy import func, select, update

from minping.config import load_config
from minping.models import FrameContact, SampleCase
from tests.minping.test_frames import BAD, write_frame

CFG = load_config()


def test_frame_import_refuses_bad_file_then_skip_invalid(runner, db, tmp_path):
    path = tmp_path / "frame.csv"
    write_frame(path, CFG, 500, seed=21, bad=BAD)
    result = runner.invoke(["frame", "import", str(path)])
    assert result.exit_code == 1
    for row in ("row 5", "row 6", "row 7"):
        assert row in result.stderr
    assert "'类别'" in result.stderr and "外星人" in result.stderr
    data = json.loads(runner.invoke(["frame", "import", str(path), "--json"]).stdout)
    assert data["ok"] is False and data["imported"] == 0
    assert sorted(p["row"] for p in data["problems"]) == [5, 6, 7]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(FrameContact)) == 0

    rejects = tmp_path / "rejects.csv"
    result = runner.invoke(["frame", "import", str(path), "--skip-invalid", "--rejects",
                            str(rejects), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["imported"] == 500 and data["rejected_rows"] == 3
    assert rejects.exists()
    again = json.loads(runner.invoke(["frame", "import", str(path), "--skip-invalid",
                                      "--json"]).stdout)
    assert again["noop"] is True and again["frame_size"] == 500
    text = runner.invoke(["frame", "import", str(path), "--skip-invalid"]).output
    assert "already imported" in text


def test_sample_draw_release_verify_balance(runner, db, tmp_path):
    path = tmp_path / "frame.csv"
    write_frame(path, CFG, 3000, seed=22)
    assert runner.invoke(["frame", "import", str(path)]).exit_code == 0
    lower = tmp_path / "lower.csv"
    with open(lower, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["stratum", "lower"], ["deputies", "40"]])
    result = runner.invoke(["sample", "draw", "--size", "300", "--seed", "12345",
                            "--replicates", "2", "--reserve", "2", "--lower", str(lower),
                            "--json"])
    assert result.exit_code == 0, result.output
    draw = json.loads(result.stdout)
    assert draw["seed"] == "12345" and draw["cases"] == 300 and draw["reserve_cases"] == 6
    assert {s["stratum"]: s["n"] for s in draw["strata"]}["deputies"] == 40

    text = runner.invoke(["sample", "draw", "--size", "300"])
    assert text.exit_code == 1 and "--force" in text.stderr

    out = runner.invoke(["sample", "release", "--next"])
    assert out.exit_code == 0 and "replicate 1: 150 case(s) released" in out.output
    rel = json.loads(runner.invoke(["sample", "release", "--next", "--json"]).stdout)
    assert sum(rel.pop("by_stratum").values()) == 150
    assert rel == {"draw_id": draw["draw_id"], "replicate": 2, "released": 150,
                   "held_replicates": []}
    assert runner.invoke(["sample", "release", "--next"]).exit_code == 1

    ok = runner.invoke(["sample", "verify"])
    assert ok.exit_code == 0 and "matches" in ok.output
    assert runner.invoke(["sample", "verify", "--frame-file", str(path)]).exit_code == 0
    data = json.loads(runner.invoke(["sample", "verify", "--json"]).stdout)
    assert data["matches"] is True and data["cases"] == 306

    csv_path = tmp_path / "balance.csv"
    bal = runner.invoke(["sample", "balance", "--json", "--csv", str(csv_path)])
    report = json.loads(bal.stdout)
    assert report["totals"]["released"] == 300 and report["failing_units"] == 0
    assert csv_path.read_text(encoding="utf-8-sig").startswith("kind,key,group")
    table = runner.invoke(["sample", "balance", "--units", "3"]).output
    assert "stratum" in table and "Kish deff" in table

    # tamper with one case: verify names it and exits 1
    with db.transaction() as s:
        drawn = set(s.scalars(select(SampleCase.contact_id)))
        case = s.scalars(select(SampleCase).order_by(SampleCase.id)).first()
        other = s.scalars(select(FrameContact.id).where(FrameContact.id.not_in(drawn))).first()
        s.execute(update(SampleCase).where(SampleCase.id == case.id).values(contact_id=other))
    bad = runner.invoke(["sample", "verify"])
    assert bad.exit_code == 1
    assert "does NOT match" in bad.stderr and case.pseudo_id in bad.stderr


def test_sample_draw_errors(runner, tmp_path):
    path = tmp_path / "frame.csv"
    write_frame(path, CFG, 300, seed=23)
    runner.invoke(["frame", "import", str(path)])
    big = runner.invoke(["sample", "draw", "--size", "301"])
    assert big.exit_code == 1 and "larger than the frame" in big.stderr
    bounds = runner.invoke(["sample", "draw", "--size", "100", "--upper", "residents=1",
                            "--upper", "deputies=1", "--upper", "business=1"])
    assert bounds.exit_code == 1 and "upper bounds" in bounds.stderr
    neyman = runner.invoke(["sample", "draw", "--method", "neyman"])
    assert neyman.exit_code == 2 and "--sd" in neyman.stderr
    bad_value = runner.invoke(["sample", "draw", "--lower", "residents=lots"])
    assert bad_value.exit_code == 2 and "'lots'" in bad_value.stderr
    nodraw = runner.invoke(["sample", "verify"])
    assert nodraw.exit_code == 1 and "no draw yet" in nodraw.stderr
