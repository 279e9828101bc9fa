"""Balance of a draw per stratum and per unit, and the Kish design effect."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from minping.draws.draw import ASSIGNMENT_PRIORITY, current_draw
from minping.draws.frame import user_errors
from minping.draws.verify import stored_units
from minping.models import (
    Answer,
    SampleCase,
    Stratum,
    Unit,
)
from sampling.assign import Assignment
from sampling.balance import kish, stratum_balance, unit_balance

# --- balance ------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 6) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), digits)


@user_errors
def balance_report(session: Session, cfg, *, draw_id: int | None = None,
                   alpha: float = 0.01, max_dissimilarity: float = 0.1) -> dict:
    """Per stratum and per unit balance of the current draw, and the Kish design effect.

    Strata: frame size, target, drawn (sample cases), reserve, released,
    completed (final disposition 1.1), gap and relative gap (completed vs
    target).  Units: raters assigned (cases in the sample, plus reserve cases
    released) and raters who answered (a rating saved), by group, against the
    design's group mix (``Assignment.expected_shares``); the chi-square test
    and dissimilarity index are on the answered counts once there are any,
    else on the assigned; failing units first.  Kish's deff and effective
    sample size for the weights of the completed cases (or the sample, before
    fieldwork), overall and per unit.
    """
    sd = current_draw(session, cfg, draw_id=draw_id)
    # the strata: frame size, target, drawn, reserve, released, completed
    strata, rows, reserve, active = _strata_balance(session, sd.id)
    # the units: raters assigned and answered by group, against the design's mix
    ub, has_answers = _units_balance(session, cfg, sd, strata, active, alpha=alpha,
                                     max_dissimilarity=max_dissimilarity)
    unit_name = {u.id: u.name for u in cfg.units}
    unit_track = {u.id: u.track for u in cfg.units}
    complete_w = [c.weight for c in active.values() if c.final_disposition == "1.1"]
    sample_w = [c.weight for c in active.values()]
    k_sample, k_complete = kish(sample_w), kish(complete_w)
    return {
        "draw_id": sd.id,
        "seed": sd.seed,
        "stratification": sd.stratification,
        "method": sd.method,
        "tested": "answered" if has_answers else "assigned",
        "alpha": alpha,
        "max_dissimilarity": max_dissimilarity,
        "strata": [
            {"stratum": r.stratum, "frame_size": r.frame_size, "target": r.target,
             "drawn": r.drawn, "reserve": reserve.get(r.stratum, 0), "released": r.released,
             "completed": r.completed, "gap": r.gap, "relative_gap": _num(r.relative_gap)}
            for r in rows
        ],
        "totals": {
            "frame_size": sum(r.frame_size for r in rows), "target": sum(r.target for r in rows),
            "drawn": sum(r.drawn for r in rows), "released": sum(r.released for r in rows),
            "completed": sum(r.completed for r in rows),
        },
        "units": [
            {"unit": b.unit, "name": unit_name.get(b.unit), "track": unit_track.get(b.unit),
             "groups": list(b.groups), "assigned": list(b.assigned),
             "expected_assigned": [round(x, 3) for x in b.expected_assigned],
             "answered": list(b.answered),
             "expected_answered": [round(x, 3) for x in b.expected_answered],
             "tested": b.tested, "chi2": _num(b.chi2), "p_value": _num(b.p_value),
             "dissimilarity": _num(b.dissimilarity), "passed": b.passed, "reason": b.reason,
             "deff": _num(b.kish.deff) if b.kish else None,
             "n_eff": _num(b.kish.n_eff) if b.kish else None}
            for b in ub
        ],
        "failing_units": sum(not b.passed for b in ub),
        "kish": {
            "sample": {"n": k_sample.n, "deff": _num(k_sample.deff), "n_eff": _num(k_sample.n_eff)},
            "completed": {"n": k_complete.n, "deff": _num(k_complete.deff),
                          "n_eff": _num(k_complete.n_eff)},
        },
    }


def _strata_balance(session: Session, draw_id: int):
    """The draw's strata, their balance rows, reserve counts, and the active cases by id.

    Active: sample cases, and reserve cases released (withdrawn cases are left out).
    """
    strata = session.scalars(select(Stratum).where(Stratum.draw_id == draw_id)
                             .order_by(Stratum.code)).all()
    code_of = {s.id: s.code for s in strata}
    cases = session.execute(
        select(SampleCase.id, SampleCase.stratum_id, SampleCase.is_reserve,
               SampleCase.release_state, SampleCase.final_disposition, SampleCase.weight)
        .where(SampleCase.draw_id == draw_id)
    ).all()
    drawn, reserve, released, completed = Counter(), Counter(), Counter(), Counter()
    active: dict[int, Any] = {}
    for c in cases:
        code = code_of[c.stratum_id]
        if c.release_state == "withdrawn":
            continue
        if c.is_reserve:
            reserve[code] += 1
        else:
            drawn[code] += 1
        if c.release_state == "released":
            released[code] += 1
        if c.final_disposition == "1.1":
            completed[code] += 1
        if not c.is_reserve or c.release_state == "released":
            active[c.id] = c
    rows = stratum_balance(
        frame_size={s.code: s.population for s in strata},
        target={s.code: s.target for s in strata},
        drawn=dict(drawn), released=dict(released), completed=dict(completed),
    )
    return strata, rows, reserve, active


def _units_balance(session: Session, cfg, sd, strata, active: dict[int, Any], *, alpha: float,
                   max_dissimilarity: float):
    """:func:`sampling.balance.unit_balance` of the draw's units; and whether any rating exists."""
    code_of = {s.id: s.code for s in strata}
    group_of_stratum = {s.code: s.code.partition("/")[0] for s in strata}

    units = stored_units(session, sd.id)
    answered_rows = session.execute(
        select(Answer.case_id, Unit.code)
        .join(Unit, Unit.id == Answer.unit_id)
        .join(SampleCase, SampleCase.id == Answer.case_id)
        .where(SampleCase.draw_id == sd.id, Answer.rating.is_not(None))
    ).all()
    assigned: dict[str, Counter] = defaultdict(Counter)
    answered: dict[str, Counter] = defaultdict(Counter)
    w_assigned: dict[str, list[float]] = defaultdict(list)
    w_answered: dict[str, list[float]] = defaultdict(list)
    for cid, us in units.items():
        c = active.get(cid)
        if c is None:
            continue
        g = group_of_stratum[code_of[c.stratum_id]]
        for u in us:
            assigned[u][g] += 1
            w_assigned[u].append(c.weight)
    for cid, u in answered_rows:
        c = active.get(cid)
        if c is None:
            continue
        g = group_of_stratum[code_of[c.stratum_id]]
        answered[u][g] += 1
        w_answered[u].append(c.weight)
    has_answers = bool(answered_rows)
    a = sd.assignment
    eligible = {g: tuple(us) for g, us in a.get("eligible", {}).items()}
    shell = Assignment(
        k=int(a.get("k", cfg.campaign.units_per_respondent)), units=(), unit_counts={},
        unit_group_counts={u: {g: 0 for g in eligible if u in eligible[g]}
                           for u in {u for us in eligible.values() for u in us}},
        group_sizes=dict(a.get("group_sizes", {})), eligible=eligible,
        priority=a.get("priority", ASSIGNMENT_PRIORITY),
    )
    shares = shell.expected_shares()
    all_units = [u.id for u in cfg.units if u.id in shares]
    full_assigned = {u: {g: assigned[u].get(g, 0) for g in shares[u]} for u in all_units}
    ub = unit_balance(
        full_assigned,
        answered=({u: dict(answered[u]) for u in all_units} if has_answers else None),
        shares={u: shares[u] for u in all_units},
        weights={u: (w_answered[u] if has_answers else w_assigned[u]) for u in all_units},
        alpha=alpha, max_dissimilarity=max_dissimilarity,
    )
    return ub, has_answers
