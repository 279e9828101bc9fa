"""``minping frame list`` and ``minping frame delete`` (``frame import`` is in
:mod:`minping.commands.sample`, beside the draw)."""

from __future__ import annotations

import click

from minping.commands.options import database_url_option, echo_json, json_option, open_database
from minping.commands.sample import frame_group

__all__ = ["frame_group"]


@frame_group.command("list")
@database_url_option
@json_option
def frame_list(database_url: str | None, as_json: bool) -> None:
    """List the frames: contacts, imports, draws and cases drawn from each."""
    from minping.frames import list_frames

    db = open_database(database_url)
    try:
        with db.session() as session:
            rows = list_frames(session)
    finally:
        db.dispose()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no frame yet; import one with `minping frame import FILE`")
        return
    click.echo(f"{'frame':<24} {'contacts':>10} {'imports':>8} {'draws':>6} {'cases drawn':>12}")
    for r in rows:
        click.echo(f"{r['frame']:<24} {r['contacts']:>10,} {r['imports']:>8} {r['draws']:>6} "
                   f"{r['cases_drawn']:>12,}" + ("  (synthetic)" if r["synthetic"] else ""))


@frame_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@database_url_option
@json_option
def frame_delete(name: str, yes: bool, database_url: str | None, as_json: bool) -> None:
    """Delete frame NAME and its contacts (refused once a sample was drawn from it)."""
    from minping.frames import delete_frame, list_frames

    db = open_database(database_url)
    try:
        if not yes and not as_json:
            with db.session() as session:
                row = next((r for r in list_frames(session) if r["frame"] == name), None)
            if row is not None and not row["draws"]:
                click.confirm(f"delete frame {name!r} and its {row['contacts']:,} contacts?",
                              abort=True)
        with db.transaction() as session:
            result = delete_frame(session, name)
    finally:
        db.dispose()
    if as_json:
        echo_json(result)
    else:
        click.echo(f"frame {name!r} deleted ({result['contacts']:,} contacts)")
