"""``minping score``: unit scores from plain files or from the database.

    minping score --ratings ratings.csv --population population.csv [--json]
                  [--level 0.95] [--min-raters 30] [--ci-method beta|wilson|logit]
                  [--design whole-sample|per-unit] [--config config/survey.toml]
    minping score [--json] [--composite] [--rake groups,towns]
                  [--variance linearised|bootstrap --replicates 500 --seed 1]

Without ``--ratings`` the scores come from the database (``DATABASE_URL``):
the respondents are the cases with final disposition 1.1 or 1.2, weighted
N_h/n_h (see ``minping.scores``); ``--composite`` adds the composite score of
every unit per track with its flag and rank interval.

Ratings columns ``respondent_id,stratum,unit,rating``; population columns
``stratum,N`` (CSV in UTF-8 or GB18030, or XLSX).  The design is stratified
simple random sampling with weights N_h/n_h; each unit's score is the Hájek
domain mean with the linearised variance and fpc, its interval t with the
domain's degrees of freedom, the satisfaction rate's interval Korn–Graubard
unless ``--ci-method`` says otherwise (see ``scoring.estimators``).
``--design per-unit`` scores a file with one row per assigned unit (a
campaign's export) on the per-unit design N_h/n_hu, "don't know" and empty
ratings kept in n_hu and outside the domain; ``--config`` takes the rating
scale from the campaign file.  The output says which design and scale were used.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import click

from minping.commands.options import database_url_option, json_option
from minping.errors import InputError, MinpingError
from scoring.errors import ScoringError

if TYPE_CHECKING:
    from scoring.units import UnitScores

# numpy, scipy and the database are imported when a command runs, not when the CLI
# starts (``minping --help`` and the other commands do not pay for them).

__all__ = ["score"]


DESIGN_TEXT = {
    "whole-sample": "Design: whole sample, weight N_h/n_h for every unit (every respondent rated "
                    "every unit they were asked; see --design per-unit for a campaign export).",
    "per-unit": "Design: per unit, weight N_h/n_hu (n_hu the respondents of stratum h with a row "
                "for unit u; don't know and empty ratings are outside the domain).",
}


def _fmt(value: float, digits: int = 1) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}"


def _interval(low: float, high: float, digits: int = 1) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "—"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def render_table(scores: UnitScores) -> str:
    """The scores as a plain-text table, one line per unit."""
    pct = f"{scores.level * 100:g}%"
    header = ("unit", "n", "score", f"{pct} CI", "satisfied", f"{pct} CI", "")
    lines = []
    for u in scores:
        lines.append((
            u.unit,
            str(u.n),
            _fmt(u.score),
            _interval(u.ci_low, u.ci_high),
            _fmt(100 * u.sat) + "%" if math.isfinite(u.sat) else "—",
            _interval(100 * u.sat_low, 100 * u.sat_high),
            "; ".join(x for x in (
                "" if u.reliable else f"insufficient data (n < {scores.min_raters})",
                "not every stratum covered: " + ", ".join(u.uncovered) if u.uncovered else "",
            ) if x),
        ))
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    right = {1, 2, 4}

    def fmt(row: tuple[str, ...]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    out = [fmt(header), "  ".join("-" * w for w in widths if w)]
    out.extend(fmt(row) for row in lines)
    unreliable = sum(not u.reliable for u in scores)
    out.append("")
    out.append(f"{len(scores)} units; {unreliable} with fewer than {scores.min_raters} raters "
               f"(insufficient data: never flagged nor ranked). Satisfaction interval: "
               f"{scores.ci_method}.")
    return "\n".join(out)


def render_composites(results) -> str:
    """Every track's composites as plain-text tables."""
    from minping.report import flag_rule_text

    out = []
    pct = f"{results.options['level'] * 100:g}%"
    for t in results.tracks:
        out.append("")
        out.append(f"track {t.id} ({t.name}): composite = "
                   + " + ".join(f"{w:g}·{p}" for p, w in t.weights.items() if w) + " − deductions")
        header = ("unit", "composite", f"{pct} CI", "deducted", "flag", "rank [interval]", "")
        lines = []
        for c in sorted(t.scores, key=lambda c: (-c.composite if math.isfinite(c.composite)
                                                 else math.inf, c.unit)):
            note = []
            if c.missing:
                note.append("missing " + ", ".join(c.missing))
            if c.status != "no-score" and not c.reliable:
                note.append("insufficient data")
            lines.append((c.unit, _fmt(c.composite), _interval(c.ci_low, c.ci_high),
                          _fmt(c.deduction, 2), c.flag or "",
                          "—" if c.rank is None else f"{c.rank} [{c.rank_low}, {c.rank_high}]",
                          "; ".join(note) if c.status != "no-score" else "no composite"))
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
        for row in [header, *lines]:
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    out.append("")
    out.append(flag_rule_text(results.threshold, results.correction, results.options["level"],
                              results.options.get("ranks", "marginal")))
    return "\n".join(out)


