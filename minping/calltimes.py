"""Call times learned from the field: each stratum's chance of contact by weekday and part of day.

What is estimated
-----------------
For a stratum ``h``, a weekday ``w`` (Monday = 0) and a part of the day ``d``
(:func:`minping.calling.day_part`, cut at ``[calling] retry_day_parts``), the
chance ``p[h, w, d]`` that an attempt placed then reaches a person (its AAPOR
code is an interview, a partial, a refusal, another eligible non-interview or
an appointment: categories I, P, R, O and 2.21x).

The prior (beta-binomial smoothing)
-----------------------------------
Attempts are Bernoulli trials with a Beta prior on their chance, nested so that
a thin cell borrows from the level above it, each level's prior mean being the
posterior mean of the level above and its weight ``s`` attempts
(``[calling] learned_prior_strength``, default 20):

1. all attempts: ``m0 = (c + 1) / (n + 2)`` (uniform prior);
2. part of day ``d``, all strata and weekdays: ``m1 = (c + s m0) / (n + s)``;
3. stratum ``h`` in part ``d``, all weekdays: ``m2 = (c + s m1) / (n + s)``;
4. stratum ``h``, weekday ``w``, part ``d``: ``p = (c + s m2) / (n + s)``;

``c`` contacts among ``n`` attempts at that level.  Each is the posterior mean
of ``Beta(s m + c, s (1 - m) + n - c)``, so with no attempts a cell is its
parent, and after a few dozen attempts its own rate dominates: the early days
do not over-react.

The case level
--------------
A case's own misses move its posterior (:meth:`ContactRates.for_case`): per part
of the day, ``p CASE_STRENGTH / (CASE_STRENGTH + misses there)``; as a whole,
the chance its line is live at all (:meth:`ContactRates.reachable`, a dead
line's prior chance :data:`DEAD_SHARE`).  Slots are compared on the optimistic
chance (:meth:`ContactRates.optimistic`, ``p`` plus :data:`EXPLORE_Z` posterior
sd of the stratum's part of the day), so a part hardly tried is explored.

How it is used
--------------
:func:`retry_at` is the one place a retry after no contact is timed, for IVR
(``ivr/callstate.py``) and CATI (``cati/service.py``): with ``retry_method =
"fixed"`` the spread over parts of the day not tried yet
(:func:`minping.calling.spread_retry`), with ``"learned"`` :func:`next_try`:
the allowed piece of a window with the best case chance within
``learned_horizon_days`` after the delay (:func:`minping.calling.best_slot`,
waiting discounted by :func:`waiting_cost`), a likely-dead line parked on the
last calling day.  A never-tried case's first attempt: :func:`first_attempt_at`,
which the dialer asks through :func:`defer_first_attempt`.  All only return
instants :func:`minping.calling.is_allowed` accepts; caps stay with
:func:`minping.cases.finish_attempt`.

The estimates are read from the attempts at most every :data:`CACHE_SECONDS`
per process (:class:`ContactRatesCache`), so a webhook does not aggregate the
attempt history on every call.
"""

from __future__ import annotations

import threading
import time as _time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from minping import calling
from minping.cases import RETRY_OUTCOME, release_hold
from minping.models import CallAttempt, SampleCase
from scoring.dispositions import disposition

__all__ = ["CACHE_SECONDS", "ContactRates", "ContactRatesCache", "cati_retry_at",
           "defer_first_attempt", "estimate", "first_attempt_at", "is_contact", "load_contact_rates", "next_try",
           "retry_after", "retry_at"]

#: Retry outcomes (``cases.RETRY_OUTCOME`` values) after which nobody was reached.
NO_CONTACT_OUTCOMES = ("busy", "no-answer", "machine")

#: How long a process keeps the learned contact chances before reading the attempts again.
CACHE_SECONDS = 300.0
#: Weight, in attempts, of the stratum's chance as the prior of one case's own chance.
CASE_STRENGTH = 20.0
#: Prior share of lines that never reach a person (no answer ever, machines, out of service).
DEAD_SHARE = 0.15
#: Standard deviations added to a chance when slots are compared (exploration).
EXPLORE_Z = 1.0
#: Cost of waiting, per day, when a retry is placed (the score's discount).
DAILY_DISCOUNT = 0.02
#: A case whose best expected contact within the horizon is below this is parked.
PARK_BELOW = 0.05
_CONTACT_CATEGORIES = ("I", "P", "R", "O")


def is_contact(code: str | None) -> bool:
    """Whether an attempt's AAPOR code says a person was reached."""
    if not code:
        return False
    try:
        d = disposition(code)
    except Exception:  # noqa: BLE001 - an unknown code is no contact
        return False
    return d.category in _CONTACT_CATEGORIES or d.code.startswith("2.21")


