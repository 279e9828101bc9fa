"""The ``calls`` part of ``bench/ivr.py``: simulated calls at a respondent's pace.

``n_calls`` calls are placed at once by the dialers against the app on gunicorn
(``minping.wsgi:app``) and PostgreSQL, through the simulators of
``tests/reliability/harness.py`` (signed webhooks over HTTP, status callbacks,
AMD).  Respondents here take the time a person takes: the prompts are read at
speaking pace and a key comes one to three seconds later, so each call sends a
request every few seconds, as Twilio does.  Prints every webhook's requests,
p50, p99 and max latency, server errors, and the answers acknowledged but lost,
stored with another rating, or stored twice.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

from minping.db import Database
from tests.builders import build_field
from tests.reliability.harness import (
    Stack,
    TimedTransport,
    acknowledged_answers,
    check_answers,
    fast_behaviour,
    open_all_day,
    percentile,
)

UNITS_PER_CASE = 3


def respondent_pace():
    """Respondents who answer and key at a person's pace (a request every 2-6 s)."""
    return fast_behaviour(ring_seconds=(2.0, 6.0), answer_delay_seconds=(2.0, 5.0),
                          key_interval_seconds=0.3, say_seconds_per_cjk_char=0.02,
                          say_seconds_per_other_char=0.01, play_seconds=1.0,
                          record_seconds=(1.0, 3.0))


class PathTransport(TimedTransport):
    """Remembers each response's latency and status by webhook, and the server's own
    time (the app's ``Server-Timing`` header) beside it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.by_hook: dict[str, list[float]] = defaultdict(list)
        self.server_by_hook: dict[str, list[float]] = defaultdict(list)
        self.errors_by_hook: dict[str, int] = defaultdict(int)
        self._hook_lock = threading.Lock()
        self._session.hooks["response"].append(self._server_time)

    def _server_time(self, response, *args, **kwargs):
        timing = response.headers.get("Server-Timing", "")
        if timing.startswith("app;dur="):
            hook = urlsplit(response.request.url).path.rsplit("/", 1)[-1]
            with self._hook_lock:
                self.server_by_hook[hook].append(float(timing[8:]) / 1000)

    def send(self, request):
        response = super().send(request)
        hook = urlsplit(request.url).path.rsplit("/", 1)[-1]
        with self._hook_lock:
            self.by_hook[hook].append(response.elapsed)
            if response.status_code != 200:
                self.errors_by_hook[hook] += 1
        return response


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


_TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its children (gunicorn's workers)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # gone
        return 0.0
    total += (int(fields[11]) + int(fields[12])) / _TICK
    return total + sum(_tree_cpu(int(child)) for child in children)


def _backends_cpu(db) -> float:
    """CPU seconds of the PostgreSQL backends connected to ``db``'s database."""
    from sqlalchemy import text

    with db.engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND pid <> pg_backend_pid()")).scalars().all()
    return sum(_tree_cpu(pid) for pid in pids)


def run_calls(url: str, *, n_calls: int = 300, workers: int = 2, threads: int = 8,
              seed: int = 5, n_sims: int = 8) -> list[str]:
    db = Database(url)
    db.upgrade()
    field = build_field(db, n_cases=n_calls + 20, units_per_case=UNITS_PER_CASE)
    cfg = open_all_day(field.cfg, max_attempts=1)
    stack = Stack(db, cfg, seed=seed, behaviour=respondent_pace(), n_sims=n_sims)
    stack.app.args[stack.app.args.index("-w") + 1] = str(workers)
    stack.app.args[stack.app.args.index("--threads") + 1] = str(threads)
    stack.transport = PathTransport(routes=stack.transport.routes)
    for sim in stack.sims:
        sim.transport = stack.transport
    load_start = _load()
    try:
        stack.start()
        started = time.monotonic()
        own0, app0, db0 = time.process_time(), _tree_cpu(stack.app.proc.pid), _backends_cpu(db)
        placed = stack.dial(n_calls, timeout=180)
        dialled = time.monotonic() - started
        peak = 0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            live = sum(1 for c in stack.calls() if not c.ended)
            peak = max(peak, live)
            if not live:
                break
            time.sleep(0.2)
        stack.wait_calls_over(timeout=60)
        seconds = time.monotonic() - started
        own = time.process_time() - own0
        app_cpu = _tree_cpu(stack.app.proc.pid) - app0
        db_cpu = _backends_cpu(db) - db0
    finally:
        stack.stop()
    acked = acknowledged_answers(stack.exchanges())
    result = check_answers(db, acked)
    db.dispose()
    transport = stack.transport
    total = sum(len(v) for v in transport.by_hook.values())
    lines = [f"calls: {placed} calls placed in {dialled:.1f} s, at most {peak} live at once, "
             f"{total} webhook requests in {seconds:.1f} s ({total / seconds:.1f} req/s); "
             f"gunicorn {workers}x{threads}, {n_sims} simulators; load {load_start} -> {_load()}",
             f"CPU while the calls ran ({seconds:.1f} s): this process (simulators, dialers, "
             f"respondents) {own:.1f} s ({own / seconds:.0%} of one CPU), gunicorn {app_cpu:.1f} s, "
             f"PostgreSQL backends {db_cpu:.1f} s of {os.cpu_count()} CPUs",
             "client: latency seen by the simulators (same process as the dialers and the "
             "simulated respondents); server: the app's own time (Server-Timing header)",
             f"{'webhook':<10} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
             f"{'errors':>6} {'server p50':>10} {'server p99':>10} {'server max':>10}"]
    for hook in sorted(transport.by_hook):
        lat = transport.by_hook[hook]
        own = transport.server_by_hook.get(hook) or [float("nan")]
        lines.append(f"{hook:<10} {len(lat):8d} {percentile(lat, .5) * 1000:8.2f} "
                     f"{percentile(lat, .99) * 1000:8.2f} {max(lat) * 1000:8.1f} "
                     f"{transport.errors_by_hook[hook]:6d} {percentile(own, .5) * 1000:10.2f} "
                     f"{percentile(own, .99) * 1000:10.2f} {max(own) * 1000:10.1f}")
    server_errors = sum(n for code, n in transport.statuses.items() if code >= 500)
    lines.append(f"answers acknowledged {result.acknowledged}, stored {result.stored}, "
                 f"lost {len(result.lost)}, stored with another rating {len(result.wrong)}, "
                 f"rewritten {result.rewritten}, duplicated 0 (checked); 5xx {server_errors}; "
                 f"simulator errors {len(stack.sim_errors())}")
    return lines
