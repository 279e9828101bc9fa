"""The ``minping`` command line.

Every command that reports takes ``--json``.  Errors go to stderr with exit
status 1 and name the file, row and field (or key path) at fault; usage errors
exit with status 2.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from minping.commands.options import (
    cli_settings,
    database_url_option,
    echo_json,
    json_option,
)
from minping.errors import MinpingError
from sampling.errors import SamplingError
from scoring.errors import ScoringError


class MinpingGroup(click.Group):
    """Turns an error meant for the user into a message on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (MinpingError, SamplingError, ScoringError) as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:  # a database not set up: one line saying what to do
            from minping.db import explain_database_error

            message = explain_database_error(exc, os.environ.get("DATABASE_URL"))
            if message is None:
                raise
            raise click.ClickException(message) from exc


@click.group(cls=MinpingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="minping")
def cli() -> None:
    """minping (民评): telephone survey system for a polling center."""


# --- config ---------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """The campaign configuration ($MINPING_CONFIG, else the bundled template)."""


def real_twilio_account() -> bool:
    """True when the environment names a Twilio account (not the local simulator)."""
    from minping.settings import SIMULATOR_ACCOUNT_SID

    sid = os.environ.get("TWILIO_ACCOUNT_SID", "")
    return bool(sid) and sid != SIMULATOR_ACCOUNT_SID and not os.environ.get("TWILIO_API_URL")


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@json_option
def config_check(file: str | None, as_json: bool) -> None:
    """Validate FILE (default: $MINPING_CONFIG, else the bundled template); list every problem."""
    from minping.config import ConfigError, default_config_path, load_config

    path = str(file or default_config_path())
    try:
        cfg, problems = load_config(path), []
    except ConfigError as exc:
        cfg, problems = None, list(exc.problems)
    if cfg is not None and real_twilio_account():  # what Twilio would refuse
        from ivr.gateway import deliverability_problems

        problems += deliverability_problems(cfg, from_number=os.environ.get("TWILIO_FROM_NUMBER"))
    if as_json:
        result: dict[str, Any] = {"file": path, "ok": not problems, "problems": problems}
        if cfg is not None:
            result["tracks"] = {t.id: len(t.units) for t in cfg.tracks}
        echo_json(result)
    elif problems:
        click.echo(f"{path}: {len(problems)} problem(s)", err=True)
        for p in problems:
            click.echo(f"  {p}", err=True)
    else:
        counts = ", ".join(f"{t.id} {len(t.units)}" for t in cfg.tracks)
        click.echo(f"{path}: OK ({len(cfg.units)} units: {counts})")
    if problems:
        sys.exit(1)


# --- init -----------------------------------------------------------------------------

ENV_TEMPLATE = """\
# minping environment of this campaign.  Load it before running minping:
#     set -a; . ./.env; set +a
# Secrets live only here (never in survey.toml): keep this file private (mode 600)
# and out of version control.  Lines left commented out use the development defaults.

# development (default) or production; production requires every variable below.
MINPING_ENV=development
MINPING_CONFIG={config}

# Database.  Default: SQLite at ./instance/minping.sqlite of the directory you run minping in.
# DATABASE_URL=postgresql://minping:CHANGE-ME@127.0.0.1:5432/minping

# Session key, the same on every app server.  Generate one with:
#     python3 -c "import secrets; print(secrets.token_hex(32))"
# MINPING_SECRET_KEY=CHANGE-ME

# The public https address Twilio calls (scheme and host, no trailing slash).
# MINPING_PUBLIC_URL=https://survey.example.org

# Twilio credentials, from the Twilio console (Account Info).  Without them only the
# local simulator answers.
# TWILIO_ACCOUNT_SID=ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
# TWILIO_AUTH_TOKEN=CHANGE-ME
# TWILIO_FROM_NUMBER=+86xxxxxxxxxxx
"""


