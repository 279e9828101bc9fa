"""Two app servers and two dialers, as separate processes, against one PostgreSQL database.

The production shape on loopback: two ``gunicorn minping.wsgi:app`` servers (the
webhooks), two ``minping dial`` processes, and one local Twilio simulator on the
real clock whose REST API both dialers call (``TWILIO_API_URL``).  Twilio signs
every webhook against the one public URL (``MINPING_PUBLIC_URL``); a round-robin
transport in front of the two servers plays the load balancer, so consecutive
requests of one call land on different servers.  The run is bounded in time; the
checks read the database and the simulator's own records:

* no case is dialed twice at once (attempts per case never overlap, in the
  database and at the simulated carrier);
* the calls-per-second and concurrency limits hold across both dialers;
* no case is held twice (every attempt is placed by exactly one dialer, and no
  hold is left behind);
* every answer the app acknowledged to the simulator is stored, once;
* both servers and both dialers did work.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from bisect import bisect_left
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests
from sqlalchemy import select

from ivr.simulator import (
    BehaviourModel,
    HttpWebhookTransport,
    RealClock,
    Simulator,
    SimulatorServer,
    WebhookRequest,
    WebhookResponse,
)
from minping.config import load_config
from minping.db import Database
from minping.models import Answer, AttemptEvent, CallAttempt, CaseUnit, SampleCase
from minping.settings import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN, SIMULATOR_FROM_NUMBER
from tests.builders import build_field

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://survey.example.org"
CALLS_PER_SECOND = 5
MAX_CONCURRENT = 8
N_CASES = 240
RUN_SECONDS = 50.0

#: Respondents who answer at once and keep calls short, so a few hundred calls fit
#: in the run: every human line answers; prompts take half a second (the
#: simulator's floor); nobody stays silent (no 8 s Gather timeouts).  Busy lines,
#: answering machines, dead numbers, refusals and break-offs remain.
FAST_RESPONDENTS = BehaviourModel(
    p_never_answers=0.0, p_busy_line=0.04, p_machine=0.04, p_fax=0.0, p_non_working=0.02,
    p_busy_attempt=0.05, answer_by_hour=(1.0,) * 24, propensity=(1.0, 1.0),
    p_silence=0.0, p_star=0.0, p_wrong_key=0.02,
    ring_seconds=(0.2, 1.0), answer_delay_seconds=(0.1, 0.3), key_interval_seconds=0.05,
    record_seconds=(0.3, 0.8), machine_seconds=2.0,
    say_seconds_per_cjk_char=0.002, say_seconds_per_other_char=0.001)


def config_open_now(tmp_path: Path) -> Path:
    """A copy of the survey configuration that may call right now, with low limits.

    Calling windows cover the whole day (00:00-23:59, the widest the schema takes) in
    a fixed-offset zone where it is around noon now, so the one-minute gap before
    midnight is far away; the campaign covers today; no holidays; no SMS notice (it delays the first call);
    no spoken comment at the end.
    """
    text = (ROOT / "minping" / "data" / "survey.toml").read_text(encoding="utf-8")
    offset = (12 - datetime.now(UTC).hour + 12) % 24 - 12  # local hour is about 12
    zone = "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX signs are inverted
    text = re.sub(r'(?m)^timezone = .*$', f'timezone = "{zone}"', text)
    text = re.sub(r"(?m)^(mon|tue|wed|thu|fri|sat|sun) = \[.*\]$", r'\1 = ["00:00-23:59"]', text)
    text = re.sub(r"(?m)^holidays = \[.*\]$", "holidays = []", text)
    today = datetime.now(UTC).date()
    text = re.sub(r"(?m)^start_date = .*$", f"start_date = {today - timedelta(days=30)}", text)
    text = re.sub(r"(?m)^end_date = .*$", f"end_date = {today + timedelta(days=30)}", text)
    text = re.sub(r"(?m)^calls_per_second = .*$", f"calls_per_second = {CALLS_PER_SECOND}", text)
    text = re.sub(r"(?m)^max_concurrent_calls = .*$",
                  f"max_concurrent_calls = {MAX_CONCURRENT}", text)
    text = text.replace("sms_advance_notice = true", "sms_advance_notice = false")
    # the <Record> of a comment ends on 5 s of silence: it would double every call
    text = text.replace("record_comment = true", "record_comment = false")
    path = tmp_path / "survey.toml"
    path.write_text(text, encoding="utf-8")
    cfg = load_config(path)  # the edits must give a valid configuration
    assert cfg.calling.calls_per_second == CALLS_PER_SECOND
    assert cfg.calling.is_callable(datetime.now(UTC))
    assert not cfg.ivr.sms_advance_notice
    return path


class RoundRobin:
    """A load balancer in front of the app servers: request i goes to server i mod n."""

    def __init__(self, backends: list[str]):
        self.transports = [HttpWebhookTransport(routes={PUBLIC_URL: b}) for b in backends]
        self.answered = Counter()  # server index -> 2xx answers
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def send(self, request: WebhookRequest) -> WebhookResponse:
        with self._lock:
            index = next(self._turn) % len(self.transports)
        response = self.transports[index].send(request)
        if 200 <= response.status_code < 300:
            with self._lock:
                self.answered[index] += 1
        return response

    def close(self) -> None:
        for transport in self.transports:
            transport.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base_url: str, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app server {base_url} exited: {log.read_text()[-3000:]}")
        try:
            if requests.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"app server {base_url} not ready after {timeout} s: {log.read_text()[-3000:]}")


def peak_overlap(spans) -> int:
    """Most intervals open at one moment (an end at t closes before a start at t)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    return peak


