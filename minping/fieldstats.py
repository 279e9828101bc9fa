"""Where the fieldwork stands: progress, dispositions, AAPOR rates, productivity.

The supervisor dashboard and the field report share these functions.  Each
takes a ``Session`` (and a ``now`` where time matters) and returns plain,
JSON-ready values.

Final codes for the rates
-------------------------
A finished case counts with its final code.  A case still in the field
counts with the code it would get if fieldwork ended now
(:func:`scoring.aapor.final_disposition` with ``attempts_exhausted=True``): a
released case never tried is 3.11 (UH), one with only "no answer" attempts is
3.13, a soft refusal is 2.112, and so on.  These are AAPOR's *interim* rates;
at the end of the field period they equal the final rates.

Per mode (IVR / CATI) and per interviewer, a case counts for the channel and
the interviewer of its last attempt (the one that settled its code); a case
never attempted counts for no mode.  ``e`` is AAPOR's calculator default unless
given, and its value and basis are reported with every set of rates.

References
----------
.. [1] The American Association for Public Opinion Research (2023). *Standard
   Definitions*, 10th edition, section on outcome rates.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minping.cases import case_code
from minping.models import (
    Answer,
    CallAttempt,
    CaseUnit,
    DispositionEvent,
    RespondentGroup,
    SampleCase,
    Stratum,
    Town,
    Track,
    Unit,
    User,
)
from minping.practice import counted_draws
from scoring.aapor import counts_from_codes, disposition, outcome_rates

__all__ = [
    "CaseOutcome",
    "calls_in_progress",
    "case_outcomes",
    "dashboard",
    "disposition_counts",
    "productivity",
    "rates_by",
    "stratum_progress",
    "track_progress",
    "unit_progress",
]


@dataclass(frozen=True)
class CaseOutcome:
    """One released case's (final or interim) AAPOR code and who settled it."""

    case_id: int
    stratum_id: int
    code: str
    final: bool
    mode: str | None
    interviewer_id: int | None
    #: The code the case stands at: its final code, else its last attempt's code (a soft
    #: refusal 2.1121 or an appointment 2.211 stays that, while ``code`` is what it would
    #: be reported as, 2.112 or 2.21), else the interim code.
    current: str = ""


def case_outcomes(session: Session, *, draw_id: int | None = None) -> list[CaseOutcome]:
    """Every released case with its final (or interim) code, mode and interviewer."""
    cases_q = select(SampleCase.id, SampleCase.stratum_id, SampleCase.state,
                     SampleCase.final_disposition).where(SampleCase.release_state == "released")
    events_q = (
        select(DispositionEvent.case_id, DispositionEvent.code, CallAttempt.channel,
               CallAttempt.interviewer_id)
        .join(CallAttempt, CallAttempt.id == DispositionEvent.attempt_id)
        .join(SampleCase, SampleCase.id == DispositionEvent.case_id)
        .where(SampleCase.release_state == "released")
        .order_by(DispositionEvent.case_id, DispositionEvent.at, DispositionEvent.id)
    )
    if draw_id is not None:
        cases_q = cases_q.where(SampleCase.draw_id == draw_id)
        events_q = events_q.where(SampleCase.draw_id == draw_id)
    codes: dict[int, list[str]] = defaultdict(list)
    last: dict[int, tuple[str, int | None]] = {}
    for case_id, code, channel, interviewer in session.execute(events_q):
        codes[case_id].append(code)
        last[case_id] = (channel, interviewer)
    out = []
    for case_id, stratum_id, state, final in session.execute(cases_q):
        final = final if state == "final" else None
        code = case_code(final, codes.get(case_id, []))
        mode, interviewer = last.get(case_id, (None, None))
        attempts = codes.get(case_id)
        current = final or (attempts[-1] if attempts else code)
        out.append(CaseOutcome(case_id, stratum_id, code, final is not None, mode, interviewer,
                               current))
    return out


def _rates(codes: Iterable[str], e: float | None) -> dict:
    return outcome_rates(counts_from_codes(list(codes)), e=e).as_dict()


def rates_by(outcomes: Iterable[CaseOutcome], key, *, e: float | None = None) -> dict:
    """AAPOR rates per value of ``key(outcome)`` (outcomes whose key is None are left out)."""
    groups: dict[object, list[str]] = defaultdict(list)
    for o in outcomes:
        k = key(o)
        if k is not None:
            groups[k].append(o.code)
    return {k: _rates(v, e) | {"cases": len(v)} for k, v in groups.items()}


def disposition_counts(outcomes: Iterable[CaseOutcome]) -> list[dict]:
    """Cases per code the case stands at (final and open apart), in code order.

    Every code is labelled from the one AAPOR catalogue (:mod:`scoring.dispositions`)
    by the code shown: an open case at 2.1121 is "拒访（软）", not the hard refusal
    2.112 it would be reported as if the field closed now (``counts_as``, what the
    rates use).
    """
    tally = Counter((o.current or o.code, o.code, o.final) for o in outcomes)
    rows = []
    for (code, counts_as, final), n in sorted(
            tally.items(), key=lambda kv: (_code_key(kv[0][0]), kv[0][2], _code_key(kv[0][1]))):
        d = disposition(code)
        rows.append({"code": code, "final": final, "cases": n, "category": d.category,
                     "label_zh": d.label_zh, "label_en": d.label_en, "counts_as": counts_as})
    return rows


