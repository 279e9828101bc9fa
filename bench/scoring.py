"""Benchmark: score 145 units over 2,020 / 10,000 / 50,000 phone respondents (8 units each).

Times minping's ``scoring.units.score_units`` (every unit's stratified Hájek
domain mean, linearised SE with fpc, t interval, Korn–Graubard satisfaction
interval and the 145 × 145 covariance matrix) against two baselines on the
same seeded data, when they are available:

- R ``survey``: ``svymean`` on ``subset(design, rated)`` per unit, run through
  ``Rscript`` (time measured inside R around the loop, best of ``--r-repeat``
  runs as minping's is the best of ``--repeat``; and the whole run).  The loop
  is how an R user scores domains one by one; ``svymean(~u, design, na.rm = TRUE)``
  and ``design[rated, ]`` take the same time (checked at 10,000 respondents);
- ``samplics``: ``TaylorEstimator(PopParam.mean)`` with ``domain=`` per unit.

It prints each time, the ratio against minping, and the largest absolute
difference in estimates and SEs between each baseline and minping.

It runs 2,020, 10,000 and 50,000 respondents by default and ends with a
summary: seconds per size, microseconds per rating of wall and of CPU time
(flat or falling when the cost is linear in the number of ratings; the CPU
figure is the fair one on a shared machine) and the ratio of R's per-unit loop to
minping, both measured in the same run.

With ``--only composite`` it times the whole command ``minping score --composite``
(a fresh interpreter: imports, configuration, database loading, scoring, output)
on the demo's database, against two baselines run the same way in the same run:
``python -c pass`` (the interpreter alone) and ``minping --help`` (the CLI without
a command), and the in-process ``minping.scores.run_scoring`` alone.  The demo
database is built once with ``minping demo`` (minutes) unless ``--database`` names
an existing one (the SQLite file of an earlier ``minping demo --dir DIR``, i.e.
``DIR/minping.sqlite``).  The goal is 1 s for the whole command.

Run:  .venv/bin/python bench/scoring.py [--respondents 2020,10000,50000] [--units 145] [--seed 2026]
      .venv/bin/python bench/scoring.py --only composite [--database minping-demo/minping.sqlite]
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.scale import RatingScale  # noqa: E402
from scoring.units import score_units  # noqa: E402

R_SCRIPT = r"""
suppressPackageStartupMessages(library(survey))
args <- commandArgs(trailingOnly = TRUE)
r <- read.csv(args[1], colClasses = "character")
pop <- read.csv(args[2], colClasses = c("character", "numeric"))
resp <- unique(r[, c("respondent_id", "stratum")])
resp$N <- pop$N[match(resp$stratum, pop$stratum)]
points <- c("1" = 100, "2" = 60, "3" = 0)
units <- sort(unique(r$unit))
row <- match(r$respondent_id, resp$respondent_id)
for (u in units) {
  y <- rep(NA_real_, nrow(resp))
  sel <- r$unit == u
  y[row[sel]] <- unname(points[r$rating[sel]])
  resp[[u]] <- y
}
des <- svydesign(id = ~1, strata = ~stratum, fpc = ~N, data = resp)
out <- data.frame(unit = units, mean = NA_real_, se = NA_real_)
best <- c(Inf, Inf)  # the loop's best wall and CPU seconds of args[4] runs
for (run in seq_len(as.integer(args[4]))) {
  timing <- system.time({
    for (k in seq_along(units)) {
      s <- subset(des, !is.na(des$variables[[units[k]]]))
      m <- svymean(as.formula(paste0("~`", units[k], "`")), s)
      out$mean[k] <- coef(m)
      out$se[k] <- SE(m)
    }
  })
  best <- pmin(best, c(timing[["elapsed"]], timing[["user.self"]] + timing[["sys.self"]]))
}
write.csv(out, args[3], row.names = FALSE)
cat(best[1], best[2], "\n")
"""


def generate(respondents: int, units: int, per: int, seed: int):
    """Seeded ratings: 24 strata (3 groups × 8 towns), each respondent rates ``per`` units."""
    rng = np.random.default_rng(seed)
    strata = [f"g{g}-t{t}" for g in range(3) for t in range(8)]
    share = rng.dirichlet(np.full(len(strata), 5.0))
    stratum_of = rng.choice(len(strata), size=respondents, p=share)
    # Population sizes: a few hundred to a few thousand per stratum, N_h ≥ 3 n_h.
    n_h = np.bincount(stratum_of, minlength=len(strata))
    big_n = n_h * rng.integers(3, 40, size=len(strata))
    unit_ids = [f"u{k:03d}" for k in range(units)]
    # Every unit has its own answer mix: satisfied, basically, dissatisfied, don't know.
    mix = rng.dirichlet([6.0, 3.0, 1.5, 0.8], size=units)
    keys = np.array(["1", "2", "3", "0"])
    rid, st, un, ra = [], [], [], []
    for i in range(respondents):
        chosen = rng.choice(units, size=per, replace=False)
        for k in chosen:
            rid.append(f"r{i:05d}")
            st.append(strata[stratum_of[i]])
            un.append(unit_ids[k])
            ra.append(keys[rng.choice(4, p=mix[k])])
    population = {strata[h]: int(big_n[h]) for h in range(len(strata)) if n_h[h] > 0}
    return rid, st, un, ra, population


def run_minping(cols, population, repeat: int):
    """Best wall-clock and best CPU time of ``repeat`` runs, and the estimates."""
    best, best_cpu = float("inf"), float("inf")
    result = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = score_units(*cols, population)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, {u.unit: (u.score, u.se) for u in result}


def run_r(cols, population, workdir: Path, repeat: int):
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None, "Rscript not found"
    ratings = workdir / "ratings.csv"
    pop = workdir / "population.csv"
    out = workdir / "r_out.csv"
    script = workdir / "bench.R"
    with open(ratings, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["respondent_id", "stratum", "unit", "rating"])
        w.writerows(zip(*cols, strict=True))
    with open(pop, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["stratum", "N"])
        w.writerows(population.items())
    script.write_text(R_SCRIPT)
    t0 = time.perf_counter()
    proc = subprocess.run([rscript, str(script), str(ratings), str(pop), str(out), str(repeat)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return None, "R failed: " + proc.stderr.strip().splitlines()[-1]
    inner, inner_cpu = (float(x) for x in proc.stdout.split()[-2:])
    with open(out, newline="") as f:
        est = {r["unit"]: (float(r["mean"]), float(r["se"])) for r in csv.DictReader(f)}
    return (inner, inner_cpu, wall, est), None


def run_samplics(cols, population):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from samplics import PopParam, TaylorEstimator
    except ImportError:
        return None, "samplics is not installed (pip install samplics)"
    scale = RatingScale.default()
    rid, st, un, ra = (np.asarray(c) for c in cols)
    resp, r = np.unique(rid, return_inverse=True)
    strata = np.empty(resp.size, dtype=object)
    strata[r] = st
    n_h = {h: int((strata == h).sum()) for h in population}
    weight = np.array([population[h] / n_h[h] for h in strata])
    fpc = {h: 1.0 - n_h[h] / population[h] for h in population if n_h[h]}
    points, inside, _ = scale.encode(ra)
    unit_ids = np.unique(un)
    t0 = time.perf_counter()
    est = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for u in unit_ids:
            sel = (un == u) & inside
            y = np.ones(resp.size)  # outside the domain: any value (0 makes samplics divide by 0)
            dom = np.zeros(resp.size, dtype=int)
            y[r[sel]] = points[sel]
            dom[r[sel]] = 1
            e = TaylorEstimator(PopParam.mean)
            e.estimate(y=y, samp_weight=weight, stratum=strata, domain=dom, fpc=fpc)
            key = next(k for k in e.point_est if int(k) == 1)
            est[str(u)] = (float(e.point_est[key]), float(e.stderror[key]))
    return (time.perf_counter() - t0, est), None


def largest_difference(ours, theirs):
    d_est = max(abs(ours[u][0] - theirs[u][0]) for u in ours)
    d_se = max(abs(ours[u][1] - theirs[u][1]) for u in ours)
    return d_est, d_se


def run_size(respondents: int, args) -> dict:
    *cols, population = generate(respondents, args.units, args.per, args.seed)
    print(f"data: {args.units} units, {respondents} respondents × {args.per} units "
          f"= {len(cols[0])} ratings in {len(population)} strata (seed {args.seed})")
    ours_time, ours_cpu, ours = run_minping(cols, population, args.repeat)
    rows = [("minping score_units (all units, with covariance)", ours_time, None, None)]
    notes = []
    r_loop = r_loop_cpu = None
    if not args.no_r:
        with tempfile.TemporaryDirectory() as tmp:
            r_result, why = run_r(cols, population, Path(tmp), args.r_repeat)
        if r_result is None:
            notes.append(f"R survey: skipped ({why})")
        else:
            inner, inner_cpu, wall, est = r_result
            r_loop, r_loop_cpu = inner, inner_cpu
            d = largest_difference(ours, est)
            rows.append(("R survey svymean on subset, per unit (loop)", inner, *d))
            rows.append((f"R survey, whole Rscript run (read, build, {args.r_repeat} loops)",
                         wall, *d))
    s_result, why = run_samplics(cols, population)
    if s_result is None:
        notes.append(f"samplics: skipped ({why})")
    else:
        s_time, est = s_result
        rows.append(("samplics TaylorEstimator with domain, per unit", s_time,
                     *largest_difference(ours, est)))
    print(f"{'implementation':52s} {'seconds':>9s} {'× minping':>10s} {'max |Δ est|':>12s} {'max |Δ SE|':>11s}")
    for name, seconds, d_est, d_se in rows:
        ratio = seconds / ours_time
        de = "" if d_est is None else f"{d_est:.2e}"
        ds = "" if d_se is None else f"{d_se:.2e}"
        print(f"{name:52s} {seconds:9.3f} {ratio:10.1f} {de:>12s} {ds:>11s}")
    for note in notes:
        print(note)
    print()
    return {"respondents": respondents, "ratings": len(cols[0]), "minping": ours_time,
            "minping_cpu": ours_cpu, "r_loop": r_loop, "r_loop_cpu": r_loop_cpu}


def _child_run(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Wall and CPU (user + system) seconds of one child process, and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def _demo_database(path: str | None, workdir: Path) -> Path:
    if path:
        db = Path(path).resolve()
        if not db.is_file():
            raise SystemExit(f"--database {path}: no such file")
        return db
    print("building the demo database once (minping demo; this takes minutes) …", flush=True)
    minping = Path(sys.executable).with_name("minping")
    subprocess.run([str(minping), "demo", "--dir", str(workdir), "--json"], check=True,
                   capture_output=True)
    return workdir / "minping.sqlite"


def run_composite(args) -> int:
    """``minping score --composite`` on the demo database against baselines (see the notes)."""
    minping = str(Path(sys.executable).with_name("minping"))
    with tempfile.TemporaryDirectory() as tmp:
        db = _demo_database(args.database, Path(tmp) / "demo")
        url = f"sqlite:///{db}"
        env = {**os.environ, "DATABASE_URL": url}
        commands = [
            ("python -c pass (the interpreter alone)", [sys.executable, "-c", "pass"]),
            ("minping --help (the CLI, no command)", [minping, "--help"]),
            ("minping score --composite (whole command)", [minping, "score", "--composite"]),
        ]
        best = {}
        for _ in range(args.repeat):  # interleaved, so that a busy moment hits all alike
            for name, cmd in commands:
                wall, cpu, out = _child_run(cmd, env)
                w, c = best.get(name, (float("inf"), float("inf")))
                best[name] = (min(w, wall), min(c, cpu))
        code = (
            "import time, sys\n"
            "from minping.config import load_config\n"
            "from minping.db import Database\n"
            "from minping.scores import run_scoring\n"
            "cfg = load_config(); db = Database(sys.argv[1]); run_scoring(db, cfg)\n"
            "wall = cpu = float('inf')\n"
            "for _ in range(int(sys.argv[2])):\n"
            "    t0, c0 = time.perf_counter(), time.process_time(); run_scoring(db, cfg)\n"
            "    wall = min(wall, time.perf_counter() - t0); cpu = min(cpu, time.process_time() - c0)\n"
            "print(wall, cpu)\n")
        _, _, out = _child_run([sys.executable, "-c", code, url, str(args.repeat)], env)
        in_process, in_process_cpu = (float(x) for x in out.split()[-2:])
    print(f"database: {db}  (best of {args.repeat} runs each)")
    print(f"{'command':48s} {'wall s':>8s} {'CPU s':>8s} {'wall − python':>14s}")
    base_wall, _ = best[commands[0][0]]
    for name, _ in commands:
        wall, cpu = best[name]
        print(f"{name:48s} {wall:8.3f} {cpu:8.3f} {wall - base_wall:14.3f}")
    print(f"{'run_scoring in process (DB load + compute)':48s} {in_process:8.3f} "
          f"{in_process_cpu:8.3f}")
    whole_wall, whole_cpu = best[commands[2][0]]
    help_wall, _ = best[commands[1][0]]
    print(f"score --composite: {whole_wall:.3f} s wall, {whole_cpu:.3f} s CPU "
          f"(goal ≤ 1 s: wall {'met' if whole_wall <= 1.0 else 'not met'}, "
          f"CPU {'met' if whole_cpu <= 1.0 else 'not met'}; load average "
          f"{os.getloadavg()[0]:.1f}); "
          f"{whole_wall / base_wall:.1f}× the bare interpreter, "
          f"{whole_wall / help_wall:.1f}× minping --help; CPU {whole_cpu / best[commands[0][0]][1]:.1f}× "
          f"the bare interpreter's")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--respondents", default="2020,10000,50000",
                    help="comma-separated numbers of respondents (one run each)")
    ap.add_argument("--units", type=int, default=145)
    ap.add_argument("--per", type=int, default=8, help="units rated by each respondent")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--repeat", type=int, default=None,
                    help="minping runs, best time kept (default 20; 5 with --only composite)")
    ap.add_argument("--r-repeat", type=int, default=3,
                    help="runs of R's per-unit loop (best time is kept, as for minping)")
    ap.add_argument("--no-r", action="store_true", help="skip the R baseline")
    ap.add_argument("--only", choices=["units", "composite"], default="units",
                    help="units: score_units against R (default); composite: the whole "
                         "`minping score --composite` command on the demo database")
    ap.add_argument("--database", help="--only composite: the demo's SQLite file to reuse "
                                       "(default: build one with `minping demo`)")
    args = ap.parse_args(argv)
    if args.repeat is None:
        args.repeat = 5 if args.only == "composite" else 20
    if args.only == "composite":
        return run_composite(args)
    sizes = [int(x) for x in args.respondents.split(",") if x.strip()]
    results = [run_size(n, args) for n in sizes]
    print("summary (wall: elapsed seconds; CPU: user + system seconds of the process, the fairer "
          "figure on a shared machine)")
    print(f"{'respondents':>11s} {'ratings':>9s} {'minping s':>10s} {'µs/rating':>10s} "
          f"{'R loop s':>9s} {'R/minping wall':>15s} {'minping CPU':>12s} {'CPU µs/rating':>14s} "
          f"{'R loop CPU':>11s} {'R/minping CPU':>14s}")
    for r in results:
        per = 1e6 * r["minping"] / r["ratings"]
        have_r = r["r_loop"] is not None
        r_loop = f"{r['r_loop']:.3f}" if have_r else "—"
        ratio = f"{r['r_loop'] / r['minping']:.1f}×" if have_r else "—"
        r_cpu = f"{r['r_loop_cpu']:.3f}" if have_r else "—"
        ratio_cpu = f"{r['r_loop_cpu'] / r['minping_cpu']:.1f}×" if have_r else "—"
        per_cpu = 1e6 * r["minping_cpu"] / r["ratings"]
        print(f"{r['respondents']:>11,d} {r['ratings']:>9,d} {r['minping']:>10.4f} {per:>10.2f} "
              f"{r_loop:>9s} {ratio:>15s} {r['minping_cpu']:>12.4f} {per_cpu:>14.2f} "
              f"{r_cpu:>11s} {ratio_cpu:>14s}")
    if len(results) > 1:  # linear: the CPU per rating does not grow with the ratings
        first, last = (1e6 * r["minping_cpu"] / r["ratings"] for r in (results[0], results[-1]))
        print(f"CPU per rating from {results[0]['ratings']:,d} to {results[-1]['ratings']:,d} "
              f"ratings: {first:.2f} → {last:.2f} µs ({last / first:.2f}×; linear when ≤ 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
