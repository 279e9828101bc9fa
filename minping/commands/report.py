"""``minping report``, ``minping export`` and ``minping input import``.

    minping report --out DIR [--lang zh|en] [--json]
    minping export --format csv|xlsx|sav|dta --out FILE [--lang zh|en] [--json]
    minping input import --kind assessment|online|inspection FILE [--json]
"""

from __future__ import annotations

import click

from minping.commands.options import database_url_option, json_option
from minping.errors import InputError, MinpingError

__all__ = ["export", "input_group", "report"]


def _database(database_url: str | None):
    from minping.commands.options import cli_settings
    from minping.db import Database

    return Database(cli_settings(database_url).database_url)


@click.command("report")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write index.html into.")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@click.option("--ci-method", type=click.Choice(["beta", "wilson", "logit"]), default="beta",
              show_default=True, help="Interval for the satisfaction rate (beta = Korn–Graubard).")
@click.option("--min-raters", type=click.IntRange(min=0), default=None,
              help="Units with fewer raters are unreliable (default: the configuration's).")
@click.option("--rake", default="", metavar="groups,towns",
              help="Rake the weights to the frame's margins.")
@click.option("--ranks", type=click.Choice(["marginal", "simultaneous", "pairwise"]),
              default="marginal", show_default=True,
              help="Rank intervals for each unit (marginal) or all units jointly (simultaneous).")
@database_url_option
@json_option
def report(out_dir, lang, ci_method, min_raters, rake, ranks, database_url, as_json) -> None:
    """Write the scoring report (one self-contained HTML file) into --out."""
    from minping.commands.options import echo_json
    from minping.config import load_config
    from minping.scores import score_and_report

    cfg = load_config()
    db = _database(database_url)
    try:
        summary = score_and_report(db, cfg, out_dir, lang=lang, ci_method=ci_method,
                                   min_raters=min_raters, ranks=ranks,
                                   rake=tuple(m.strip() for m in rake.split(",") if m.strip()))
    finally:
        db.dispose()
    if as_json:
        echo_json(summary)
        return
    click.echo(f"report written to {summary['report']} ({summary['respondents']} respondents)")
    for t in summary["tracks"]:
        click.echo(f"  {t['track']}: {len(t['rows'])} units, {t['below']} below, "
                   f"{t['possibly_below']} possibly below")


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx", "sav", "dta"]), required=True)
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False))
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True,
              help="Language of the variable and value labels.")
@database_url_option
@json_option
def export(fmt, out_file, lang, database_url, as_json) -> None:
    """Export respondent-level data with the design variables (no phone numbers)."""
    from minping.commands.options import echo_json
    from minping.config import load_config
    from minping.export import write_export
    from minping.scores import respondent_table

    cfg = load_config()
    db = _database(database_url)
    try:
        table = respondent_table(db, cfg, lang=lang)
    finally:
        db.dispose()
    path = write_export(table, out_file, fmt)
    result = {"file": str(path), "format": fmt, "respondents": table.n_rows,
              "columns": len(table.columns)}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{path}: {table.n_rows} respondents, {len(table.columns)} columns ({fmt})")


@click.group("input")
def input_group() -> None:
    """Other inputs of the composite score: assessment ballots, online votes, inspections."""


@input_group.command("import")
@click.option("--kind", type=click.Choice(["assessment", "online", "inspection"]), required=True)
@click.argument("file", type=click.Path(dir_okay=False))
@database_url_option
@json_option
def input_import(kind, file, database_url, as_json) -> None:
    """Import FILE (CSV or XLSX) all or nothing; the same file again changes nothing."""
    from minping.commands.options import echo_json
    from minping.config import load_config
    from minping.inputs import import_input

    cfg = load_config()
    db = _database(database_url)
    try:
        result = import_input(db, cfg, kind, file)
    except InputError as exc:
        click.echo(str(exc), err=True)
        if as_json:
            echo_json({"ok": False, **exc.as_dict()})
        raise SystemExit(1) from exc
    except MinpingError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.dispose()
    if as_json:
        echo_json({"ok": True, **result.as_dict()})
    elif result.already:
        click.echo(f"{file}: already imported (import {result.import_id}); nothing changed")
    else:
        click.echo(f"{file}: {result.rows} {kind} rows imported (import {result.import_id})")
