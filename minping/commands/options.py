"""What every ``minping`` command shares: the common options and the JSON output.

``minping.cli`` (the group) and the command modules under ``minping.commands``
both import from here; neither imports the other, so there is no import circle.
"""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["cli_settings", "config_option", "database_url_option", "echo_json", "json_option",
           "open_database"]

#: ``--database-url`` (env ``DATABASE_URL``; default: SQLite in the instance folder).
database_url_option = click.option(
    "--database-url", envvar="DATABASE_URL",
    help="Database URL (env DATABASE_URL; default: ./instance/minping.sqlite).")

#: ``--json``: print the command's result as JSON on stdout.
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")

#: ``--config``: the campaign file.
config_option = click.option(
    "--config", "config_path", envvar="MINPING_CONFIG", type=click.Path(dir_okay=False),
    help="Survey configuration (env MINPING_CONFIG; default: the bundled template).")


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON, Chinese text as is."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def cli_settings(database_url: str | None = None):
    """The settings from the environment, with ``--database-url`` applied."""
    from minping.db import instance_path
    from minping.settings import load_settings, normalise_database_url

    settings = load_settings(instance_path=instance_path())
    if database_url:
        settings = settings.with_overrides(database_url=normalise_database_url(database_url))
    return settings


def open_database(database_url: str | None = None):
    """A :class:`~minping.db.Database` for the command (call ``dispose()`` when done)."""
    from minping.db import Database

    return Database(cli_settings(database_url).database_url)
