"""The ``minping`` command line, as a user runs it."""

import json
import shutil
from pathlib import Path

from minping.config import default_config_path


def test_config_check_passes_on_the_real_configuration(runner):
    result = runner.invoke(["config", "check"])
    assert result.exit_code == 0, result.output
    assert "145 units" in result.output
    data = json.loads(runner.invoke(["config", "check", "--json"]).output)
    assert data["ok"] is True
    assert data["tracks"] == {"departments": 39, "agencies": 76, "windows": 30}


def test_config_check_names_every_problem_with_its_key_path(runner, tmp_path):
    text = Path(default_config_path()).read_text(encoding="utf-8")
    broken = (
        text.replace('{ id = "jxj",', '{ id = "fgw",', 1)  # duplicate id in departments
        .replace("threshold = 70", 'threshold = "seventy"', 1)
        .replace('tue = ["09:00-12:00", "14:30-20:30"]', 'tue = ["25:00-12:00"]', 1)
        .replace("[ivr]\n", "[ivr]\nvoise = 1\n", 1)
    )
    path = tmp_path / "broken.toml"
    path.write_text(broken, encoding="utf-8")
    result = runner.invoke(["config", "check", str(path)])
    assert result.exit_code == 1
    err = result.stderr
    assert str(path) in err
    assert 'tracks[0].units[1].id: duplicate id "fgw"' in err
    assert "flags.threshold" in err
    assert "calling.windows.tue[0]" in err
    assert "ivr.voise: unknown key" in err
    data = json.loads(runner.invoke(["config", "check", str(path), "--json"]).output)
    assert data["ok"] is False and len(data["problems"]) >= 4


def test_config_check_on_a_missing_file(runner, tmp_path):
    result = runner.invoke(["config", "check", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "nope.toml" in result.stderr


def test_db_upgrade_twice(runner):
    first = json.loads(runner.invoke(["db", "upgrade", "--json"]).output)
    second = json.loads(runner.invoke(["db", "upgrade", "--json"]).output)
    assert first["to"] == second["from"] == second["to"]
    assert "sample_case" in second["tables"]


def test_user_add(runner, db):
    result = runner.invoke(
        ["user", "add", "wang.li", "--role", "interviewer", "--name", "王丽", "--json"],
        env={"MINPING_NEW_PASSWORD": "correct horse"},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["role"] == "interviewer"
    again = runner.invoke(
        ["user", "add", "wang.li", "--role", "supervisor"],
        env={"MINPING_NEW_PASSWORD": "correct horse"},
    )
    assert again.exit_code == 1
    assert "username: 'wang.li' already exists" in again.stderr
    short = runner.invoke(
        ["user", "add", "zhao", "--role", "supervisor"], env={"MINPING_NEW_PASSWORD": "short"}
    )
    assert short.exit_code == 1 and "password" in short.stderr


def test_unknown_command_is_a_usage_error(runner):
    result = runner.invoke(["no-such-command"])
    assert result.exit_code == 2


def test_demo_loads_the_campaign_and_a_synthetic_frame(tmp_path, db_url, runner):
    args = ["demo", "--dir", str(tmp_path / "demo"), "--frame-size", "3000", "--json"]
    if db_url.startswith("postgresql"):
        args += ["--database-url", db_url]
    result = runner.invoke(args, env={"DATABASE_URL": ""})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["units"] == 145
    assert summary["frame"]["contacts"] == 3000
    assert summary["frame"]["synthetic"] is True
    by = summary["frame"]["by_group_town"]
    assert set(by) == {"residents", "deputies", "business"}
    assert all(len(row) == 8 for row in by.values())
    # a second run on the same non-empty database is refused, nothing changed
    if db_url.startswith("postgresql"):
        again = runner.invoke(args)
        assert again.exit_code == 1 and "already holds a frame" in again.stderr
    shutil.rmtree(tmp_path / "demo", ignore_errors=True)
