"""The database: engine, sessions and migrations.

One :class:`Database` per app (or per CLI command).  The request helpers
(``db_session``, ``settings_of``, ``database_of``) live here too, so the
blueprints never import the app factory.  SQLite gets foreign keys,
WAL journaling and a busy timeout; PostgreSQL gets a pool that pings a connection
only when it has been idle for a while (:data:`PING_AFTER_IDLE`), so the app
recovers by itself after a database restart without a round trip on every
request; a request that meets a connection lost under load is run again by its
caller (the webhooks do, :func:`ivr.webhooks._transact`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc, inspect
from sqlalchemy.orm import Session, sessionmaker

from minping.errors import MinpingError
from minping.resources import MIGRATIONS
from minping.settings import Settings, normalise_database_url

#: The database back ends minping runs on.
SUPPORTED_BACKENDS = ("postgresql", "sqlite")
URL_FORMS = "postgresql://USER@HOST:5432/DBNAME or sqlite:///PATH"


class DatabaseSetupError(MinpingError):
    """The database cannot be used as configured; the message says what to do (one line)."""


def _shown_url(url: str) -> str:
    """``url`` without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show its scheme only
        return url.split("://", 1)[0] + "://…" if "://" in url else "…"


def check_database_url(url: str) -> None:
    """Refuse, in one line, a URL that is not a database URL or names an unsupported back end."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseSetupError(
            f"DATABASE_URL: {_shown_url(url)!r} is not a database URL; use {URL_FORMS}") from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise DatabaseSetupError(
            f"DATABASE_URL: {parsed.get_backend_name()!r} databases are not supported; "
            f"use {URL_FORMS}")


def explain_database_error(exc: BaseException, url: str | None = None) -> str | None:
    """One line saying what to do about a database error met while setting up, or ``None``.

    Covers a server that cannot be reached, a database that does not exist, a schema
    never created or not upgraded (``minping db upgrade``), and the default SQLite file
    used because ``DATABASE_URL`` is not set.
    """
    import re

    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError):
        return None
    text = str(getattr(exc, "orig", exc) or exc)
    where = f" ({_shown_url(url)})" if url else ""
    unset = "" if os.environ.get("DATABASE_URL") else (
        "DATABASE_URL is not set, so minping uses the SQLite file ./instance/minping.sqlite; ")
    m = re.search(r'database "([^"]+)" does not exist', text)
    if m:
        return (f"database {m.group(1)!r} does not exist{where}: create it "
                f"(createdb {m.group(1)}), then run `minping db upgrade`")
    if re.search(r"no such (table|column)|relation \S+ does not exist|column \S+ does not exist"
                 r"|UndefinedTable|UndefinedColumn", text):
        return (f"{unset}the database{where} has no minping schema or an older one: "
                "run `minping db upgrade`")
    if re.search(r"password authentication failed|role \S+ does not exist", text):
        return f"the database refused the user{where}: check the user and password in DATABASE_URL"
    if re.search(r"Connection refused|could not connect|connection failed|could not translate host"
                 r"|timeout expired|Name or service not known", text):
        return (f"cannot connect to the database{where}: is PostgreSQL running, and is "
                "DATABASE_URL right?")
    if "unable to open database file" in text:
        return f"{unset}cannot open the SQLite file{where}: check the directory exists and is writable"
    return None


def instance_path() -> str:
    """The instance folder: ``$MINPING_INSTANCE_PATH``, else ``./instance`` of the current directory.

    The default SQLite database (``minping.sqlite``) and the development session
    key live there, so an installed minping never writes inside its own package.
    """
    return os.path.abspath(os.environ.get("MINPING_INSTANCE_PATH") or "instance")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    url = normalise_database_url(url)
    check_database_url(url)
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    engine = create_engine(url, echo=echo, pool_size=10, max_overflow=20, hide_parameters=True)
    _ping_when_idle(engine)
    return engine


#: Seconds a pooled connection may have been idle before it is pinged at check-out.
PING_AFTER_IDLE = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at check-out only if it was idle for :data:`PING_AFTER_IDLE` s.

    ``pool_pre_ping`` costs a round trip on every request; a connection handed back
    a moment ago is alive (or was lost under load, which the invalidated pool and
    the caller's retry handle).  A dead one found here is replaced, as pre-ping does.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_conn, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy):
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as error:  # noqa: BLE001 - any failure: the connection is gone
            raise exc.DisconnectionError(f"idle connection lost: {error}") from error
        if alive is False:
            raise exc.DisconnectionError("idle connection lost")


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, *, echo: bool = False):
        self.url = normalise_database_url(url)
        self.engine = make_engine(self.url, echo=echo)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self.sessionmaker()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end, or rolls back on error."""
        with self.sessionmaker.begin() as session:
            yield session

    def upgrade(self, revision: str = "head") -> None:
        upgrade(self.url, revision, engine=self.engine)

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    def dispose(self) -> None:
        self.engine.dispose()


# --- request helpers (as flaskr's db.py): blueprints import these, never the factory ----


def settings_of(app) -> Settings:
    """The :class:`~minping.settings.Settings` ``create_app`` read for ``app``."""
    return app.extensions["minping.settings"]


def database_of(app) -> Database:
    """The app's :class:`Database`."""
    return app.extensions["minping.db"]


def db_session() -> Session:
    """The request's database session (closed when the request ends, see ``close_session``)."""
    from flask import current_app, g

    if "db_session" not in g:
        g.db_session = database_of(current_app).session()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    """Close the request's session, if it opened one (the app's teardown)."""
    from flask import g

    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_database_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head", *, engine: Engine | None = None) -> None:
    """Create or upgrade the schema of the database at ``url`` (Alembic)."""
    from alembic import command

    cfg = alembic_config(url)
    own = engine is None
    engine = engine or make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        if own:
            engine.dispose()


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest schema revision this minping ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def schema_problem(url: str) -> str | None:
    """One line when the schema at ``url`` is missing or older than this minping's, else None."""
    current = current_revision(url)
    head = head_revision()
    if current == head:
        return None
    unset = "" if os.environ.get("DATABASE_URL") else (
        "DATABASE_URL is not set, so minping uses the SQLite file ./instance/minping.sqlite; ")
    if current is None:
        return f"{unset}the database ({_shown_url(url)}) has no minping schema: run `minping db upgrade`"
    return (f"the database schema ({_shown_url(url)}) is at revision {current}, this minping "
            f"needs {head}: run `minping db upgrade`")
