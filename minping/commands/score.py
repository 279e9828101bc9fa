"""``minping score``: unit scores from plain files.

    minping score --ratings ratings.csv --population population.csv [--json]
                  [--level 0.95] [--min-raters 30] [--ci-method beta|wilson|logit]

Ratings columns ``respondent_id,stratum,unit,rating``; population columns
``stratum,N`` (CSV in UTF-8 or GB18030, or XLSX).  The design is stratified
simple random sampling with weights N_h/n_h; each unit's score is the Hájek
domain mean with the linearised variance and fpc, its interval t with the
domain's degrees of freedom, the satisfaction rate's interval Korn–Graubard
unless ``--ci-method`` says otherwise (see ``scoring.estimators``).
"""

from __future__ import annotations

import json
import math

import click

from minping.errors import InputError, MinpingError
from scoring.inputs import load_phone
from scoring.units import UnitScores, score_units

__all__ = ["score"]


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
            "" if u.reliable else f"unreliable (n < {scores.min_raters})",
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
               f"(unreliable). Satisfaction interval: {scores.ci_method}.")
    return "\n".join(out)


@click.command("score")
@click.option("--ratings", "ratings_path", type=click.Path(dir_okay=False),
              help="Ratings file: respondent_id,stratum,unit,rating (CSV or XLSX).")
@click.option("--population", "population_path", type=click.Path(dir_okay=False),
              help="Population file: stratum,N (CSV or XLSX).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.95, show_default=True, help="Confidence level of the intervals.")
@click.option("--min-raters", type=click.IntRange(min=0), default=30, show_default=True,
              help="Units with fewer raters in their domain are marked unreliable.")
@click.option("--ci-method", type=click.Choice(["beta", "wilson", "logit"]), default="beta",
              show_default=True, help="Interval for the satisfaction rate (beta = Korn–Graubard).")
def score(ratings_path: str | None, population_path: str | None, as_json: bool, level: float,
          min_raters: int, ci_method: str) -> None:
    """Score every unit from a ratings file and a population file."""
    if not ratings_path or not population_path:
        raise click.UsageError(
            "--ratings and --population are required in this version "
            "(scoring from the database is not available here)")
    try:
        ratings, population = load_phone(ratings_path, population_path)
        scores = score_units(ratings.respondent_id, ratings.stratum, ratings.unit,
                             ratings.rating, population, level=level,
                             min_raters=min_raters, ci_method=ci_method)
    except InputError as exc:
        raise click.ClickException(str(exc)) from exc
    except (MinpingError, ValueError) as exc:
        raise click.ClickException(f"{ratings_path}: {exc}") from exc
    if as_json:
        click.echo(json.dumps(scores.as_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(render_table(scores))
