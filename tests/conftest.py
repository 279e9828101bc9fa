"""Shared fixtures.

Every test that asks for ``db_url``, ``db``, ``app``, ``client`` or ``runner``
runs twice: on SQLite and on PostgreSQL.  PostgreSQL is required, not optional:
when it cannot be reached those tests fail with a message saying how to start it.

PostgreSQL: a fresh database per test session (``minping_test_<random>``) on the
server named by ``MINPING_TEST_PG_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``), dropped at the end;
tables are emptied between tests.  SQLite: a fresh file per test, copied from a
migrated template.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from minping.db import Database

PG_ADMIN_URL = os.environ.get(
    "MINPING_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PG_HINT = (
    "PostgreSQL is required for the test suite and could not be reached at {url}: {error}\n"
    "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)


class PostgresServer:
    """Creates and drops throw-away databases on the test server."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create_database(self, prefix: str = "minping_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.engine.connect() as conn:
            for name in self.created:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        self.engine.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer(PG_ADMIN_URL)
    try:
        with server.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect is a failed run, never a skip
        pytest.fail(PG_HINT.format(url=PG_ADMIN_URL, error=exc), pytrace=False)
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def pg_database(pg_server: PostgresServer) -> str:
    """A migrated PostgreSQL database for this test session."""
    url = pg_server.create_database()
    db = Database(url)
    db.upgrade()
    db.dispose()
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("template") / "minping.sqlite"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    return str(path)


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ).scalars().all()
        if tables:
            conn.execute(
                text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
            )
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A migrated, empty database: SQLite and PostgreSQL in turn."""
    if request.param == "sqlite":
        path = tmp_path / "minping.sqlite"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    _truncate_postgres(url)
    return url


@pytest.fixture
def db(db_url) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def app(db_url, tmp_path):
    from minping import create_app

    app = create_app(
        {
            "TESTING": True,
            "ENVIRON": {"MINPING_ENV": "testing", "MINPING_SECRET_KEY": "test-secret-key"},
            "DATABASE_URL": db_url,
            "MINPING_PUBLIC_URL": "http://testserver.local",
        }
    )
    yield app
    app.extensions["minping.db"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(db_url, tmp_path):
    """Invokes the ``minping`` CLI against the test database."""
    from minping.cli import cli

    class Runner(CliRunner):
        def invoke(self, args, **kwargs):  # type: ignore[override]
            env = {"DATABASE_URL": db_url, "MINPING_INSTANCE_PATH": str(tmp_path / "instance")}
            env.update(kwargs.pop("env", None) or {})
            return super().invoke(cli, args, env=env, catch_exceptions=False, **kwargs)

    return Runner()
