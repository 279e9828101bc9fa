"""In-process profile of one IVR webhook: cProfile and database round trips per request.

``.venv/bin/python bench/ivr_profile.py [WEBHOOK] [--requests N] [--top N]`` builds a
throw-away PostgreSQL database as ``bench/ivr.py`` does, sends ``N`` signed requests
to ``/ivr/<WEBHOOK>`` (default ``answer``) through the Flask test client, and prints
the wall time per request beside the bare Flask view's, the database round trips
per request (psycopg's waits for the server) and the cProfile of the measured
requests, by cumulative time.  Wall times depend on the machine's load; the round
trips do not.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

import bench.ivr as bench  # noqa: E402


class RoundTrips:
    """Counts psycopg's exchanges with the server: every statement a cursor executes
    and every command the connection sends on its own (``BEGIN``, ``COMMIT``,
    ``ROLLBACK``; a ``commit()`` with no transaction open sends nothing)."""

    def __init__(self):
        import psycopg
        from psycopg import _connection_base

        self.count = 0
        meter = self
        self._patched = [(psycopg.Cursor, "execute", psycopg.Cursor.execute),
                         (_connection_base.BaseConnection, "_exec_command",
                          _connection_base.BaseConnection._exec_command)]
        execute, command = self._patched[0][2], self._patched[1][2]

        def counted_execute(cursor, *args, **kwargs):
            meter.count += 1
            return execute(cursor, *args, **kwargs)

        def counted_command(conn, *args, **kwargs):
            meter.count += 1
            return (yield from command(conn, *args, **kwargs))

        psycopg.Cursor.execute = counted_execute
        _connection_base.BaseConnection._exec_command = counted_command

    def close(self) -> None:
        for cls, name, orig in self._patched:
            setattr(cls, name, orig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("webhook", nargs="?", default="answer", choices=bench.WEBHOOKS)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime")
    args = parser.parse_args(argv)
    admin = os.environ.get("MINPING_BENCH_PG_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    name = f"minping_prof_{uuid.uuid4().hex[:8]}"
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        data = bench._setup(url, 50, 0)
        os.environ.update({"DATABASE_URL": url, "MINPING_PUBLIC_URL": bench.PUBLIC_URL,
                           "TWILIO_AUTH_TOKEN": bench.TOKEN, "TWILIO_ACCOUNT_SID": bench.ACCOUNT,
                           "MINPING_ENV": "development", "MINPING_SECRET_KEY": "bench"})
        from bench.ivr_wsgi import app

        client = app.test_client()
        n = args.requests
        reqs = bench._requests_for(args.webhook, data[args.webhook], 4 * n,
                                   RequestValidator(bench.TOKEN), random.Random(1))

        def send(req) -> None:
            path, form, sig, token = req
            headers = {"X-Twilio-Signature": sig}
            if token:
                headers["I-Twilio-Idempotency-Token"] = token
            response = client.post(path, data=form, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"{path}: {response.status_code} {response.data[:300]!r}")

        for req in reqs[:n]:  # warm: statements prepared, TwiML cached
            send(req)
        t = time.perf_counter()
        for req in reqs[n:2 * n]:
            send(req)
        hook_ms = (time.perf_counter() - t) / n * 1000
        t = time.perf_counter()
        for _, form, _, _ in reqs[:n]:
            client.post("/bench/bare", data=form)
        bare_ms = (time.perf_counter() - t) / n * 1000
        trips = RoundTrips()
        for req in reqs[2 * n:3 * n]:
            send(req)
        trips.close()
        profile = cProfile.Profile()
        profile.enable()
        for req in reqs[3 * n:]:
            send(req)
        profile.disable()
        stats = pstats.Stats(profile)
        print(f"/ivr/{args.webhook}: {hook_ms:.2f} ms per request, bare view {bare_ms:.2f} ms "
              f"(wall, in process; load {bench._uptime()}); database round trips per "
              f"request: {trips.count / n:.1f}; Python function calls per request: "
              f"{stats.total_calls / n:,.0f}")
        stats.sort_stats(args.sort).print_stats(args.top)
    finally:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