def _code_key(code: str) -> tuple[int, ...]:
    return tuple(int(p) for p in code.split("."))


def stratum_progress(session: Session, *, draw_id: int | None = None) -> list[dict]:
    """Per stratum: target, released, in progress (released, not final), completed."""
    rows = session.execute(
        select(
            Stratum.id, Stratum.code, Stratum.target, Stratum.population,
            RespondentGroup.name, RespondentGroup.name_en, Town.name, Town.name_en,
        )
        .join(RespondentGroup, RespondentGroup.id == Stratum.group_id)
        .outerjoin(Town, Town.id == Stratum.town_id)
        .where(Stratum.draw_id.in_(counted_draws()),
               *([Stratum.draw_id == draw_id] if draw_id is not None else []))
        .order_by(Stratum.id)
    ).all()
    counts_q = (
        select(
            SampleCase.stratum_id,
            func.count().filter(SampleCase.release_state == "released"),
            func.count().filter(SampleCase.release_state == "released",
                                SampleCase.state != "final"),
            func.count().filter(SampleCase.final_disposition == "1.1"),
        )
        .where(SampleCase.draw_id.in_(counted_draws()))
        .group_by(SampleCase.stratum_id)
    )
    if draw_id is not None:
        counts_q = counts_q.where(SampleCase.draw_id == draw_id)
    counts = {sid: (rel, prog, done) for sid, rel, prog, done in session.execute(counts_q)}
    out = []
    for sid, code, target, population, gname, gname_en, tname, tname_en in rows:
        rel, prog, done = counts.get(sid, (0, 0, 0))
        label_zh = gname + (f" · {tname}" if tname else "")
        label_en = gname_en + (f" · {tname_en}" if tname_en else "")
        out.append({"stratum_id": sid, "stratum": code, "label_zh": label_zh,
                    "label_en": label_en, "population": population, "target": target,
                    "released": rel, "in_progress": prog, "completed": done,
                    "share": (done / target) if target else None})
    return out


def unit_progress(session: Session, *, draw_id: int | None = None) -> list[dict]:
    """Per unit: target (drawn non-reserve cases assigned it), released, ratings, completes.

    ``rated`` counts answers with a rating (any key, "don't know" included);
    ``completed`` counts completed interviews (1.1) that were assigned the unit.
    """
    base = (select(CaseUnit.unit_id).join(SampleCase, SampleCase.id == CaseUnit.case_id)
            .where(SampleCase.draw_id.in_(counted_draws())))
    if draw_id is not None:
        base = base.where(SampleCase.draw_id == draw_id)
    q = (
        base.add_columns(
            func.count().filter(SampleCase.is_reserve.is_(False)),
            func.count().filter(SampleCase.release_state == "released"),
            func.count().filter(SampleCase.final_disposition == "1.1"),
        ).group_by(CaseUnit.unit_id)
    )
    per_unit = {uid: (t, r, c) for uid, t, r, c in session.execute(q)}
    rated_q = (
        select(Answer.unit_id, func.count())
        .join(SampleCase, SampleCase.id == Answer.case_id)
        .where(Answer.rating.is_not(None), SampleCase.draw_id.in_(counted_draws()))
        .group_by(Answer.unit_id)
    )
    if draw_id is not None:
        rated_q = rated_q.where(SampleCase.draw_id == draw_id)
    rated = dict(session.execute(rated_q).all())
    units = session.execute(
        select(Unit.id, Unit.code, Unit.name, Unit.name_en, Track.code)
        .join(Track, Track.id == Unit.track_id).where(Unit.id.in_(per_unit))
        .order_by(Track.position, Unit.position)
    ).all()
    out = []
    for uid, code, name, name_en, track in units:
        target, released, completed = per_unit[uid]
        out.append({"unit_id": uid, "unit": code, "label_zh": name, "label_en": name_en,
                    "track": track,
                    "target": target, "released": released, "rated": rated.get(uid, 0),
                    "completed": completed,
                    "share": (completed / target) if target else None})
    return out


def track_progress(session: Session, units: list[dict]) -> list[dict]:
    """Per track: its units, their summed targets, ratings and completes, and the unit
    furthest behind (lowest share of its target) — the dashboard's summary line."""
    names = {code: (name, name_en) for code, name, name_en in session.execute(
        select(Track.code, Track.name, Track.name_en).order_by(Track.position))}
    out = []
    for code, (name, name_en) in names.items():
        rows = [u for u in units if u.get("track") == code]
        if not rows:
            continue
        behind = min(rows, key=lambda u: (u["share"] if u["share"] is not None else 2.0))
        target = sum(u["target"] for u in rows)
        completed = sum(u["completed"] for u in rows)
        out.append({"track": code, "label_zh": name, "label_en": name_en, "units": len(rows),
                    "target": target, "rated": sum(u["rated"] for u in rows),
                    "completed": completed, "share": (completed / target) if target else None,
                    "lowest_unit": behind["unit"], "lowest_share": behind["share"]})
    return out


