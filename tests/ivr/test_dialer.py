"""The dialer's error handling, reconciliation and the ``dial`` / ``simulate`` commands."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select, update

from ivr.dialer import Dialer
from ivr.simulator import (
    CallbackFaults,
    Persona,
    RealClock,
    Simulator,
    SimulatorServer,
    WsgiWebhookTransport,
)
from minping.models import AttemptEvent, FrameContact
from minping.settings import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN, SIMULATOR_FROM_NUMBER
from tests.builders import FIELD_START


def test_http_429_is_retried_with_back_off(rig_factory):
    # the account takes one call every 20 s; the dialer would go faster
    rig = rig_factory(n_cases=3, sim_kwargs={"calls_per_second": 0.05})
    rig.dialer.rules = __import__("dataclasses").replace(rig.cfg.calling, calls_per_second=10.0)
    for i in range(3):
        rig.persona(i, line="busy")
    for _ in range(3):
        rig.dialer.step()
        rig.clock.advance(0.1)
    assert rig.dialer.progress.retried_429 >= 2
    assert rig.dialer.progress.errors == 0
    assert len(rig.sim.calls) == 3
    created = sorted(c.date_created for c in rig.sim.calls.values())
    assert all((b - a).total_seconds() >= 19.9 for a, b in zip(created, created[1:],
                                                                  strict=False))


def test_other_gateway_errors_are_recorded_on_the_attempt(rig_factory):
    rig = rig_factory()
    with rig.db.transaction() as s:
        s.execute(update(FrameContact).values(phone="12345"))  # not a number Twilio takes
    rig.dialer.step()
    (attempt,) = rig.attempts()
    assert attempt.outcome == "3.16" and "21211" in attempt.error
    case = rig.case()
    assert case.state == "in_field" and case.lock_channel is None
    assert case.next_attempt_at is not None


def test_stale_attempts_are_reconciled_against_the_gateway_on_start(rig_factory):
    rig = rig_factory()
    rig.sim.set_callback_faults(CallbackFaults(drop=frozenset({"completed"})))
    rig.persona(line="busy")
    rig.dial()
    (attempt,) = rig.attempts()
    assert attempt.outcome is None  # the final callback never came
    fresh = Dialer(rig.db, rig.cfg, rig.client, public_url=rig.public_url,
                   from_number=SIMULATOR_FROM_NUMBER, now=rig.clock.now)
    assert fresh.reconcile() == 1
    (attempt,) = rig.attempts()
    assert attempt.outcome == "3.12" and rig.case().lock_channel is None
    with rig.db.session() as s:
        assert s.scalar(select(AttemptEvent.kind).where(AttemptEvent.kind == "reconciled"))


def test_simulate_command_runs_a_field_period(runner, db):
    from tests.builders import build_field

    build_field(db, n_cases=12, units_per_case=2)
    result = runner.invoke(["simulate", "--days", "2", "--seed", "5", "--json",
                            "--start", FIELD_START.isoformat()])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["cases"] == 12 and summary["calls"] >= 12
    assert summary["max_calls_in_one_second"] <= 1
    assert summary["max_concurrent_calls"] <= 20
    assert sum(summary["final_dispositions"].values()) == 12
    assert summary["sms_notices"] == 12


def test_dial_command_places_calls_through_the_rest_api(runner, db, app, tmp_path):
    """``minping dial`` against the simulator over HTTP on the real clock."""
    from tests.builders import build_field

    build_field(db, n_cases=3, units_per_case=1)
    config = tmp_path / "survey.toml"
    text = (Path(__file__).resolve().parents[2] / "minping" / "data" / "survey.toml").read_text(encoding="utf-8")
    for day in ("mon", "tue", "wed", "thu", "fri", "sat"):
        text = text.replace(f'{day} = ["', f'{day} = ["00:00-23:59", "XX')
    text = text.replace('sun = []', 'sun = ["00:00-23:59"]')
    import re

    text = re.sub(r'"XX[^\]]*\]', "]", text)
    text = re.sub(r"start_date = .*", "start_date = 2025-01-01", text)
    text = re.sub(r"end_date = .*", "end_date = 2030-12-31", text)
    text = text.replace("sms_advance_notice = true", "sms_advance_notice = false")
    config.write_text(text, encoding="utf-8")
    import numpy as np

    sim = Simulator(account_sid=SIMULATOR_ACCOUNT_SID, auth_token=SIMULATOR_AUTH_TOKEN,
                    rng=np.random.default_rng(1), transport=WsgiWebhookTransport(app),
                    clock=RealClock())
    for i in range(3):
        sim.set_persona(f"+86138{i:08d}", Persona(line="busy"))
    with SimulatorServer(sim) as server:
        sim.start()
        try:
            result = runner.invoke(["dial", "--max-seconds", "4", "--json"], env={
                "TWILIO_API_URL": server.base_url, "MINPING_CONFIG": str(config),
                "MINPING_PUBLIC_URL": "http://testserver.local"})
        finally:
            sim.stop()
    assert result.exit_code == 0, result.output
    counters = json.loads(result.output)
    assert counters["placed"] == 3 and counters["errors"] == 0
    assert {c.to for c in sim.calls.values()} == {f"+86138{i:08d}" for i in range(3)}


def test_learned_call_times_hold_a_never_tried_case_until_its_best_time(rig_factory, db):
    """``retry_method = "learned"``: at 10:00 a stratum reached only in the evening is not
    dialled; the case is due at the evening part, and the dialer calls it then."""
    from dataclasses import replace

    from minping import calling, calltimes
    from minping.config import load_config
    from tests.ivr.conftest import quiet_config

    base = load_config()
    cfg = quiet_config(replace(base, calling=replace(base.calling, retry_method="learned")))
    rig = rig_factory(n_cases=1, cfg=cfg)
    stratum = rig.case(0).stratum_id
    evening = calltimes.estimate([(stratum, w, 2, i < 15) for w in range(6) for i in range(20)]
                                 + [(stratum, w, d, False) for w in range(6) for d in (0, 1)
                                    for _ in range(20)])
    calltimes.CACHE.clear()
    calltimes.CACHE.put(db.url, cfg.calling, evening)
    try:
        rig.persona(0, keys=["1", "1", "2", "3"], record_seconds=0)
        result = rig.dial()                                  # Wednesday 10:00 Shanghai
        assert result.placed == 0 and rig.calls_to(0) == [] and rig.attempts(0) == []
        case = rig.case(0)
        due = case.next_attempt_at
        assert due.astimezone(cfg.calling.tz).hour == 17 and calling.is_allowed(cfg.calling, due)
        assert case.lock_channel is None                      # not held while it waits
        rig.dial_when_due(0)
        assert len(rig.calls_to(0)) == 1 and rig.case(0).final_disposition == "1.1"
    finally:
        calltimes.CACHE.clear()


def test_each_call_is_claimed_in_the_dialers_order_off_its_index(rig_factory):
    """Never-tried cases first, then the earliest due; the pacing row names the last call.

    On SQLite the due-case query reads ``ix_sample_case_due`` in that order and sorts
    nothing (it sorted every released case on every call placed before).
    """
    from datetime import timedelta

    from sqlalchemy import event

    from minping import cases
    from minping.models import Lease, SampleCase

    rig = rig_factory(n_cases=4)
    with rig.db.transaction() as s:  # case 0 due an hour ago, case 1 half an hour ago
        for i, minutes in ((0, 60), (1, 30)):
            s.execute(update(SampleCase).where(SampleCase.id == rig.case_id(i)).values(
                next_attempt_at=FIELD_START - timedelta(minutes=minutes)))
    for i in range(4):
        rig.persona(i, line="busy")
    dialed = []
    for _ in range(4):
        rig.dial()
        dialed.append(next(c.to for c in rig.sim.calls.values() if c.to not in dialed))
        with rig.db.session() as s:
            lease = s.get(Lease, "ivr-dialer")
            assert lease.holder == rig.dialer.name
            assert lease.state["last_dial"] == rig.dialer._last_dial.isoformat()
        rig.later(seconds=1)
    assert dialed == [rig.phone(2), rig.phone(3), rig.phone(0), rig.phone(1)]
    if rig.db.dialect == "sqlite":  # the statements the dialer's hold runs, and their plans
        seen = []
        engine = rig.db.engine

        def keep(conn, cursor, statement, parameters, context, executemany):
            seen.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", keep)
        try:
            with rig.db.transaction() as s:
                cases.hold_cases_for_ivr(s, now=FIELD_START, limit=1, max_attempts=6)
                dbapi = s.connection().connection.dbapi_connection
                plans = [" ".join(str(r) for r in dbapi.execute("EXPLAIN QUERY PLAN " + sql, p))
                         for sql, p in seen if sql.lstrip().upper().startswith("SELECT")]
                s.rollback()
        finally:
            event.remove(engine, "before_cursor_execute", keep)
        assert "ix_sample_case_due" in plans[0] and "TEMP B-TREE" not in plans[0], plans[0]
