"""Faults under load: the app server killed, PostgreSQL restarted, the dialer killed.

Each test prints what it measured: calls, acknowledged answers, losses.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import create_engine, func, select, text, update

from minping.db import Database
from minping.models import Answer, CallAttempt, CaseUnit, SampleCase
from tests.builders import build_field
from tests.reliability.harness import (
    ROOT,
    Stack,
    acknowledged_answers,
    check_answers,
    fast_behaviour,
    free_port,
    open_all_day,
    overlapping_attempts,
)


def _stored_positions(db) -> dict[int, set[int]]:
    with db.session() as s:
        rows = s.execute(select(CaseUnit.case_id, CaseUnit.position)
                         .join(Answer, (Answer.case_id == CaseUnit.case_id)
                               & (Answer.unit_id == CaseUnit.unit_id))).all()
    out: dict[int, set[int]] = defaultdict(set)
    for case_id, pos in rows:
        out[case_id].add(pos)
    return out


def _open_attempts(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(CallAttempt)
                        .where(CallAttempt.outcome.is_(None))) or 0


def _wait_mid_interview(stack, *, units: int, min_answers: int, min_calls: int,
                        timeout: float) -> dict[str, int]:
    """Wait until ``min_answers`` answers are acknowledged and ``min_calls`` live calls
    have answered some but not all of their ``units`` questions; ``{call sid: attempt}``
    of those calls.  Fails the test if that never happens.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exchanges = stack.exchanges()
        acked = acknowledged_answers(exchanges)
        sid_of = {int(parse_qs(urlsplit(x.url).query)["attempt"][0]): x.call_sid
                  for x in exchanges if "/ivr/answer" in x.url and x.call_sid}
        per_attempt = Counter(attempt for attempt, _ in acked)
        live = {sim_call.sid for sim_call in stack.calls() if not sim_call.ended}
        mid = {sid_of[a]: a for a, k in per_attempt.items()
               if 0 < k < units and sid_of.get(a) in live}
        if len(acked) >= min_answers and len(mid) >= min_calls:
            return mid
        time.sleep(0.01)
    pytest.fail(f"calls never were mid-interview: {len(stack.calls())} calls, "
                f"{len(acknowledged_answers(stack.exchanges()))} answers acknowledged")


