"""Benchmark: every IVR webhook on gunicorn + PostgreSQL, beside a bare Flask view.

Run it with ``.venv/bin/python bench/ivr.py`` (PostgreSQL must be running; the
server is ``MINPING_BENCH_PG_URL``, default the test server; Debian's ``wrk`` must
be on the PATH).  It creates a throw-away database, fills it with released cases
(8 units each) and open IVR attempts, starts gunicorn with ``bench.ivr_wsgi:app``
(the app as ``minping serve`` builds and runs it: 2 gthread workers x 8 threads,
signature checks on, plus
``POST /bench/bare``: a bare Flask view returning the same TwiML as a question,
without signature check or database) and then, in one run:

``throughput``
    ``wrk`` replays pre-signed requests (real ``RequestValidator`` signatures,
    computed beforehand; ``bench/ivr_wrk.lua``) for each webhook -- ``voice``,
    ``consent``, ``answer``, ``comment``, ``status``, ``amd``, ``inbound`` -- and
    for the bare view, ``--rounds`` times each, interleaved (the bare view once more
    at the end), and prints the best run's req/s, p50 and p99 (and every run's
    req/s) and the ratio of each webhook's throughput to the bare view's; beside it
    the CPU per request of the gunicorn workers and of the database's backends
    (``/proc``), and the ratio of the bare view's CPU per request to each
    webhook's: the throughput ratio of a machine with nothing else to do, which
    a machine shared with other jobs (or a run where wrk's connections stall)
    does not change.
``flood``
    the answer webhook at a steady pace (``--paced-rate`` requests/s; an open-loop
    asyncio client in a process of its own, after ``--warmup-seconds`` not
    counted), first alone, then while 50 interviewers log in to CATI at once
    (scrypt) and try again after ``Retry-After`` (``--flood-retry``): webhook p50,
    p99 and max in both phases with the client's own lag and the server's
    ``Server-Timing``, how the log-ins were answered and how long each took from
    its first try; once with one worker pool for everything and once as ``minping
    serve --ivr-bind`` runs it (the webhooks on a pool of their own, the log-ins on
    the other, at a lower CPU priority) -- ``--flood-pools``; ``--flood-env`` runs it
    again beside with other server settings.
``bodies``
    what a refused request costs: a signed answer, an unsigned small request,
    an unsigned 1 MB form of 100,000 fields, and the same with a wrong signature.
``calls``
    ``--calls`` simulated calls at once, played by the simulator over HTTP at a
    respondent's pace (a request per call every few seconds): every webhook's
    p50/p99, errors, and answers acknowledged but lost or stored twice.

``--only`` picks parts (default: all four).  The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PUBLIC_URL = "https://survey.bench.invalid"
TOKEN = "bench-auth-token"
ACCOUNT = "AC" + "0" * 32
WEBHOOKS = ("voice", "consent", "answer", "comment", "status", "amd", "inbound")
LUA = Path(__file__).with_name("ivr_wrk.lua")
PASSWORD = "bench-password-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _uptime() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- the data ---------------------------------------------------------------------------------


def _setup(url: str, per_hook: int, n_users: int) -> dict:
    """Cases, attempts and CATI users: {webhook: [(attempt id, CallSid, phone)]}."""
    from minping import cases
    from minping.db import Database
    from minping.models import SampleCase
    from minping.users import create_user
    from tests.builders import FIELD_START, build_field

    db = Database(url)
    db.upgrade()
    field = build_field(db, n_cases=per_hook * len(WEBHOOKS), units_per_case=8)
    out: dict[str, list] = {hook: [] for hook in WEBHOOKS}
    with db.transaction() as s:
        for i, case_id in enumerate(field.case_ids):
            hook = WEBHOOKS[i % len(WEBHOOKS)]
            phone = field.phones[case_id]
            if hook == "inbound":  # the case must be free for the caller to reach it
                out[hook].append((None, None, phone))
                continue
            case = s.get(SampleCase, case_id)
            sid = f"CA{i:032x}"
            attempt = cases.start_attempt(s, case, channel="ivr", now=FIELD_START, call_sid=sid)
            if hook in ("answer", "comment"):
                cases.add_event(s, attempt, "consent", now=FIELD_START)
            out[hook].append((attempt.id, sid, phone))
        for i in range(n_users):
            create_user(s, username=f"bench-int-{i}", password=PASSWORD, role="interviewer",
                        display_name=f"bench {i}", language="zh", experienced=False)
    db.dispose()
    return out


def _requests_for(hook: str, rows: list, n: int, validator: RequestValidator, rng) -> list:
    """``n`` signed requests to ``/ivr/<hook>``: [(path, form, signature, token)]."""
    out = []
    for k in range(n):
        attempt_id, sid, phone = rows[k % len(rows)]
        lap = k // len(rows)
        token = ""
        form = {"AccountSid": ACCOUNT, "CallSid": sid or "", "From": "+8657100000000",
                "To": phone, "Direction": "outbound-api", "ApiVersion": "2010-04-01"}
        if hook == "voice":
            path = f"/ivr/voice?attempt={attempt_id}"
            form |= {"CallStatus": "in-progress", "AnsweredBy": "human"}
        elif hook == "consent":
            path = f"/ivr/consent?attempt={attempt_id}&try=0"
            form |= {"CallStatus": "in-progress", "Digits": "1", "FinishedOnKey": ""}
        elif hook == "answer":
            pos = lap % 8
            path = f"/ivr/answer?attempt={attempt_id}&pos={pos}&try=0"
            form |= {"CallStatus": "in-progress", "Digits": str(1 + (lap // 8) % 3),
                     "FinishedOnKey": ""}
        elif hook == "comment":
            path = f"/ivr/comment?attempt={attempt_id}"
            form |= {"CallStatus": "in-progress", "RecordingUrl":
                     f"https://api.twilio.invalid/Recordings/RE{k:032x}",
                     "RecordingSid": f"RE{k:032x}", "RecordingDuration": "7"}
        elif hook == "status":
            path = f"/ivr/status?attempt={attempt_id}"
            form |= {"CallStatus": ("ringing", "in-progress")[lap % 2],
                     "SequenceNumber": str(lap + 1), "Timestamp": "Tue, 01 Dec 2026 08:00:00 +0000",
                     "CallbackSource": "call-progress-events"}
            token = f"{sid}-status-{lap}"
        elif hook == "amd":
            path = f"/ivr/amd?attempt={attempt_id}"
            form |= {"AnsweredBy": "human", "MachineDetectionDuration": "1200"}
            token = f"{sid}-amd-{lap}"
        else:  # inbound: a respondent calls back (a free case the first time, then held)
            path = "/ivr/inbound"
            form = {"AccountSid": ACCOUNT, "CallSid": f"CA{k:030x}in", "From": phone,
                    "To": "+8657100000000", "Direction": "inbound", "CallStatus": "ringing",
                    "ApiVersion": "2010-04-01"}
        signature = validator.compute_signature(PUBLIC_URL + path, form)
        out.append((path, form, signature, token))
    rng.shuffle(out)
    return out


def _write_requests(reqs: list, directory: Path, name: str) -> Path:
    path = directory / f"{name}.tsv"
    with path.open("w") as f:
        for p, form, sig, token in reqs:
            f.write(f"{p}\t{sig}\t{token}\t{urlencode(form)}\n")
    return path


# --- the server ---------------------------------------------------------------------------------


class Server:
    """gunicorn with ``bench.ivr_wsgi:app``; ``split=True``: ``minping serve --ivr-bind``
    instead (the webhooks on a pool of their own at ``ivr_base``, the rest at ``base``)."""

    def __init__(self, url: str, workers: int, threads: int, *, split: bool = False,
                 ivr_workers: int | None = None, ivr_threads: int | None = None,
                 extra_env: dict | None = None):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ivr_base = self.base
        env = os.environ | {"DATABASE_URL": url, "MINPING_PUBLIC_URL": PUBLIC_URL,
                            "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT,
                            "MINPING_ENV": "development", "MINPING_SECRET_KEY": "bench",
                            "PYTHONPATH": str(ROOT)} | (extra_env or {})
        gunicorn = Path(sys.executable).with_name("gunicorn")
        fd, self.log = tempfile.mkstemp(prefix="bench-ivr-gunicorn-", suffix=".log")
        if split:
            ivr_port = _free_port()
            self.ivr_base = f"http://127.0.0.1:{ivr_port}"
            cmd = [str(Path(sys.executable).with_name("minping")), "serve",
                   "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
                   "--threads", str(threads), "--ivr-bind", f"127.0.0.1:{ivr_port}"]
            # the IVR pool's size: given, else MINPING_IVR_WORKERS/THREADS or serve's defaults
            cmd += ["--ivr-workers", str(ivr_workers)] if ivr_workers else []
            cmd += ["--ivr-threads", str(ivr_threads)] if ivr_threads else []
            env["MINPING_LOG_LEVEL"] = "WARNING"
        else:
            cmd = [str(gunicorn), "-w", str(workers), "-b", f"127.0.0.1:{self.port}",
                   "--log-level", "warning", "--backlog", "2048"]
            if threads > 1:  # keep-alive outlasts a run: Debian's wrk 4.1 with a Lua request()
                # does not send again on a connection the server closed
                cmd += ["-k", "gthread", "--threads", str(threads), "--keep-alive", "75"]
            cmd += ["bench.ivr_wsgi:app"]
        # minping serve in a session of its own, as a service runs (with the kernel's
        # autogroups, its processes then share the CPU with each other, not with the
        # bench's clients, which stand for Twilio and browsers elsewhere)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fd, stderr=fd,
                                     start_new_session=split)
        os.close(fd)
        for base in {self.base, self.ivr_base}:
            for _ in range(600):
                try:
                    if requests.get(base + "/healthz", timeout=5).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.1)
            else:
                self.stop()
                raise SystemExit(f"gunicorn did not start: {Path(self.log).read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


# --- throughput with wrk ---------------------------------------------------------------------------


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids) -> float:
    """User + system CPU seconds of the processes ``pids`` (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class CpuMeter:
    """CPU spent by the server's worker processes and by the PostgreSQL backends of
    the bench database: the cost of a request whatever else runs on the machine
    (a request that waits for a busy disk or CPU costs wall time, not CPU)."""

    def __init__(self, server: Server, admin_engine, database: str):
        self.server, self.engine, self.database = server, admin_engine, database

    def snapshot(self) -> tuple[float, float]:
        with self.engine.connect() as conn:
            backends = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :n"),
                                    {"n": self.database}).scalars().all()
        return _cpu_seconds(_children(self.server.proc.pid)), _cpu_seconds(backends)


