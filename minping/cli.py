"""The ``minping`` command line.

Every command that reports takes ``--json``.  Errors go to stderr with exit
status 1 and name the file, row and field (or key path) at fault; usage errors
exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from minping.errors import MinpingError


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def instance_path() -> str:
    """The instance folder the app would use (where the default SQLite file lives)."""
    import os

    from flask import Flask

    return os.environ.get("MINPING_INSTANCE_PATH") or Flask(
        "minping", instance_relative_config=True
    ).instance_path


def cli_settings(database_url: str | None = None):
    from minping.settings import load_settings

    settings = load_settings(instance_path=instance_path())
    if database_url:
        from minping.settings import normalise_database_url

        settings = settings.with_overrides(database_url=normalise_database_url(database_url))
    return settings


class MinpingGroup(click.Group):
    """Turns an error meant for the user into a message on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MinpingError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=MinpingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="minping")
def cli() -> None:
    """minping (民评): telephone survey system for a polling center."""


# --- config ---------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """The campaign configuration (config/survey.toml)."""


def real_twilio_account() -> bool:
    """True when the environment names a Twilio account (not the local simulator)."""
    from minping.settings import SIMULATOR_ACCOUNT_SID

    sid = os.environ.get("TWILIO_ACCOUNT_SID", "")
    return bool(sid) and sid != SIMULATOR_ACCOUNT_SID and not os.environ.get("TWILIO_API_URL")


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def config_check(file: str | None, as_json: bool) -> None:
    """Validate FILE (default: $MINPING_CONFIG or config/survey.toml); list every problem."""
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


# --- db -------------------------------------------------------------------------------


@cli.group("db")
def db_group() -> None:
    """The database named by DATABASE_URL (default: a SQLite file in the instance folder)."""


@db_group.command("upgrade")
@click.option("--database-url", envvar="DATABASE_URL", help="Database URL (env DATABASE_URL).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
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


# --- users ----------------------------------------------------------------------------


@cli.group("user")
def user_group() -> None:
    """Interviewers, supervisors and statisticians."""


@user_group.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["interviewer", "supervisor", "statistician"]),
              required=True)
@click.option("--name", "display_name", help="Name shown on the screens.")
@click.option("--language", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@click.option("--password", envvar="MINPING_NEW_PASSWORD", prompt=True, hide_input=True,
              confirmation_prompt=True, help="Prompted for when not given (env MINPING_NEW_PASSWORD).")
@click.option("--database-url", envvar="DATABASE_URL")
@click.option("--json", "as_json", is_flag=True)
def user_add(username, role, display_name, language, password, database_url, as_json) -> None:
    """Create a user who can log in to the CATI screens."""
    from minping.db import Database
    from minping.users import create_user

    db = Database(cli_settings(database_url).database_url)
    try:
        with db.transaction() as session:
            user = create_user(session, username=username, password=password, role=role,
                               display_name=display_name or username, language=language)
            result = {"id": user.id, "username": user.username, "role": user.role}
    finally:
        db.dispose()
    if as_json:
        echo_json(result)
    else:
        click.echo(f"user {username!r} created with role {role}")


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
@click.option("--json", "as_json", is_flag=True)
def demo(directory, database_url, frame_size, size, seed, ivr_days, cati_days, interviewers,
         as_json) -> None:
    """Run the whole job on a synthetic campaign (SQLite and the local Twilio simulator)."""
    from minping.demo import run_demo

    summary = run_demo(directory=directory, database_url=database_url, frame_size=frame_size,
                       size=size, seed=seed, ivr_days=ivr_days, cati_days=cati_days,
                       interviewers=interviewers, echo=None if as_json else click.echo)
    if as_json:
        echo_json(summary)


def _register_commands() -> None:
    from minping.commands.report import export, input_group, report
    from minping.commands.score import score
    from minping.commands.serve import serve

    cli.add_command(score)
    cli.add_command(report)
    cli.add_command(export)
    cli.add_command(input_group)
    cli.add_command(serve)
    cli.add_command(__import__("minping.commands.sample", fromlist=["_"]).frame_group)
    cli.add_command(__import__("minping.commands.sample", fromlist=["_"]).sample_group)
    cli.add_command(__import__("minping.commands.dial", fromlist=["_"]).dial)
    cli.add_command(__import__("minping.commands.dial", fromlist=["_"]).simulate)


_register_commands()


def main() -> None:
    cli(prog_name="minping")