def _mean(c: float, n: float, prior: float, strength: float) -> float:
    return (c + strength * prior) / (n + strength)


@dataclass(frozen=True)
class ContactRates:
    """Contact counts by level and the smoothed chances they give (see the module docstring)."""

    prior_strength: float
    overall: tuple[int, int] = (0, 0)
    by_part: dict = field(default_factory=dict)          # part -> (contacts, attempts)
    by_key_part: dict = field(default_factory=dict)      # (key, part) -> (c, n)
    by_cell: dict = field(default_factory=dict)          # (key, weekday, part) -> (c, n)

    def p(self, key, weekday: int, part: int) -> float:
        """The smoothed chance of contact for ``key`` (a stratum) at ``weekday``, ``part``."""
        s = self.prior_strength
        c, n = self.overall
        m = (c + 1.0) / (n + 2.0)
        c, n = self.by_part.get(part, (0, 0))
        m = _mean(c, n, m, s)
        c, n = self.by_key_part.get((key, part), (0, 0))
        m = _mean(c, n, m, s)
        c, n = self.by_cell.get((key, weekday, part), (0, 0))
        return _mean(c, n, m, s)

    def optimistic(self, key, weekday: int, part: int, z: float | None = None) -> float:
        """:meth:`p` plus ``z`` posterior standard deviations of the stratum's part of the day.

        The sd is that of ``Beta`` with ``n + s`` pseudo-attempts, ``n`` the
        stratum's attempts in that part of the day (all weekdays): a part hardly
        tried yet gets the benefit of the doubt, so every stratum is tried in every
        part early instead of inheriting the other strata's verdict (an upper
        confidence bound; ``z`` defaults to :data:`EXPLORE_Z`).
        """
        z = EXPLORE_Z if z is None else z
        p = self.p(key, weekday, part)
        n = self.by_key_part.get((key, part), (0, 0))[1]
        return min(1.0, p + z * (p * (1.0 - p) / (n + self.prior_strength + 1.0)) ** 0.5)

    def for_key(self, key, misses=None, *, case_strength: float = CASE_STRENGTH):
        """``p_contact(weekday, part)`` for one case of stratum ``key`` (what
        :func:`calling.learned_retry` takes).

        ``misses`` maps a part of the day to the case's own attempts there without
        contact: the case's chance is the stratum's shrunk by them,
        ``case_strength p / (case_strength + misses)`` (the Beta posterior mean
        with the stratum's chance as prior mean and ``case_strength`` its weight).
        """
        misses = misses or {}
        return lambda weekday, part: (self.p(key, weekday, part) * case_strength
                                      / (case_strength + misses.get(part, 0)))

    def reachable(self, key, missed: Iterable[tuple[int, int]], *,
                  dead_share: float | None = None) -> float:
        """The posterior chance that the case's line reaches a person at all.

        A line is dead (never answered, a machine, out of service) with prior
        chance ``dead_share``; a live one misses an attempt at ``(weekday, part)``
        with chance ``1 - p(key, weekday, part)``.  Bayes over the case's
        ``missed`` attempts: ``(1 - d) q / ((1 - d) q + d)``, ``q`` the product of
        the misses' chances.
        """
        dead_share = DEAD_SHARE if dead_share is None else dead_share
        q = 1.0
        for weekday, part in missed:
            q *= 1.0 - self.p(key, weekday, part)
        live = (1.0 - dead_share) * q
        return live / (live + dead_share)

    def for_case(self, key, missed: Iterable[tuple[int, int]] = (), *,
                 case_strength: float | None = None, dead_share: float | None = None):
        """``p_contact(weekday, part)`` of one case: :meth:`for_key` (its misses by part
        of the day) times :meth:`reachable` (its misses at all)."""
        missed = list(missed)
        by_part: dict[int, int] = {}
        for _, part in missed:
            by_part[part] = by_part.get(part, 0) + 1
        alive = self.reachable(key, missed, dead_share=dead_share)
        strength = CASE_STRENGTH if case_strength is None else case_strength
        return lambda weekday, part: (alive * self.optimistic(key, weekday, part) * strength
                                      / (strength + by_part.get(part, 0)))

    def table(self, key, parts: int) -> list[list[float]]:
        """7 x ``parts`` smoothed chances of one stratum (weekday rows, part columns)."""
        return [[self.p(key, w, d) for d in range(parts)] for w in range(7)]


