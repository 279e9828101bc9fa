"""The field forecast from the database (adapter of :mod:`scoring.forecast`).

:func:`field_state` reads what the pure core needs -- per stratum the open cases
by attempts used, the attempts and contacts by attempt number, the outcomes of
contacts, the pace of the last calling day, the cases still held; per unit its
raters and open cases -- and :func:`field_forecast` projects it and adds what
would close each gap in the supervisor's terms (cases to release against the
next replicate's size, interviewer hours, IVR line-hours).  ``minping field
forecast`` and the supervisor dashboard both call :func:`field_forecast`; the
dashboard through a :class:`ForecastCache`, which recomputes it only when the
attempts or cases changed (:func:`fingerprint`), at most every
:data:`CACHE_MIN_SECONDS`, and at least every :data:`CACHE_MAX_SECONDS` or when
the local day turns; the page shows the time it was computed ("as of").
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minping import calltimes
from minping.models import Answer, CallAttempt, CaseUnit, SampleCase, Stratum, Unit
from scoring.forecast import StratumState, UnitState, forecast

__all__ = ["CACHE_MAX_SECONDS", "CACHE_MIN_SECONDS", "DEFAULT_SIMS", "ForecastCache", "chart",
           "days_ahead", "field_forecast", "field_state", "fingerprint"]

#: Calendar days simulated past the end date (to date a projection that falls after it).
BEYOND_END_DAYS = 21


def days_ahead(rules, now: datetime, *, beyond: int = BEYOND_END_DAYS) -> list[date]:
    """Calling days from ``now`` (today if a window is still open) to ``beyond`` days past the end.

    Past the end date the weekday windows go on (holidays still closed), to date
    projections that miss the end date.
    """
    local = now.astimezone(rules.tz)
    out = []
    day = local.date()
    last = rules.end_date + timedelta(days=beyond)
    while day <= last:
        windows = rules.windows.get(day.weekday(), ())
        open_day = windows and day not in rules.holidays and day >= rules.start_date
        if open_day and (day > local.date() or any(w.end > local.time().replace(tzinfo=None)
                                                   for w in windows)):
            out.append(day)
        day += timedelta(days=1)
    return out


def field_state(session: Session, cfg, *, now: datetime, draw_id: int | None = None) -> dict:
    """The inputs of :func:`scoring.forecast.forecast` read from the database."""
    rules = cfg.calling
    K = rules.max_attempts
    tz = rules.tz
    sq = select(Stratum.id, Stratum.code, Stratum.target).order_by(Stratum.id)
    if draw_id is not None:
        sq = sq.where(Stratum.draw_id == draw_id)
    strata = session.execute(sq).all()
    code_of = {sid: code for sid, code, _ in strata}
    cases = session.execute(
        select(SampleCase.id, SampleCase.stratum_id, SampleCase.release_state, SampleCase.state,
               SampleCase.final_disposition, SampleCase.attempts, SampleCase.replicate,
               SampleCase.is_reserve)
        .where(SampleCase.stratum_id.in_(code_of))).all()
    completed: Counter = Counter()
    open_by: dict[int, list[int]] = defaultdict(lambda: [0] * K)
    open_case: dict[int, tuple[int, int]] = {}
    held: dict[int, dict[int, int]] = defaultdict(Counter)
    for cid, sid, rel, state, final, attempts, replicate, reserve in cases:
        if rel == "released" and state == "final" and final == "1.1":
            completed[sid] += 1
        elif rel == "released" and state != "final" and attempts < K:
            open_by[sid][attempts] += 1
            open_case[cid] = (sid, attempts)
        elif rel == "held" and not reserve:
            held[sid][replicate] += 1
    rows = session.execute(
        select(CallAttempt.case_id, SampleCase.stratum_id, CallAttempt.started_at,
               CallAttempt.outcome, CallAttempt.channel, CallAttempt.ended_at)
        .join(SampleCase, SampleCase.id == CallAttempt.case_id)
        .where(SampleCase.stratum_id.in_(code_of), CallAttempt.outcome.is_not(None),
               CallAttempt.direction == "outbound")
        .order_by(CallAttempt.case_id, CallAttempt.started_at, CallAttempt.id)).all()
    att = defaultdict(lambda: [0] * K)
    con = defaultdict(lambda: [0] * K)
    comp_c: Counter = Counter()
    refusals: Counter = Counter()
    per_day: dict[int, Counter] = defaultdict(Counter)
    seconds = {"ivr": [], "cati": []}
    number: Counter = Counter()
    last_day: dict[int, tuple[int, date]] = {}
    for cid, sid, started, outcome, channel, ended in rows:
        last_day[cid] = (sid, started.astimezone(tz).date())
        k = min(number[cid], K - 1)
        number[cid] += 1
        att[sid][k] += 1
        if calltimes.is_contact(outcome):
            con[sid][k] += 1
            if outcome == "1.1":
                comp_c[sid] += 1
            elif outcome.startswith("2.11"):
                refusals[sid] += 1
        per_day[sid][started.astimezone(tz).date()] += 1
        if ended is not None and channel in seconds:
            seconds[channel].append((ended - started).total_seconds())
    closed_on: dict[int, Counter] = defaultdict(Counter)
    for cid, (sid, day) in last_day.items():
        if cid not in open_case:
            closed_on[sid][day] += 1
    today = now.astimezone(tz).date()
    states = []
    for sid, code, target in strata:
        days = sorted(d for d in per_day[sid] if d < today) or sorted(per_day[sid])
        pace = 0.0
        if days:
            last = days[-1]  # open during that day: open now, or closed by its last attempt then
            in_field = sum(open_by[sid]) + closed_on[sid][last]
            pace = per_day[sid][last] / max(in_field, 1)
        nxt = min(held[sid]) if held[sid] else None
        states.append(StratumState(
            key=code, target=target, completed=completed[sid], open_by_attempts=open_by[sid],
            attempts_by_number=att[sid], contacts_by_number=con[sid],
            completes_from_contacts=comp_c[sid], refusals=refusals[sid], pace=pace,
            held=held[sid][nxt] if nxt is not None else 0))
    units = _unit_states(session, cfg, code_of, open_case, completed_ids={
        cid for cid, sid, rel, state, final, *_ in cases if final == "1.1" and state == "final"})
    mean_s = {ch: (sum(v) / len(v) if v else None) for ch, v in seconds.items()}
    return {"strata": states, "units": units, "attempt_seconds": mean_s}


def _unit_states(session, cfg, code_of, open_case, *, completed_ids) -> list[UnitState]:
    K = cfg.calling.max_attempts
    scale_keys = [str(o.key) for o in cfg.scale.options if o.points is not None] \
        if hasattr(cfg.scale, "options") else None
    assigned = session.execute(
        select(CaseUnit.case_id, CaseUnit.unit_id, Unit.code)
        .join(Unit, Unit.id == CaseUnit.unit_id)
        .join(SampleCase, SampleCase.id == CaseUnit.case_id)
        .where(SampleCase.stratum_id.in_(code_of))).all()
    rq = (select(Answer.unit_id, func.count()).join(SampleCase, SampleCase.id == Answer.case_id)
          .where(SampleCase.stratum_id.in_(code_of), Answer.rating.is_not(None))
          .group_by(Answer.unit_id))
    if scale_keys:
        rq = rq.where(Answer.rating.in_(scale_keys))
    raters = dict(session.execute(rq).all())
    opens: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0] * K))
    done: Counter = Counter()
    ids: dict[str, int] = {}
    for cid, uid, ucode in assigned:
        ids[ucode] = uid
        if cid in open_case:
            sid, k = open_case[cid]
            opens[ucode][code_of[sid]][k] += 1
        elif cid in completed_ids:
            done[ucode] += 1
    out = []
    for ucode, uid in ids.items():
        r = raters.get(uid, 0)
        share = (r + 9) / (done[ucode] + 10)  # smoothed toward 0.9 raters per complete
        out.append(UnitState(key=ucode, min_raters=cfg.campaign.min_raters, raters=r,
                             open_by_stratum={k: list(v) for k, v in opens[ucode].items()},
                             raters_per_complete=min(1.0, share)))
    return out


def field_forecast(session: Session, cfg, *, now: datetime, draw_id: int | None = None,
                   n_sims: int = 1000, level: float = 0.9, seed: int = 0) -> dict:
    """The forecast of every stratum and unit, JSON-ready (what the CLI and dashboard show)."""
    rules = cfg.calling
    state = field_state(session, cfg, now=now, draw_id=draw_id)
    days = days_ahead(rules, now)
    projections = forecast(state["strata"], state["units"], days=days, end_date=rules.end_date,
                           max_attempts=rules.max_attempts, n_sims=n_sims, level=level,
                           prior_strength=rules.learned_prior_strength,
                           rng=np.random.default_rng(seed))
    window_hours = sum(
        sum((datetime.combine(d, w.end) - datetime.combine(d, w.start)).total_seconds()
            for w in rules.windows_on(d)) for d in days if d <= rules.end_date) / 3600
    ivr_s, cati_s = state["attempt_seconds"]["ivr"], state["attempt_seconds"]["cati"]
    held = {s.key: s.held for s in state["strata"]}
    strata, units = [], []
    for p in projections:
        row = p.as_dict()
        row["before_end"] = p.reached or (p.median_date is not None
                                          and p.median_date <= rules.end_date)
        if p.kind == "stratum":
            row["next_replicate_cases"] = held.get(p.key, 0)
            extra = p.extra_attempts
            line_hours = extra * ivr_s / 3600 if extra and ivr_s else None
            row["extra_ivr_line_hours"] = round(line_hours, 1) if line_hours else None
            row["extra_ivr_lines"] = (round(line_hours / window_hours, 2)
                                      if line_hours and window_hours else None)
            row["extra_interviewer_hours"] = (round(extra * cati_s / 3600, 1)
                                              if extra and cati_s else None)
            strata.append(row)
        else:
            units.append(row)
    return {"now": now.isoformat(), "end_date": rules.end_date.isoformat(), "level": level,
            "n_sims": n_sims, "seed": seed, "calling_days_left": sum(d <= rules.end_date
                                                                      for d in days),
            "strata": strata, "units": units}


#: Simulations behind the dashboard's forecast (``field forecast --sims`` default too).
DEFAULT_SIMS = 500
#: The dashboard's forecast is recomputed at most this often, however busy the field.
CACHE_MIN_SECONDS = 300.0
#: ... and at least this often, even when nothing changed (the days ahead move on).
CACHE_MAX_SECONDS = 3600.0


def fingerprint(session: Session, *, draw_id: int | None = None) -> tuple:
    """What the forecast reads, in a few numbers: closed attempts (count, last id, last
    end) and cases (released, final).  Two equal fingerprints give the same forecast
    at the same moment."""
    aq = (select(func.count(CallAttempt.id), func.max(CallAttempt.id),
                 func.max(CallAttempt.ended_at))
          .where(CallAttempt.outcome.is_not(None)))
    cq = select(func.count(SampleCase.id).filter(SampleCase.release_state == "released"),
                func.count(SampleCase.id).filter(SampleCase.state == "final"))
    if draw_id is not None:
        aq = aq.join(SampleCase, SampleCase.id == CallAttempt.case_id).where(
            SampleCase.draw_id == draw_id)
        cq = cq.where(SampleCase.draw_id == draw_id)
    n, last_id, last_end = session.execute(aq).one()
    released, final = session.execute(cq).one()
    return (n, last_id, last_end.isoformat() if last_end else None, released, final)


class ForecastCache:
    """:func:`field_forecast` kept between dashboard loads (one per app).

    A held forecast is served while it is younger than ``min_seconds``; after
    that while the :func:`fingerprint` is unchanged, it is younger than
    ``max_seconds`` and computed on the same local day; else it is recomputed.
    ``now`` is the caller's clock (the app's), so a test clock drives it too.
    The result carries ``as_of`` (when it was computed) and ``cached``.
    """

    def __init__(self, min_seconds: float = CACHE_MIN_SECONDS,
                 max_seconds: float = CACHE_MAX_SECONDS):
        self.min_seconds = min_seconds
        self.max_seconds = max(max_seconds, min_seconds)
        self._lock = threading.Lock()
        self._held: dict[tuple, tuple[datetime, tuple, dict]] = {}
        self.computed = 0  # how many times the forecast was computed (tests, logs)

    def get(self, session: Session, cfg, *, now: datetime, draw_id: int | None = None,
            n_sims: int = DEFAULT_SIMS, level: float = 0.9, seed: int = 0) -> dict:
        key = (draw_id, n_sims, level, seed)
        tz = cfg.calling.tz
        with self._lock:
            held = self._held.get(key)
        if held is not None:
            at, fp, result = held
            age = (now - at).total_seconds()
            fresh = age >= 0 and at.astimezone(tz).date() == now.astimezone(tz).date()
            if fresh and age < self.min_seconds:
                return {**result, "cached": True}
        fp = fingerprint(session, draw_id=draw_id)
        if held is not None and fresh and age < self.max_seconds and fp == held[1]:
            return {**held[2], "cached": True}
        result = field_forecast(session, cfg, now=now, draw_id=draw_id, n_sims=n_sims,
                                level=level, seed=seed)
        result["as_of"] = now.astimezone(tz).isoformat()  # the campaign's local time
        with self._lock:
            self._held[key] = (now, fp, result)
            self.computed += 1
        return {**result, "cached": False}

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


def chart(row: dict, end_date: str, *, width: int = 320, height: int = 120, pad: int = 4) -> dict:
    """SVG geometry of one projection: the band, the median, the target and end-date lines."""
    band = row["band"]
    if not band:
        return {}
    top = max(row["target"], max(b["high"] for b in band)) * 1.05 or 1.0
    n = len(band)
    xs = [pad + (width - 2 * pad) * i / max(n - 1, 1) for i in range(n)]

    def y(v: float) -> float:
        return round(height - pad - (height - 2 * pad) * v / top, 1)

    upper = [f"{x:.1f},{y(b['high'])}" for x, b in zip(xs, band, strict=True)]
    lower = [f"{x:.1f},{y(b['low'])}" for x, b in zip(xs, band, strict=True)]
    end_x = next((x for x, b in zip(xs, band, strict=True) if b["date"] > end_date), None)
    return {"width": width, "height": height,
            "band": " ".join(upper + lower[::-1]),
            "median": " ".join(f"{x:.1f},{y(b['median'])}" for x, b in zip(xs, band, strict=True)),
            "target_y": y(row["target"]), "end_x": round(end_x, 1) if end_x else None,
            "x0": pad, "x1": width - pad}
