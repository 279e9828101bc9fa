"""The schema: one Alembic migration gives the same tables on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select

from minping.db import Database, current_revision
from minping.models import AuditLog, Base

EXPECTED_TABLES = {
    "campaign", "track", "unit", "respondent_group", "town", "frame", "frame_import",
    "frame_contact", "do_not_call", "sample_draw", "stratum", "sample_case", "case_unit",
    "call_attempt", "attempt_event", "answer", "recording", "disposition_event",
    "appointment", "app_user", "audit_log", "lease", "input_import", "assessment_ballot",
    "online_vote", "inspection_record", "user_session", "login_throttle",
}


def schema(db: Database) -> dict[str, list[str]]:
    insp = inspect(db.engine)
    return {
        t: sorted(c["name"] for c in insp.get_columns(t))
        for t in insp.get_table_names()
        if t != "alembic_version"
    }


def test_upgrade_gives_the_same_tables_on_both_databases_and_is_idempotent(tmp_path, pg_server):
    sqlite = Database(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    postgres = Database(pg_server.create_database("minping_upgrade"))
    try:
        for db in (sqlite, postgres):
            assert current_revision(db.url) is None
            db.upgrade()
            first = schema(db)
            db.upgrade()  # a second run changes nothing
            assert schema(db) == first
            assert current_revision(db.url) is not None
        assert set(schema(sqlite)) == EXPECTED_TABLES
        assert schema(sqlite) == schema(postgres)
    finally:
        sqlite.dispose()
        postgres.dispose()


def test_models_match_the_migration(db):
    """Every model column exists in the migrated database (no forgotten migration)."""
    insp = inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        have = {c["name"] for c in insp.get_columns(table.name)}
        assert {c.name for c in table.columns} <= have, table.name


def test_timestamps_come_back_aware_in_utc(db):
    beijing = timezone(timedelta(hours=8))
    at = datetime(2026, 12, 1, 9, 30, tzinfo=beijing)
    with db.transaction() as s:
        s.add(AuditLog(at=at, actor="test", action="check", entity="clock"))
    with db.session() as s:
        got = s.scalar(select(AuditLog.at))
    assert got == at
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
    assert got == datetime(2026, 12, 1, 1, 30, tzinfo=UTC)


def test_naive_timestamps_are_refused(db):
    with pytest.raises(Exception, match="naive datetime"), db.transaction() as s:
        s.add(AuditLog(at=datetime(2026, 12, 1, 9, 30), actor="t", action="a", entity="e"))
        s.flush()


def test_a_connection_that_died_while_idle_is_replaced_at_check_out(pg_database, monkeypatch):
    """No ping per request: only a connection idle for a while is pinged at check-out,
    and one found dead then is replaced, as ``pool_pre_ping`` would."""
    from sqlalchemy import text

    import minping.db

    db = Database(pg_database)
    admin = Database(pg_database)
    try:
        with db.engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with admin.engine.begin() as conn:  # the server drops it (a restart, say)
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        monkeypatch.setattr(minping.db, "PING_AFTER_IDLE", 0.0)
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        db.dispose()
        admin.dispose()
