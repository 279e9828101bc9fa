"""Two dialer processes against one PostgreSQL database."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from sqlalchemy import select

from minping.db import Database
from minping.models import AttemptEvent, CallAttempt
from tests.builders import build_field
from tests.ivr.dialer_worker import CALLS_PER_SECOND, MAX_ATTEMPTS, MAX_CONCURRENT

ROOT = Path(__file__).resolve().parents[2]
N_CASES = 400


def test_two_dialer_processes_never_dial_a_case_twice_at_once(pg_server):
    url = pg_server.create_database()
    db = Database(url)
    db.upgrade()
    # Each worker dials until nothing is left (its 500 s deadline only guards against a
    # hang): the test then checks every case, however slow a loaded machine is.
    field = build_field(db, n_cases=N_CASES, units_per_case=1)
    workers = [subprocess.Popen([sys.executable, "-m", "tests.ivr.dialer_worker", url, str(seed),
                                 "500"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for seed in (1, 2)]
    for worker in workers:
        out, err = worker.communicate(timeout=600)  # generous: a loaded machine is slow
        assert worker.returncode == 0, err
    with db.session() as s:
        attempts = s.execute(select(CallAttempt.case_id, CallAttempt.started_at,
                                    CallAttempt.ended_at, CallAttempt.outcome)).all()
        dialers = s.execute(select(AttemptEvent.payload).where(AttemptEvent.kind == "placed"))
        by_dialer = defaultdict(int)
        for (payload,) in dialers:
            by_dialer[payload["dialer"]] += 1
    db.dispose()
    assert set(by_dialer) == {"worker-1", "worker-2"}  # both took part
    assert {a.case_id for a in attempts} == set(field.case_ids)  # every case was dialled
    assert all(a.outcome is not None and a.ended_at is not None for a in attempts)
    per_case = defaultdict(list)
    for a in attempts:
        per_case[a.case_id].append((a.started_at, a.ended_at))
    for case_id, spans in per_case.items():
        assert len(spans) <= MAX_ATTEMPTS, case_id
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"case {case_id} dialed while an attempt was open"
    # the limits hold across both processes
    starts = sorted(a.started_at for a in attempts)
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 1 / CALLS_PER_SECOND - 1e-4
    edges = sorted([(a.started_at, 1) for a in attempts] + [(a.ended_at, -1) for a in attempts])
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    assert peak <= MAX_CONCURRENT
    assert len(field.case_ids) == N_CASES
