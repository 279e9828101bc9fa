"""Scores from the database: load the phone ratings and the design, run the core.

Who counts as a respondent
--------------------------
A *respondent* is a sampled case whose final disposition is AAPOR 1.1
(complete) or 1.2 (partial).  Every respondent counts in n_h, the number of
respondents of stratum h, whatever they answered.  Cases still in the field,
refusals, non-contacts and every other disposition are not respondents: their
answers (a break-off's first ratings, say) are not scored until the case ends
as 1.1 or 1.2.

The per-unit design
-------------------
Each respondent is asked only the k units assigned to the case
(``CaseUnit``, drawn at random among the units the group may rate, see
``minping.draws``).  Within stratum h the n_hu respondents assigned unit u are
therefore a simple random subsample of the stratum's n_h respondents, and unit
u is scored on its own stratified design: the respondents assigned u, weight
w_iu = N_h/n_hu (N_h the stratum's population, ``Stratum.population``).
Using N_h/n_h for every unit instead would weight a stratum's raters of u in
proportion to N_h/n_h rather than N_h/n_hu, i.e. under-weight, by k/m_h, the
groups that may rate many units (m_h) relative to the others.

The unit's domain is the assigned respondents who answered it on the points
scale: a rating of "don't know" (a key without points), an answer left empty,
or an assigned unit never asked is outside it; an answer to a unit that was
not assigned to the case is not scored.  The variance is the stratified SRS
variance of the per-unit design with the finite population correction
1 − n_hu/N_h: exactly R ``survey``'s
``svymean(~y, subset(svydesign(id=~1, strata=~stratum, fpc=~N_h,
data=<respondents assigned u>), answered))``; a stratum with a single
respondent assigned u is handled as R's ``survey.lonely.psu = "adjust"``.
The covariance between two units (rank intervals) comes from the
respondent-level linearised values with each unit's own weights (see
``scoring.estimators.AssignedDesign``).

The draw is the campaign's latest ``SampleDraw`` unless another is named.

Raking (``rake=("groups", "towns")``) calibrates the respondents' weights
N_h/n_h to the frame's counts per respondent group and per town, scaled to the
draw's population Σ N_h so that both margins have the same total; each unit
weight is N_h/n_hu times its respondent's raking factor.

Other parts of the composite come from the imported tables
(``minping.inputs``): assessment ballots, online vote counts and inspection
deductions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minping import score_data
from minping.campaign import codes as config_codes
from minping.cases import attempt_codes, case_code
from minping.errors import MinpingError
from minping.export import RespondentTable, assigned_column, unit_column
from minping.models import (
    CaseUnit,
    FrameContact,
    RespondentGroup,
    SampleCase,
    Stratum,
    Town,
    Unit,
)
from minping.report import (
    ScoringResults,
    StratumRow,
    UnitRaters,
    write_report,
)
from minping.score_data import (
    RESPONDENT_CODES,
    UNANSWERED,
    PhoneData,
    Respondent,
    check_respondents,
    composite_tracks,
    eligible_strata,
    other_part_rows,
    other_parts_from_rows,
    rating_scale,
    score_phone_data,
    session_reader,
)
from minping.score_effects import mode_and_interviewer_effects
from sampling.balance import unit_balance
from scoring.aapor import counts_from_codes, disposition, outcome_rates
from scoring.scale import RatingScale
from scoring.units import RespondentMargin, UnitScores

__all__ = [
    "RESPONDENT_CODES",
    "UNANSWERED",
    "PhoneData",
    "Respondent",
    "load_phone_data",
    "rating_scale",
    "respondent_table",
    "run_scoring",
    "score_and_report",
]

RAKE_MARGINS = ("groups", "towns")


def load_phone_data(session: Session, cfg, *, draw_id: int | None = None) -> PhoneData:
    """Respondents (final 1.1/1.2) of the draw, their ratings and the strata's N_h
    (``minping.score_data.load_phone_data`` on the session)."""
    return score_data.load_phone_data(session_reader(session), cfg, draw_id=draw_id)


def _margins(session: Session, data: PhoneData, names: Sequence[str]) -> list[RespondentMargin]:
    """Frame counts per group / per town, scaled to Σ N_h of the draw."""
    out = []
    total = sum(data.population.values())
    for name in names:
        if name not in RAKE_MARGINS:
            raise MinpingError(f"--rake: unknown margin {name!r} (known: {', '.join(RAKE_MARGINS)})")
        column, model = ((FrameContact.group_id, RespondentGroup) if name == "groups"
                         else (FrameContact.town_id, Town))
        labels = {i: c for c, i in config_codes(session, model, data.campaign_id).items()}
        counts = {labels.get(k, "") if k else "": float(n) for k, n in session.execute(
            select(column, func.count()).where(FrameContact.frame_id == data.frame_id).group_by(column))}
        frame_total = sum(counts.values())
        if frame_total == 0:
            raise MinpingError(f"--rake {name}: the draw's frame has no contacts")
        totals = {k: v * total / frame_total for k, v in counts.items()}
        attr = "group" if name == "groups" else "town"
        out.append(RespondentMargin(name=name, totals=totals,
                                    category_of={r.pseudo_id: getattr(r, attr)
                                                 for r in data.respondents}))
    return out


def score_phone(session: Session, cfg, *, level: float = 0.95, ci_method: str = "beta",
                min_raters: int | None = None, rake: Sequence[str] = (),
                variance: Literal["linearised", "bootstrap"] = "linearised",
                replicates: int = 500, seed: int | None = None,
                draw_id: int | None = None) -> tuple[PhoneData, UnitScores]:
    """The per-unit phone scores of the database's respondents (see the module notes)."""
    data = load_phone_data(session, cfg, draw_id=draw_id)
    check_respondents(data)
    margins = _margins(session, data, rake)
    eligible = eligible_strata(session_reader(session), cfg, data)
    scores = score_phone_data(data, cfg, eligible, level=level, ci_method=ci_method,
                              min_raters=min_raters, margins=margins, variance=variance,
                              replicates=replicates, seed=seed)
    return data, scores