def _wrk(base: str, req_file: Path, args, path: str = "/") -> dict:
    out = subprocess.run(["wrk", "-t", str(args.wrk_threads), "-c", str(args.connections),
                          "-d", f"{args.duration}s", "--timeout", "10s", "-s", str(LUA),
                          base + path, "--", str(req_file), str(args.wrk_threads)],
                         capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    res = json.loads(line[4:])
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    return res


def _check_one(base: str, req: tuple, expect: str) -> None:
    path, form, sig, token = req
    headers = {"X-Twilio-Signature": sig} if sig else {}
    if token:
        headers["I-Twilio-Idempotency-Token"] = token
    r = requests.post(base + path, data=form, headers=headers, timeout=30)
    if r.status_code != 200 or expect not in r.text:
        raise SystemExit(f"{path}: {r.status_code} {r.text[:300]!r} (expected {expect!r})")


def throughput(server: Server, data: dict, args, workdir: Path,
               meter: CpuMeter | None = None) -> list[str]:
    validator = RequestValidator(TOKEN)
    rng = random.Random(1)
    files, firsts = {}, {}
    for hook in WEBHOOKS:
        reqs = _requests_for(hook, data[hook], args.requests, validator, rng)
        firsts[hook] = reqs[0]
        files[hook] = _write_requests(reqs, workdir, hook)
    bare = [("/bench/bare", form, "", "") for _, form, _, _ in
            _requests_for("answer", data["answer"], args.requests, validator, rng)]
    files["bare"] = _write_requests(bare, workdir, "bare")
    expected = {"voice": "<Gather", "consent": "<Gather", "answer": "<Response",
                "comment": "<Hangup", "status": "<Response", "amd": "<Response",
                "inbound": "<Say"}
    for hook in WEBHOOKS:  # each kind of request works before it is timed
        _check_one(server.base, firsts[hook], expected[hook])
    warm = dict(vars(args)) | {"duration": 2}
    _wrk(server.base, files["bare"], argparse.Namespace(**warm))
    _wrk(server.base, files["answer"], argparse.Namespace(**warm))

    def measured(name: str) -> dict:
        before = meter.snapshot() if meter else None
        res = _wrk(server.base, files[name], args)
        if meter:
            after = meter.snapshot()
            res["app_cpu"], res["db_cpu"] = after[0] - before[0], after[1] - before[1]
        return res

    # Each endpoint is run --rounds times, the rounds interleaved (the bare view once
    # more at the end): a machine shared with other jobs, or a run where wrk's
    # connections stall, lowers one run, not the best of them.
    names = ("bare", *WEBHOOKS)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            runs[name].append(measured(name))
    runs["bare"].append(measured("bare"))
    results = {}
    for name, each in runs.items():
        best = dict(max(each, key=lambda r: r["rps"]))
        best["all_rps"] = [r["rps"] for r in each]
        best["errors"] = sum(r["status_errors"] + r["socket_errors"] for r in each)
        if meter:  # CPU per request over all the runs: a stalled run adds little of either
            requests = sum(r["requests"] for r in each)
            best["app_cpu_ms"] = sum(r["app_cpu"] for r in each) / requests * 1000
            best["db_cpu_ms"] = sum(r["db_cpu"] for r in each) / requests * 1000
        results[name] = best
    bare = results["bare"]
    cpu = {label: r.get("app_cpu_ms", float("nan")) + r.get("db_cpu_ms", float("nan"))
           for label, r in results.items()}
    lines = [f"throughput: wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s, "
             f"best of {args.rounds} interleaved runs (the bare view {args.rounds + 1}), "
             f"load {_uptime()}",
             "CPU ms/req: the gunicorn workers' (app) and the database backends' (db) CPU per "
             "request over all runs; 'x bare CPU' = the bare view's CPU per request / this one's",
             f"{'endpoint':<9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
             f"{'errors':>6} {'x bare':>7} {'p50/bare':>9} {'app CPU':>8} {'db CPU':>7} "
             f"{'x bare CPU':>10}  req/s of each run"]
    for label, r in results.items():
        lines.append(f"{label:<9} {r['rps']:8.1f} {r['p50_us'] / 1000:8.2f} "
                     f"{r['p99_us'] / 1000:8.2f} {r['max_us'] / 1000:8.1f} "
                     f"{r['errors']:6d} {r['rps'] / bare['rps']:7.2f} "
                     f"{r['p50_us'] / bare['p50_us']:9.1f} {r.get('app_cpu_ms', float('nan')):8.2f} "
                     f"{r.get('db_cpu_ms', float('nan')):7.2f} {cpu['bare'] / cpu[label]:10.2f}  "
                     + " ".join(f"{x:.0f}" for x in r["all_rps"]))
    worst = min(results[h]["rps"] for h in WEBHOOKS) / bare["rps"]
    lines.append(f"slowest webhook / bare Flask throughput: {worst:.2f}x")
    if meter:
        worst_cpu = min(cpu["bare"] / cpu[h] for h in WEBHOOKS)
        lines.append(f"slowest webhook / bare Flask by CPU per request (the throughput ratio "
                     f"of a machine with nothing else to do): {worst_cpu:.2f}x")
    return lines


# --- paced webhooks during a log-in flood -------------------------------------------------------------
#
# Both clients run in processes of their own, on asyncio with pre-encoded HTTP/1.1 requests
# over keep-alive connections (a fraction of a millisecond of CPU per request): the paced
# client is open-loop (each request leaves at its own moment, whatever the ones before it
# wait for) and says how late it was itself, so a slow client cannot pass for a slow server.


def _pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (seconds) in milliseconds."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def _raw_request(method: str, host: str, path: str, headers: dict, body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    if method == "POST":
        head += [f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


async def _exchange(conn, raw: bytes) -> tuple[int, dict, bytes]:
    """Send ``raw`` on ``conn`` and read one response: (status, {name: [values]}, body)."""
    reader, writer = conn
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    length = int(headers.get("content-length", ["0"])[0])
    body = await reader.readexactly(length) if length else b""
    if "close" in headers.get("connection", [""])[0].lower():
        writer.close()
    return int(lines[0].split()[1]), headers, body


class _Connections:
    """Idle keep-alive connections to one server, opened as they are needed."""

    def __init__(self, host: str, port: int):
        self.host, self.port, self.idle, self.opened = host, port, [], 0

    async def get(self):
        while self.idle:
            conn = self.idle.pop()
            if not conn[1].is_closing() and not conn[0].at_eof():
                return conn, True
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port), False

    def put(self, conn) -> None:
        if not conn[1].is_closing():
            self.idle.append(conn)


def _paced_client(base: str, reqs: list, rate: float, seconds: float, out) -> None:
    """A process: send ``reqs`` (path, form, signature) at ``rate`` per second for
    ``seconds``; put on ``out`` per request (lateness, latency, app ms, ok)."""
    os.setsid()  # a session, hence a CPU share, of its own: Twilio is another machine
    host, port = base.removeprefix("http://").split(":")
    raws = [_raw_request("POST", f"{host}:{port}", path, {
        "X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"},
        urlencode(form).encode()) for path, form, sig, _ in reqs]
    results, pool = [], _Connections(host, int(port))

    async def one(raw: bytes, due: float) -> None:
        started = time.perf_counter()
        status, app = "error", float("nan")
        for _ in range(2):  # a kept-alive connection the server closed meanwhile: once more
            try:
                conn, reused = await pool.get()
                status, headers, _ = await asyncio.wait_for(_exchange(conn, raw), 30)
                pool.put(conn)
                timing = headers.get("server-timing", [""])[0]
                app = float(timing.split("dur=")[1]) if "dur=" in timing else float("nan")
                break
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                if not reused:
                    break
        results.append((started - due, time.perf_counter() - started, app, status == 200))

    async def main() -> None:
        n = int(rate * seconds)
        t0 = time.perf_counter() + 0.05
        tasks = []
        for i in range(n):
            due = t0 + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.ensure_future(one(raws[i % len(raws)], due)))
        await asyncio.gather(*tasks)

    asyncio.run(main())
    out.put((results, pool.opened))