def most_in_one_second(times: list[datetime]) -> int:
    stamps = sorted(t.timestamp() for t in times)
    return max((bisect_left(stamps, s + 1.0) - i for i, s in enumerate(stamps)), default=0)


def assert_no_overlap(spans_by_key, what: str) -> None:
    for key, spans in spans_by_key.items():
        spans = sorted(spans)
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"{what} {key}: dialed while an earlier call was open"


def test_two_app_servers_and_two_dialers_act_as_one_system(pg_server, tmp_path):
    url = pg_server.create_database()
    db = Database(url)
    db.upgrade()
    config = config_open_now(tmp_path)
    cfg = load_config(config)
    field = build_field(db, n_cases=N_CASES, units_per_case=2, cfg=cfg)
    ports = [free_port(), free_port()]
    backends = [f"http://127.0.0.1:{port}" for port in ports]
    balancer = RoundRobin(backends)
    sim = Simulator(account_sid=SIMULATOR_ACCOUNT_SID, auth_token=SIMULATOR_AUTH_TOKEN,
                    rng=np.random.default_rng(20261126), transport=balancer, clock=RealClock(),
                    behaviour=FAST_RESPONDENTS)
    api = SimulatorServer(sim)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINPING_", "TWILIO_"))}
    env |= {"MINPING_ENV": "production", "DATABASE_URL": url, "MINPING_CONFIG": str(config),
            "MINPING_PUBLIC_URL": PUBLIC_URL, "MINPING_SECRET_KEY": "scale-out-test-" + "k" * 32,
            "TWILIO_ACCOUNT_SID": SIMULATOR_ACCOUNT_SID, "TWILIO_AUTH_TOKEN": SIMULATOR_AUTH_TOKEN,
            "TWILIO_FROM_NUMBER": SIMULATOR_FROM_NUMBER, "TWILIO_API_URL": api.start(),
            "MINPING_LOG_LEVEL": "WARNING"}
    logs = [(tmp_path / f"server-{i}.log").open("w") for i in range(2)]
    servers: list[subprocess.Popen] = []
    dialers: list[subprocess.Popen] = []
    try:
        for log, port in zip(logs, ports, strict=True):
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "minping.wsgi:app", "--bind",
                 f"127.0.0.1:{port}", "--worker-class", "gthread", "--workers", "2",
                 "--threads", "4", "--timeout", "30"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        for backend, process, i in zip(backends, servers, range(2), strict=True):
            wait_ready(backend, process, Path(logs[i].name))
        sim.start()
        started = time.monotonic()
        minping = str(Path(sys.executable).with_name("minping"))
        dialers = [subprocess.Popen(
            [minping, "dial", "--max-seconds", str(RUN_SECONDS), "--until-done", "--json"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
        counters = []
        for dialer in dialers:
            out, err = dialer.communicate(timeout=RUN_SECONDS + 30)
            assert dialer.returncode == 0, err
            counters.append(json.loads(out))
        sim.wait_until_idle(timeout=30)  # the calls in flight finish at the "carrier"
        elapsed = time.monotonic() - started
    finally:
        for dialer in dialers:
            if dialer.poll() is None:
                dialer.kill()
                dialer.communicate()
        sim.stop()
        api.stop()
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        balancer.close()
        for log in logs:
            log.close()
        db.dispose()  # a failure above must not leave connections open

    with db.session() as s:
        attempts = s.execute(select(CallAttempt.id, CallAttempt.case_id, CallAttempt.call_sid,
                                    CallAttempt.started_at, CallAttempt.ended_at,
                                    CallAttempt.outcome)).all()
        placed = s.execute(select(AttemptEvent.attempt_id, AttemptEvent.payload)
                           .where(AttemptEvent.kind == "placed")).all()
        answers = s.execute(select(Answer.case_id, Answer.unit_id, Answer.rating,
                                   Answer.attempt_id)).all()
        unit_at = {(case_id, pos): unit_id for case_id, unit_id, pos in s.execute(
            select(CaseUnit.case_id, CaseUnit.unit_id, CaseUnit.position))}
        left_held = s.scalars(select(SampleCase.id).where(
            SampleCase.lock_channel.is_not(None))).all()
    db.dispose()

    # both dialers and both servers took part, without errors
    assert all(c["placed"] > 0 and c["errors"] == 0 for c in counters), counters
    by_dialer = Counter(payload["dialer"] for _, payload in placed)
    assert len(by_dialer) == 2, by_dialer
    assert sorted(by_dialer.values()) == sorted(c["placed"] for c in counters)
    assert balancer.answered[0] > 0 and balancer.answered[1] > 0, balancer.answered
    assert not sim.errors
    failed = [(e.purpose, e.url, e.status_code, e.outcome) for e in sim.exchanges
              if e.outcome != "ok"]
    assert not failed, failed[:5]

    # every attempt ran to its end; each was placed once, by one dialer, as one call
    assert len(attempts) >= 40, len(attempts)
    assert all(a.outcome is not None and a.ended_at is not None for a in attempts)
    assert Counter(attempt_id for attempt_id, _ in placed).most_common(1)[0][1] == 1
    assert {a.id for a in attempts} == {attempt_id for attempt_id, _ in placed}
    assert {a.call_sid for a in attempts} == set(sim.calls)
    assert all(call.end_time is not None for call in sim.calls.values())
    assert left_held == []  # no hold left behind

    # no case dialed twice at once: in the attempts table and at the carrier
    spans = defaultdict(list)
    for a in attempts:
        spans[a.case_id].append((a.started_at, a.ended_at))
    assert_no_overlap(spans, "case")
    calls_to = defaultdict(list)
    for call in sim.calls.values():
        calls_to[call.to].append((call.date_created, call.end_time))
    assert_no_overlap(calls_to, "number")

    # the limits held globally.  The pacing row spaces the claims exactly ...
    starts = sorted(a.started_at for a in attempts)
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 1 / CALLS_PER_SECOND - 1e-4
    assert peak_overlap([(a.started_at, a.ended_at) for a in attempts]) <= MAX_CONCURRENT
    # ... and the carrier saw no more.  A call reaches it one request after its claim
    # (lag L), so claims spaced 1/cps apart put at most ceil((1 + L) * cps) calls in
    # any one second there; a call is in flight there only while its attempt is open.
    started_at = {a.call_sid: a.started_at for a in attempts}
    lag = max((c.date_created - started_at[c.sid]).total_seconds() for c in sim.calls.values())
    assert 0 <= lag < 1, lag
    created = [call.date_created for call in sim.calls.values()]
    assert most_in_one_second(created) <= math.ceil((1 + lag) * CALLS_PER_SECOND)
    assert peak_overlap([(c.date_created, c.end_time) for c in sim.calls.values()]) \
        <= MAX_CONCURRENT

    # every answer the app acknowledged is stored, once, with the key pressed
    case_of = {a.id: a.case_id for a in attempts}
    acknowledged = {}
    for e in sim.exchanges:
        path = urlsplit(e.url)
        if e.purpose != "action" or path.path != "/ivr/answer" or e.outcome != "ok":
            continue
        query = parse_qs(path.query)
        digits = e.form.get("Digits", "")
        if digits in cfg.scale.keys:
            case_id = case_of[int(query["attempt"][0])]
            acknowledged[(case_id, unit_at[(case_id, int(query["pos"][0]))])] = digits
    stored = Counter((a.case_id, a.unit_id) for a in answers)
    assert stored and max(stored.values()) == 1
    rated = {(a.case_id, a.unit_id): a.rating for a in answers if a.rating is not None}
    assert rated == acknowledged
    assert len(acknowledged) >= 40, len(acknowledged)
    assert len(field.case_ids) == N_CASES
    print(f"\nscale-out run: {elapsed:.1f} s, {len(attempts)} calls "
          f"({len(attempts) / elapsed:.2f}/s), dialers {dict(by_dialer)}, "
          f"webhooks per server {dict(balancer.answered)}, "
          f"peak in flight {peak_overlap([(a.started_at, a.ended_at) for a in attempts])}, "
          f"most calls in one second {most_in_one_second(created)} (lag {lag:.3f} s), "
          f"{len(acknowledged)} ratings")