def other_parts(session: Session, cfg, campaign_id: int) -> tuple[dict, dict, dict[str, float]]:
    """Assessment and online part scores and deductions from the imported tables."""
    return other_parts_from_rows(cfg, *other_part_rows(session_reader(session), campaign_id))


def _outcomes(session: Session, draw_id: int) -> tuple[list[str], int]:
    """Final (or, for open cases, interim) codes of the released cases; and how many are open."""
    events = attempt_codes(session, draw_id=draw_id, released_only=True)
    codes, open_cases = [], 0
    for case_id, final in session.execute(
        select(SampleCase.id, SampleCase.final_disposition)
        .where(SampleCase.draw_id == draw_id, SampleCase.release_state == "released")):
        open_cases += not final
        codes.append(case_code(final, events.get(case_id, [])))
    return codes, open_cases


def _strata_rows(session: Session, draw_id: int, data: PhoneData, groups, towns) -> tuple[StratumRow, ...]:
    """Per stratum, counted as ``minping sample balance`` counts: drawn without the reserve,
    the reserve apart, completes = final 1.1 (withdrawn cases left out)."""
    drawn: Counter = Counter()
    reserve: Counter = Counter()
    released: Counter = Counter()
    completed: Counter = Counter()
    for sid, state, is_reserve, final in session.execute(
            select(SampleCase.stratum_id, SampleCase.release_state, SampleCase.is_reserve,
                   SampleCase.final_disposition).where(SampleCase.draw_id == draw_id)):
        if state == "withdrawn":
            continue
        (reserve if is_reserve else drawn)[sid] += 1
        released[sid] += state == "released"
        completed[sid] += final == "1.1"
    n_h = data.n_h
    rows = []
    for s in session.scalars(select(Stratum).where(Stratum.draw_id == draw_id).order_by(Stratum.code)):
        rows.append(StratumRow(code=s.code, group=groups.get(s.group_id, ""),
                               town=towns.get(s.town_id, "") if s.town_id else "",
                               population=s.population, target=s.target, drawn=drawn[s.id],
                               released=released[s.id], respondents=n_h.get(s.code, 0),
                               reserve=reserve[s.id], completed=completed[s.id]))
    return tuple(rows)