def _login_flood(base: str, n: int, honour_retry: bool, stop, out) -> None:
    """A process: ``n`` interviewers log in at once, again and again until ``stop``;
    a 503 or 429 is tried again after its ``Retry-After`` (``honour_retry``) or at once.
    Puts on ``out``: [(final status, seconds from the first try to it, tries)] and the
    status of every try."""
    os.setsid()  # the interviewers' browsers are other machines too
    host, port = base.removeprefix("http://").split(":")
    netloc = f"{host}:{port}"
    logins, tries_seen = [], {}

    async def log_in(i: int) -> None:
        started, tries = time.perf_counter(), 0
        while not stop.is_set():
            tries += 1
            status, headers, conn = "error", {}, None
            try:
                conn = await asyncio.open_connection(host, int(port))
                status, headers, page = await _exchange(
                    conn, _raw_request("GET", netloc, "/cati/login", {}))
                csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
                cookie = next(c.split(";")[0] for c in headers["set-cookie"]
                              if c.startswith("session="))
                form = urlencode({"username": f"bench-int-{i}", "password": PASSWORD,
                                  "csrf_token": csrf}).encode()
                status, headers, _ = await asyncio.wait_for(_exchange(conn, _raw_request(
                    "POST", netloc, "/cati/login", {
                        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
                    form)), 60)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, AttributeError,
                    StopIteration, KeyError):
                status, headers = "error", {}
            finally:
                if conn is not None:
                    conn[1].close()
            tries_seen[status] = tries_seen.get(status, 0) + 1
            if status in (503, 429):
                if honour_retry:
                    await asyncio.sleep(float(headers.get("retry-after", ["1"])[0]))
                continue
            logins.append((status, time.perf_counter() - started, tries))
            return

    async def client(i: int) -> None:
        while not stop.is_set():
            await log_in(i)

    async def main() -> None:
        await asyncio.gather(*(client(i) for i in range(n)))

    started = time.perf_counter()
    asyncio.run(main())
    out.put((logins, tries_seen, time.perf_counter() - started))