@pytest.mark.slow
def test_app_server_killed_mid_load_keeps_every_acknowledged_answer_and_cases_resume(pg_server):
    db = Database(pg_server.create_database("minping_kill"))
    db.upgrade()
    n = 60
    field = build_field(db, n_cases=n, units_per_case=3)
    cfg = open_all_day(field.cfg, max_attempts=3, retry_now=True)
    # respondents take a moment over each question, so that interviews last a while, and
    # every line is a person who answers and carries on (each simulator draws its own
    # personas, and a case's second call may go through the other one)
    behaviour = fast_behaviour(
        answer_delay_seconds=(0.3, 0.6), p_busy_attempt=0.0, p_breakoff=0.0,
        p_never_answers=0.0, p_busy_line=0.0, p_machine=0.0, p_fax=0.0, p_non_working=0.0,
        p_refuse_key=0.0, p_refuse_hangup=0.0, p_opt_out_key=0.0, p_handoff_key=0.0)
    stack = Stack(db, cfg, n_sims=2, behaviour=behaviour)
    try:
        stack.start()
        placed: list[int] = []
        dialing = threading.Thread(target=lambda: placed.append(stack.dial(n)))
        dialing.start()
        # the test makes its own condition, whatever the load of the machine: the kill
        # comes once answers were acknowledged and calls are provably mid-interview
        mid = _wait_mid_interview(stack, units=3, min_answers=10, min_calls=3, timeout=120)
        stack.app.kill()  # SIGKILL master and workers
        acked_at_kill = len(acknowledged_answers(stack.exchanges()))
        dialing.join()
        # the app stays down until each of those calls has ended on a failed webhook
        deadline = time.monotonic() + 60
        while not all(sim.calls[sid].ended for sim in stack.sims for sid in mid
                      if sid in sim.calls) and time.monotonic() < deadline:
            time.sleep(0.05)
        stack.app.start()
        stack.wait_calls_over(timeout=90)
        # status callbacks lost while the app was down: the gateway knows how the calls ended
        reconciled = sum(d.reconcile() for d in stack.dialers)
        open_after = _open_attempts(db)
        round_one = check_answers(db, acknowledged_answers(stack.exchanges()))
        before = _stored_positions(db)
        seen = [len(sim.exchanges) for sim in stack.sims]
        with db.transaction() as s:  # the retries are due now
            s.execute(update(SampleCase).where(SampleCase.state.in_(("pending", "in_field")))
                      .values(next_attempt_at=None))
        interrupted = [c for c, p in before.items() if 0 < len(p) < 3]
        placed_again = stack.dial(n)
        stack.wait_calls_over(timeout=90)
        second = [x for sim, k in zip(stack.sims, seen, strict=True) for x in sim.exchanges[k:]]
        final = check_answers(db, acknowledged_answers(stack.exchanges()))
    finally:
        stack.stop()
    with db.session() as s:
        attempt_case = dict(s.execute(select(CallAttempt.id, CallAttempt.case_id)).all())
    reasked = []
    resumed = set()
    for (attempt_id, pos), _ in acknowledged_answers(second).items():
        case_id = attempt_case[attempt_id]
        if pos in before.get(case_id, set()):
            reasked.append((case_id, pos))
        if case_id in interrupted:
            resumed.add(case_id)
    errors = Counter(x.outcome for x in stack.exchanges() if x.outcome != "ok")
    placed = sum(placed)
    mid_cases = {attempt_case[a] for a in mid.values()}
    print(f"\napp killed with {len(mid)} calls mid-interview and {acked_at_kill} answers "
          f"acknowledged: {placed} calls, then {placed_again} more; webhook failures while "
          f"down {dict(errors)}; attempts reconciled {reconciled}, left open {open_after}; "
          f"answers acknowledged {final.acknowledged}, stored {final.stored}, "
          f"lost {len(final.lost)}, wrong {len(final.wrong)}; interrupted cases "
          f"{len(interrupted)}, resumed {len(resumed)}, questions asked again {len(reasked)}")
    overlaps = overlapping_attempts(db)
    db.dispose()
    assert placed == n
    assert sum(errors.values()) > 0  # the kill did interrupt calls
    assert open_after == 0
    assert round_one.lost == [] and round_one.wrong == []
    assert final.lost == [] and final.wrong == [] and final.rewritten == 0
    # the calls cut mid-interview left partial cases (unless the answer in flight at the
    # kill was the last one and got stored), and each was called again and carried on
    cut = mid_cases & set(interrupted)
    assert cut and cut <= resumed
    assert reasked == []
    assert overlaps == []


