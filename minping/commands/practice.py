"""``minping practice create --size N``: a training sample for interviewers (see
:mod:`minping.practice`)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from minping.commands.options import (
    config_option,
    database_url_option,
    echo_json,
    json_option,
    open_database,
)

__all__ = ["practice_group"]


@click.group("practice")
def practice_group() -> None:
    """Practice mode: training cases that never count and never dial a real number."""


@practice_group.command("create")
@click.option("--size", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="Practice cases to make.")
@database_url_option
@config_option
@json_option
def practice_create(size: int, database_url: str | None, config_path: str | None,
                    as_json: bool) -> None:
    """Make SIZE practice cases (their numbers are not phone numbers; no statistic counts them)."""
    from minping.config import load_config
    from minping.practice import create_practice

    cfg = load_config(config_path)
    db = open_database(database_url)
    try:
        with db.transaction() as session:
            result = create_practice(session, cfg, size=size, now=datetime.now(UTC))
    finally:
        db.dispose()
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{result['cases']} practice cases made (draw {result['draw_id']}); "
                   "interviewers take them from 练习 / Practice on the CATI screen, at any hour")
