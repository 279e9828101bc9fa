"""Load: IVR calls through gunicorn while interviewers work the CATI queue.

300 simulated calls (signed webhooks over HTTP) are placed by the dialer against
the app served by gunicorn (2 workers x 8 threads) on PostgreSQL, while 20
interviewers (threads calling :mod:`cati.service` on their own sessions) take,
answer and close cases.  Every answer the app acknowledged must be in the
database exactly once, no case may be held by two channels or interviewers at
once, and no response may be a server error.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from cati import service as cati
from minping.cases import case_units
from minping.db import Database
from minping.models import Answer, User
from tests.builders import build_field
from tests.cati.helpers import add_user
from tests.reliability.harness import (
    Stack,
    acknowledged_answers,
    check_answers,
    open_all_day,
    overlapping_attempts,
    percentile,
)

N_CALLS = 300
N_INTERVIEWERS = 20
CASES_PER_INTERVIEWER = 6


class Interviewers:
    """``n`` interviewer threads working the CATI queue through ``cati.service``."""

    def __init__(self, db, cfg, n: int, *, cases_each: int):
        self.db, self.cfg, self.cases_each = db, cfg, cases_each
        self.user_ids = [add_user(db, f"load-int-{i}") for i in range(n)]
        self.saved: dict[tuple[int, int], str] = {}  # (case, unit) -> rating committed
        self.held: list[tuple[int, int]] = []  # (case, user)
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, args=(uid,)) for uid in self.user_ids]

    def _work(self, user_id: int) -> None:
        try:
            for n in range(self.cases_each):
                with self.db.session() as s:
                    user = s.get(User, user_id)
                    case = cati.take_next(s, user, now=datetime.now(UTC), cfg=self.cfg)
                    s.commit()
                    if case is None:
                        return
                    with self.lock:
                        self.held.append((case.id, user_id))
                    attempt = cati.begin_attempt(s, case, user, now=datetime.now(UTC))
                    cati.mark_answered(s, attempt, now=datetime.now(UTC), consent=True)
                    s.commit()
                    keys = ["1", "2", "3", "0"]
                    for i, unit in enumerate(case_units(s, case.id)):
                        key = keys[(i + n) % 4]
                        cati.save_answer(s, case, user, unit.unit_id, key,
                                         now=datetime.now(UTC), cfg=self.cfg)
                        s.commit()  # acknowledged: the screen shows it saved
                        with self.lock:
                            self.saved[(case.id, unit.unit_id)] = key
                    cati.close_attempt(s, case, user, code="1.1", now=datetime.now(UTC),
                                       cfg=self.cfg)
                    s.commit()
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "an interviewer is stuck"

    def missing(self, db) -> list:
        with db.session() as s:
            stored = {(a.case_id, a.unit_id): a.rating for a in s.scalars(
                select(Answer).where(Answer.channel == "cati"))}
        return [k for k, v in self.saved.items() if stored.get(k) != v]


@pytest.mark.slow
def test_300_ivr_calls_and_20_interviewers_lose_nothing(pg_server):
    url = pg_server.create_database("minping_load")
    db = Database(url)
    db.upgrade()
    n_cases = N_CALLS + N_INTERVIEWERS * CASES_PER_INTERVIEWER + 40
    field = build_field(db, n_cases=n_cases, units_per_case=3)
    cfg = open_all_day(field.cfg, max_attempts=1)
    stack = Stack(db, cfg)
    crew = Interviewers(db, cfg, N_INTERVIEWERS, cases_each=CASES_PER_INTERVIEWER)
    try:
        stack.start()
        started = time.monotonic()
        crew.start()
        placed = stack.dial(N_CALLS)
        crew.join(timeout=120)
        stack.wait_calls_over(timeout=120)
        seconds = time.monotonic() - started
    finally:
        stack.stop()
    server_errors = {code: n for code, n in stack.transport.statuses.items() if code >= 500}
    acked = acknowledged_answers(stack.exchanges())
    result = check_answers(db, acked)
    overlaps = overlapping_attempts(db)
    cati_missing = crew.missing(db)
    requests_sent = len(stack.transport.latencies)
    p99 = percentile(stack.transport.latencies, 0.99) * 1000
    p50 = percentile(stack.transport.latencies, 0.50) * 1000
    print(f"\nload: {placed} IVR calls placed, {len(stack.calls())} at the simulators, "
          f"{requests_sent} webhook requests in {seconds:.1f} s "
          f"({requests_sent / seconds:.1f} req/s), p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
          f"IVR answers acknowledged {result.acknowledged}, stored {result.stored}, "
          f"lost {len(result.lost)}, wrong {len(result.wrong)}, rewritten {result.rewritten}; "
          f"CATI cases {len(crew.held)} by {N_INTERVIEWERS} interviewers, "
          f"answers {len(crew.saved)}, lost {len(cati_missing)}; "
          f"cases held twice {len(overlaps)}; 5xx {sum(server_errors.values())}")
    db.dispose()
    assert not crew.errors, crew.errors[:3]
    assert placed == N_CALLS
    assert result.acknowledged > N_CALLS  # most calls gave answers
    assert result.lost == [] and result.wrong == [] and result.rewritten == 0
    assert cati_missing == []
    assert len(crew.held) == len({c for c, _ in crew.held})  # no case given out twice
    assert overlaps == []
    assert server_errors == {}
    assert not stack.sim_errors()