def estimate(observations: Iterable[tuple[object, int, int, bool]], *,
             prior_strength: float = 20.0) -> ContactRates:
    """Contact counts from ``(key, weekday, part, contacted)`` observations, one per attempt."""
    if not prior_strength > 0:
        raise ValueError(f"prior_strength must be > 0, got {prior_strength!r}")
    total = [0, 0]
    levels: tuple[dict, dict, dict] = (defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0]),
                                       defaultdict(lambda: [0, 0]))
    for key, weekday, part, contacted in observations:
        hit = 1 if contacted else 0
        total[0] += hit
        total[1] += 1
        for level, k in zip(levels, (part, (key, part), (key, weekday, part)), strict=True):
            level[k][0] += hit
            level[k][1] += 1
    frozen = [{k: (v[0], v[1]) for k, v in level.items()} for level in levels]
    return ContactRates(prior_strength=float(prior_strength), overall=(total[0], total[1]),
                        by_part=frozen[0], by_key_part=frozen[1], by_cell=frozen[2])


def load_contact_rates(session: Session, rules, *, draw_id: int | None = None) -> ContactRates:
    """The contact chances learned from every closed outbound attempt, keyed by stratum id."""
    q = (select(SampleCase.stratum_id, CallAttempt.started_at, CallAttempt.outcome)
         .join(SampleCase, SampleCase.id == CallAttempt.case_id)
         .where(CallAttempt.outcome.is_not(None), CallAttempt.direction == "outbound"))
    if draw_id is not None:
        q = q.where(SampleCase.draw_id == draw_id)
    tz = rules.tz

    def observations():
        for stratum_id, started, outcome in session.execute(q):
            local = started.astimezone(tz)
            yield stratum_id, local.weekday(), calling.day_part(rules, started), is_contact(outcome)

    return estimate(observations(), prior_strength=rules.learned_prior_strength)


class ContactRatesCache:
    """One :class:`ContactRates` per database, read again after ``seconds``."""

    def __init__(self, seconds: float = CACHE_SECONDS):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._held: dict[object, tuple[float, ContactRates]] = {}

    @staticmethod
    def _key(url, rules) -> tuple:
        return (url.render_as_string(hide_password=False) if hasattr(url, "render_as_string")
                else str(url), rules.learned_prior_strength)

    def put(self, url, rules, rates: ContactRates) -> None:
        """Hold ``rates`` for the database at ``url`` (tests; a supervisor's override)."""
        with self._lock:
            self._held[self._key(url, rules)] = (_time.monotonic(), rates)

    def get(self, session: Session, rules) -> ContactRates:
        key = self._key(session.get_bind().url, rules)
        now = _time.monotonic()
        with self._lock:
            held = self._held.get(key)
        if held is not None and now - held[0] < self.seconds:
            return held[1]
        rates = load_contact_rates(session, rules)
        with self._lock:
            self._held[key] = (now, rates)
        return rates

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


#: The process's cache (tests clear it, or pass their own ``rates``).
CACHE = ContactRatesCache()