@click.command("score")
@click.option("--ratings", "ratings_path", type=click.Path(dir_okay=False),
              help="Ratings file: respondent_id,stratum,unit,rating (CSV or XLSX).")
@click.option("--population", "population_path", type=click.Path(dir_okay=False),
              help="Population file: stratum,N (CSV or XLSX).")
@json_option
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.95, show_default=True, help="Confidence level of the intervals.")
@click.option("--min-raters", type=click.IntRange(min=0), default=30, show_default=True,
              help="Units with fewer raters in their domain are marked unreliable.")
@click.option("--ci-method", type=click.Choice(["beta", "wilson", "logit"]), default="beta",
              show_default=True, help="Interval for the satisfaction rate (beta = Korn–Graubard).")
@click.option("--composite", is_flag=True,
              help="Database mode: add the composite per track with flags and rank intervals.")
@click.option("--rake", default="", metavar="groups,towns",
              help="Database mode: rake the weights to the frame's margins (groups, towns).")
@click.option("--variance", type=click.Choice(["linearised", "bootstrap"]), default="linearised",
              show_default=True, help="Database mode: linearised or Rao–Wu–Yue bootstrap variance.")
@click.option("--replicates", type=click.IntRange(min=2), default=500, show_default=True,
              help="Bootstrap replicates.")
@click.option("--seed", type=int, default=1, show_default=True, help="Bootstrap seed.")
@click.option("--ranks", type=click.Choice(["marginal", "simultaneous", "pairwise"]),
              default="marginal", show_default=True,
              help="Database mode: rank intervals for each unit (marginal), for all units "
                   "jointly (simultaneous), or unadjusted pairwise comparisons.")
@click.option("--design", type=click.Choice(["whole-sample", "per-unit"]), default="whole-sample",
              show_default=True,
              help="Plain files: whole-sample weights N_h/n_h, or the per-unit design N_h/n_hu "
                   "(one row per assigned unit; '0' don't know and an empty rating kept as such).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Plain files: the campaign file whose rating scale (and min_raters) to use.")
@database_url_option
@click.pass_context
def score(ctx: click.Context, ratings_path: str | None, population_path: str | None,
          as_json: bool, level: float, min_raters: int, ci_method: str, composite: bool,
          rake: str, variance: str, replicates: int, seed: int, ranks: str, design: str,
          config_path: str | None, database_url: str | None) -> None:
    """Score every unit from the database, or from a ratings file and a population file."""
    if bool(ratings_path) != bool(population_path):
        raise click.UsageError("--ratings and --population go together (or give neither to "
                               "score from the database)")
    if not ratings_path:
        src = ctx.get_parameter_source("min_raters")
        _score_database(as_json=as_json, level=level, ci_method=ci_method,
                        min_raters=None if src == click.core.ParameterSource.DEFAULT else min_raters,
                        composite=composite, rake=rake, variance=variance,
                        replicates=replicates, seed=seed, ranks=ranks,
                        database_url=database_url)
        return
    from minping.input_files import load_phone
    from scoring.scale import RatingScale
    from scoring.units import score_units

    scale, scale_source = RatingScale.default(), "default 1 = 100, 2 = 60, 3 = 0, 0 = don't know"
    if config_path:
        from minping.config import load_config

        cfg = load_config(config_path)
        scale, scale_source = RatingScale.from_options(cfg.scale.options), f"configured in {config_path}"
        if ctx.get_parameter_source("min_raters") == click.core.ParameterSource.DEFAULT:
            min_raters = cfg.campaign.min_raters
    per_unit = design == "per-unit"
    if per_unit:  # an empty rating: an assigned unit left unanswered, outside the domain
        scale = RatingScale(points={**scale.points, "": None}, satisfied=scale.satisfied,
                            labels={**scale.labels, "": ""})
    try:
        ratings, population = load_phone(ratings_path, population_path, scale=scale)
        scores = score_units(ratings.respondent_id, ratings.stratum, ratings.unit,
                             ratings.rating, population, level=level, scale=scale,
                             min_raters=min_raters, ci_method=ci_method,
                             assigned=[True] * len(ratings.unit) if per_unit else None)
    except InputError as exc:
        raise click.ClickException(str(exc)) from exc
    except (MinpingError, ScoringError, ValueError) as exc:
        raise click.ClickException(f"{ratings_path}: {exc}") from exc
    about = {"design": design, "weights": "N_h/n_hu" if per_unit else "N_h/n_h",
             "scale": {"source": scale_source,
                       "points": {k: v for k, v in scale.points.items() if k != ""},
                       "satisfied": sorted(scale.satisfied)}}
    if as_json:
        click.echo(json.dumps({**about, **scores.as_dict()}, ensure_ascii=False, indent=2))
    else:
        click.echo(render_table(scores))
        click.echo(DESIGN_TEXT[design] + f" Scale: {scale_source}.")


