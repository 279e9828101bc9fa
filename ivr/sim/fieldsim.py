"""A discrete-event simulation of an IVR field period driven by the real calling rules.

The webhook simulator (:mod:`ivr.fieldwork`) plays every call through the app;
that is faithful but takes minutes per field period.  To compare retry methods
over many seeded runs this module simulates the dialer's schedule instead, with
the same rule functions production uses:

* a call is placed only when :func:`minping.calling.is_allowed` says so (else the
  dialer waits for :func:`minping.calling.next_allowed`), never above
  ``calls_per_second`` nor ``max_concurrent_calls`` (each call holds a line
  for its ring or interview time);
* a retry after no contact is timed by :func:`minping.calling.spread_retry`
  (``fixed``) or :func:`minping.calltimes.next_try` with the chances of
  :func:`minping.calltimes.estimate` over the attempts so far, re-estimated
  every :data:`minping.calltimes.CACHE_SECONDS` of simulated time as the
  process cache does (``learned``); a first attempt is placed by
  :func:`minping.calltimes.first_attempt_at` (what the dialer asks); other
  outcomes by :func:`minping.calling.next_attempt`;
* a case stops at ``max_attempts``.

Respondents follow :mod:`ivr.sim.availability` (group and town profiles by
local hour and weekday) times a personal propensity; some lines never answer,
are answering machines or do not work, as in :class:`~ivr.sim.behaviour.BehaviourModel`.
A person reached refuses with ``p_refuse``, else completes with ``p_complete``
(else breaks off and is retried).  Everything is drawn from one seeded
``numpy.random.Generator``.

:func:`run` returns per-attempt and per-case records; :func:`snapshot` turns the
records at a moment into the forecast's inputs (:mod:`scoring.forecast`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import numpy as np

from ivr.sim.availability import answer_by_hour
from minping import calling, calltimes

__all__ = ["FieldCase", "FieldResult", "calling_days", "covers", "make_cases", "reached_on", "run",
           "snapshot"]

RING_SECONDS = 30.0
INTERVIEW_SECONDS = 240.0
REFUSAL_SECONDS = 25.0
MACHINE_SECONDS = 20.0


@dataclass
class FieldCase:
    """One simulated case and what happened to it."""

    case_id: int
    stratum: str
    group: str
    town: str
    line: str                       # human, never-answers, machine, non-working
    propensity: float
    p_refuse: float
    p_complete: float
    attempts: int = 0
    final: str | None = None        # "1.1", "2.11" (refusal), "3.13" (exhausted), "4.3"
    final_at: datetime | None = None
    tried_parts: dict = field(default_factory=dict)   # part -> attempts without contact
    missed: list = field(default_factory=list)        # (weekday, part) of attempts without contact


@dataclass
class FieldResult:
    cases: list[FieldCase]
    attempts: list[tuple[int, datetime, bool, str]]   # case id, start, contact, code
    method: str
    end: datetime

    def completes(self, by: datetime | None = None) -> int:
        return sum(c.final == "1.1" and (by is None or c.final_at <= by) for c in self.cases)

    def attempts_per_complete(self) -> float:
        done = self.completes()
        return len(self.attempts) / done if done else float("inf")


def make_cases(strata: dict[str, tuple[str, str, int]], *, rng: np.random.Generator
               ) -> list[FieldCase]:
    """``strata``: code -> (group, town, cases); line kinds and propensities drawn from ``rng``."""
    out = []
    for code, (group, town, n) in strata.items():
        for _ in range(n):
            u = rng.random()
            line = ("non-working" if u < 0.04 else "never-answers" if u < 0.12
                    else "machine" if u < 0.18 else "human")
            out.append(FieldCase(len(out) + 1, code, group, town, line,
                                 propensity=float(rng.uniform(0.6, 1.0)),
                                 p_refuse=0.12, p_complete=0.9))
    return out


def run(rules, cases: list[FieldCase], *, start: datetime, days: int, rng: np.random.Generator,
        method: str = "fixed", place_first: bool = True) -> FieldResult:
    """Dial ``cases`` from ``start`` for ``days`` under ``rules`` with retry ``method``.

    ``place_first=False`` dials every first attempt as soon as it is due even
    with the learned method (a dialer that does not ask
    :func:`minping.calltimes.defer_first_attempt`).
    """
    rules = replace(rules, retry_method=method)
    cases = [replace(c, tried_parts={}, missed=[]) for c in cases]
    by_id = {c.case_id: c for c in cases}
    end = start + timedelta(days=days)
    tz = rules.tz
    queue: list[tuple[datetime, int]] = [(start, c.case_id) for c in cases]
    heapq.heapify(queue)
    lines: list[datetime] = []          # when each busy line frees up
    attempts: list[tuple[int, datetime, bool, str]] = []
    observations: list[tuple[str, int, int, bool]] = []
    rates = calltimes.estimate((), prior_strength=rules.learned_prior_strength)
    rates_at = start
    refresh = timedelta(seconds=calltimes.CACHE_SECONDS)
    gap = timedelta(seconds=1.0 / rules.calls_per_second)
    now = start
    while queue:
        due, cid = heapq.heappop(queue)
        now = max(now, due)
        while lines and lines[0] <= now:
            heapq.heappop(lines)
        if len(lines) >= rules.max_concurrent_calls:
            now = heapq.heappop(lines)
        if not calling.is_allowed(rules, now):
            nxt = calling.next_allowed(rules, now)
            if nxt is None or nxt >= end:
                heapq.heappush(queue, (due, cid))
                break
            heapq.heappush(queue, (nxt, cid))
            continue
        if now >= end:
            heapq.heappush(queue, (due, cid))
            break
        case = by_id[cid]
        if method == "learned":
            if now - rates_at >= refresh:
                rates = calltimes.estimate(observations, prior_strength=rules.learned_prior_strength)
                rates_at = now
            if place_first and case.attempts == 0:  # the dialer's first attempt: at the stratum's best time
                when = calltimes.first_attempt_at(rules, rates, case.stratum, now=now)
                if when is not None and when > now:
                    heapq.heappush(queue, (when, cid))
                    continue
        case.attempts += 1
        local = now.astimezone(tz)
        part = calling.day_part(rules, now)
        contact, code, hold = _attempt(case, local, rng)
        attempts.append((cid, now, contact, code))
        observations.append((case.stratum, local.weekday(), part, contact))
        heapq.heappush(lines, now + timedelta(seconds=hold))
        if code in ("1.1", "2.11", "4.3"):
            case.final, case.final_at = code, now
        elif case.attempts >= rules.max_attempts:
            case.final, case.final_at = "3.13", now
        else:
            outcome = {"3.13": "no-answer", "3.14": "machine", "2.12": "break-off"}[code]
            if not contact:
                case.tried_parts[part] = case.tried_parts.get(part, 0) + 1
                case.missed.append((local.weekday(), part))
            if outcome == "break-off":
                nxt = calling.next_attempt(rules, now, outcome)
            elif method == "learned":
                nxt = calltimes.next_try(rules, rates, case.stratum, case.missed, now=now,
                                         outcome=outcome,
                                         attempts_left=rules.max_attempts - case.attempts)
            else:
                nxt = calling.spread_retry(rules, now=now, outcome=outcome,
                                           tried=set(case.tried_parts))
            if nxt is not None and nxt < end:
                heapq.heappush(queue, (nxt, cid))
        now = now + gap
    return FieldResult(cases, attempts, method, end)


def _attempt(case: FieldCase, local: datetime, rng: np.random.Generator
             ) -> tuple[bool, str, float]:
    """(contact, AAPOR code, seconds the line is held) of one attempt."""
    if case.line == "non-working":
        return False, "4.3", 5.0
    if case.line == "never-answers":
        return False, "3.13", RING_SECONDS
    if case.line == "machine":
        return False, "3.14", MACHINE_SECONDS
    p = answer_by_hour(case.group, case.town, local.weekday())[local.hour] * case.propensity
    if rng.random() >= p:
        return False, "3.13", RING_SECONDS
    if rng.random() < case.p_refuse:
        return True, "2.11", REFUSAL_SECONDS
    if rng.random() < case.p_complete:
        return True, "1.1", INTERVIEW_SECONDS
    return True, "2.12", INTERVIEW_SECONDS / 3


def calling_days(rules, first: date, last: date) -> list[date]:
    """The local dates from ``first`` to ``last`` with a calling window."""
    out, day = [], first
    while day <= last:
        if calling.windows_on(rules, day):
            out.append(day)
        day += timedelta(days=1)
    return out


def snapshot(result: FieldResult, rules, *, at: datetime, targets: dict[str, int]) -> list:
    """The forecast's inputs (:class:`scoring.forecast.StratumState`) as the field stood at ``at``."""
    from scoring.forecast import StratumState

    K = rules.max_attempts
    tz = rules.tz
    by_id = {c.case_id: c for c in result.cases}
    number: dict[int, int] = {}
    att: dict[str, list[int]] = {s: [0] * K for s in targets}
    con: dict[str, list[int]] = {s: [0] * K for s in targets}
    comp = dict.fromkeys(targets, 0)
    ref = dict.fromkeys(targets, 0)
    per_day: dict[str, dict] = {s: {} for s in targets}
    last_day: dict[int, date] = {}
    for cid, started, contact, code in result.attempts:
        if started >= at:
            break
        s = by_id[cid].stratum
        k = min(number.get(cid, 0), K - 1)
        number[cid] = number.get(cid, 0) + 1
        att[s][k] += 1
        day = started.astimezone(tz).date()
        per_day[s][day] = per_day[s].get(day, 0) + 1
        last_day[cid] = day
        if contact:
            con[s][k] += 1
            comp[s] += code == "1.1"
            ref[s] += code == "2.11"
    out = []
    for s, target in targets.items():
        members = [c for c in result.cases if c.stratum == s]
        done = sum(c.final == "1.1" and c.final_at < at for c in members)
        open_by = [0] * K
        closed_on: dict[date, int] = {}
        for c in members:
            if c.final is not None and c.final_at < at:
                d = last_day.get(c.case_id)
                closed_on[d] = closed_on.get(d, 0) + 1
            else:
                open_by[min(number.get(c.case_id, 0), K - 1)] += 1
        pace = 0.0
        if per_day[s]:
            last = max(per_day[s])
            pace = per_day[s][last] / max(sum(open_by) + closed_on.get(last, 0), 1)
        out.append(StratumState(key=s, target=target, completed=done, open_by_attempts=open_by,
                                attempts_by_number=att[s], contacts_by_number=con[s],
                                completes_from_contacts=comp[s], refusals=ref[s], pace=pace))
    return out


def reached_on(result: FieldResult, rules, stratum: str, target: int) -> date | None:
    """The local date ``stratum`` reached ``target`` completes (None: not in the period)."""
    times = sorted(c.final_at for c in result.cases if c.stratum == stratum and c.final == "1.1")
    return times[target - 1].astimezone(rules.tz).date() if len(times) >= target else None


def covers(projection, actual: date | None) -> bool:
    """Whether the day a target was actually reached lies in the projection's interval.

    An open end (``None``: after the last day projected) covers a target not
    reached in the period; a target reached already needs no interval.
    """
    if projection.reached:
        return True
    low, high = projection.low_date, projection.high_date
    if actual is None:
        return high is None
    return (low is None or actual >= low) and (high is None or actual <= high)