def waiting_cost(rules, after: datetime, attempts_left: int | None) -> float:
    """The score's discount per day waited: :data:`DAILY_DISCOUNT`, more when time is short.

    A case with ``k`` attempts left needs about ``ceil(k / 2)`` calling days to
    use them in its two best parts of the day; with only ``D`` fewer calling days
    left from ``after`` to the end date, waiting a day costs ``1 - D / ceil(k / 2)``.
    """
    if not attempts_left:
        return DAILY_DISCOUNT
    need = -(-attempts_left // 2)
    day = after.astimezone(rules.tz).date()
    left = 0
    while day <= rules.end_date and left < need:
        left += bool(calling.windows_on(rules, day))
        day += timedelta(days=1)
    return max(DAILY_DISCOUNT, 1.0 - left / need)


def first_attempt_at(rules, rates: ContactRates, key, *, now: datetime) -> datetime | None:
    """When to place a case's FIRST attempt under ``retry_method = "learned"``.

    The best piece of a calling window from ``now`` within the horizon
    (:func:`calling.best_slot`) by the stratum's chances: ``now`` (or the next
    window) while nothing is known, later when the stratum is clearly more
    reachable in another part of the day.  The dialer asks it for a due case
    that was never tried and puts the case back until then when it is later.
    """
    return calling.best_slot(rules, after=now, p_contact=rates.for_case(key),
                             horizon_days=rules.learned_horizon_days,
                             daily_discount=waiting_cost(rules, now, rules.max_attempts))[0]


def defer_first_attempt(session: Session, rules, case: SampleCase, *, now: datetime
                        ) -> datetime | None:
    """Put a held, never-tried case back until its stratum's best time (the dialer's call).

    Under ``retry_method = "learned"``, when :func:`first_attempt_at` (with the
    process cache's chances) is later than ``now``: the case is due then
    (``next_attempt_at``), its hold is released and that time returned.  ``None``
    (dial it now) with the fixed method, for a case tried before, or when now is best.
    """
    if getattr(rules, "retry_method", "fixed") != "learned" or case.attempts:
        return None
    when = first_attempt_at(rules, CACHE.get(session, rules), case.stratum_id, now=now)
    if when is None or when <= now:
        return None
    case.next_attempt_at = when
    release_hold(session, case)
    return when


def next_try(rules, rates: ContactRates, key, missed: list[tuple[int, int]], *, now: datetime,
             outcome: str, attempts_left: int | None = None) -> datetime | None:
    """The learned retry of a case of stratum ``key`` after an attempt without contact.

    ``missed`` are the case's attempts without contact as (weekday, part of the
    day).  After the outcome's delay, the best piece within the horizon by the
    case's chances (:meth:`ContactRates.for_case`); a case whose best chance is
    below :data:`PARK_BELOW` (its line is probably dead) is parked at the best
    piece of the campaign's last calling day, keeping its remaining attempts
    for when the live cases are done.  Waiting costs :func:`waiting_cost` a day
    (``attempts_left``: the case's attempts still allowed).  Always an allowed
    instant, or ``None``.
    """
    p_contact = rates.for_case(key, missed)
    due = calling.next_attempt(rules, now, outcome)
    if due is None:
        return None
    best, score = calling.best_slot(rules, after=due, p_contact=p_contact,
                                    horizon_days=rules.learned_horizon_days,
                                    daily_discount=waiting_cost(rules, due, attempts_left))
    if best is None or score >= PARK_BELOW:
        return best
    last = calling.last_calling_day(rules)
    if last is None or best.astimezone(rules.tz).date() >= last:
        return best
    park = datetime.combine(last, datetime.min.time(), tzinfo=rules.tz)
    moment, _ = calling.best_slot(rules, after=park, p_contact=p_contact, horizon_days=1.0,
                                  daily_discount=0.0)
    return moment or best


def retry_at(session: Session, rules, case: SampleCase, *, now: datetime, outcome: str,
             rates: ContactRates | None = None) -> datetime | None:
    """When to try ``case`` again after an attempt without contact ending in ``outcome``.

    ``rules.retry_method`` decides: ``"fixed"`` spreads over the parts of the
    day not yet tried without contact, ``"learned"`` is :func:`next_try` with
    the chances of the case's stratum (``rates``, or the process cache).
    ``None`` when the field period has no window left.  :func:`retry_after`
    with the case's attempts nobody answered read here.
    """
    tried = session.execute(select(CallAttempt.started_at, CallAttempt.outcome)
                            .where(CallAttempt.case_id == case.id,
                                   CallAttempt.answered_at.is_(None))).all()
    return retry_after(session, rules, stratum_id=case.stratum_id, attempts=case.attempts,
                       tried=tried, now=now, outcome=outcome, rates=rates)


def retry_after(session: Session, rules, *, stratum_id, attempts: int | None,
                tried: Iterable[tuple[datetime, str | None]], now: datetime, outcome: str,
                rates: ContactRates | None = None) -> datetime | None:
    """:func:`retry_at` from what was read: ``tried`` = (started, outcome) of the case's
    attempts nobody answered (the IVR's end of a call reads them with the rest, in one
    statement); ``session`` only for the process cache of the learned chances."""
    missed: list[tuple[int, int]] = []  # (weekday, part) tried without anybody answering
    for started, code in tried:
        if is_contact(code):  # a CATI attempt need not be marked answered
            continue
        missed.append((started.astimezone(rules.tz).weekday(), calling.day_part(rules, started)))
    if getattr(rules, "retry_method", "fixed") == "learned":
        rates = rates if rates is not None else CACHE.get(session, rules)
        return next_try(rules, rates, stratum_id, missed, now=now, outcome=outcome,
                        attempts_left=max(rules.max_attempts - (attempts or 0), 0))
    return calling.spread_retry(rules, now=now, outcome=outcome, tried={d for _, d in missed})


def cati_retry_at(session: Session, rules, case: SampleCase, *, code: str, now: datetime
                  ) -> datetime | None:
    """The call-back time of a CATI attempt without contact under ``retry_method = "learned"``.

    ``None`` (the outcome's delay to the next allowed instant, as before) with
    the fixed method, after a contact, or for a code that is not retried.
    """
    outcome = RETRY_OUTCOME.get(code)
    if getattr(rules, "retry_method", "fixed") != "learned" or outcome not in NO_CONTACT_OUTCOMES:
        return None
    return retry_at(session, rules, case, now=now, outcome=outcome)
