"""Fixed against learned call times, and the forecast's back-test, in one run.

A discrete-event simulation of the IVR field period (``ivr/sim/fieldsim.py``:
the dialer's schedule with the real calling-rule functions, respondents with the
group and town availability of ``ivr/sim/availability.py``), not the webhook
simulator: one webhook field period takes minutes, this takes seconds.

1. The same cases (2,000 in 24 group x town strata, seeded) are dialed for
   ``--days`` days from Monday 2026-11-16 with ``retry_method = "fixed"`` and
   ``"learned"``; printed: attempts, completes by the end date, attempts per
   complete, and the ratio learned / fixed (goal: <= 0.85 at equal or more
   completes).  The campaign's end date is the simulation's last day.
   With the learned method the first attempt of a case is placed at its
   stratum's best time (:func:`minping.calltimes.first_attempt_at`, what the
   dialer asks through ``defer_first_attempt``); ``--first-attempts-asap``
   dials them when due instead.
2. Back-test: for ``--seeds`` seeded field periods (1,200 cases in 3 strata, two
   dialer lines so the field takes days), the forecast made at the end of
   calling day 2 (``scoring/forecast.py``) against the day each stratum
   actually reached its target; printed: the share inside the 90% interval.

Run: ``.venv/bin/python bench/calltimes.py [--days 12] [--seeds 10] [--compare-seeds 3]
[--first-attempts-asap]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ivr.py is not ivr/

import numpy as np  # noqa: E402

from ivr.sim import fieldsim  # noqa: E402
from minping.config import load_config  # noqa: E402
from scoring.forecast import forecast  # noqa: E402

TOWNS = ("chengguan", "xinan", "longshan", "baisha", "shiqiao", "qingshan", "hekou", "changling")
BACKTEST_STRATA = {"residents": ("residents", "xinan", 600),
                   "deputies": ("deputies", "chengguan", 300),
                   "business": ("business", "hekou", 300)}
BACKTEST_TARGETS = {"residents": 300, "deputies": 130, "business": 130}


def compare(rules, *, days: int, seed: int, place_first: bool = True) -> dict:
    strata = {f"{g}-{t}": (g, t, n // len(TOWNS))
              for g, n in (("residents", 1000), ("deputies", 504), ("business", 504))
              for t in TOWNS}
    start = datetime(2026, 11, 16, 9, tzinfo=rules.tz)
    # the field period is the campaign: its last day is the simulation's last day (a learned
    # retry parks a likely-dead line on the campaign's last calling day, not after the run)
    rules = replace(rules, end_date=(start + timedelta(days=days - 1)).date())
    cases = fieldsim.make_cases(strata, rng=np.random.default_rng(seed))
    out = {}
    for method in ("fixed", "learned"):
        r = fieldsim.run(rules, cases, start=start, days=days,
                         rng=np.random.default_rng(seed + 100), method=method,
                         place_first=place_first)
        out[method] = {"attempts": len(r.attempts), "completes": r.completes(by=r.end),
                       "per_complete": r.attempts_per_complete()}
    return out


def backtest(rules, *, seeds: int, days: int = 28) -> tuple[int, int]:
    rules = replace(rules, max_concurrent_calls=2)
    start = datetime(2026, 11, 16, 9, tzinfo=rules.tz)
    at = datetime(2026, 11, 18, 0, tzinfo=rules.tz)     # after calling day 2
    end = start.date() + timedelta(days=days - 1)
    ahead = fieldsim.calling_days(rules, at.date(), rules.end_date)
    inside = total = 0
    for seed in range(1, seeds + 1):
        cases = fieldsim.make_cases(BACKTEST_STRATA, rng=np.random.default_rng(seed))
        r = fieldsim.run(rules, cases, start=start, days=days,
                         rng=np.random.default_rng(seed + 1000), method="fixed")
        state = fieldsim.snapshot(r, rules, at=at, targets=BACKTEST_TARGETS)
        for p in forecast(state, days=ahead, end_date=end, max_attempts=rules.max_attempts,
                          n_sims=500, level=0.9, rng=np.random.default_rng(seed)):
            actual = fieldsim.reached_on(r, rules, p.key, p.target)
            inside += fieldsim.covers(p, actual)
            total += 1
    return inside, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--compare-seeds", type=int, default=3)
    ap.add_argument("--first-attempts-asap", action="store_true",
                    help="learned retries only: first attempts dialed when due (a dialer that "
                         "does not call calltimes.defer_first_attempt)")
    args = ap.parse_args()
    rules = load_config(None).calling
    wall = time.monotonic()
    totals = {"fixed": [0, 0], "learned": [0, 0]}
    print(f"{'seed':>4} {'method':>8} {'attempts':>9} {'completes':>10} {'att/complete':>13}")
    for seed in range(1, args.compare_seeds + 1):
        res = compare(rules, days=args.days, seed=seed,
                      place_first=not args.first_attempts_asap)
        for method, row in res.items():
            totals[method][0] += row["attempts"]
            totals[method][1] += row["completes"]
            print(f"{seed:>4} {method:>8} {row['attempts']:>9} {row['completes']:>10} "
                  f"{row['per_complete']:>13.3f}")
    fixed = totals["fixed"][0] / totals["fixed"][1]
    learned = totals["learned"][0] / totals["learned"][1]
    print(f"attempts per complete: fixed {fixed:.3f}, learned {learned:.3f}; "
          f"ratio learned/fixed {learned / fixed:.3f} (goal <= 0.85); completes by the end "
          f"date: fixed {totals['fixed'][1]}, learned {totals['learned'][1]}")
    inside, total = backtest(rules, seeds=args.seeds)
    print(f"forecast back-test: day-2 projection inside its 90% interval for {inside}/{total} "
          f"strata x seeds = {inside / total:.0%} (goal >= 80%)")
    print(f"wall {time.monotonic() - wall:.1f} s")


if __name__ == "__main__":
    main()