def _in_process(target, *args):
    """Start ``target(*args, queue)`` in a process of its own; (process, queue)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    return proc, queue


def _paced(base: str, reqs: list, args) -> tuple[list, int]:
    proc, queue = _in_process(_paced_client, base, reqs, args.paced_rate, args.paced_seconds)
    result = queue.get(timeout=args.paced_seconds + 120)
    proc.join()
    return result


def flood(server: Server, data: dict, args) -> list[str]:
    """The paced answer webhook alone, then during a log-in flood (webhooks to
    ``server.ivr_base``, log-ins to ``server.base``: one pool or two)."""
    import multiprocessing

    validator = RequestValidator(TOKEN)
    reqs = _requests_for("answer", data["answer"], 20000, validator, random.Random(2))
    reqs = [r[:3] + ("",) for r in reqs]
    # warm-up, not counted: each worker thread's first request opens its database
    # connection and prepares the statements (0.3-1 s each on a busy machine)
    _paced(server.ivr_base, reqs[len(reqs) // 2:], argparse.Namespace(
        **vars(args) | {"paced_seconds": args.warmup_seconds}))
    quiet, quiet_conns = _paced(server.ivr_base, reqs, args)
    quiet_load = _uptime()
    stop = multiprocessing.get_context("spawn").Event()
    flooder, flood_out = _in_process(_login_flood, server.base, args.logins,
                                     args.flood_retry == "after", stop)
    time.sleep(2.0)  # the flood is under way
    busy, busy_conns = _paced(server.ivr_base, reqs[::-1], args)
    busy_load = _uptime()
    stop.set()
    logins, tries, flood_seconds = flood_out.get(timeout=120)
    flooder.join()
    lines = [f"log-in flood: answer webhook at {args.paced_rate:g} req/s (open loop, a process "
             f"of its own), {args.paced_seconds:g} s alone (load {quiet_load}), then with "
             f"{args.logins} interviewers logging in at once, each trying again "
             + ("after Retry-After" if args.flood_retry == "after" else "at once")
             + f" (load {busy_load})",
             "latency at the client from the request's send; 'late' = how late the client "
             "sent it (its own lag); 'app' = the server's Server-Timing",
             f"{'phase':<14} {'requests':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
             f"{'late p99':>8} {'app p50':>7} {'app p99':>7} {'conns':>5} {'errors':>6}"]
    for label, res, conns in (("alone", quiet, quiet_conns), ("during flood", busy, busy_conns)):
        late, lat, app = ([r[k] for r in res] for k in range(3))
        app = [a / 1000 for a in app if a == a]
        lines.append(f"{label:<14} {len(res):8d} {_pct(lat, .5):7.1f} {_pct(lat, .99):7.1f} "
                     f"{max(lat) * 1000:7.1f} {_pct(late, .99):8.1f} {_pct(app, .5):7.1f} "
                     f"{_pct(app, .99):7.1f} {conns:5d} {sum(not r[3] for r in res):6d}")
    answered = ", ".join(f"{k}: {v}" for k, v in sorted(tries.items(), key=str))
    lines.append(f"log-in tries answered: {answered}")
    done = [w for status, w, _ in logins if status == 302]
    lines.append(f"log-ins through: {len(done)} in {flood_seconds:.1f} s; from the first "
                 f"try to the session: p50 {_pct(done, .5):.0f} ms, p90 {_pct(done, .9):.0f} ms, "
                 f"max {max(done, default=float('nan')) * 1000:.0f} ms, tries p50 "
                 f"{statistics.median([t for s, _, t in logins if s == 302] or [0]):g}")
    lines.append(f"webhook p99 during flood / alone: "
                 f"{_pct([r[1] for r in busy], .99) / _pct([r[1] for r in quiet], .99):.1f}x")
    return lines


# --- what a refused request costs --------------------------------------------------------------------


def bodies(server: Server, data: dict, args) -> list[str]:
    validator = RequestValidator(TOKEN)
    reqs = _requests_for("answer", data["answer"], 200, validator, random.Random(3))
    big = urlencode({f"f{i}": "x" * 3 for i in range(100_000)})[: 1024 * 1024]
    session = requests.Session()
    cases = {
        "signed answer": lambda i: session.post(server.base + reqs[i][0], data=reqs[i][1],
                                                headers={"X-Twilio-Signature": reqs[i][2]}),
        "unsigned small": lambda i: session.post(server.base + reqs[i][0], data=reqs[i][1]),
        "unsigned 1 MB": lambda i: session.post(
            server.base + reqs[i][0], data=big,
            headers={"Content-Type": "application/x-www-form-urlencoded"}),
        "bad-signed 1 MB": lambda i: session.post(
            server.base + reqs[i][0], data=big,
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "X-Twilio-Signature": "AAAA"}),
    }
    lines = [f"refused requests ({len(big):,} bytes of 100,000 fields), median of "
             f"{args.body_repeats} (load {_uptime()})",
             f"{'request':<16} {'status':>6} {'median ms':>10}"]
    for label, send in cases.items():
        times, status = [], None
        for i in range(args.body_repeats):
            t = time.perf_counter()
            try:
                status = send(i).status_code
            except requests.ConnectionError:  # refused and closed while the body was sent
                status = "closed"
                session = requests.Session()
            times.append(time.perf_counter() - t)
        lines.append(f"{label:<16} {status:>6} {statistics.median(times) * 1000:10.2f}")
    return lines


# --- simulated calls at a respondent's pace -----------------------------------------------------------


def calls(url: str, args) -> list[str]:
    from bench.ivr_calls import run_calls

    return run_calls(url, n_calls=args.calls, workers=args.workers, threads=args.threads,
                     seed=args.seed)


# --- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="throughput,flood,bodies,calls",
                        help="comma-separated parts: throughput, flood, bodies, calls")
    parser.add_argument("--workers", type=int, default=2,
                        help="gunicorn workers for flood, bodies, calls (minping serve's)")
    parser.add_argument("--threads", type=int, default=8,
                        help="threads per worker (gthread; 1 = sync workers)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2,
                        help="throughput: runs per endpoint, interleaved (the best is shown)")
    parser.add_argument("--requests", type=int, default=6000,
                        help="pre-signed requests per webhook")
    parser.add_argument("--cases", type=int, default=200, help="cases per webhook")
    parser.add_argument("--paced-rate", type=float, default=100.0)
    parser.add_argument("--paced-seconds", type=float, default=8.0)
    parser.add_argument("--warmup-seconds", type=float, default=4.0,
                        help="flood: paced requests before the measured ones, not counted")
    parser.add_argument("--logins", type=int, default=50)
    parser.add_argument("--flood-retry", choices=("after", "at-once"), default="after",
                        help="a refused log-in is tried again after its Retry-After (as the log-in page asks) or at once")
    parser.add_argument("--flood-pools", default="shared,split",
                        help="flood with one pool for all (shared), with minping serve's "
                             "separate IVR pool (split), or both")
    parser.add_argument("--ivr-workers", type=int, default=None,
                        help="with --flood-pools split: the IVR pool's workers (default "
                             "minping serve's, or MINPING_IVR_WORKERS in --flood-env)")
    parser.add_argument("--ivr-threads", type=int, default=None,
                        help="... and its threads per worker (MINPING_IVR_THREADS)")
    parser.add_argument("--flood-env", action="append", default=[], metavar="NAME=VALUE,...",
                        help="run the flood once more with these server settings, e.g. "
                             "MINPING_LOGIN_PRIORITY=normal or MINPING_WEB_NICE=19,"
                             "MINPING_LOGIN_QUEUE=0 (repeatable; each run beside the others)")
    parser.add_argument("--flood-as-configured", action=argparse.BooleanOptionalAction,
                        default=True, help="the flood with minping serve's defaults too")
    parser.add_argument("--body-repeats", type=int, default=20)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    args.flood_pools = {p == "split" for p in args.flood_pools.split(",")}
    args.flood_variants = ([{}] if args.flood_as_configured else []) + [
        dict(pair.split("=", 1) for pair in variant.split(",") if pair)
        for variant in args.flood_env]
    parts = set(args.only.split(","))
    if shutil.which("wrk") is None and parts & {"throughput"}:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    admin = os.environ.get("MINPING_BENCH_PG_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    report = [f"PostgreSQL, {os.cpu_count()} CPUs, load at start {_uptime()}"]
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    names = []

    def new_database() -> str:
        name = f"minping_bench_{uuid.uuid4().hex[:8]}"
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        return make_url(admin).set(database=name).render_as_string(hide_password=False)

    server = None
    try:
        if parts & {"throughput", "flood", "bodies"}:
            url = new_database()
            data = _setup(url, args.cases, args.logins if "flood" in parts else 0)
            with tempfile.TemporaryDirectory(prefix="bench-ivr-") as tmp:
                db_name = make_url(url).database
                runs = [("throughput", False, {}, lambda: throughput(
                            server, data, args, Path(tmp), CpuMeter(server, engine, db_name)))]
                runs += [("flood", split, env, lambda: flood(server, data, args))
                         for split in (False, True) if split in args.flood_pools
                         for env in args.flood_variants]
                runs += [("bodies", False, {}, lambda: bodies(server, data, args))]
                workers, threads = args.workers, args.threads
                for part, split, env, fn in runs:
                    if part not in parts:
                        continue
                    server = Server(url, workers, threads, split=split,
                                    ivr_workers=args.ivr_workers, ivr_threads=args.ivr_threads,
                                    extra_env=env)
                    kind = f"{workers} sync workers" if threads == 1 else \
                        f"{workers} workers x {threads} threads"
                    kind = (f"minping serve --ivr-bind: web pool of {kind}, IVR pool of "
                            f"{args.ivr_workers or env.get('MINPING_IVR_WORKERS', 2)} x "
                            f"{args.ivr_threads or env.get('MINPING_IVR_THREADS', 8)}"
                            if split else f"gunicorn {kind}, one pool")
                    kind += "".join(f", {k}={v}" for k, v in env.items())
                    lines = [f"[{part}: {kind}]"] + fn()
                    server.stop()
                    server = None
                    print("\n".join(lines) + "\n", flush=True)
                    report += [""] + lines
        if "calls" in parts:
            lines = calls(new_database(), args)
            print("\n".join(lines) + "\n", flush=True)
            report += [""] + lines
    finally:
        if server is not None:
            server.stop()
        with engine.connect() as conn:
            for name in names:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        engine.dispose()
    print("summary\n" + "\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
