"""Benchmark: the whole ``minping demo`` (fresh process) against an earlier version of it.

The baseline is the same command run from another git revision (default ``main``),
checked out in a temporary ``git worktree`` and run with this venv's interpreter
(``PYTHONPATH`` puts that checkout's packages first), in the same run, one after the
other: same machine, same load, same arguments.  Both write ``--json``; the script
prints for each the wall seconds, the CPU seconds of the process, the seconds of
each phase, the load average (1 min) before and after, and the ratio
current / baseline.  The goal of issue #11 point 5 is 60 s for the whole default
demo on a quiet 2-core machine; the ratio is the figure to compare on a loaded one.

It also checks that the two runs give the same field numbers for the seed (calls,
answers, interviews, CATI attempts and completes, completes by stratum, response
rates) and says which differ.

Run:  .venv/bin/python bench/demo.py [--baseline REV | --no-baseline] [--order current-first]
          [-- DEMO ARGS ...]      e.g. ``-- --size 300 --frame-size 5000 --ivr-days 0.5``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load() -> float:
    return os.getloadavg()[0]


def run_demo(source: Path, workdir: Path, args: list[str]) -> dict:
    """``minping demo --json`` with the packages of ``source``; wall and CPU seconds."""
    env = dict(os.environ, PYTHONPATH=str(source))
    env.pop("DATABASE_URL", None)
    cmd = [sys.executable, "-c", "from minping.cli import main; main()", "demo",
           "--dir", str(workdir), "--json", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = load()
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=source, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"demo from {source} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load": (load_before, load()), "summary": summary}


def field_numbers(summary: dict) -> dict:
    """The numbers a seed fixes (everything but timings and paths)."""
    phases = summary["phases"]
    return {
        "ivr": {k: v for k, v in phases["ivr"].items() if "seconds" not in k},
        "cati": {k: v for k, v in phases["cati"].items() if "seconds" not in k},
        "strata": summary["strata"],
        "rates": summary["rates"],
        "respondents": summary["respondents"],
    }


def show(name: str, r: dict) -> None:
    phases = r["summary"]["phases"]
    parts = ", ".join(f"{k} {v['seconds']:.1f}" + (f" ({v['cpu_seconds']:.1f} CPU)"
                                                     if "cpu_seconds" in v else "")
                      for k, v in phases.items())
    print(f"{name:<9} {r['wall']:7.1f} s wall, {r['cpu']:7.1f} s CPU, load "
          f"{r['load'][0]:.1f} -> {r['load'][1]:.1f}; phases (s): {parts}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git revision of the baseline")
    parser.add_argument("--no-baseline", action="store_true", help="time this version only")
    parser.add_argument("--order", choices=("baseline-first", "current-first"),
                        default="baseline-first")
    parser.add_argument("--keep", type=Path, help="write each run's --json summary to this folder")
    parser.add_argument("demo_args", nargs="*", help="arguments for minping demo (after --)")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="minping-bench-demo-"))
    base_src = tmp / "baseline-src"
    results: dict[str, dict] = {}
    try:
        runs = [("current", ROOT)]
        if not args.no_baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_src),
                            args.baseline], check=True, capture_output=True)
            runs.append(("baseline", base_src))
            if args.order == "baseline-first":
                runs.reverse()
        print(f"minping demo {' '.join(args.demo_args) or '(defaults)'}; "
              f"{os.cpu_count()} CPUs; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        for name, source in runs:
            results[name] = run_demo(source, tmp / name, args.demo_args)
            show(name, results[name])
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / f"{name}.json").write_text(
                    json.dumps(results[name]["summary"], indent=1, ensure_ascii=False))
    finally:
        if base_src.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(base_src)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    if "baseline" in results:
        cur, base = results["current"], results["baseline"]
        print(f"ratio current/baseline ({args.baseline}): wall {cur['wall'] / base['wall']:.2f}, "
              f"CPU {cur['cpu'] / base['cpu']:.2f}")
        a, b = field_numbers(cur["summary"]), field_numbers(base["summary"])
        same = [k for k in a if a[k] == b[k]]
        differ = [k for k in a if a[k] != b[k]]
        print(f"same field numbers: {', '.join(same) or 'none'}; "
              f"different: {', '.join(differ) or 'none'}")
    print(f"goal: 60 s for the whole default demo on a quiet machine; this run: "
          f"{results['current']['wall']:.1f} s at load {results['current']['load'][1]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
