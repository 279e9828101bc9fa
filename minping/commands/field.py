"""``minping field forecast``: when each stratum and unit reaches its target.

    minping field forecast [--at ISO-TIME] [--sims 1000] [--level 0.9] [--seed 0] [--json]
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from minping.commands.options import database_url_option, json_option
from minping.errors import MinpingError

__all__ = ["field_group"]


@click.group("field")
def field_group() -> None:
    """Where the fieldwork is going."""


def _when(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise MinpingError(f"--at: {text!r} is not an ISO date and time "
                           "(e.g. 2026-11-18T20:00+08:00)") from None
    if when.tzinfo is None:
        raise MinpingError(f"--at: {text!r} has no time zone offset (e.g. +08:00)")
    return when


@field_group.command("forecast")
@click.option("--at", "at", default=None, help="The calling days ahead start at this instant (default: now); the field is "
                   "read from the database as it stands.")
@click.option("--sims", default=500, show_default=True, type=click.IntRange(10, 100_000),
              help="Simulated field periods.")
@click.option("--level", default=0.9, show_default=True, type=click.FloatRange(0.5, 0.99),
              help="Level of the date interval.")
@click.option("--seed", default=0, show_default=True, type=int)
@database_url_option
@json_option
def forecast(at, sims, level, seed, database_url, as_json) -> None:
    """Projected date each stratum reaches its target and each unit min_raters, with an interval."""
    from minping.commands.options import cli_settings, echo_json
    from minping.config import load_config
    from minping.db import Database
    from minping.forecast import field_forecast

    cfg = load_config()
    db = Database(cli_settings(database_url).database_url)
    try:
        with db.session() as s:
            result = field_forecast(s, cfg, now=_when(at), n_sims=sims, level=level, seed=seed)
    finally:
        db.dispose()
    if as_json:
        echo_json(result)
        return
    pct = round(level * 100)
    click.echo(f"forecast at {result['now']} (end date {result['end_date']}, "
               f"{result['calling_days_left']} calling days left; {pct}% intervals)")
    for kind, rows in (("strata", result["strata"]), ("units", result["units"])):
        click.echo(f"{kind}:")
        for r in rows:
            if r["reached"]:
                when = "reached"
            else:
                when = (f"{r['date'] or 'after'} [{r['date_low'] or 'after'}, "
                        f"{r['date_high'] or 'after'}]")
            flag = "" if r["before_end"] else "  NOT BY THE END DATE"
            click.echo(f"  {r['key']}: {r['now']}/{r['target']} {when} "
                       f"p(by end) {r['p_by_end']:.2f}{flag}")
            if kind == "strata" and r["shortfall"]:
                click.echo(f"    short by {r['shortfall']}: release {r['cases_to_release']} cases "
                           f"(next replicate: {r['next_replicate_cases']}), or "
                           f"{r['extra_attempts']} more attempts (IVR line-hours "
                           f"{r['extra_ivr_line_hours']}, interviewer hours "
                           f"{r['extra_interviewer_hours']})")