class PrivateCluster:
    """A throw-away PostgreSQL cluster (initdb + pg_ctl as ``postgres``) on a free port."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            pytest.fail("initdb not found under /usr/lib/postgresql/*/bin", pytrace=False)
        self.bin = Path(bins[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="minping-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        shutil.chown(self.dir, "postgres", "postgres")
        os.chmod(self.dir, 0o700)
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                 "--no-sync", "-E", "UTF8")

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / tool), *args],
                       check=True, capture_output=True, timeout=120)

    def _ctl(self, action: str, *extra: str) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", action, "-D", str(self.data), "-w", "-t", "60", "-o", opts,
                 "-l", str(self.dir / "log"), *extra)

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "stop",
                        "-D", str(self.data), "-m", "immediate", "-w"], capture_output=True,
                       timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    def create_database(self, name: str) -> str:
        admin = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@pytest.mark.slow
def test_postgres_restarted_mid_load_app_recovers_and_loses_nothing():
    cluster = PrivateCluster()
    stack = None
    try:
        cluster.start()
        db = Database(cluster.create_database("minping"))
        db.upgrade()
        n = 60
        field = build_field(db, n_cases=n + 20, units_per_case=3)
        cfg = open_all_day(field.cfg, max_attempts=1)
        stack = Stack(db, cfg, n_sims=2)
        stack.start()
        placed = stack.dial(n)
        time.sleep(1.0)
        restart_began = time.monotonic()
        cluster.restart()
        restart_seconds = time.monotonic() - restart_began
        stack.wait_calls_over(timeout=90)
        ready = requests.get(stack.app.base + "/readyz", timeout=10)
        failed_before = sum(v for k, v in stack.transport.statuses.items() if k >= 500)
        # the app recovered by itself: new calls go through without an error
        statuses_before = dict(stack.transport.statuses)
        placed_after = stack.dial(20)
        stack.wait_calls_over(timeout=60)
        new_5xx = sum(v - statuses_before.get(k, 0)
                      for k, v in stack.transport.statuses.items() if k >= 500)
        reconciled = sum(d.reconcile() for d in stack.dialers)
        result = check_answers(db, acknowledged_answers(stack.exchanges()))
        open_after = _open_attempts(db)
        overlaps = overlapping_attempts(db)
        db.dispose()
    finally:
        if stack is not None:
            stack.stop()
        cluster.stop()
    print(f"\nPostgreSQL restarted ({restart_seconds:.1f} s) under {placed} calls: 5xx during "
          f"the restart {failed_before}, after it {new_5xx} ({placed_after} new calls); "
          f"/readyz {ready.status_code}; reconciled {reconciled}, open {open_after}; answers "
          f"acknowledged {result.acknowledged}, stored {result.stored}, lost "
          f"{len(result.lost)}, wrong {len(result.wrong)}, written twice {result.rewritten}")
    assert placed == n and placed_after == 20
    assert ready.status_code == 200
    assert new_5xx == 0
    assert result.lost == [] and result.wrong == [] and result.rewritten == 0
    assert open_after == 0
    assert overlaps == []


@pytest.mark.slow
def test_dialer_killed_and_restarted_never_dials_a_case_twice(pg_server):
    db = Database(pg_server.create_database("minping_dialer"))
    db.upgrade()
    n = 45
    field = build_field(db, n_cases=n, units_per_case=2)
    cfg = open_all_day(field.cfg, max_attempts=1)
    stack = Stack(db, cfg, n_sims=1)
    procs = []
    try:
        stack.start()
        args = [sys.executable, "-m", "tests.reliability.dialer_proc", db.url,
                stack.servers[0].base_url, stack.sim.account_sid]
        first = subprocess.Popen(args + ["1"], cwd=ROOT, stderr=subprocess.DEVNULL)
        procs.append(first)
        deadline = time.monotonic() + 30
        while len(stack.sim.calls) < n // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = len(stack.sim.calls)
        second = subprocess.Popen(args + ["2"], cwd=ROOT, stderr=subprocess.DEVNULL)
        procs.append(second)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with db.session() as s:
                untried = s.scalar(select(func.count()).select_from(SampleCase)
                                   .where(SampleCase.attempts == 0)) or 0
            if untried == 0:
                break
            time.sleep(0.2)
        stack.wait_calls_over(timeout=60)
        second.send_signal(signal.SIGKILL)
        second.wait(timeout=10)
        # an attempt claimed by the killed process before its call was placed is closed
        # by reconciliation once it is two minutes old (it never reached the gateway)
        later = stack.new_dialer(0)
        later.now = lambda: datetime.now(UTC) + timedelta(minutes=3)
        reconciled = later.reconcile()
        open_after = _open_attempts(db)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        stack.stop()
    numbers = Counter(c.to for c in stack.sim.calls.values())
    with db.session() as s:
        per_case = Counter(s.scalars(select(CallAttempt.case_id)).all())
    dialed_twice = [k for k, v in numbers.items() if v > 1]
    print(f"\ndialer killed after {killed_at} calls, restarted: {len(stack.sim.calls)} calls to "
          f"{len(numbers)} numbers, dialed twice {len(dialed_twice)}, attempts "
          f"{sum(per_case.values())} on {len(per_case)} cases, reconciled {reconciled}, "
          f"left open {open_after}")
    db.dispose()
    assert 0 < killed_at < n
    assert dialed_twice == []
    assert max(per_case.values()) == 1 and len(per_case) == n
    assert open_after == 0
