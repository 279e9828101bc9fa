"""Setting up without tracebacks: each mistake is one line on stderr saying what to do.

No DATABASE_URL (the default SQLite file in ./instance of the current directory, never
inside the package), a PostgreSQL database that does not exist, a schema never created,
an unsupported or malformed URL: for the CLI and for ``minping serve``.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from minping.cli import cli
from tests.conftest import PG_ADMIN_URL


def _run(args, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MINPING_INSTANCE_PATH", raising=False)
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


def _one_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    assert "Traceback" not in out
    return lines[0]


@pytest.mark.parametrize("args", [["sample", "balance"], ["serve", "--check"], ["frame", "list"]])
def test_no_database_url_uses_sqlite_in_the_current_directory_and_says_upgrade(
        args, tmp_path, monkeypatch):
    code, out = _run(args, {"DATABASE_URL": None}, tmp_path, monkeypatch)
    line = _one_line(out)
    assert code == 1
    assert "DATABASE_URL is not set" in line and "minping db upgrade" in line
    assert (tmp_path / "instance" / "minping.sqlite").exists()  # in the cwd, not the package


@pytest.mark.parametrize("args", [["sample", "balance"], ["serve", "--check"]])
def test_a_database_that_does_not_exist(args, tmp_path, monkeypatch):
    url = make_url(PG_ADMIN_URL).set(database="minping_no_such_db").render_as_string(
        hide_password=False)
    code, out = _run(args, {"DATABASE_URL": url}, tmp_path, monkeypatch)
    line = _one_line(out)
    assert code == 1
    assert "'minping_no_such_db' does not exist" in line and "createdb" in line


@pytest.mark.parametrize("args", [["sample", "balance"], ["serve", "--check"],
                                  ["user", "list"]])
def test_a_schema_not_upgraded(args, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    code, out = _run(args, {"DATABASE_URL": url}, tmp_path, monkeypatch)
    assert code == 1 and "run `minping db upgrade`" in _one_line(out)


@pytest.mark.parametrize("url,says", [("mysql://u@h/db", "'mysql' databases are not supported"),
                                      ("not a url", "is not a database URL")])
@pytest.mark.parametrize("args", [["sample", "balance"], ["serve", "--check"]])
def test_an_unsupported_or_malformed_url(url, says, args, tmp_path, monkeypatch):
    code, out = _run(args, {"DATABASE_URL": url}, tmp_path, monkeypatch)
    line = _one_line(out)
    assert code == 1 and says in line and "postgresql://" in line


def test_root_leads_to_the_log_in_page(client):
    r = client.get("/")
    assert r.status_code == 302
    r = client.get(r.headers["Location"])
    assert r.status_code == 302 and "/cati/login" in r.headers["Location"]
