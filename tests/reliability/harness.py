"""A live stack for the reliability tests, on loopback only.

* the app served by gunicorn (``minping.wsgi:app``) on a free port, on a fresh
  PostgreSQL database holding a field from :func:`tests.builders.build_field`;
* the local Twilio simulator on the real clock, its REST API over HTTP
  (:class:`~ivr.simulator.SimulatorServer`) and its webhooks over HTTP
  (:class:`~ivr.simulator.HttpWebhookTransport`, signed for the public URL and
  routed to gunicorn as a reverse proxy would), with respondents who answer
  quickly so that a few hundred calls end within seconds;
* the dialer (:class:`ivr.dialer.Dialer`) pointed at the simulator through the
  real ``twilio`` client, with a calling window open all day.

:func:`acknowledged_answers` reads, from the simulator's records, every answer
webhook the application acknowledged (HTTP 200) and the rating it carried;
:func:`check_answers` compares them with the database.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import requests
from sqlalchemy import func, select

from ivr.dialer import Dialer
from ivr.simulator import (
    BehaviourModel,
    HttpWebhookTransport,
    RealClock,
    Simulator,
    SimulatorServer,
    WebhookRequest,
    WebhookResponse,
    twilio_client,
)
from minping.config import FrozenMap, TimeWindow
from minping.models import Answer, AuditLog, CallAttempt, CaseUnit
from minping.settings import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN, SIMULATOR_FROM_NUMBER

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://survey.reliability.invalid"
GUNICORN = Path(sys.executable).with_name("gunicorn")
RATING_KEYS = {"0", "1", "2", "3"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast_behaviour(**changes) -> BehaviourModel:
    """Respondents who answer at once and press keys quickly (no silence, no ``*``)."""
    values = dict(
        answer_by_hour=(1.0,) * 24, propensity=(1.0, 1.0), p_silence=0.0, p_star=0.0,
        ring_seconds=(0.1, 0.4), answer_delay_seconds=(0.05, 0.2), key_interval_seconds=0.01,
        record_seconds=(0.1, 0.3), machine_seconds=1.0, fax_seconds=1.0,
        say_seconds_per_cjk_char=0.001, say_seconds_per_other_char=0.0005, play_seconds=0.1,
        dial_talk_seconds=(0.5, 1.0),
    )
    values.update(changes)
    return BehaviourModel(**values)


def open_all_day(cfg, *, max_concurrent: int = 400, calls_per_second: float = 500.0,
                 max_attempts: int | None = None, retry_now: bool = False):
    """``cfg`` with a calling window open around the clock today (no SMS notice, short rings).

    With ``retry_now`` a case may be called again as soon as its attempt ends.
    """
    rules = cfg.calling
    today = datetime.now(UTC).date()
    window = (TimeWindow(dtime(0, 0), dtime(23, 59, 59, 999999)),)
    retry = (FrozenMap({k: timedelta(0) for k in rules.retry_delays}) if retry_now
             else rules.retry_delays)
    calling = dataclasses.replace(
        rules, windows=FrozenMap({d: window for d in range(7)}), holidays=frozenset(),
        start_date=today - timedelta(days=2), end_date=today + timedelta(days=2),
        calls_per_second=calls_per_second, max_concurrent_calls=max_concurrent,
        max_attempts=max_attempts or rules.max_attempts, retry_delays=retry,
        ring_timeout_seconds=2)  # a line nobody answers rings 2 s (real time), not 30
    ivr = dataclasses.replace(cfg.ivr, sms_advance_notice=False)
    campaign = dataclasses.replace(cfg.campaign,
                                   start_date=min(cfg.campaign.start_date, today - timedelta(2)),
                                   end_date=max(cfg.campaign.end_date, today + timedelta(2)))
    return dataclasses.replace(cfg, calling=calling, ivr=ivr, campaign=campaign)


class TimedTransport(HttpWebhookTransport):
    """HTTP webhooks that remember each response's latency (seconds)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = defaultdict(int)
        self._lock = threading.Lock()

    def send(self, request: WebhookRequest) -> WebhookResponse:
        response = super().send(request)
        with self._lock:
            self.latencies.append(response.elapsed)
            self.statuses[response.status_code] += 1
        return response