def _unit_raters(session: Session, data: PhoneData, scale: RatingScale) -> tuple[UnitRaters, ...]:
    """Raters by group per unit: assigned (released cases) and in the unit's domain."""
    campaign_groups = {i: c for c, i in config_codes(session, RespondentGroup, data.campaign_id).items()}
    unit_code = dict(session.execute(select(Unit.id, Unit.code)
                                     .where(Unit.campaign_id == data.campaign_id)).all())
    assigned: dict[str, Counter] = defaultdict(Counter)
    for unit_id, group_id in session.execute(
        select(CaseUnit.unit_id, FrameContact.group_id)
        .join(SampleCase, SampleCase.id == CaseUnit.case_id)
        .join(FrameContact, FrameContact.id == SampleCase.contact_id)
        .where(SampleCase.draw_id == data.draw_id, SampleCase.release_state == "released")):
        assigned[unit_code[unit_id]][campaign_groups[group_id]] += 1
    group_of = {r.pseudo_id: r.group for r in data.respondents}
    _, inside, _ = scale.encode(data.rating)
    answered: dict[str, Counter] = defaultdict(Counter)
    for rid, unit, ok, given in zip(data.respondent_id, data.unit, inside.tolist(), data.assigned,
                                    strict=True):
        if ok and given:
            answered[unit][group_of[rid]] += 1
    units = sorted(u for u in assigned if sum(assigned[u].values()) > 0)
    if not units:
        return ()
    balance = unit_balance({u: dict(assigned[u]) for u in units},
                           answered={u: dict(answered.get(u, {})) for u in units},
                           shares={u: {g: float(n) for g, n in assigned[u].items()} for u in units})
    return tuple(sorted(
        (UnitRaters(unit=str(b.unit), assigned=dict(zip(b.groups, b.assigned, strict=True)),
                    answered=dict(zip(b.groups, b.answered, strict=True)),
                    p_value=b.p_value, dissimilarity=b.dissimilarity, passed=b.passed,
                    reason=b.reason) for b in balance),
        key=lambda r: r.unit))


