"""Benchmark: the IVR answer webhook under concurrent load, beside a bare endpoint.

Run it with ``.venv/bin/python bench/ivr.py`` (PostgreSQL must be running; the
server is ``MINPING_BENCH_PG_URL``, default the test server).  It

1. creates a throw-away PostgreSQL database, migrates it, and fills it with
   released cases (8 units each) and one open IVR attempt per case;
2. starts gunicorn with ``bench.ivr_wsgi:app`` (the minping app, signature
   checks on, plus ``POST /bench/bare`` returning the same TwiML without
   signature check or database);
3. sends signed answer requests from ``--concurrency`` threads -- every request
   checks the signature, writes an answer (alternating ratings, so each one is
   an insert or an audited change) and returns the next question's TwiML --
   then the same number of requests to the bare endpoint;
4. prints throughput and p50/p99 latency of both and their ratio, and drops the
   database.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PUBLIC_URL = "https://survey.bench.invalid"
TOKEN = "bench-auth-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(url: str, n_cases: int) -> list[tuple[int, str, int]]:
    """Cases with units and one open attempt each: [(attempt id, CallSid, units)]."""
    from minping import cases
    from minping.db import Database
    from minping.models import SampleCase
    from tests.builders import FIELD_START, build_field

    db = Database(url)
    db.upgrade()
    field = build_field(db, n_cases=n_cases, units_per_case=8)
    out = []
    with db.transaction() as s:
        for i, case_id in enumerate(field.case_ids):
            case = s.get(SampleCase, case_id)
            sid = f"CA{i:032x}"
            attempt = cases.start_attempt(s, case, channel="ivr", now=FIELD_START, call_sid=sid)
            cases.add_event(s, attempt, "consent", now=FIELD_START)
            out.append((attempt.id, sid, 8))
    db.dispose()
    return out


def _load(base: str, requests_list, concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    index = iter(range(len(requests_list)))

    def worker():
        nonlocal errors
        session = requests.Session()
        mine = []
        bad = 0
        while True:
            with lock:
                i = next(index, None)
            if i is None:
                break
            path, form, headers = requests_list[i]
            t = time.perf_counter()
            r = session.post(base + path, data=form, headers=headers, timeout=30)
            mine.append(time.perf_counter() - t)
            if r.status_code != 200 or "<Response>" not in r.text:
                bad += 1
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, errors


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--cases", type=int, default=200)
    args = parser.parse_args(argv)

    admin = os.environ.get("MINPING_BENCH_PG_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    name = f"minping_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    server = None
    try:
        attempts = _setup(url, args.cases)
        port = _free_port()
        env = os.environ | {"DATABASE_URL": url, "MINPING_PUBLIC_URL": PUBLIC_URL,
                            "TWILIO_AUTH_TOKEN": TOKEN, "MINPING_ENV": "development",
                            "MINPING_SECRET_KEY": "bench", "PYTHONPATH": str(ROOT)}
        gunicorn = Path(sys.executable).with_name("gunicorn")
        server = subprocess.Popen([str(gunicorn), "-w", str(args.workers), "-b",
                                   f"127.0.0.1:{port}", "--log-level", "warning",
                                   "bench.ivr_wsgi:app"], cwd=ROOT, env=env)
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if requests.get(base + "/healthz", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            raise SystemExit("gunicorn did not start")

        validator = RequestValidator(TOKEN)
        rng = random.Random(1)
        answer_requests = []
        for n in range(args.requests):
            attempt_id, sid, units = attempts[n % len(attempts)]
            pos = (n // len(attempts)) % units
            path = f"/ivr/answer?attempt={attempt_id}&pos={pos}&try=0"
            form = {"CallSid": sid, "Digits": str(1 + (n // (len(attempts) * units)) % 3),
                    "AccountSid": "AC" + "0" * 32}
            headers = {"X-Twilio-Signature": validator.compute_signature(PUBLIC_URL + path,
                                                                         form)}
            answer_requests.append((path, form, headers))
        rng.shuffle(answer_requests)
        bare_requests = [("/bench/bare", form, {}) for _, form, _ in answer_requests]
        _load(base, answer_requests[:100], args.concurrency)  # warm up both
        _load(base, bare_requests[:100], args.concurrency)
        results = {}
        for label, reqs in (("answer webhook", answer_requests), ("bare Flask", bare_requests)):
            seconds, lat, errors = _load(base, reqs, args.concurrency)
            results[label] = (len(reqs) / seconds, _pct(lat, 0.5), _pct(lat, 0.99), errors)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        engine.dispose()

    print(f"gunicorn {args.workers} sync workers, {args.concurrency} concurrent clients, "
          f"{args.requests} requests each, PostgreSQL, {os.cpu_count()} CPUs")
    print(f"{'endpoint':<16} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for label, (rps, p50, p99, errors) in results.items():
        print(f"{label:<16} {rps:9.1f} {p50:9.2f} {p99:9.2f} {errors:7d}")
    webhook, bare = results["answer webhook"], results["bare Flask"]
    print(f"ratio webhook/bare: throughput {webhook[0] / bare[0]:.2f}x, "
          f"p50 {webhook[1] / bare[1]:.1f}x, p99 {webhook[2] / bare[2]:.1f}x")
    return 1 if webhook[3] or bare[3] else 0


if __name__ == "__main__":
    sys.exit(main())
