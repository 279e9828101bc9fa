"""``minping frame import`` and ``minping sample draw|release|verify|balance``.

    minping frame import FILE [--frame NAME] [--encoding ENC]
                              [--skip-invalid [--rejects FILE]] [--json]
    minping sample draw [--size 2020] [--strata group|group_town]
                        [--method proportional|equal|neyman|fixed] [--sd FILE|STRATUM=S ...]
                        [--fixed FILE|STRATUM=N ...] [--lower FILE|STRATUM=N ...]
                        [--upper FILE|STRATUM=N ...] [--replicates R] [--reserve K]
                        [--seed SEED] [--frame NAME] [--force] [--json]
    minping sample release (--replicate N | --next | --all | --reserve-for-ineligible) [--json]
    minping sample verify [--frame-file FILE [--encoding ENC]] [--json]
    minping sample balance [--json] [--csv FILE] [--units N]

Per-stratum values (``--sd``, ``--fixed``, ``--lower``, ``--upper``) are given
either as ``STRATUM=VALUE`` (repeat the option) or as a CSV/XLSX file with a
``stratum`` column and a value column (``sd``, ``n``, ``lower``, ``upper`` or
``value``).  Stratum codes are group ids (``residents``) or ``group/town``
(``residents/chengguan``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from minping.cells import dict_writer
from minping.commands.options import database_url_option, echo_json, json_option
from minping.errors import InputError, Problem

__all__ = ["format_balance", "frame_group", "sample_group", "write_balance_csv"]


def _db(database_url: str | None):
    from minping.commands.options import cli_settings
    from minping.db import Database

    return Database(cli_settings(database_url).database_url)


def _cfg(config: str | None):
    from minping.config import load_config

    return load_config(config)


def _progress_printer(as_json: bool = False):
    """A ``\\r`` progress line on stderr (rows and rows/s), only on a terminal and without --json."""
    if as_json or not sys.stderr.isatty():
        return None
    started = time.perf_counter()

    def show(stage: str, done: int, total: int | None) -> None:
        label = "reading" if stage == "read" else "storing"
        rate = done / max(time.perf_counter() - started, 1e-9)
        text = (f"{label} {done:,}" + (f" / {total:,} rows" if total else " rows")
                + f" ({rate:,.0f} rows/s)")
        click.echo("\r" + text.ljust(60), err=True, nl=False)
        if total and done >= total:
            click.echo("", err=True)

    return show


_PHASES = {"load": "reading the frame", "draw": "drawing", "hash": "hashing the frame",
           "assign": "assigning units", "store": "storing the cases",
           "rederive": "re-deriving the draw", "compare": "comparing case by case",
           "units": "checking the units"}


def _phase_printer(as_json: bool = False):
    """Shows the phase of a draw or a verification on stderr, only on a terminal, not with --json."""
    if as_json or not sys.stderr.isatty():
        return None
    started = time.perf_counter()

    def show(phase: str, done: int, total: int | None) -> None:
        if phase == "done":
            click.echo("\r" + " " * 60 + "\r", err=True, nl=False)
            return
        text = f"{_PHASES.get(phase, phase)}… ({time.perf_counter() - started:.1f} s)"
        click.echo("\r" + text.ljust(60), err=True, nl=False)

    return show


_common_db = database_url_option
_common_cfg = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                           help="Survey configuration (default $MINPING_CONFIG or "
                                "config/survey.toml).")
_common_json = json_option


# --- frame ----------------------------------------------------------------------------------


@click.group("frame")
def frame_group() -> None:
    """The sampling frame (contacts the sample is drawn from)."""


@frame_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--frame", "frame_name", help="Frame to import into (created if missing).")
@click.option("--encoding", help="CSV encoding (default: detected; UTF-8, BOM or GB18030).")
@click.option("--skip-invalid", is_flag=True,
              help="Import the good rows and write the bad ones to the rejects file.")
@click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False),
              help="Rejects file for --skip-invalid (default FILE.rejects.csv).")
@_common_db
@_common_cfg
@_common_json
def frame_import(file, frame_name, encoding, skip_invalid, rejects_path, database_url,
                 config_path, as_json) -> None:
    """Import FILE (CSV or XLSX): all rows or none, unless --skip-invalid."""
    from minping.frames import import_frame

    if rejects_path and not skip_invalid:
        raise click.UsageError("--rejects goes with --skip-invalid")
    cfg = _cfg(config_path)
    db = _db(database_url)
    try:
        with db.transaction() as session:
            result = import_frame(session, cfg, file, frame_name=frame_name, encoding=encoding,
                                  skip_invalid=skip_invalid, rejects_path=rejects_path,
                                  imported_by="cli", progress=_progress_printer(as_json))
    except InputError as exc:
        if as_json:
            echo_json({"ok": False, "imported": 0, **exc.as_dict()})
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        db.dispose()
    if as_json:
        echo_json({"ok": True, **result.as_dict()})
        return
    if result.noop:
        click.echo(f"{file}: already imported into frame {result.frame!r}; nothing changed "
                   f"({result.frame_size:,} contacts)")
        return
    click.echo(
        f"{file}: {result.imported:,} contacts imported into frame {result.frame!r} "
        f"({result.rows_read:,} rows read, {result.suppressed:,} on the do-not-call list, "
        f"{result.already_in_frame:,} already in the frame, {result.rejected_rows:,} rejected; "
        f"frame now {result.frame_size:,}; {result.seconds:.1f} s)")
    if result.problems:
        click.echo(f"{result.rejected_rows} rejected row(s) written to {result.rejects_file}:",
                   err=True)
        for p in result.problems:
            click.echo(f"  {p}", err=True)


# --- sample ---------------------------------------------------------------------------------


@click.group("sample")
def sample_group() -> None:
    """The stratified draw: draw, release, verify, balance."""


_VALUE_COLUMNS = ("value", "sd", "s", "n", "count", "lower", "upper", "标准差", "样本量", "下限",
                  "上限")


def _per_stratum(option: str, values: tuple[str, ...], kind: type) -> dict | None:
    """Parse ``STRATUM=VALUE`` items or a file (``stratum`` + value column)."""
    if not values:
        return None
    out: dict[str, Any] = {}
    for item in values:
        if "=" in item:
            key, _, raw = item.partition("=")
            out[key.strip()] = _convert(option, raw.strip(), kind, where=f"{option} {item}")
        else:
            out.update(_read_values_file(option, item, kind))
    return out


def _convert(option: str, raw: str, kind: type, *, where: str, problem: Problem | None = None):
    try:
        value = kind(raw)
        if kind is int and str(value) != raw.lstrip("+"):
            raise ValueError
    except ValueError:
        if problem is not None:
            raise InputError([problem]) from None
        noun = "a whole number" if kind is int else "a number"
        raise click.BadParameter(f"{raw!r} is not {noun} ({where})", param_hint=option) from None
    return value


def _read_values_file(option: str, path: str, kind: type) -> dict[str, Any]:
    """Per-stratum values from a CSV/XLSX file (``stratum`` + a value column)."""
    p = Path(path)
    if not p.is_file():
        raise click.BadParameter(f"{path!r}: give STRATUM=VALUE or an existing file",
                                 param_hint=option)
    from minping.tables import open_table

    records = [(n, cells) for n, cells in open_table(p).rows]
    if not records:
        raise InputError([Problem(path, None, None, None, "the file is empty")])
    rows = [cells for _, cells in records]
    header = [h.lstrip("\ufeff").strip().casefold() for h in rows[0]]
    if "stratum" not in header and "层" not in header:
        raise InputError([Problem(path, 1, None, ",".join(rows[0]),
                                  "no 'stratum' column in the header")])
    sj = header.index("stratum") if "stratum" in header else header.index("层")
    vj = next((j for j, h in enumerate(header) if h in _VALUE_COLUMNS), None)
    if vj is None:
        raise InputError([Problem(path, 1, None, ",".join(rows[0]),
                                  "no value column (value, sd, n, lower or upper)")])
    out: dict[str, Any] = {}
    problems = []
    for rownum, row in records[1:]:
        if not any(row):
            continue
        key = row[sj] if sj < len(row) else ""
        raw = row[vj] if vj < len(row) else ""
        if not key:
            problems.append(Problem(path, rownum, rows[0][sj], key, "stratum is empty"))
            continue
        try:
            out[key] = _convert(option, raw, kind, where=path, problem=Problem(
                path, rownum, rows[0][vj], raw,
                "not a whole number" if kind is int else "not a number"))
        except InputError as exc:
            problems.extend(exc.problems)
    if problems:
        raise InputError(problems, f"{path}: {len(problems)} problem(s)")
    return out


@sample_group.command("draw")
@click.option("--size", type=click.IntRange(min=1),
              help="Sample size (default: campaign.sample_size, 2,020).")
@click.option("--strata", type=click.Choice(["group", "group_town"]), default="group",
              show_default=True, help="Strata: groups, or groups × towns.")
@click.option("--method", type=click.Choice(["proportional", "equal", "neyman", "fixed"]),
              default="proportional", show_default=True, help="Allocation method.")
@click.option("--sd", "sd", multiple=True, metavar="FILE|STRATUM=S",
              help="Prior standard deviations for Neyman.")
@click.option("--fixed", "fixed", multiple=True, metavar="FILE|STRATUM=N",
              help="Counts per stratum for --method fixed.")
@click.option("--lower", multiple=True, metavar="FILE|STRATUM=N", help="Lower bounds.")
@click.option("--upper", multiple=True, metavar="FILE|STRATUM=N", help="Upper bounds.")
@click.option("--replicates", type=click.IntRange(min=1), default=1, show_default=True,
              help="Replicates the sample is split into, released one at a time.")
@click.option("--reserve", type=click.IntRange(min=0), default=0, show_default=True,
              help="Reserve cases per stratum, to replace ineligible numbers.")
@click.option("--seed", help="Seed (default: a fresh random seed, printed and stored).")
@click.option("--frame", "frame_name", help="Frame to draw from (default: the only frame).")
@click.option("--force", is_flag=True,
              help="Draw again on a frame that has a draw (its held cases are withdrawn).")
@_common_db
@_common_cfg
@_common_json
def sample_draw(size, strata, method, sd, fixed, lower, upper, replicates, reserve, seed,
                frame_name, force, database_url, config_path, as_json) -> None:
    """Allocate, draw, assign units; store the draw and its audit record."""
    from minping.draws import draw_sample

    S = _per_stratum("--sd", sd, float)
    fx = _per_stratum("--fixed", fixed, int)
    lo = _per_stratum("--lower", lower, int)
    up = _per_stratum("--upper", upper, int)
    if S is not None and method != "neyman":
        raise click.UsageError("--sd goes with --method neyman")
    if method == "neyman" and S is None:
        raise click.UsageError("--method neyman needs --sd")
    if fx is not None and method != "fixed":
        raise click.UsageError("--fixed goes with --method fixed")
    cfg = _cfg(config_path)
    db = _db(database_url)
    try:
        with db.transaction() as session:
            summary = draw_sample(session, cfg, size=size, seed=seed, strata=strata,
                                  method=method, S=S, fixed=fx, lower=lo, upper=up,
                                  replicates=replicates, reserve=reserve, frame=frame_name,
                                  force=force, created_by="cli",
                                  progress=_phase_printer(as_json))
    finally:
        db.dispose()
    if as_json:
        echo_json(summary.as_dict())
        return
    click.echo(f"draw {summary.draw_id}: {summary.cases:,} cases from frame {summary.frame!r} "
               f"({summary.frame_size:,} contacts), {summary.method} over "
               f"{len(summary.strata)} strata ({summary.stratification}), "
               f"{summary.replicates} replicate(s), {summary.reserve_cases} reserve cases")
    click.echo(f"seed {summary.seed}")
    click.echo(f"frame hash {summary.frame_hash}")
    width = max(len(s["stratum"]) for s in summary.strata)
    click.echo(f"{'stratum'.ljust(width)}  {'N_h':>9}  {'real':>9}  {'n_h':>6}  "
               f"{'reserve':>7}  {'weight':>9}")
    for s in summary.strata:
        w = "—" if s["weight"] is None else f"{s['weight']:.3f}"
        click.echo(f"{s['stratum'].ljust(width)}  {s['N']:>9,}  {s['real']:>9.3f}  "
                   f"{s['n']:>6}  {s['reserve']:>7}  {w:>9}")
    click.echo(f"units: {summary.k} per respondent; raters per unit {summary.unit_min} to "
               f"{summary.unit_max}; assignment digest {summary.assignment_digest[:16]}…")
    click.echo("all cases are held; release them with `minping sample release --next`")


@sample_group.command("release")
@click.option("--replicate", type=click.IntRange(min=1), help="Release this replicate.")
@click.option("--next", "next_", is_flag=True, help="Release the lowest replicate still held.")
@click.option("--all", "all_", is_flag=True, help="Release every replicate still held.")
@click.option("--reserve-for-ineligible", "reserve", is_flag=True,
              help="Release reserve cases, per stratum one for each case that ended "
                   "not eligible (AAPOR 4.x).")
@_common_db
@_common_cfg
@_common_json
def sample_release(replicate, next_, all_, reserve, database_url, config_path, as_json) -> None:
    """Release sample into the field."""
    from minping.draws import release, release_all, release_reserve

    chosen = sum([replicate is not None, next_, all_, reserve])
    if chosen != 1:
        raise click.UsageError(
            "give exactly one of --replicate N, --next, --all, --reserve-for-ineligible")
    cfg = _cfg(config_path)
    db = _db(database_url)
    try:
        with db.transaction() as session:
            if reserve:
                result = release_reserve(session, cfg, actor="cli")
            elif all_:
                result = release_all(session, cfg, actor="cli")
            else:
                result = release(session, cfg, replicate=replicate, next_=next_, actor="cli")
    finally:
        db.dispose()
    if as_json:
        echo_json(result)
        return
    if reserve:
        click.echo(f"{result['released']} reserve case(s) released for ineligible numbers")
        for code, n in result["by_stratum"].items():
            click.echo(f"  {code}: {n}")
        for code, n in result["short"].items():
            click.echo(f"  {code}: reserve exhausted, {n} ineligible case(s) not replaced",
                       err=True)
    elif all_:
        click.echo(f"{result['released']} case(s) released (every replicate)")
    else:
        rest = ", ".join(map(str, result["held_replicates"])) or "none"
        click.echo(f"replicate {result['replicate']}: {result['released']} case(s) released; "
                   f"replicates still held: {rest}")


@sample_group.command("verify")
@click.option("--frame-file", type=click.Path(dir_okay=False),
              help="Verify against this copy of the frame instead of the database's.")
@click.option("--encoding", help="Encoding of --frame-file (default: detected).")
@_common_db
@_common_cfg
@_common_json
def sample_verify(frame_file, encoding, database_url, config_path, as_json) -> None:
    """Re-derive the draw from the frame and the seed and compare case by case."""
    from minping.draws import verify

    cfg = _cfg(config_path)
    db = _db(database_url)
    try:
        with db.session() as session:
            result = verify(session, cfg, frame_file=frame_file, encoding=encoding,
                            progress=_phase_printer(as_json))
            session.rollback()
    finally:
        db.dispose()
    if as_json:
        echo_json(result)
    elif result["matches"]:
        click.echo(f"draw {result['draw_id']}: matches — {result['cases']:,} cases re-derived "
                   f"from the {result['frame']} frame (hash {result['frame_hash'][:16]}…) "
                   f"and seed {result['seed']}; unit assignment matches"
                   + (f"; mode experiment: {result['experiment']['cases']:,} arms re-derived "
                      f"({result['experiment']['cati_first']:,} CATI-first)"
                      if result.get("experiment", {}).get("cases") else ""))
    else:
        click.echo(f"draw {result['draw_id']}: does NOT match ({len(result['problems'])} "
                   "problem(s))", err=True)
        if not result["frame_hash_matches"]:
            click.echo(f"  frame hash {result['frame_hash']} differs from the recorded "
                       f"{result['recorded_frame_hash']}", err=True)
        for p in result["problems"]:
            who = p.get("pseudo_id") or (f"frame position {p['index']}"
                                         if p.get("index") is not None else "draw")
            detail = p.get("detail") or (
                f"stored {p.get('stored')} expected {p.get('expected')}")
            fields = f" [{', '.join(p['fields'])}]" if p.get("fields") else ""
            click.echo(f"  {who}: {p['status']}{fields}: {detail}", err=True)
    if not result["matches"]:
        sys.exit(1)


@sample_group.command("balance")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False),
              help="Also write the tables to this CSV file.")
@click.option("--units", "max_units", type=click.IntRange(min=0),
              help="Show at most this many units in the text table (failing ones first).")
@_common_db
@_common_cfg
@_common_json
def sample_balance(csv_path, max_units, database_url, config_path, as_json) -> None:
    """Balance per stratum and per unit, Kish design effect and effective n."""
    from minping.draws import balance_report

    cfg = _cfg(config_path)
    db = _db(database_url)
    try:
        with db.session() as session:
            report = balance_report(session, cfg)
            session.rollback()
    finally:
        db.dispose()
    if csv_path:
        write_balance_csv(report, csv_path)
    if as_json:
        echo_json(report)
        return
    for line in format_balance(report, max_units=max_units):
        click.echo(line)
    if csv_path:
        click.echo(f"written to {csv_path}")


# --- text and CSV output of the balance report ---------------------------------------------


def _fmt(x: Any, spec: str = "") -> str:
    if x is None:
        return "—"
    return format(x, spec)


def format_balance(report: dict, *, max_units: int | None = None) -> list[str]:
    """The balance report as text tables (strata, then units with failing ones first)."""
    lines = [f"draw {report['draw_id']} (seed {report['seed']}, {report['stratification']}, "
             f"{report['method']})", ""]
    head = ("stratum", "frame", "target", "drawn", "reserve", "released", "completed", "gap",
            "rel.gap")
    body = [(r["stratum"], f"{r['frame_size']:,}", str(r["target"]), str(r["drawn"]),
             str(r["reserve"]), str(r["released"]), str(r["completed"]), str(r["gap"]),
             _fmt(r["relative_gap"], ".1%")) for r in report["strata"]]
    t = report["totals"]
    body.append(("total", f"{t['frame_size']:,}", str(t["target"]), str(t["drawn"]), "",
                 str(t["released"]), str(t["completed"]), str(t["completed"] - t["target"]), ""))
    lines += _table(head, body)
    lines.append("")
    units = report["units"]
    shown = units if max_units is None else units[:max_units]
    head = ("unit", "track", "raters by group (observed/expected)", "p", "D", "deff", "")
    body = []
    for u in shown:
        obs = u["answered"] if u["tested"] == "answered" else u["assigned"]
        exp = u["expected_answered"] if u["tested"] == "answered" else u["expected_assigned"]
        mix = " ".join(f"{g} {o}/{e:.1f}" for g, o, e in zip(u["groups"], obs, exp, strict=True))
        body.append((u["unit"], u["track"] or "", mix, _fmt(u["p_value"], ".3f"),
                     _fmt(u["dissimilarity"], ".3f"), _fmt(u["deff"], ".3f"),
                     "" if u["passed"] else "FAIL: " + u["reason"]))
    lines += _table(head, body)
    if len(shown) < len(units):
        lines.append(f"... {len(units) - len(shown)} more units (all pass)"
                     if all(u["passed"] for u in units[len(shown):])
                     else f"... {len(units) - len(shown)} more units")
    ks, kc = report["kish"]["sample"], report["kish"]["completed"]
    lines.append("")
    lines.append(f"{len(units)} units, {report['failing_units']} failing "
                 f"(tested on {report['tested']} raters; p < {report['alpha']:g} or D > "
                 f"{report['max_dissimilarity']:g} fails)")
    lines.append(f"Kish deff sample {_fmt(ks['deff'], '.3f')} (n {ks['n']}, effective "
                 f"{_fmt(ks['n_eff'], '.1f')}); completed {_fmt(kc['deff'], '.3f')} "
                 f"(n {kc['n']}, effective {_fmt(kc['n_eff'], '.1f')})")
    return lines


def _table(head: tuple[str, ...], body: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def fmt(row):
        return "  ".join(c.ljust(w) if i in (0, 1, 2) and not c[:1].isdigit() else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    return [fmt(head), "  ".join("-" * w for w in widths), *[fmt(r) for r in body]]


BALANCE_CSV_COLUMNS = (
    "kind", "key", "group", "frame_size", "target", "drawn", "reserve", "released", "completed",
    "gap", "relative_gap", "assigned", "expected_assigned", "answered", "expected_answered",
    "p_value", "dissimilarity", "passed", "reason", "deff", "n_eff",
)


def write_balance_csv(report: dict, path: str | os.PathLike) -> int:
    """Write the report as one long CSV (UTF-8 with BOM): a row per stratum, per unit × group."""
    n = 0
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = dict_writer(fh, BALANCE_CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in report["strata"]:
            w.writerow({"kind": "stratum", "key": r["stratum"], **r})
            n += 1
        for u in report["units"]:
            for i, g in enumerate(u["groups"]):
                w.writerow({
                    "kind": "unit", "key": u["unit"], "group": g,
                    "assigned": u["assigned"][i], "expected_assigned": u["expected_assigned"][i],
                    "answered": u["answered"][i], "expected_answered": u["expected_answered"][i],
                    "p_value": u["p_value"], "dissimilarity": u["dissimilarity"],
                    "passed": u["passed"], "reason": u["reason"], "deff": u["deff"],
                    "n_eff": u["n_eff"],
                })
                n += 1
    return n