def _score_database(*, as_json: bool, level: float, ci_method: str, min_raters: int | None,
                    composite: bool, rake: str, variance: str, replicates: int, seed: int,
                    ranks: str, database_url: str | None) -> None:
    margins = tuple(m.strip() for m in rake.split(",") if m.strip())
    if not (as_json or margins or variance != "linearised") and _quick_table(
            level=level, ci_method=ci_method, min_raters=min_raters, composite=composite,
            ranks=ranks, database_url=database_url):
        return
    from minping.commands.options import cli_settings, echo_json
    from minping.config import load_config
    from minping.db import Database
    from minping.scores import run_scoring

    cfg = load_config()
    db = Database(cli_settings(database_url).database_url)
    try:
        results = run_scoring(db, cfg, level=level, ci_method=ci_method, min_raters=min_raters,
                              rake=margins, variance=variance, replicates=replicates,  # type: ignore[arg-type]
                              seed=seed, ranks=ranks)
    except (MinpingError, ScoringError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.dispose()
    if as_json:
        data = results.as_dict()
        if not composite:
            data.pop("tracks")
        echo_json(data)
    else:
        click.echo(render_table(results.phone))
        if composite:
            click.echo(render_composites(results))


def _quick_table(*, level: float, ci_method: str, min_raters: int | None, composite: bool,
                 ranks: str, database_url: str | None) -> bool:
    """The plain tables of the database mode on a bare DBAPI connection (no ORM, no models:
    ``minping.score_data``), the same rows and numbers as ``run_scoring``.  ``False`` when
    the database cannot be read that way (the ORM path then runs and explains)."""
    import os

    from minping import score_data
    from minping.settings import load_settings, normalise_database_url

    # minping.db.instance_path, without importing SQLAlchemy
    settings = load_settings(instance_path=os.path.abspath(
        os.environ.get("MINPING_INSTANCE_PATH") or "instance"))
    url = normalise_database_url(database_url) if database_url else settings.database_url
    from minping.config import load_config

    cfg = load_config()
    opened = score_data.connect(url)
    if opened is None:
        return False
    read, close = opened
    try:
        data = score_data.load_phone_data(read, cfg)
        eligible = score_data.eligible_strata(read, cfg, data)
        others = score_data.other_part_rows(read, data.campaign_id) if composite else None
    except MinpingError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception:  # noqa: BLE001 - e.g. a schema not upgraded: the ORM path explains it
        return False
    finally:
        close()
    try:
        score_data.check_respondents(data)
        phone = score_data.score_phone_data(data, cfg, eligible, level=level, ci_method=ci_method,
                                            min_raters=min_raters)
    except (MinpingError, ScoringError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(render_table(phone))
    if composite:
        from types import SimpleNamespace

        n = cfg.campaign.min_raters if min_raters is None else int(min_raters)
        tracks = score_data.composite_tracks(
            cfg, phone, *score_data.other_parts_from_rows(cfg, *others),
            threshold=cfg.flags.threshold, correction=cfg.flags.correction, level=level,
            min_raters=n, ranks=ranks)
        click.echo(render_composites(SimpleNamespace(
            tracks=tracks, threshold=cfg.flags.threshold, correction=cfg.flags.correction,
            options={"level": level, "ranks": ranks})))
    return True
