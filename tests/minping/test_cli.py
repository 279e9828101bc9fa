"""The ``minping`` command line, as a user runs it."""

import json
import shutil
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL: tests/scaleout
def test_demo_runs_the_whole_job(tmp_path, db_url, runner):
    out = tmp_path / "demo"
    args = ["demo", "--dir", str(out), "--frame-size", "3000", "--size", "150",
            "--ivr-days", "2", "--cati-days", "1", "--interviewers", "3", "--json"]
    result = runner.invoke(args, env={"DATABASE_URL": ""})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["units"] == 145
    assert summary["phases"]["frame"]["contacts"] == 3000
    assert summary["phases"]["draw"]["cases"] == 150
    assert {r["stratum"] for r in summary["strata"]} == {"residents", "deputies", "business"}
    assert sum(r["drawn"] for r in summary["strata"]) == 150
    assert summary["phases"]["ivr"]["calls"] > 0
    assert summary["completed"] > 0
    assert 0 < summary["rates"]["RR3"] <= 1 and summary["rates"]["e_basis"]
    assert {t["track"] for t in summary["tracks"]} == {"departments", "agencies", "windows"}
    assert sum(len(t["rows"]) for t in summary["tracks"]) == 145
    assert Path(summary["report"]).is_file()
    assert all(Path(f).is_file() for f in summary["exports"])
    # the embedded mode experiment (--mode-experiment 0.1 by default): its arms and the
    # IVR − CATI differences are shown, and the report has the section
    assert summary["effects"][0].startswith("mode experiment: ivr_first ")
    assert any(line.startswith("IVR − CATI overall: experimental") for line in summary["effects"])
    assert 'id="effects"' in Path(summary["report"]).read_text(encoding="utf-8")
    # the demo starts from a fresh SQLite file each time
    again = runner.invoke(args, env={"DATABASE_URL": ""})
    assert again.exit_code == 0, again.output
    shutil.rmtree(out, ignore_errors=True)


def test_init_writes_a_campaign_file_and_an_env_template(tmp_path):
    from click.testing import CliRunner

    from minping.cli import cli

    folder = tmp_path / "county-2027"
    result = CliRunner().invoke(cli, ["init", str(folder), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    written = json.loads(result.output)
    config, env = Path(written["config"]), Path(written["env"])
    assert config == folder / "survey.toml" and env == folder / ".env"
    # the campaign file is the bundled template, and it passes the check as is
    assert config.read_bytes() == Path(default_config_path()).read_bytes()
    check = CliRunner().invoke(cli, ["config", "check", str(config)])
    assert check.exit_code == 0, check.output
    # the .env names the campaign file, holds no secret and is private
    text = env.read_text(encoding="utf-8")
    assert f"MINPING_CONFIG={config}" in text
    assert "secrets.token_hex(32)" in text
    for name in ("MINPING_SECRET_KEY", "TWILIO_AUTH_TOKEN", "DATABASE_URL"):
        assert f"# {name}=" in text, name
    assert env.stat().st_mode & 0o077 == 0
    # a second run refuses to overwrite
    again = CliRunner().invoke(cli, ["init", str(folder)])
    assert again.exit_code == 1 and "already exists" in again.output
