"""One dialer process of the multi-process test (run as ``python -m tests.ivr.dialer_worker``).

It dials on the real clock with calling rules open all day, and a stand-in for
the telephone network that ends each call a few milliseconds after it is placed
(busy or no answer, reported through the same status-callback service the
webhook uses), so thousands of attempts run in seconds.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import numpy as np
from sqlalchemy import distinct, func, select

from ivr import callstate
from ivr.dialer import Dialer
from minping.config import FrozenMap, TimeWindow, load_config
from minping.db import Database
from minping.models import CallAttempt, SampleCase
from minping.settings import SIMULATOR_FROM_NUMBER

CALLS_PER_SECOND = 300.0
MAX_CONCURRENT = 30
MAX_ATTEMPTS = 2


def open_all_day(cfg):
    today = datetime.now(UTC).date()
    whole_day = (TimeWindow(time(0, 0), time(23, 59, 59, 999999)),)
    rules = dataclasses.replace(
        cfg.calling, windows=FrozenMap({d: whole_day for d in range(7)}), holidays=frozenset(),
        start_date=min(cfg.calling.start_date, today - timedelta(days=1)),
        end_date=max(cfg.calling.end_date, today + timedelta(days=2)),
        calls_per_second=CALLS_PER_SECOND, max_concurrent_calls=MAX_CONCURRENT,
        max_attempts=MAX_ATTEMPTS,
        retry_delays=FrozenMap({k: timedelta(0) for k in cfg.calling.retry_delays}))
    ivr = dataclasses.replace(cfg.ivr, sms_advance_notice=False)
    start = min(cfg.campaign.start_date, today - timedelta(days=1))
    end = max(cfg.campaign.end_date, today + timedelta(days=2))
    campaign = dataclasses.replace(cfg.campaign, start_date=start, end_date=end)
    return dataclasses.replace(cfg, calling=rules, ivr=ivr, campaign=campaign)


class QuickNetwork:
    """``client.calls.create`` / ``client.calls(sid).fetch()``: calls that end at once."""

    def __init__(self, db, cfg, rng: np.random.Generator, name: str):
        self.db, self.cfg, self.rng, self.name = db, cfg, rng, name
        self.timers: list[threading.Timer] = []
        self.count = 0
        self.calls = self

    def __call__(self, sid):  # client.calls(sid)
        return SimpleNamespace(fetch=lambda: SimpleNamespace(
            status="in-progress", answered_by=None, duration=None))

    def create(self, **kwargs):
        self.count += 1
        sid = f"CA{self.name}{self.count:030d}"[:34]
        attempt_id = int(parse_qs(urlsplit(kwargs["url"]).query)["attempt"][0])
        status = "busy" if self.rng.random() < 0.5 else "no-answer"
        timer = threading.Timer(float(self.rng.uniform(0.002, 0.03)), self._end,
                                args=(attempt_id, sid, status))
        self.timers.append(timer)
        timer.start()
        return SimpleNamespace(sid=sid)

    def _end(self, attempt_id, sid, status):
        with self.db.transaction() as s:
            attempt = s.get(CallAttempt, attempt_id)
            callstate.record_status(s, self.cfg, attempt,
                                  {"CallSid": sid, "CallStatus": status, "SequenceNumber": "2"},
                                  token=f"{sid}-end", now=datetime.now(UTC))


def _stop_when_every_case_dialled(db, stop: threading.Event) -> None:
    """Stop once every case has had an attempt and none is open (retries are spread to
    other parts of the day, hours away: waiting for them would only wait out the deadline)."""
    cases = select(func.count(SampleCase.id))
    dialled = select(func.count(distinct(CallAttempt.case_id)))
    still_open = select(func.count(CallAttempt.id)).where(CallAttempt.outcome.is_(None))
    while not stop.wait(0.5):
        with db.session() as s:
            if s.scalar(dialled) >= s.scalar(cases) and s.scalar(still_open) == 0:
                stop.set()


def main(url: str, seed: int, seconds: float) -> int:
    db = Database(url)
    cfg = open_all_day(load_config())
    network = QuickNetwork(db, cfg, np.random.default_rng(seed), name=f"{seed:02d}")
    dialer = Dialer(db, cfg, network, public_url="https://survey.invalid",
                    from_number=SIMULATOR_FROM_NUMBER, now=lambda: datetime.now(UTC),
                    name=f"worker-{seed}")
    stop = threading.Event()
    deadline = threading.Timer(seconds, stop.set)
    deadline.start()
    watcher = threading.Thread(target=_stop_when_every_case_dialled, args=(db, stop),
                               daemon=True)
    watcher.start()
    try:
        dialer.run(stop, until_done=True, max_wait=0.02)
    finally:
        deadline.cancel()
        for timer in network.timers:
            timer.join()
        db.dispose()
    print(f"worker {seed}: placed {dialer.progress.placed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
