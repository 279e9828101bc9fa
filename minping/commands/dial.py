"""``minping dial`` (the IVR dialer, until stopped) and ``minping simulate`` (a field period)."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, datetime

import click

from minping.commands.options import config_option, database_url_option, json_option


def _load(config_path: str | None):
    from minping.config import load_config

    return load_config(config_path)


@click.command("dial")
@database_url_option
@config_option
@click.option("--draw", "draw_id", type=int, help="Only dial cases of this draw.")
@click.option("--max-seconds", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--until-done", is_flag=True, help="Stop when no case is left to dial.")
@json_option
def dial(database_url, config_path, draw_id, max_seconds, until_done, as_json) -> None:
    """Place IVR calls for due cases until stopped (Ctrl-C or SIGTERM stops cleanly).

    Calls go to Twilio with the account in TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN
    from TWILIO_FROM_NUMBER, or to a local simulator when TWILIO_API_URL is set;
    Twilio calls back MINPING_PUBLIC_URL.  Several dialers may run against one
    PostgreSQL database: the limits and the calling rules hold across them.
    """
    from ivr.dialer import Dialer
    from ivr.gateway import rest_client
    from minping.commands.options import cli_settings, echo_json
    from minping.db import Database

    settings = cli_settings(database_url)
    cfg = _load(config_path or settings.config_path)
    db = Database(settings.database_url)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    timer = threading.Timer(max_seconds, stop.set) if max_seconds is not None else None
    live = sys.stderr.isatty() and not as_json

    def show(progress) -> None:
        if live:
            click.echo("\r\x1b[2K" + progress.line(), nl=False, err=True)

    try:
        if timer:
            timer.start()
        dialer = Dialer(db, cfg, rest_client(settings), public_url=settings.public_url,
                        from_number=settings.twilio_from_number,
                        now=lambda: datetime.now(UTC), draw_id=draw_id)
        progress = dialer.run(stop, on_progress=show, until_done=until_done)
    finally:
        if timer:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        db.dispose()
    if live:
        click.echo("", err=True)
    result = {"placed": progress.placed, "in_flight": progress.in_flight,
              "completed": progress.closed, "interviews": progress.interviews,
              "sms_notices": progress.notices, "retried_429": progress.retried_429,
              "errors": progress.errors}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"dialer stopped: {progress.line()}")


@click.command("simulate")
@database_url_option
@config_option
@click.option("--start", "start", default=None,
              help="Start of the field period, ISO 8601 (default: the campaign's start date, "
                   "09:00 campaign time).")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--draw", "draw_id", type=int, help="Only this draw's cases.")
@json_option
def simulate(database_url, config_path, start, days, seed, draw_id, as_json) -> None:
    """Run an IVR field period against the local Twilio simulator on a virtual clock.

    The database must hold released cases with assigned units (as ``minping
    demo`` leaves it).  No call leaves the machine.
    """
    from ivr.fieldwork import run_ivr_field_period
    from minping.commands.options import cli_settings, echo_json
    from minping.db import Database
    from minping.errors import MinpingError

    settings = cli_settings(database_url)
    cfg = _load(config_path or settings.config_path)
    if start is None:
        begin = datetime.combine(cfg.campaign.start_date, datetime.min.time(),
                                 tzinfo=cfg.calling.tz).replace(hour=9)
    else:
        try:
            begin = datetime.fromisoformat(start)
        except ValueError:
            raise MinpingError(f"--start: not an ISO 8601 date-time: {start!r}") from None
        if begin.tzinfo is None:
            begin = begin.replace(tzinfo=cfg.calling.tz)
    db = Database(settings.database_url)
    try:
        summary = run_ivr_field_period(
            db, cfg, start=begin, days=days, seed=seed, draw_id=draw_id,
            progress=None if as_json else (lambda line: click.echo(line, err=True)))
    finally:
        db.dispose()
    if summary["cases"] == 0:
        raise MinpingError(f"{settings.database_url}: no released cases to call "
                           "(run `minping demo` or release a replicate first)")
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{summary['cases']} cases, {summary['calls']} calls, "
               f"{summary['interviews']} interviews, {summary['answers']} ratings "
               f"in {summary['wall_seconds']} s (virtual {summary['virtual_start']} to "
               f"{summary['virtual_end']})")
    for code, n in summary["final_dispositions"].items():
        click.echo(f"  {code:>6}  {n}")
