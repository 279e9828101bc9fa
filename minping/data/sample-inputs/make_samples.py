"""Write the SYNTHETIC sample inputs of the composite score used by the demo.

    python minping/data/sample-inputs/make_samples.py [--seed 20261126]

Nothing here is real: every ballot, vote count and inspection record is drawn
from a seeded random generator (the same seed gives byte-identical files).
The files follow the formats ``minping input import`` reads:

* ``synthetic-assessment-enterprises.csv``: 109 enterprise heads in one
  session rate the 39 departments (``venue, unit, rating``);
* ``synthetic-assessment-<town>.csv``: 1,120 representatives in 8 venues, one
  per town, 140 each, rate the 76 agencies;
* ``synthetic-online-votes.csv``: online vote counts of the 30 service windows,
  about 300,000 in all (``unit, option, count``);
* ``synthetic-inspections.csv``: daily inspection deductions (``unit, date,
  kind, points``): conduct violations of 0.5 to 1 point per person-time and
  lapses in routine work of 0.1 point.

Each unit gets a latent quality so that its ballots and votes agree roughly,
and a few units score near or under 70.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from minping.config import load_config  # noqa: E402

ENTERPRISE_HEADS = 109
REPRESENTATIVES_PER_VENUE = 140
ONLINE_VOTES = 300_000


def _probabilities(quality: float) -> np.ndarray:
    """P(satisfied, basically satisfied, dissatisfied, don't know) for a unit's quality."""
    dont_know = 0.04
    sat = quality ** 1.5
    dis = (1 - quality) ** 1.2 * 0.8
    basic = max(1.0 - sat - dis, 0.0)
    p = np.array([sat, basic, dis]) / (sat + basic + dis) * (1 - dont_know)
    return np.append(p, dont_know)


KEYS = np.array(["1", "2", "3", "0"])


def _write(path: Path, header: list[str], rows) -> int:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        n = 0
        for row in rows:
            w.writerow(row)
            n += 1
    return n


def make_samples(out: Path, *, seed: int) -> dict[str, int]:
    cfg = load_config(HERE.parent / "survey.toml")
    rng = np.random.default_rng(seed)
    quality = {u.id: float(rng.beta(7, 2)) for u in cfg.units}
    written: dict[str, int] = {}

    deps = cfg.track("departments").units
    name = "synthetic-assessment-enterprises.csv"
    rows = []
    for _head in range(ENTERPRISE_HEADS):
        for u in deps:
            rows.append(("企业家测评会", u.id, str(rng.choice(KEYS, p=_probabilities(quality[u.id])))))
    written[name] = _write(out / name, ["venue", "unit", "rating"], rows)

    agencies = cfg.track("agencies").units
    for town in cfg.towns:
        name = f"synthetic-assessment-{town.id}.csv"
        rows = []
        for _rep in range(REPRESENTATIVES_PER_VENUE):
            for u in agencies:
                rows.append((f"{town.name}会场", u.id,
                             str(rng.choice(KEYS, p=_probabilities(quality[u.id])))))
        written[name] = _write(out / name, ["venue", "unit", "rating"], rows)

    windows = cfg.track("windows").units
    share = rng.dirichlet(np.full(len(windows), 8.0))
    totals = rng.multinomial(ONLINE_VOTES, share)
    rows = []
    for u, total in zip(windows, totals, strict=True):
        p = _probabilities(quality[u.id])[:3]
        for key, count in zip(("1", "2", "3"), rng.multinomial(int(total), p / p.sum()), strict=True):
            rows.append((u.id, key, int(count)))
    name = "synthetic-online-votes.csv"
    written[name] = _write(out / name, ["unit", "option", "count"], rows)

    start, end = cfg.campaign.start_date, cfg.campaign.end_date
    days = (end - start).days
    rows = []
    for u in cfg.units:
        lapses = rng.poisson(2.5 * (1 - quality[u.id]))
        conduct = rng.poisson(1.2 * (1 - quality[u.id]))
        for _ in range(lapses):
            rows.append((u.id, start + dt.timedelta(days=int(rng.integers(0, days + 1))),
                         "routine-lapse", "0.1"))
        for _ in range(conduct):
            persons = int(rng.integers(1, 3))
            per = float(rng.choice([0.5, 1.0]))
            rows.append((u.id, start + dt.timedelta(days=int(rng.integers(0, days + 1))),
                         "conduct", f"{persons * per:g}"))
    rows.sort(key=lambda r: (r[1], r[0], r[2]))
    name = "synthetic-inspections.csv"
    written[name] = _write(out / name, ["unit", "date", "kind", "points"],
                           [(u, d.isoformat(), k, p) for u, d, k, p in rows])
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    for name, n in make_samples(args.out, seed=args.seed).items():
        print(f"{name}: {n} rows")


if __name__ == "__main__":
    main()
