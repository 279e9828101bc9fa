"""Benchmark: import a 1,000,000-contact frame and draw 2,020 from it, on SQLite and PostgreSQL.

Generates a seeded frame CSV (GB18030, Chinese headers and labels, as a county
register exported from a spreadsheet) in a temporary folder, then for each
database:

- ``minping.frames.import_frame`` (validation, E.164 normalisation, do-not-call
  and duplicate checks, bulk insert in one transaction): rows per second;
- ``minping.draws.draw_sample`` (count per stratum in SQL, proportional
  allocation, load the frame, canonical order, stratified draw, frame hash,
  unit assignment, store the draw, strata, cases and units): seconds.

Baseline: pandas ``DataFrame.groupby(group).sample(frac=n/N)`` on the same
frame held in memory, against minping's pure draw on the same in-memory frame
(``sampling.draw.draw`` over the canonical order, with the allocation).  The
ratio is printed for both the pure draw and the whole database draw.

PostgreSQL: a database ``minping_bench_<random>`` is created on the server at
``--pg-url`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
and dropped at the end.

Run:  .venv/bin/python bench/sampling.py [--rows 1000000] [--size 2020] [--seed 2026]
                                         [--no-postgres] [--no-sqlite]
"""

from __future__ import annotations

import argparse
import csv
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
from minping.draws import draw_sample  # noqa: E402
from minping.frames import import_frame  # noqa: E402
from sampling.allocation import allocate  # noqa: E402
from sampling.draw import canonical_order, draw  # noqa: E402

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


def bench_database(name: str, url: str, cfg, path: Path, size: int, seed: int) -> dict:
    db = Database(url)
    try:
        db.upgrade()
        t0 = time.perf_counter()
        with db.transaction() as session:
            result = import_frame(session, cfg, path)
        t_import = time.perf_counter() - t0
        t1 = time.perf_counter()
        with db.transaction() as session:
            summary = draw_sample(session, cfg, size=size, seed=seed)
        t_draw = time.perf_counter() - t1
    finally:
        db.dispose()
    return {"db": name, "imported": result.imported, "import_s": t_import,
            "rows_per_s": result.imported / t_import, "draw_s": t_draw,
            "timings": summary.timings}


def bench_in_memory(path: Path, size: int, seed: int, repeat: int) -> dict:
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_csv(path, encoding="gb18030", dtype=str)
    t_read = time.perf_counter() - t0
    frac = size / len(df)
    best_pd = float("inf")
    for r in range(repeat):
        t = time.perf_counter()
        sample = df.groupby("类别").sample(frac=frac, random_state=seed + r)
        best_pd = min(best_pd, time.perf_counter() - t)
    phones = df["手机号码"].to_numpy(dtype=str)
    groups = df["类别"].to_numpy(dtype=str)
    N = {g: int(n) for g, n in df["类别"].value_counts().sort_index().items()}
    best_core = float("inf")
    for r in range(repeat):
        t = time.perf_counter()
        order = canonical_order(phones)
        counts = allocate(N, size).as_dict()
        result = draw(groups[order], counts, rng=np.random.default_rng(seed + r))
        best_core = min(best_core, time.perf_counter() - t)
    return {"read_s": t_read, "pandas_s": best_pd, "pandas_n": len(sample),
            "core_s": best_core, "core_n": len(result)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=2020)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--repeat", type=int, default=3, help="in-memory runs (best time is kept)")
    ap.add_argument("--pg-url", default=PG_ADMIN, help="PostgreSQL server (admin database)")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    args = ap.parse_args(argv)

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
                                          args.size, args.seed))
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
                                              args.seed))
            finally:
                with admin.connect() as conn:
                    conn.execute(text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
                admin.dispose()
        mem = bench_in_memory(path, args.size, args.seed, args.repeat)

    print()
    print(f"{'database':<11} {'imported':>10} {'import s':>9} {'rows/s':>10} {'draw s':>8}"
          "   draw stages (count / load / draw / hash, s)")
    for r in results:
        tm = r["timings"]
        stages = " / ".join(f"{tm.get(k, 0):.2f}" for k in ("count", "load", "draw", "hash"))
        print(f"{r['db']:<11} {r['imported']:>10,} {r['import_s']:>9.2f} {r['rows_per_s']:>10,.0f} "
              f"{r['draw_s']:>8.2f}   {stages}")
    print()
    print(f"in memory, {args.rows:,} contacts, n = {args.size} (best of {args.repeat}):")
    print(f"  pandas read_csv (GB18030)                  {mem['read_s']:8.3f} s")
    print(f"  pandas groupby().sample(frac)  baseline    {mem['pandas_s']:8.3f} s "
          f"({mem['pandas_n']} drawn)")
    print(f"  minping canonical order + allocate + draw  {mem['core_s']:8.3f} s "
          f"({mem['core_n']} drawn)   ratio minping/pandas {mem['core_s'] / mem['pandas_s']:.2f}")
    for r in results:
        print(f"  minping draw_sample on {r['db']:<10}          {r['draw_s']:8.3f} s "
              f"  ratio minping/pandas {r['draw_s'] / mem['pandas_s']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
