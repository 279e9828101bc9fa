"""The dashboard's forecast: computed on every load (before) against the cache (after).

Builds a throw-away SQLite field (``--cases`` released cases of one stratum, 4
units each, 1 to 5 closed attempts per case on the first two calling days), then
times, in the same run:

* **uncached**: :func:`minping.forecast.field_forecast` with the dashboard's
  simulations (what every dashboard load did before the cache);
* **cache hit**: :meth:`minping.forecast.ForecastCache.get` within its minimum age
  (what a load does for the next ``CACHE_MIN_SECONDS``);
* **unchanged**: ``get`` past the minimum age with the field unchanged (one
  :func:`minping.forecast.fingerprint` query, then the held forecast).

It prints the median of each and the ratios.

Run: ``.venv/bin/python bench/forecast_cache.py [--cases 20000] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sqlalchemy import insert, update  # noqa: E402

from minping import forecast as fc  # noqa: E402
from minping.db import Database  # noqa: E402
from minping.models import CallAttempt, SampleCase  # noqa: E402
from tests.builders import FIELD_START, build_field  # noqa: E402

CODES = ("3.13", "3.13", "3.13", "1.1", "2.112", "3.14")


def field(db, n: int, rng) -> None:
    f = build_field(db, n_cases=n, units_per_case=4)
    rows, finals = [], []
    for i, cid in enumerate(f.case_ids):
        k = int(rng.integers(1, 6))
        for j in range(k):
            code = str(rng.choice(CODES)) if j == k - 1 else "3.13"
            t = FIELD_START + timedelta(hours=3 * j + (j // 3) * 24, seconds=i % 3600)
            rows.append({"case_id": cid, "channel": "ivr", "started_at": t,
                         "ended_at": t + timedelta(minutes=2), "status": "completed",
                         "outcome": code})
            if code == "1.1":
                finals.append(cid)
    with db.transaction() as s:
        s.execute(insert(CallAttempt), rows)
        s.execute(update(SampleCase).where(SampleCase.id.in_(finals))
                  .values(state="final", final_disposition="1.1"))
    print(f"field: {n} cases, {len(rows)} attempts, {len(finals)} completes")


def timed(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.sqlite")
        db.upgrade()
        field(db, args.cases, np.random.default_rng(1))
        from minping.config import load_config

        cfg = load_config()
        at = datetime(2026, 12, 3, 1, 30, tzinfo=UTC)
        cache = fc.ForecastCache()
        with db.session() as s:
            uncached = timed(lambda: fc.field_forecast(s, cfg, now=at, n_sims=fc.DEFAULT_SIMS),
                             args.repeat)
            cache.get(s, cfg, now=at)
            hit = timed(lambda: cache.get(s, cfg, now=at + timedelta(seconds=1)), args.repeat)
            later = at + timedelta(seconds=fc.CACHE_MIN_SECONDS + 1)
            same = timed(lambda: cache.get(s, cfg, now=later), args.repeat)
            assert cache.computed == 1
        db.dispose()
    print(f"uncached {uncached * 1000:.1f} ms, cache hit {hit * 1000:.3f} ms "
          f"({hit / uncached:.5f} of uncached), unchanged after {fc.CACHE_MIN_SECONDS:.0f} s "
          f"{same * 1000:.1f} ms ({same / uncached:.4f} of uncached)")


if __name__ == "__main__":
    main()