def run_scoring(db, cfg, *, level: float | None = None, ci_method: str = "beta",
                min_raters: int | None = None, rake: Sequence[str] = (),
                variance: Literal["linearised", "bootstrap"] = "linearised",
                replicates: int = 500, seed: int | None = None,
                correction: str | None = None, threshold: float | None = None,
                draw_id: int | None = None, ranks: str = "marginal") -> ScoringResults:
    """Score everything the database holds: phone scores, composites, flags, ranks, rates.

    Parameters
    ----------
    db : minping.db.Database
    cfg : SurveyConfig
        Weights of the tracks, the scale, ``min_raters`` and the flag rule.
    level : float, optional
        Confidence level (default ``cfg.flags.confidence``).
    ci_method : {"beta", "wilson", "logit"}
        Interval of the satisfaction rate (beta = Korn–Graubard).
    min_raters : int, optional
        Default ``cfg.campaign.min_raters``.
    rake : sequence of {"groups", "towns"}
        Population margins from the frame to rake the weights to.
    variance : {"linearised", "bootstrap"}
        With ``"bootstrap"``, ``replicates`` Rao–Wu–Yue replicates drawn with
        ``numpy.random.default_rng(seed)``.
    correction, threshold : optional
        Override ``cfg.flags``.
    ranks : {"marginal", "simultaneous", "pairwise"}
        Coverage of the rank intervals (``scoring.composite.rank_rejections``).
    draw_id : int, optional
        Default: the campaign's latest draw.
    """
    level = cfg.flags.confidence if level is None else level
    min_raters = cfg.campaign.min_raters if min_raters is None else int(min_raters)
    correction = correction or cfg.flags.correction
    threshold = cfg.flags.threshold if threshold is None else float(threshold)
    with db.session() as session:
        data, phone = score_phone(session, cfg, level=level, ci_method=ci_method,
                                  min_raters=min_raters, rake=rake, variance=variance,
                                  replicates=replicates, seed=seed, draw_id=draw_id)
        assessment, online, deductions = other_parts(session, cfg, data.campaign_id)
        groups_by_id = {i: c for c, i in config_codes(session, RespondentGroup, data.campaign_id).items()}
        towns_by_id = {i: c for c, i in config_codes(session, Town, data.campaign_id).items()}
        strata = _strata_rows(session, data.draw_id, data, groups_by_id, towns_by_id)
        codes, open_cases = _outcomes(session, data.draw_id)
        raters = _unit_raters(session, data, rating_scale(cfg))
        effects = mode_and_interviewer_effects(session, cfg, data, phone)  # minping.score_effects
        rates_by = _rates_by(session, data.draw_id)
    rates = outcome_rates(counts_from_codes(codes)) if codes else None
    tracks = composite_tracks(cfg, phone, assessment, online, deductions, threshold=threshold,
                              correction=correction, level=level, min_raters=min_raters,
                              ranks=ranks)
    return ScoringResults(
        campaign=cfg.campaign.name, campaign_en=cfg.campaign.name_en,
        center=cfg.campaign.polling_center, center_en=cfg.campaign.polling_center_en,
        draw_id=data.draw_id, stratification=data.stratification,
        options={"level": level, "ci_method": ci_method, "min_raters": min_raters,
                 "rake": list(rake), "variance": variance,
                 "replicates": replicates if variance == "bootstrap" else None,
                 "seed": seed if variance == "bootstrap" else None, "fpc": True,
                 "ranks": ranks},
        threshold=threshold, correction=correction,
        phone=phone, assessment=assessment, online=online, deductions=deductions,
        tracks=tuple(tracks), strata=strata, respondents=len(data.respondents),
        rates=rates, open_cases=open_cases, unit_raters=raters,
        groups={g.id: (g.name, g.name_en) for g in cfg.groups},
        towns={t.id: (t.name, t.name_en) for t in cfg.towns},
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        effects=effects, rates_by=rates_by,
    )


def _rates_by(session: Session, draw_id: int) -> dict:
    """AAPOR rates per stratum code and per mode, as the dashboard computes them."""
    from minping.fieldstats import case_outcomes, rates_by

    outcomes = case_outcomes(session, draw_id=draw_id)
    code = dict(session.execute(select(Stratum.id, Stratum.code)
                                .where(Stratum.draw_id == draw_id)).all())
    return {"stratum": {code.get(k, str(k)): v
                        for k, v in rates_by(outcomes, lambda o: o.stratum_id).items()},
            "mode": rates_by(outcomes, lambda o: o.mode)}


def score_and_report(db, cfg, out_dir: str | Path, *, lang: str = "zh", **options) -> dict:
    """Score, write the report to ``out_dir`` and return a summary for printing.

    The summary has ``report`` (the path of ``index.html``), ``respondents``,
    ``effects`` (``minping.score_effects``) and ``tracks``: per track its ``rows`` (unit, name, composite, ci_low,
    ci_high, flag, rank, rank_low, rank_high, reliable, status), and the
    counts ``below`` and ``possibly_below``.
    """
    results = run_scoring(db, cfg, **options)
    path = write_report(results, out_dir, lang=lang)
    return {"report": str(path), "respondents": results.respondents,
            "tracks": results.summary_rows(), "effects": results.effects}


