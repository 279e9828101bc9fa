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
run, every phase starting for all of them at once:

* **baseline**: a plain indexed ``SELECT`` of one ``sample_case`` row by primary
  key, one transaction each, 40 times (after an unmeasured warm-up round that
  opens the connections);
* **next case**: :func:`cati.service.take_next` (what the interviewer's screen
  calls), 40 times, after one unmeasured warm-up pick (a connection prepares the
  pick's statement once, as the SELECT's warm-up round prepares its own).  Each
  hold is one transaction; the call is then closed in a second, unmeasured
  transaction that releases the case and moves its next attempt two hours on.

It prints p50 and p99 of both and their ratio, checks that no case was given
twice (warm-up picks included), none held by the IVR, on the do-not-call list or
booked by another interviewer, and drops the database.

Why processes: with all 50 pickers in one interpreter the figures measured the
interpreter lock (the pick's own Python work is a few milliseconds; 50 threads
queued on it), not the scheduler; the SELECT baseline runs in the same processes
and threads, so the ratio compares like with like.  ``--processes 1`` gives the
former arrangement.

Run: ``.venv/bin/python bench/cati.py [--cases 100000] [--interviewers 50] [--picks 40]
[--processes 5] [--profile FILE]``
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sqlalchemy import create_engine, select, text, update  # noqa: E402
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


def worker(url: str, slots: list[tuple[int, int]], n_threads: int, barrier, out, args,
           profile: str | None) -> None:
    """One worker process (as a gunicorn worker): its own engine and progress cache, one
    thread per interviewer of ``slots`` (thread index, user id).  Every phase starts for
    all threads of all processes at once (``barrier``); results go to ``out``."""
    cfg = load_config()
    engine = create_engine(url, pool_size=len(slots) + 2, max_overflow=0)
    maker = sessionmaker(engine, expire_on_commit=False)
    cache = ProgressCache(10.0)
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(1, args.cases + 1, size=(n_threads, args.picks))
    result: dict = {"select": [], "pick": [], "given": [], "errors": []}
    lock = threading.Lock()

    def transaction():
        return maker.begin()

    def select_work(i: int) -> list[float]:
        out_ = []
        for case_id in ids[i]:
            started = time.perf_counter()
            with transaction() as s:
                s.execute(select(SampleCase).where(SampleCase.id == int(case_id))).first()
            out_.append(time.perf_counter() - started)
        return out_

    def one_pick(uid: int) -> tuple[float, int | None]:
        started = time.perf_counter()
        with transaction() as s:
            user = s.get(User, uid)
            case = take_next(s, user, now=NOW, cfg=cfg, progress=cache.get(s))
            case_id = case.id if case is not None else None
        took = time.perf_counter() - started
        if case_id is not None:
            with lock:
                result["given"].append((case_id, uid))
            with transaction() as s:  # the call, unmeasured: released, due later
                s.execute(update(SampleCase).where(SampleCase.id == case_id).values(
                    lock_channel=None, locked_by=None, locked_at=None, lock_expires_at=None,
                    attempts=SampleCase.attempts + 1, last_attempt_at=NOW,
                    next_attempt_at=NOW + timedelta(hours=2)))
        return took, case_id

    def pick_work(i: int, uid: int) -> list[float]:
        return [one_pick(uid)[0] for _ in range(args.picks)]

    def thread(i: int, uid: int) -> None:
        try:
            with transaction() as s:
                cache.get(s)  # the progress aggregate, recomputed by one caller every 10 s
            select_work(i)  # warm the pool
            barrier.wait()
            base = select_work(i)
            barrier.wait()
            one_pick(uid)  # warm-up: a connection prepares the pick's statement once
            barrier.wait()
            if profile and i == 0:
                import cProfile

                profiler = cProfile.Profile()
                try:
                    picks = profiler.runcall(pick_work, i, uid)
                finally:
                    profiler.dump_stats(profile)
            else:
                picks = pick_work(i, uid)
            with lock:
                result["select"].extend(base)
                result["pick"].extend(picks)
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
    merged: dict = {"select": [], "pick": [], "given": [], "errors": []}
    for _ in procs:
        part = out.get()
        for key in merged:
            merged[key].extend(part[key])
    for proc in procs:
        proc.join()
    return merged


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--interviewers", type=int, default=50)
    ap.add_argument("--picks", type=int, default=40, help="next-case requests per interviewer")
    ap.add_argument("--processes", type=int, default=5,
                    help="worker processes the interviewers are spread over (as gunicorn's)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", metavar="FILE",
                    help="cProfile the first interviewer's picks into FILE (pstats format)")
    args = ap.parse_args(argv)

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
              f"in {args.processes} processes, {args.picks} picks each (+1 warm-up)")
        got = run(db.url, users, args)
        if got["errors"]:
            print("errors:", got["errors"][:3], file=sys.stderr)
            return 1
        base, picks, given = got["select"], got["pick"], got["given"]
        ids_given = [cid for cid, _ in given]
        dupes = len(ids_given) - len(set(ids_given))
        wrong = (field["ivr"] | field["dnc"]) & set(ids_given)
        wrong |= {cid for cid, uid in given if cid in field["hard"] and uid != field["hard_owner"]}
        p50, p99 = pct(picks, 50), pct(picks, 99)
        b50, b99 = pct(base, 50), pct(base, 99)
        print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}{'n':>8}")
        print(f"{'next case (scheduler)':24}{p50:>10.2f}{p99:>10.2f}{len(picks):>8}")
        print(f"{'indexed SELECT 1 row':24}{b50:>10.2f}{b99:>10.2f}{len(base):>8}")
        print(f"{'ratio':24}{p50 / b50:>10.1f}{p99 / b99:>10.1f}")
        print(f"cases given: {len(given)}, given twice: {dupes}, given against the rules: "
              f"{len(wrong)}, mean pick {statistics.mean(picks) * 1000:.2f} ms")
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
