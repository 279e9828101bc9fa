"""Next-case latency for 50 concurrent interviewers over 100,000 cases on PostgreSQL.

Creates a throw-away database on the server named by ``MINPING_BENCH_PG_URL``
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``), loads
100,000 released cases (24 strata, 8 units each) with COPY, and puts in the
field what the scheduler must step over or put first: 1% of the cases held by
the IVR dialer, 1% of the numbers on the do-not-call list, 200 hard
appointments of another interviewer, 100 soft appointments due now, 300
hand-overs from IVR and 50 cases with a supervisor's priority.  Then the 50
interviewers, one thread each with its own session, spread over ``--processes``
worker processes (5 by default: 10 threads each, as gunicorn's workers would
serve them; each process has its own engine and progress cache), run in the same
run, in each arrangement below, first the baseline and then the picks:

* **baseline**: a plain indexed ``SELECT`` of one ``sample_case`` row by primary
  key, one transaction each, 40 times per interviewer (after an unmeasured warm-up
  that opens the connections);
* **next case**: :func:`cati.service.take_next` as the screen's "next case" calls it
  (the interviewer's row read first, as the screen has it), 40 times
  per interviewer, after one unmeasured warm-up pick (a connection prepares the
  pick's statement once).  Each hold is one transaction; the call is then closed in
  a second, unmeasured transaction (a no answer: the case released and due again in
  two hours, its due appointments missed, as closing a CATI attempt does).

What "50 interviewers picking at once" means here.  On a 2-core machine 50 pickers
in a closed loop (each picks again the moment it has a case) keep 50 requests
queued at every moment: a request's latency is then about 50 x its cost / 2 cores
plus the client's own threads, whatever the request is (the one-row SELECT's p99
was 153 ms there), so no request meets 20 ms that way.  A call center is not that:
an interviewer picks, then calls for minutes.  The arrangements:

* **paced** (the goal's figure): the 50 interviewers work at once, each on their
  own clock: pick, then "interview" for a random pause (exponential, mean
  ``--pause`` 0.5 s, some 360 times more often than real interviewers pick), pick
  again.  Requests meet only by chance, as they do at a call center, and each one's
  latency is its own cost plus what it meets;
* **burst**: the worst moment (a shift starts, a meeting ends): all 50 released
  together by a barrier, each picks once, then everybody's call is closed, and
  again (40 rounds).  p99 here is the last of 50 simultaneous requests served on 2
  cores: queueing, for the SELECT as for the pick;
* **closed**: the former closed loop, what a saturated server does.

The baseline is measured in the same arrangement and threads, so each ratio compares
like with like.  Beside each figure: the client's CPU per request (the thread's own
time) and the database backends' CPU per request (read from /proc; for the picks it
includes the unmeasured call that follows each one).

``--pgbench-seconds N`` adds a cross-check with Debian's ``pgbench`` (a C client, so
the load generator is not the bottleneck): ``-c 50 -j 2 -M prepared`` running the
product's own pick statement (rendered by :mod:`minping.pickstatement` for the
field's shape, pgbench variables in its parameters' places, after the setting the
pick sends; each client first closes the call of its previous pick, so the picks walk
the field) and a one-row indexed SELECT, N seconds each, closed loop or at
``--pgbench-rate`` transactions per second (``-R``, Poisson arrivals).  pgbench's
per-statement average (``-r``) gives the pick statement alone.

It checks that no case was given twice (warm-up picks included), none held by the
IVR, on the do-not-call list or booked by another interviewer, and drops the
database.

Why processes: with all 50 pickers in one interpreter the figures measured the
interpreter lock, not the scheduler.  ``--processes 1`` gives that arrangement.

Run: ``.venv/bin/python bench/cati.py [--cases 100000] [--interviewers 50] [--picks 40]
[--processes 5] [--arrangements paced,burst,closed] [--pause 0.5]
[--pgbench-seconds 15] [--pgbench-rate 0,100] [--profile FILE]``
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sqlalchemy import case, create_engine, select, text, update  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from cati.service import take_next  # noqa: E402
from minping.campaign import codes, sync_campaign  # noqa: E402
from minping.config import load_config  # noqa: E402
from minping.db import Database  # noqa: E402
from minping.models import (  # noqa: E402
    Appointment,
    DoNotCall,
    Frame,
    RespondentGroup,
    SampleCase,
    SampleDraw,
    Stratum,
    Town,
    Unit,
    User,
)
from minping.scheduler import ProgressCache  # noqa: E402
from minping.users import create_user  # noqa: E402

ADMIN = os.environ.get("MINPING_BENCH_PG_URL",
                       "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
#: Wednesday 10:00 in Asia/Shanghai: inside the calling window.
NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def copy_rows(raw, table: str, columns: list[str], rows) -> None:
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        cp.write(buf.getvalue())


def load(db: Database, n_cases: int, n_users: int, seed: int) -> list[int]:
    cfg = load_config()
    rng = np.random.default_rng(seed)
    with db.transaction() as s:
        campaign = sync_campaign(s, cfg)
        groups = codes(s, RespondentGroup, campaign.id)
        towns = codes(s, Town, campaign.id)
        units = codes(s, Unit, campaign.id)
        frame = Frame(campaign_id=campaign.id, name="bench", synthetic=True)
        s.add(frame)
        s.flush()
        draw = SampleDraw(campaign_id=campaign.id, frame_id=frame.id, frame_hash="0" * 64,
                          seed=str(seed), stratification="group_town", method="bench",
                          sample_size=n_cases, software_version="bench")
        s.add(draw)
        s.flush()
        strata = []
        for g in cfg.groups:
            for t in cfg.towns:
                st = Stratum(draw_id=draw.id, code=f"{g.id}:{t.id}", group_id=groups[g.id],
                             town_id=towns[t.id], population=n_cases, target=n_cases // 24)
                s.add(st)
                strata.append((st, g.id, t.id))
        s.flush()
        user_ids = [create_user(s, username=f"bench{i:02d}", password="bench-password",
                                role="interviewer").id for i in range(n_users)]
        frame_id, draw_id = frame.id, draw.id
        strata = [(st.id, g, t) for st, g, t in strata]
    unit_pool = {g.id: [units[u.id] for u in cfg.units_for_group(g.id)] for g in cfg.groups}
    which = rng.integers(0, len(strata), size=n_cases)
    raw = db.engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        copy_rows(dbapi, "frame_contact", ["id", "frame_id", "phone", "group_id", "town_id",
                                           "source_row", "attributes"],
                  ((i + 1, frame_id, f"+86138{i:08d}", groups[strata[which[i]][1]],
                    towns[strata[which[i]][2]], i + 2, "{}") for i in range(n_cases)))
        last = [None if rng.random() < 0.5 else
                (NOW - timedelta(minutes=int(m))).isoformat()
                for m in rng.integers(60, 5000, size=n_cases)]
        copy_rows(dbapi, "sample_case",
                  ["id", "draw_id", "contact_id", "stratum_id", "pseudo_id", "inclusion_prob",
                   "weight", "replicate", "is_reserve", "draw_order", "release_state",
                   "released_at", "state", "language", "attempts", "last_attempt_at",
                   "known_eligible", "priority", "refusal_conversion", "version"],
                  ((i + 1, draw_id, i + 1, strata[which[i]][0], f"B{i:011d}", 0.1, 10.0, 1,
                    "f", i, "released", NOW.isoformat(), "in_field" if last[i] else "pending",
                    "cmn-CN", 1 if last[i] else 0, last[i], "f", 0, "f", 0)
                   for i in range(n_cases)))
        cu_rows = []
        k = cfg.campaign.units_per_respondent
        for i in range(n_cases):
            pool = unit_pool[strata[which[i]][1]]
            for pos, j in enumerate(rng.choice(len(pool), size=k, replace=False)):
                cu_rows.append((i * k + pos + 1, i + 1, pool[j], pos))
        copy_rows(dbapi, "case_unit", ["id", "case_id", "unit_id", "position"], cu_rows)
        with dbapi.cursor() as cur:
            for table in ("frame_contact", "sample_case", "case_unit"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))")
                cur.execute(f"ANALYZE {table}")
        dbapi.commit()
    finally:
        raw.close()
    return user_ids


def add_field_state(db: Database, n_cases: int, user_ids: list[int], seed: int) -> dict:
    """IVR holds, do-not-call numbers, appointments, hand-overs and raised priorities."""
    rng = np.random.default_rng(seed + 1)
    ids = rng.permutation(np.arange(1, n_cases + 1))
    k = max(1, n_cases // 100)
    ivr, dnc = ids[:k], ids[k:2 * k]
    hard, soft = ids[2 * k:2 * k + 200], ids[2 * k + 200:2 * k + 300]
    handoff, raised = ids[2 * k + 300:2 * k + 600], ids[2 * k + 600:2 * k + 650]
    with db.transaction() as s:
        s.execute(update(SampleCase).where(SampleCase.id.in_(ivr.tolist())).values(
            lock_channel="ivr", locked_at=NOW, lock_expires_at=NOW + timedelta(minutes=20)))
        s.execute(DoNotCall.__table__.insert(), [
            {"phone": f"+86138{int(i) - 1:08d}", "source": "bench", "added_at": NOW}
            for i in dnc])
        owner = user_ids[0]
        s.execute(Appointment.__table__.insert(), [
            {"case_id": int(i), "due_at": NOW - timedelta(minutes=5), "kind": "hard",
             "interviewer_id": owner, "status": "pending", "created_at": NOW} for i in hard]
            + [{"case_id": int(i), "due_at": NOW - timedelta(minutes=10), "kind": "soft",
                "interviewer_id": None, "status": "pending", "created_at": NOW} for i in soft])
        s.execute(update(SampleCase).where(SampleCase.id.in_(hard.tolist() + soft.tolist()))
                  .values(next_attempt_at=NOW - timedelta(minutes=10)))
        s.execute(update(SampleCase).where(SampleCase.id.in_(handoff.tolist()))
                  .values(state="handoff_cati", next_attempt_at=NOW))
        s.execute(update(SampleCase).where(SampleCase.id.in_(raised.tolist())).values(priority=3))
    with db.engine.connect() as conn:
        for table in ("sample_case", "appointment", "do_not_call"):
            conn.execute(text(f"ANALYZE {table}"))
        conn.commit()
    return {"ivr": set(ivr.tolist()), "dnc": set(dnc.tolist()), "hard": set(hard.tolist()),
            "hard_owner": owner}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


#: The arrangements of 50 interviewers picking at once (see the module's docstring).
ARRANGEMENTS = ("paced", "burst", "closed")


def server_cpu(engine, name: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends of database ``name`` (read from
    /proc; 0 when the server runs elsewhere)."""
    with engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :n"),
                            {"n": name}).scalars().all()
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def worker(url: str, slots: list[tuple[int, int]], n_threads: int, barrier, out, args,
           profile: str | None) -> None:
    """One worker process (as a gunicorn worker): its own engine and progress cache, one
    thread per interviewer of ``slots`` (thread index, user id).  Every phase starts for
    all threads of all processes at once (``barrier``); results go to ``out``."""
    cfg = load_config()
    engine = create_engine(url, pool_size=len(slots) + 2, max_overflow=0)
    maker = sessionmaker(engine, expire_on_commit=False)
    cache = ProgressCache(10.0)
    db_name = make_url(url).database
    result: dict = {"given": [], "errors": [], "server": {}}
    for a in args.arrangements:
        for what in ("select", "pick"):
            result[(a, what)] = []
            result[(a, what, "cpu")] = []
    lock = threading.Lock()
    first = slots[0][0]

    def transaction():
        return maker.begin()

    def select_one(case_id: int) -> float:
        started = time.perf_counter()
        with transaction() as s:
            s.execute(select(SampleCase).where(SampleCase.id == case_id)).first()
        return time.perf_counter() - started

    def release(case_id: int) -> None:
        """The call, unmeasured: a no answer (the case released, due again in two hours,
        its due appointments missed, as closing a CATI attempt does)."""
        with transaction() as s:
            s.execute(update(SampleCase).where(SampleCase.id == case_id).values(
                lock_channel=None, locked_by=None, locked_at=None, lock_expires_at=None,
                attempts=SampleCase.attempts + 1, last_attempt_at=NOW,
                next_attempt_at=NOW + timedelta(hours=2),
                state=case((SampleCase.state == "pending", "in_field"),
                           else_=SampleCase.state)))
            s.execute(update(Appointment).where(
                Appointment.case_id == case_id, Appointment.status == "pending",
                Appointment.due_at <= NOW).values(status="missed"))

    def pick_one(uid: int) -> tuple[float, int | None]:
        started = time.perf_counter()
        with transaction() as s:  # what the screen's POST /cati/next does
            user = s.get(User, uid)
            got = take_next(s, user, now=NOW, cfg=cfg, progress=cache.get(s))
            case_id = got.id if got is not None else None
        took = time.perf_counter() - started
        if case_id is not None:
            with lock:
                result["given"].append((case_id, uid))
        return took, case_id

    def measure(i: int, a: str, what: str, op, rng) -> None:
        """``args.picks`` operations of one interviewer in arrangement ``a``."""
        times, cpu = [], []

        def timed():
            c0 = time.thread_time()
            took, case_id = op()
            cpu.append(time.thread_time() - c0)
            times.append(took)
            return case_id

        for _ in range(args.picks):
            if a == "burst":  # everybody at the same moment, then the call
                barrier.wait()
                case_id = timed()
                barrier.wait()
                if case_id is not None:
                    release(case_id)
            elif a == "paced":  # each interviewer on their own: a call, then the next pick
                time.sleep(rng.exponential(args.pause))
                case_id = timed()
                if case_id is not None:
                    release(case_id)
            else:  # closed loop: the next pick at once
                case_id = timed()
                if case_id is not None:
                    release(case_id)
        with lock:
            result[(a, what)].extend(times)
            result[(a, what, "cpu")].extend(cpu)

    def phase(i: int, key) -> None:
        """A barrier for every thread; the first thread of each process notes the
        backends' CPU so far (the parent takes the difference per phase)."""
        barrier.wait()
        if i == first and i == 0:
            result["server"][key] = server_cpu(engine, db_name)
        barrier.wait()  # nobody goes on (or closes its connections) before that

    def thread(i: int, uid: int) -> None:
        rng = np.random.default_rng(args.seed * 1000 + i)
        ids = rng.integers(1, args.cases + 1, size=args.picks * len(args.arrangements) + 1)
        pos = iter(ids.tolist())
        try:
            with transaction() as s:
                cache.get(s)  # the progress aggregate, recomputed by one caller every 10 s
            select_one(next(pos))  # warm the pool
            case_id = pick_one(uid)[1]  # warm-up: a connection prepares the pick once
            if case_id is not None:
                release(case_id)
            for a in args.arrangements:
                phase(i, (a, "select", 0))
                measure(i, a, "select", lambda: (select_one(next(pos)), None), rng)
                phase(i, (a, "select", 1))
                if profile and i == first and a == args.arrangements[-1]:
                    import cProfile

                    profiler = cProfile.Profile()
                    try:
                        profiler.runcall(measure, i, a, "pick", lambda: pick_one(uid), rng)
                    finally:
                        profiler.dump_stats(profile)
                else:
                    measure(i, a, "pick", lambda: pick_one(uid), rng)
                phase(i, (a, "pick", 1))
        except BaseException as exc:  # reported by the parent
            barrier.abort()
            with lock:
                result["errors"].append(repr(exc))

    threads = [threading.Thread(target=thread, args=slot) for slot in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    out.put(result)


def run(url: str, users: list[int], args) -> dict:
    """All interviewers in ``args.processes`` worker processes; the merged results."""
    ctx = multiprocessing.get_context("fork")
    n = len(users)
    barrier = ctx.Barrier(n)
    out = ctx.Queue()
    slots = [[(i, users[i]) for i in range(n) if i % args.processes == p]
             for p in range(args.processes)]
    procs = [ctx.Process(target=worker, args=(url, mine, n, barrier, out, args,
                                              args.profile if p == 0 else None))
             for p, mine in enumerate(slots) if mine]
    for proc in procs:
        proc.start()
    merged: dict = {"given": [], "errors": [], "server": {}}
    for _ in procs:
        part = out.get()
        for key, value in part.items():
            if isinstance(value, dict):
                merged[key].update(value)
            else:
                merged.setdefault(key, []).extend(value)
    for proc in procs:
        proc.join()
    return merged


# --- the pgbench cross-check ------------------------------------------------------------


def pgbench_scripts(db: Database, users: list[int], directory: Path) -> tuple[Path, Path, list]:
    """The product's pick statement (rendered by :mod:`minping.pickstatement` for the
    field's current shape, pgbench variables in place of its parameters) and a one-row
    indexed SELECT, as pgbench script files, with the ``-D`` definitions they need.

    Before each pick a client closes the call of its previous one, as the Python
    clients do (the case released and due again in two hours, in a transaction of its
    own), so the picks walk the field as interviewers do; the pick's own latency is
    pgbench's per-statement figure (``-r``), the log's per-transaction ones include
    that release.
    """
    from minping.pickstatement import _GENERIC_SQL, pick_statement, shares
    from minping.scheduler import HARD_APPOINTMENT_GRACE, MAX_TIERS, field_progress, stratum_tiers

    with db.session() as s:
        progress = field_progress(s)
        tiers = stratum_tiers(s, progress)
    stmt = pick_statement("postgresql", experienced=False, by_draw=False,
                          tiers=tuple(len(t) for t in tiers[:MAX_TIERS]),
                          rest=len(tiers) > MAX_TIERS)
    sql = stmt.compile(dialect=db.engine.dialect,
                       compile_kwargs={"render_postcompile": True}).string
    sql = re.sub(r"%%|%\((\w+)\)s", lambda m: "%" if m.group(0) == "%%" else f":{m.group(1)}",
                 sql)
    defs = {"now": NOW.isoformat(), "until": (NOW + timedelta(minutes=20)).isoformat(),
            "later": (NOW + timedelta(hours=2)).isoformat(),
            "grace": (NOW - HARD_APPOINTMENT_GRACE).isoformat(),
            "cap": str(load_config().calling.max_attempts),
            "sshare": shares("postgresql", progress.stratum, 9),
            "ushare": shares("postgresql", progress.unit, None)}
    for k, strata in enumerate(tiers[:MAX_TIERS]):
        for j, sid in enumerate(strata):
            defs[f"t{k}_{j}"] = str(sid)
    low = min(users)
    pick = directory / "pick.sql"
    pick.write_text(
        f"\\set me {low} + (:client_id % {len(users)})\n"
        "UPDATE sample_case SET lock_channel = NULL, locked_by = NULL, locked_at = NULL, "
        "lock_expires_at = NULL, attempts = attempts + 1, last_attempt_at = :now, "
        "next_attempt_at = :later WHERE locked_by = :me AND lock_channel = 'cati';\n"
        "BEGIN;\n"  # the settings of the screen's pick, then the pick
        + _GENERIC_SQL.decode() + ";\n"
        + " ".join(sql.split()) + ";\n"
        "COMMIT;\n")
    one = directory / "select.sql"
    one.write_text("\\set id random(1, 100000)\n"
                   "BEGIN;\nSELECT * FROM sample_case WHERE id = :id;\nCOMMIT;\n")
    return pick, one, [f"-D{k}={v}" for k, v in defs.items()]


def pgbench(url: str, script: Path, defs: list, args, directory: Path, rate: float) -> dict:
    """Run one script with ``args.interviewers`` clients (closed loop, or ``rate``
    transactions per second in all); p50/p99 from pgbench's log."""
    u = make_url(url)
    prefix = directory / f"log_{script.stem}"
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(args.interviewers), "-j", "2",
           "-T", str(args.pgbench_seconds), "-h", u.host or "127.0.0.1",
           "-p", str(u.port or 5432), "-U", u.username or "postgres", "-f", str(script),
           "-r", "-l", f"--log-prefix={prefix}", *defs]
    if rate:
        cmd[1:1] = ["-R", f"{rate:g}"]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run([*cmd, u.database], check=True, capture_output=True, text=True)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    statements = [line.split(None, 2) for line in run.stdout.splitlines()
                  if re.match(r"\s+\d+\.\d+\s+\d+\s+\S", line)]
    own = [float(ms) for ms, _, sql in statements
           if sql.startswith(("UPDATE sample_case SET lock_channel='cati'", "SELECT *"))]
    lat = []
    for log in directory.glob(f"log_{script.stem}.*"):
        for line in log.read_text().splitlines():
            lat.append(int(line.split()[2]) / 1e6)  # microseconds
        log.unlink()
    client = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {"times": lat, "client_cpu": client / max(1, len(lat)),
            "statement": own[0] if own else float("nan")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--interviewers", type=int, default=50)
    ap.add_argument("--picks", type=int, default=40,
                    help="next-case requests per interviewer and arrangement")
    ap.add_argument("--processes", type=int, default=5,
                    help="worker processes the interviewers are spread over (as gunicorn's)")
    ap.add_argument("--arrangements", default=",".join(ARRANGEMENTS),
                    help="which of paced, burst, closed to run (comma-separated)")
    ap.add_argument("--pause", type=float, default=0.5,
                    help="paced: mean seconds between an interviewer's picks (exponential)")
    ap.add_argument("--pgbench-seconds", type=int, default=0,
                    help="also run the pick's statement and the SELECT with pgbench, "
                         "this many seconds each (0: not)")
    ap.add_argument("--pgbench-rate", default="0",
                    help="pgbench -R: transactions per second in all (0: closed loop); "
                         "several comma-separated run one after the other")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", metavar="FILE",
                    help="cProfile the first interviewer's picks into FILE (pstats format)")
    args = ap.parse_args(argv)
    args.arrangements = [a for a in args.arrangements.split(",") if a]
    args.pgbench_rate = [float(r) for r in args.pgbench_rate.split(",") if r]
    unknown = set(args.arrangements) - set(ARRANGEMENTS)
    if unknown:
        ap.error(f"unknown arrangement(s): {', '.join(sorted(unknown))}")

    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    name = f"minping_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN).set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    try:
        t0 = time.perf_counter()
        db.upgrade()
        users = load(db, args.cases, args.interviewers, args.seed)
        field = add_field_state(db, args.cases, users, args.seed)
        db.dispose()  # the workers open their own connections
        print(f"loaded {args.cases:,} cases x {load_config().campaign.units_per_respondent} "
              f"units in {time.perf_counter() - t0:.1f} s; {args.interviewers} interviewers "
              f"in {args.processes} processes, {args.picks} picks each per arrangement "
              f"(+1 warm-up); load average {os.getloadavg()[0]:.1f}")
        got = run(db.url, users, args)
        print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if got["errors"]:
            print("errors:", got["errors"][:3], file=sys.stderr)
            return 1
        server = got["server"]
        print(f"{'':10}{'':24}{'p50 ms':>9}{'p99 ms':>9}{'n':>6}{'client CPU':>12}"
              f"{'server CPU':>12}  (ms per request)")
        for a in args.arrangements:
            rows = {}
            for what, label in (("pick", "next case (scheduler)"),
                                ("select", "indexed SELECT 1 row")):
                times, cpu = got[(a, what)], got[(a, what, "cpu")]
                start = (a, "select", 0) if what == "select" else (a, "select", 1)
                spent = server.get((a, what, 1), 0.0) - server.get(start, 0.0)
                rows[what] = (pct(times, 50), pct(times, 99))
                print(f"{a:10}{label:24}{rows[what][0]:>9.2f}{rows[what][1]:>9.2f}"
                      f"{len(times):>6}{statistics.mean(cpu) * 1000:>12.2f}"
                      f"{spent * 1000 / len(times):>12.2f}")
            print(f"{a:10}{'ratio':24}{rows['pick'][0] / rows['select'][0]:>9.1f}"
                  f"{rows['pick'][1] / rows['select'][1]:>9.1f}")
        print("(server CPU of a pick includes the unmeasured call that follows it)")
        given = got["given"]
        ids_given = [cid for cid, _ in given]
        dupes = len(ids_given) - len(set(ids_given))
        wrong = (field["ivr"] | field["dnc"]) & set(ids_given)
        wrong |= {cid for cid, uid in given if cid in field["hard"] and uid != field["hard_owner"]}
        print(f"cases given: {len(given)}, given twice: {dupes}, given against the rules: "
              f"{len(wrong)}")
        if args.pgbench_seconds:
            with tempfile.TemporaryDirectory() as tmp:
                directory = Path(tmp)
                pick, one, defs = pgbench_scripts(Database(db.url), users, directory)
                for rate in args.pgbench_rate:
                    res = {k: pgbench(db.url, f, defs if k == "pick" else [], args, directory,
                                      rate)
                           for k, f in (("select", one), ("pick", pick))}
                    mode = f"-R {rate:g}" if rate else "closed loop"
                    print(f"pgbench -c {args.interviewers} -j 2 -M prepared, {mode}, "
                          f"{args.pgbench_seconds} s each; load average "
                          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
                    for k, label in (("pick", "release + pick"),
                                     ("select", "indexed SELECT 1 row")):
                        t = res[k]["times"]
                        print(f"{'pgbench':10}{label:24}{pct(t, 50):>9.2f}{pct(t, 99):>9.2f}"
                              f"{len(t):>6}{res[k]['client_cpu'] * 1000:>12.3f}"
                              f"   {len(t) / args.pgbench_seconds:,.0f} per s; the "
                              f"statement alone {res[k]['statement']:.2f} ms on average")
                    print(f"{'pgbench':10}{'ratio':24}"
                          f"{pct(res['pick']['times'], 50) / pct(res['select']['times'], 50):>9.1f}"
                          f"{pct(res['pick']['times'], 99) / pct(res['select']['times'], 99):>9.1f}")
        return 0 if dupes == 0 and not wrong else 1
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