def productivity(session: Session, *, since: datetime, until: datetime) -> list[dict]:
    """Per interviewer over ``[since, until)``: attempts, hours, attempts per hour, completes,
    average interview length.

    Hours are the span from the interviewer's first attempt start to their last
    attempt end in the period (at least one minute).  Interview length is
    ``ended_at - answered_at`` (or ``started_at`` when the call was never
    marked answered) over their completes.
    """
    rows = session.execute(
        select(CallAttempt.interviewer_id, CallAttempt.started_at, CallAttempt.answered_at,
               CallAttempt.ended_at, CallAttempt.outcome)
        .join(SampleCase, SampleCase.id == CallAttempt.case_id)
        .where(CallAttempt.channel == "cati", CallAttempt.interviewer_id.is_not(None),
               CallAttempt.started_at >= since, CallAttempt.started_at < until,
               SampleCase.draw_id.in_(counted_draws()))
    ).all()
    names = dict(session.execute(select(User.id, User.display_name)).all())
    per: dict[int, dict] = {}
    for uid, started, answered, ended, outcome in rows:
        p = per.setdefault(uid, {"first": started, "last": ended or started, "attempts": 0,
                                 "completes": 0, "lengths": []})
        p["attempts"] += 1
        p["first"] = min(p["first"], started)
        p["last"] = max(p["last"], ended or started)
        if outcome == "1.1":
            p["completes"] += 1
            if ended is not None:
                p["lengths"].append((ended - (answered or started)).total_seconds())
    out = []
    for uid, p in sorted(per.items()):
        hours = max((p["last"] - p["first"]).total_seconds(), 60.0) / 3600
        lengths = p["lengths"]
        out.append({"interviewer_id": uid, "interviewer": names.get(uid, str(uid)),
                    "attempts": p["attempts"], "hours": round(hours, 3),
                    "attempts_per_hour": round(p["attempts"] / hours, 2),
                    "completes": p["completes"],
                    "avg_interview_seconds": (round(sum(lengths) / len(lengths), 1)
                                              if lengths else None)})
    return out


def calls_in_progress(session: Session, *, now: datetime) -> dict:
    """Open attempts (IVR and CATI) and interviewers holding a case right now."""
    rows = session.execute(
        select(CallAttempt.id, CallAttempt.case_id, SampleCase.pseudo_id, CallAttempt.channel,
               CallAttempt.interviewer_id, CallAttempt.started_at, CallAttempt.status)
        .join(SampleCase, SampleCase.id == CallAttempt.case_id)
        .where(CallAttempt.outcome.is_(None), SampleCase.draw_id.in_(counted_draws()))
        .order_by(CallAttempt.started_at)
    ).all()
    names = dict(session.execute(select(User.id, User.display_name)).all())
    calls = [{"attempt_id": a, "case_id": c, "case": p, "channel": ch,
              "interviewer": names.get(i) if i else None,
              "seconds": max(0, int((now - s).total_seconds())), "status": st}
             for a, c, p, ch, i, s, st in rows]
    holds = session.execute(
        select(SampleCase.lock_channel, func.count())
        .where(SampleCase.lock_channel.is_not(None), SampleCase.lock_expires_at >= now,
               SampleCase.draw_id.in_(counted_draws()))
        .group_by(SampleCase.lock_channel)
    ).all()
    return {"calls": calls, "by_channel": dict(Counter(c["channel"] for c in calls)),
            "holds": dict(holds)}


def dashboard(session: Session, *, now: datetime, draw_id: int | None = None,
              e: float | None = None, period: timedelta = timedelta(hours=24)) -> dict:
    """Everything the supervisor dashboard shows, JSON-ready."""
    outcomes = case_outcomes(session, draw_id=draw_id)
    names = dict(session.execute(select(User.id, User.display_name)).all())
    strata = stratum_progress(session, draw_id=draw_id)
    units = unit_progress(session, draw_id=draw_id)
    stratum_codes = {s["stratum_id"]: s["stratum"] for s in strata}
    by_interviewer = rates_by(outcomes, lambda o: o.interviewer_id, e=e)
    return {
        "now": now.isoformat(),
        "totals": {
            "released": len(outcomes),
            "final": sum(o.final for o in outcomes),
            "completed": sum(o.code == "1.1" and o.final for o in outcomes),
        },
        "strata": strata,
        "units": units,
        "tracks": track_progress(session, units),
        "dispositions": disposition_counts(outcomes),
        "rates": {
            "overall": _rates((o.code for o in outcomes), e) | {"cases": len(outcomes)},
            "stratum": {stratum_codes.get(k, str(k)): v
                        for k, v in rates_by(outcomes, lambda o: o.stratum_id, e=e).items()},
            "mode": rates_by(outcomes, lambda o: o.mode, e=e),
            "interviewer": {names.get(k, str(k)): v for k, v in by_interviewer.items()},
        },
        "productivity": productivity(session, since=now - period, until=now + timedelta(1)),
        "in_progress": calls_in_progress(session, now=now),
    }
