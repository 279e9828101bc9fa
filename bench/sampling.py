"""Benchmark: import a 1,000,000-contact frame, draw 2,020 from it and verify, on SQLite and PostgreSQL.

Generates a seeded frame CSV (GB18030, Chinese headers and labels, as a county
register exported from a spreadsheet) in a temporary folder, then for each
database:

- ``minping.frames.import_frame`` (validation, E.164 normalisation, do-not-call
  and duplicate checks, bulk insert in one transaction), run in a child
  process so that its peak resident memory can be reported: rows per second
  and peak RSS (and the child's RSS once its modules are imported);
- ``minping.draws.draw_sample`` (load the frame's four columns, counts,
  allocation, canonical order, stratified draw, frame hash, unit assignment,
  store the draw, strata, cases and units): seconds, with the phases;
- ``minping.draws.verify`` (load, hash, re-derive, compare, units): seconds.

Baselines measured in the same run:

- pandas ``read_csv`` of the same file (GB18030, no validation, nothing
  stored): the import's rows per second are divided by it;
- pandas ``DataFrame.groupby(group).sample(frac=n/N)`` on the same frame held
  in memory, against minping's draw on the same in-memory frame (canonical
  order, strata codes, allocation, ``sampling.draw.draw``) and against the
  database draw and verify.

Each figure is printed with its target from issue #12 (import >= 100,000
rows/s on PostgreSQL and >= 50,000 on SQLite, peak RSS < 300 MB, draw <= 2 s
and verify <= 3 s on PostgreSQL, in-memory draw <= 1.5x pandas).

PostgreSQL: a database ``minping_bench_<random>`` is created on the server at
``--pg-url`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
and dropped at the end.

Run:  .venv/bin/python bench/sampling.py [--rows 1000000] [--size 2020] [--seed 2026]
                                         [--no-postgres] [--no-sqlite] [--only import]
The machine's load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minping.config import load_config  # noqa: E402
from minping.db import Database  # noqa: E402
from minping.demo import GROUP_SHARES, MOBILE_PREFIXES  # noqa: E402
from minping.draws import draw_sample, verify  # noqa: E402
from minping.frames import import_frame  # noqa: E402
from sampling.allocation import allocate  # noqa: E402
from sampling.draw import CodedColumn, canonical_order, draw  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def valid_prefixes() -> list[str]:
    """Five-digit mobile prefixes that ``phonenumbers`` accepts (checked once each)."""
    import phonenumbers

    out = []
    for p3 in MOBILE_PREFIXES:
        for d in range(100):
            p5 = f"{p3}{d:02d}"
            if phonenumbers.is_valid_number(phonenumbers.parse("+86" + p5 + "000000")):
                out.append(p5)
    return out


def make_frame(path: Path, cfg, rows: int, seed: int) -> None:
    """Write ``rows`` distinct valid contacts to ``path`` (GB18030 CSV)."""
    rng = np.random.default_rng(seed)
    prefixes = np.array([int(p) for p in valid_prefixes()], dtype=np.int64)
    numbers = np.empty(0, dtype=np.int64)
    while len(numbers) < rows:
        more = rows - len(numbers)
        cand = prefixes[rng.integers(0, len(prefixes), size=more + more // 10 + 10)] * 10**6 + \
            rng.integers(0, 10**6, size=more + more // 10 + 10)
        numbers = np.unique(np.concatenate([numbers, cand]))
    numbers = rng.permutation(numbers)[:rows]
    groups = [g for g in cfg.groups]
    share = np.array([GROUP_SHARES.get(g.id, 1.0) for g in groups])
    g_idx = rng.choice(len(groups), size=rows, p=share / share.sum())
    t_share = rng.uniform(0.6, 1.4, size=len(cfg.towns))
    t_idx = rng.choice(len(cfg.towns), size=rows, p=t_share / t_share.sum())
    gname = [g.name for g in groups]
    tname = [t.name for t in cfg.towns]
    with open(path, "w", encoding="gb18030", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["手机号码", "类别", "乡镇", "姓名"])
        w.writerows(
            (str(n), gname[g], tname[t], f"居民{i}")
            for i, (n, g, t) in enumerate(zip(numbers.tolist(), g_idx.tolist(), t_idx.tolist(),
                                              strict=True))
        )


def _rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM: not inherited across exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_import(url: str, path: str) -> None:
    """Import ``path`` into the database at ``url``; print rows, seconds and peak RSS as JSON."""
    cfg = load_config()
    db = Database(url)
    base = _rss_mb()
    try:
        t0 = time.perf_counter()
        with db.transaction() as session:
            result = import_frame(session, cfg, path)
        seconds = time.perf_counter() - t0
    finally:
        db.dispose()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"imported": result.imported, "seconds": seconds, "rss_base_mb": base,
                      "rss_peak_mb": _rss_mb(), "cpu_s": cpu.ru_utime + cpu.ru_stime}))


def bench_database(name: str, url: str, cfg, path: Path, size: int, seed: int,
                   only_import: bool = False) -> dict:
    db = Database(url)
    try:
        db.upgrade()
        out = subprocess.run([sys.executable, __file__, "--child-import", url, str(path)],
                             check=True, capture_output=True, text=True)
        imp = json.loads(out.stdout.strip().splitlines()[-1])
        if only_import:
            return {"db": name, "imported": imp["imported"], "import_s": imp["seconds"],
                    "rows_per_s": imp["imported"] / imp["seconds"], "rss_base": imp["rss_base_mb"],
                    "rss_peak": imp["rss_peak_mb"], "import_cpu_s": imp["cpu_s"]}
        t1 = time.perf_counter()
        with db.transaction() as session:
            cpu0 = _cpu(session)
            summary = draw_sample(session, cfg, size=size, seed=seed)
            cpu_draw = _cpu(session, cpu0)
        t_draw = time.perf_counter() - t1
        t2 = time.perf_counter()
        with db.session() as session:
            cpu0 = _cpu(session)
            checked = verify(session, cfg)
            cpu_verify = _cpu(session, cpu0)
            session.rollback()
        t_verify = time.perf_counter() - t2
    finally:
        db.dispose()
    return {"db": name, "imported": imp["imported"], "import_s": imp["seconds"],
            "rows_per_s": imp["imported"] / imp["seconds"], "rss_base": imp["rss_base_mb"],
            "rss_peak": imp["rss_peak_mb"], "import_cpu_s": imp["cpu_s"], "draw_s": t_draw, "timings": summary.timings,
            "verify_s": t_verify, "verify_ok": checked["matches"],
            "verify_timings": checked["timings"], "draw_cpu": cpu_draw, "verify_cpu": cpu_verify}


def _cpu(session, since: tuple[float, float] | None = None) -> tuple[float, float]:
    """CPU seconds of this process and of the session's PostgreSQL backend (local server).

    The machine is shared and loaded, so wall time alone says little: the CPU both
    sides spend is printed beside it.  The backend's is read from ``/proc`` (0 for
    SQLite, which runs in this process).
    """
    mine = time.process_time()
    server = 0.0
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:  # not a server on this machine
            server = float("nan")
    if since is None:
        return mine, server
    return mine - since[0], server - since[1]


def bench_in_memory(path: Path, size: int, seed: int, repeat: int,
                    only_import: bool = False) -> dict:
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_csv(path, encoding="gb18030", dtype=str)
    t_read = time.perf_counter() - t0
    if only_import:
        return {"read_s": t_read, "read_rows_per_s": len(df) / t_read}
    frac = size / len(df)
    best_pd = float("inf")
    for r in range(repeat):
        t = time.perf_counter()
        sample = df.groupby("类别").sample(frac=frac, random_state=seed + r)
        best_pd = min(best_pd, time.perf_counter() - t)
    # minping's frame in memory: E.164 numbers as bytes, groups as codes (as the database gives)
    phones = np.char.encode(("+86" + df["手机号码"]).to_numpy(dtype=str), "ascii")
    labels, codes = np.unique(df["类别"].to_numpy(dtype=str), return_inverse=True)
    labels = tuple(labels.tolist())
    N = {g: int(n) for g, n in zip(labels, np.bincount(codes).tolist(), strict=True)}
    best_core = float("inf")
    for r in range(repeat):
        t = time.perf_counter()
        order = canonical_order(phones)
        counts = allocate(N, size).as_dict()
        result = draw(CodedColumn(codes[order], labels), counts,
                      rng=np.random.default_rng(seed + r))
        best_core = min(best_core, time.perf_counter() - t)
    return {"read_s": t_read, "read_rows_per_s": len(df) / t_read, "pandas_s": best_pd,
            "pandas_n": len(sample), "core_s": best_core, "core_n": len(result)}


def _cpu_text(cpu: tuple[float, float]) -> str:
    mine, server = cpu
    return f"{mine:.2f} s here" + (f" + {server:.2f} s in the server" if server else "")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-import"]:
        child_import(argv[1], argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=2020)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--repeat", type=int, default=3, help="in-memory runs (best time is kept)")
    ap.add_argument("--pg-url", default=PG_ADMIN, help="PostgreSQL server (admin database)")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--only", choices=["import"],
                    help="import: only the import and its read_csv baseline (no draw, verify)")
    args = ap.parse_args(argv)
    only_import = args.only == "import"

    cfg = load_config()
    with tempfile.TemporaryDirectory(prefix="minping-bench-") as tmp:
        path = Path(tmp) / "frame.csv"
        t = time.perf_counter()
        make_frame(path, cfg, args.rows, args.seed)
        print(f"frame: {args.rows:,} contacts, {path.stat().st_size / 1e6:.1f} MB GB18030 CSV "
              f"(generated in {time.perf_counter() - t:.1f} s)")
        results = []
        if not args.no_sqlite:
            results.append(bench_database("sqlite", f"sqlite:///{tmp}/bench.sqlite", cfg, path,
                                          args.size, args.seed, only_import))
        if not args.no_postgres:
            from sqlalchemy import create_engine, text
            from sqlalchemy.engine import make_url

            admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
            name = f"minping_bench_{uuid.uuid4().hex[:10]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = make_url(args.pg_url).set(database=name).render_as_string(
                    hide_password=False)
                results.append(bench_database("postgresql", url, cfg, path, args.size,
                                              args.seed, only_import))
            finally:
                with admin.connect() as conn:
                    conn.execute(text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
                admin.dispose()
        mem = bench_in_memory(path, args.size, args.seed, args.repeat, only_import)

    load = os.getloadavg()
    print()
    print(f"load average {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} "
          f"({os.cpu_count()} CPUs)")
    print()
    print(f"in memory, {args.rows:,} contacts, n = {args.size} (best of {args.repeat}):")
    print(f"  pandas read_csv (GB18030)  baseline      {mem['read_s']:8.3f} s "
          f"({mem['read_rows_per_s']:,.0f} rows/s)")
    if not only_import:
        print(f"  pandas groupby().sample(frac)  baseline  {mem['pandas_s']:8.3f} s "
              f"({mem['pandas_n']} drawn)")
        ratio = mem["core_s"] / mem["pandas_s"]
        print(f"  minping canonical order + allocate + draw {mem['core_s']:8.3f} s "
              f"({mem['core_n']} drawn)   ratio minping/pandas {ratio:.2f}  (target <= 1.5: "
              f"{'met' if ratio <= 1.5 else 'NOT met'})")
    targets = {"postgresql": 100_000, "sqlite": 50_000}
    for r in results:
        print()
        print(f"{r['db']}:")
        ratio = r["rows_per_s"] / mem["read_rows_per_s"]
        target = targets[r["db"]]
        print(f"  import   {r['imported']:>10,} rows in {r['import_s']:7.2f} s = "
              f"{r['rows_per_s']:>9,.0f} rows/s; ratio to pandas read_csv {ratio:.2f}; "
              f"target >= {target:,}: {'met' if r['rows_per_s'] >= target else 'NOT met'}")
        print(f"  import   CPU time of the importing process {r['import_cpu_s']:.1f} s "
              f"(the database server's is not counted)")
        print(f"  import   peak RSS {r['rss_peak']:.0f} MB (process after imports "
              f"{r['rss_base']:.0f} MB); target < 300 MB: "
              f"{'met' if r['rss_peak'] < 300 else 'NOT met'}")
        if only_import:
            continue
        tm, vt = r["timings"], r["verify_timings"]
        stages = ", ".join(f"{k} {v:.2f}" for k, v in tm.items())
        ok = r["draw_s"] <= 2 if r["db"] == "postgresql" else True
        print(f"  draw     {r['draw_s']:7.2f} s ({stages}); CPU {_cpu_text(r['draw_cpu'])}; "
              f"ratio to pandas "
              f"{r['draw_s'] / mem['pandas_s']:.1f}"
              + (f"; target <= 2 s: {'met' if ok else 'NOT met'}"
                 if r["db"] == "postgresql" else ""))
        stages = ", ".join(f"{k} {v:.2f}" for k, v in vt.items())
        ok = r["verify_s"] <= 3
        print(f"  verify   {r['verify_s']:7.2f} s ({stages}); CPU {_cpu_text(r['verify_cpu'])}; "
              f"matches {r['verify_ok']}"
              + (f"; target <= 3 s: {'met' if ok else 'NOT met'}"
                 if r["db"] == "postgresql" else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