class Gunicorn:
    """``gunicorn -w 2 --threads 8 minping.wsgi:app`` on a free loopback port."""

    def __init__(self, database_url: str, *, workers: int = 2, threads: int = 8,
                 extra_env: dict | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = [str(GUNICORN), "-w", str(workers), "--threads", str(threads),
                     "-b", f"127.0.0.1:{self.port}", "--log-level", "warning",
                     "--graceful-timeout", "2", "minping.wsgi:app"]
        self.env = os.environ | {
            "DATABASE_URL": database_url, "MINPING_PUBLIC_URL": PUBLIC_URL,
            "TWILIO_ACCOUNT_SID": SIMULATOR_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": SIMULATOR_AUTH_TOKEN,
            "TWILIO_FROM_NUMBER": SIMULATOR_FROM_NUMBER,
            "MINPING_ENV": "production", "MINPING_SECRET_KEY": "reliability-secret-" + "r" * 32,
            "PYTHONPATH": str(ROOT),
        } | (extra_env or {})
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        # The app logs one JSON line per request: send it to a file, never to a pipe
        # nobody reads (a full pipe would block the workers).
        fd, self._log = tempfile.mkstemp(prefix="gunicorn-", suffix=".log")
        with os.fdopen(fd, "w") as log:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env,
                                         start_new_session=True, stdout=subprocess.DEVNULL,
                                         stderr=log, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log()}")
            try:
                if requests.get(self.base + "/healthz", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not start in time")

    def kill(self) -> None:
        """SIGKILL the master and its workers (the whole process group) at once."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def log(self) -> str:
        path = getattr(self, "_log", None)
        if path is None:
            return ""
        with open(path, encoding="utf-8", errors="replace") as log:
            return log.read()


class Stack:
    """Simulators (each with its HTTP server and dialer) + gunicorn, over ``db``.

    One simulator plays its calls' webhooks one at a time (like one Twilio
    edge); ``n_sims`` of them, each driven by its own dialer on the shared
    database, send webhooks side by side.
    """

    def __init__(self, db, cfg, *, seed: int = 5, behaviour: BehaviourModel | None = None,
                 gunicorn_env: dict | None = None, n_sims: int = 4):
        self.db = db
        self.cfg = cfg
        self.app = Gunicorn(db.url, extra_env=gunicorn_env)
        self.transport = TimedTransport(routes={PUBLIC_URL: self.app.base})
        # distinct accounts, so that call SIDs are unique across the simulators
        self.sims = [Simulator(account_sid=SIMULATOR_ACCOUNT_SID[:-2] + f"{i:02x}",
                               auth_token=SIMULATOR_AUTH_TOKEN,
                               rng=np.random.default_rng(seed + i), transport=self.transport,
                               clock=RealClock(), behaviour=behaviour or fast_behaviour(),
                               webhook_timeout=15.0)
                     for i in range(n_sims)]
        self.servers = [SimulatorServer(sim) for sim in self.sims]
        self.clients: list = []
        self.dialers: list[Dialer] = []

    @property
    def sim(self) -> Simulator:
        return self.sims[0]

    def start(self) -> None:
        bases = [server.start() for server in self.servers]
        self.app.env["TWILIO_API_URL"] = bases[0]  # the app hangs up on machines through it
        self.app.start()
        for sim in self.sims:
            sim.start()
        self.clients = [twilio_client(sim, base_url=b) for sim, b in zip(self.sims, bases,
                                                                          strict=True)]
        self.dialers = [self.new_dialer(i) for i in range(len(self.sims))]

    def new_dialer(self, i: int = 0) -> Dialer:
        return Dialer(self.db, self.cfg, self.clients[i], public_url=PUBLIC_URL,
                      from_number=SIMULATOR_FROM_NUMBER, now=lambda: datetime.now(UTC),
                      name=f"reliability-{i}")

    def dial(self, n_calls: int, *, timeout: float = 60.0) -> int:
        """Place ``n_calls`` calls, shared among the dialers; returns how many were placed."""
        counts = [0] * len(self.dialers)
        share = [n_calls // len(self.dialers) + (i < n_calls % len(self.dialers))
                 for i in range(len(self.dialers))]

        def run(i: int) -> None:
            deadline = time.monotonic() + timeout
            while counts[i] < share[i] and time.monotonic() < deadline:
                result = self.dialers[i].step(max_calls=min(25, share[i] - counts[i]))
                counts[i] += result.placed
                if result.blocked == "done":
                    return
                if not result.placed:
                    time.sleep(0.05)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(self.dialers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts)

    def calls(self) -> list:
        return [c for sim in self.sims for c in list(sim.calls.values())]

    def exchanges(self) -> list:
        return [x for sim in self.sims for x in list(sim.exchanges)]

    def wait_calls_over(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c.ended for c in self.calls()):
                break
            time.sleep(0.1)
        for sim in self.sims:
            sim.wait_until_idle(timeout=max(1.0, deadline - time.monotonic()))

    def sim_errors(self) -> list:
        return [e for sim in self.sims for e in sim.errors]

    def stop(self) -> None:
        for sim in self.sims:
            sim.stop()
        for server in self.servers:
            server.stop()
        self.transport.close()
        self.app.stop()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def acknowledged_answers(exchanges) -> dict[tuple[int, int], str]:
    """``{(attempt id, position): rating}`` of every answer webhook answered 200.

    Only ratings on the scale are answers (another key is re-asked); the last
    acknowledged rating of a question wins.
    """
    acked: dict[tuple[int, int], str] = {}
    for x in sorted(exchanges, key=lambda e: e.at):
        if x.outcome != "ok" or x.status_code != 200 or "/ivr/answer" not in x.url:
            continue
        query = parse_qs(urlsplit(x.url).query)
        digits = x.form.get("Digits", "")
        if digits in RATING_KEYS:
            acked[(int(query["attempt"][0]), int(query["pos"][0]))] = digits
    return acked


@dataclasses.dataclass
class AnswerCheck:
    acknowledged: int
    stored: int
    lost: list
    wrong: list
    rewritten: int


def check_answers(db, acked: dict[tuple[int, int], str]) -> AnswerCheck:
    """Every acknowledged IVR answer is in the database, once, with its rating.

    ``rewritten`` counts IVR answers whose rating was changed afterwards (an
    answer written twice with different values leaves an ``answer.change``).
    """
    with db.session() as s:
        attempts = dict(s.execute(select(CallAttempt.id, CallAttempt.case_id)).all())
        positions = {(c, p): u for c, p, u in s.execute(
            select(CaseUnit.case_id, CaseUnit.position, CaseUnit.unit_id)).all()}
        stored = {(a.case_id, a.unit_id): a for a in s.scalars(select(Answer))}
        dupes = s.scalar(select(func.count()).select_from(
            select(Answer.case_id, Answer.unit_id).group_by(Answer.case_id, Answer.unit_id)
            .having(func.count() > 1).subquery()))
        rewritten = s.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "answer.change", AuditLog.actor.like("ivr%"))) or 0
    assert dupes == 0
    lost, wrong = [], []
    for (attempt_id, pos), rating in acked.items():
        case_id = attempts[attempt_id]
        answer = stored.get((case_id, positions[(case_id, pos)]))
        if answer is None:
            lost.append((attempt_id, pos, rating))
        elif answer.rating != rating:
            wrong.append((attempt_id, pos, rating, answer.rating))
    ivr_stored = sum(1 for a in stored.values() if a.channel == "ivr")
    return AnswerCheck(len(acked), ivr_stored, lost, wrong, rewritten)


def overlapping_attempts(db) -> list[int]:
    """Cases with two attempts open at once (IVR or CATI)."""
    with db.session() as s:
        rows = s.execute(select(CallAttempt.case_id, CallAttempt.started_at,
                                CallAttempt.ended_at)).all()
    spans = defaultdict(list)
    for case_id, start, end in rows:
        spans[case_id].append((start, end or datetime.max.replace(tzinfo=start.tzinfo)))
    bad = []
    for case_id, items in spans.items():
        items.sort()
        if any(b[0] < a[1] for a, b in zip(items, items[1:], strict=False)):
            bad.append(case_id)
    return bad


def today() -> date:
    return datetime.now(UTC).date()