def respondent_table(db, cfg, *, draw_id: int | None = None, lang: str = "zh") -> RespondentTable:
    """One row per respondent with the design variables and a column per unit.

    See ``minping.export`` for the columns.  Labels are Chinese unless
    ``lang="en"``.  No phone number is read.
    """
    zh = lang == "zh"
    with db.session() as session:
        data = load_phone_data(session, cfg, draw_id=draw_id)
    scale = RatingScale.from_options(cfg.scale.options)
    if not all(k.isdigit() for k in scale.keys):
        raise MinpingError("the export needs numeric scale keys (keypad digits)")
    n_h = data.n_h
    rows = sorted(data.respondents, key=lambda r: r.pseudo_id)
    cells = {(rid, unit): key for rid, unit, key in zip(data.respondent_id, data.unit, data.rating,
                                                        strict=True)}
    given = {(rid, unit) for rid, unit, a in zip(data.respondent_id, data.unit, data.assigned,
                                                 strict=True) if a}
    columns: dict[str, list] = {
        "respondent_id": [r.pseudo_id for r in rows],
        "stratum": [r.stratum for r in rows],
        "group": [r.group for r in rows],
        "town": [r.town for r in rows],
        "weight": [data.population[r.stratum] / n_h[r.stratum] for r in rows],
        "N_h": [data.population[r.stratum] for r in rows],
        "n_h": [n_h[r.stratum] for r in rows],
        "disposition": [r.disposition for r in rows],
        "disposition_n": [int(r.disposition.replace(".", "")) for r in rows],
    }
    labels = {
        "respondent_id": "受访者编号（化名）" if zh else "Respondent (pseudonymous id)",
        "stratum": "层" if zh else "Stratum",
        "group": "受访群体" if zh else "Respondent group",
        "town": "乡镇" if zh else "Town",
        "weight": ("应答者权数 N_h/n_h（单位得分用 N_h/n_hu）" if zh
                   else "Respondent weight N_h/n_h (unit scores use N_h/n_hu)"),
        "N_h": "层总体数 N_h" if zh else "Stratum population N_h",
        "n_h": "层应答人数 n_h" if zh else "Respondents in the stratum n_h",
        "disposition": "AAPOR 最终处理代码" if zh else "AAPOR final disposition",
        "disposition_n": "AAPOR 最终处理代码（数值）" if zh else "AAPOR final disposition (number)",
    }
    dispositions = {}
    for code in RESPONDENT_CODES:
        d = disposition(code)
        dispositions[int(code.replace(".", ""))] = f"{code} {d.label_zh if zh else d.label_en}"
    rating_labels = {int(o.key): o.label("cmn-CN" if zh else "en") for o in cfg.scale.options}
    value_labels: dict[str, dict[int, str]] = {"disposition_n": dispositions}
    yes_no = {1: "是" if zh else "yes", 0: "否" if zh else "no"}
    for unit in cfg.units:
        col = unit_column(unit.id)
        if col in columns:
            raise MinpingError(f"units {unit.id!r} and another unit share the export column {col!r}")
        columns[col] = [None if cells.get((r.pseudo_id, unit.id), "") == UNANSWERED
                        else int(cells[(r.pseudo_id, unit.id)]) for r in rows]
        labels[col] = f"{unit.name if zh else unit.name_en} ({unit.id})"
        value_labels[col] = rating_labels
    for unit in cfg.units:
        col = assigned_column(unit.id)
        if col in columns:
            raise MinpingError(f"units {unit.id!r} and another unit share the export column {col!r}")
        columns[col] = [int((r.pseudo_id, unit.id) in given) for r in rows]
        labels[col] = (f"是否分派评价 {unit.name} ({unit.id})" if zh
                       else f"Assigned to rate {unit.name_en} ({unit.id})")
        value_labels[col] = yes_no
    return RespondentTable(columns=columns, variable_labels=labels, value_labels=value_labels)