@cli.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite survey.toml and .env if they exist.")
@json_option
def init(directory: str, force: bool, as_json: bool) -> None:
    """Start a new campaign in DIRECTORY: a survey.toml to edit and a .env template."""
    import os
    from pathlib import Path

    from minping.resources import CAMPAIGN_TEMPLATE

    folder = Path(directory).resolve()
    config, env = folder / "survey.toml", folder / ".env"
    existing = [str(p) for p in (config, env) if p.exists()]
    if existing and not force:
        raise click.ClickException(f"{', '.join(existing)}: already exists; nothing was "
                                   "written (use --force to overwrite)")
    folder.mkdir(parents=True, exist_ok=True)
    config.write_bytes(CAMPAIGN_TEMPLATE.read_bytes())
    fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(ENV_TEMPLATE.format(config=config))
    os.chmod(env, 0o600)
    if as_json:
        echo_json({"directory": str(folder), "config": str(config), "env": str(env)})
    else:
        click.echo(f"wrote {config} (the campaign: edit it, then `minping config check "
                   f"{config}`)")
        click.echo(f"wrote {env} (settings and secrets: fill in, then `set -a; . {env}; "
                   "set +a`)")


# --- db -------------------------------------------------------------------------------


@cli.group("db")
def db_group() -> None:
    """The database named by DATABASE_URL (default: a SQLite file in the instance folder)."""


@db_group.command("upgrade")
@database_url_option
@json_option
def db_upgrade(database_url: str | None, as_json: bool) -> None:
    """Create the schema, or upgrade it to the newest revision."""
    from minping.db import Database, current_revision

    settings = cli_settings(database_url)
    before = current_revision(settings.database_url)
    db = Database(settings.database_url)
    try:
        db.upgrade()
        tables = [t for t in db.table_names() if t != "alembic_version"]
    finally:
        db.dispose()
    after = current_revision(settings.database_url)
    if as_json:
        echo_json(
            {"database": _redact(settings.database_url), "from": before, "to": after,
             "tables": tables}
        )
    else:
        change = "already at" if before == after else f"upgraded from {before or 'empty'} to"
        click.echo(f"{_redact(settings.database_url)}: {change} revision {after} "
                   f"({len(tables)} tables)")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- demo -----------------------------------------------------------------------------


@cli.command("demo")
@click.option("--dir", "directory", default="minping-demo", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the demo database and outputs.")
@click.option("--database-url", envvar="DATABASE_URL",
              help="Run on this database instead of a fresh SQLite file in --dir.")
@click.option("--frame-size", default=60_000, show_default=True, type=click.IntRange(1_000),
              help="Contacts in the synthetic frame.")
@click.option("--size", type=click.IntRange(20), default=None,
              help="Sample size (default: the configuration's, 2,020).")
@click.option("--seed", default=20261126, show_default=True, type=int,
              help="Seeds the frame, the draw and the simulated respondents.")
@click.option("--ivr-days", default=6.0, show_default=True, type=click.FloatRange(0.1),
              help="Length of the simulated IVR field period.")
@click.option("--cati-days", default=3.0, show_default=True, type=click.FloatRange(0.1),
              help="Length of the simulated CATI phase.")
@click.option("--interviewers", default=12, show_default=True, type=click.IntRange(1),
              help="Simulated interviewers in the CATI phase.")
@click.option("--mode-experiment", default=0.1, show_default=True,
              type=click.FloatRange(0, 1, max_open=True),
              help="Share of released cases routed CATI-first (the embedded mode experiment; "
                   "0 = the configuration's value).")
@json_option
def demo(directory, database_url, frame_size, size, seed, ivr_days, cati_days, interviewers,
         mode_experiment, as_json) -> None:
    """Run the whole job on a synthetic campaign (SQLite and the local Twilio simulator)."""
    from minping.demo import run_demo

    summary = run_demo(directory=directory, database_url=database_url, frame_size=frame_size,
                       size=size, seed=seed, ivr_days=ivr_days, cati_days=cati_days,
                       interviewers=interviewers, mode_experiment=mode_experiment,
                       echo=None if as_json else click.echo)
    if as_json:
        echo_json(summary)


def _register_commands() -> None:
    from minping.commands.dial import dial, simulate
    from minping.commands.field import field_group
    from minping.commands.frame import frame_group
    from minping.commands.practice import practice_group
    from minping.commands.report import export, input_group, report
    from minping.commands.sample import sample_group
    from minping.commands.score import score
    from minping.commands.serve import serve
    from minping.commands.user import user_group

    for command in (score, report, export, input_group, serve, frame_group, sample_group, dial,
                    simulate, user_group, field_group, practice_group):
        cli.add_command(command)


_register_commands()


def main() -> None:
    cli(prog_name="minping")
