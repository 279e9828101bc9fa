"""The ``[calling]`` section: its result object (:class:`CallingRules`) and its checks.

The schedule these rules drive (is an instant allowed, the next allowed one, the
retry spread) lives in :mod:`minping.calling`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from minping import calling
from minping.config.checks import (
    _Check,
    _join,
    _show,
)
from minping.config.model import (
    _CLOCK,
    _SLUG,
    _TIME_RANGE,
    RETRY_OUTCOMES,
    WEEKDAYS,
    Campaign,
    _frozen,
)

#: The ways a retry after no contact is placed (``[calling] retry_method``).
RETRY_METHODS = ("fixed", "learned")


@dataclass(frozen=True)
class TimeWindow:
    """A local-time range ``[start, end)`` within a day."""

    start: time
    end: time

    def __contains__(self, moment: object) -> bool:
        if not isinstance(moment, time):
            return False
        return self.start <= moment.replace(tzinfo=None) < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class CallingRules:
    """When respondents may be called, and how often.

    ``windows`` maps ``date.weekday()`` (Monday = 0) to that day's calling
    windows in the campaign's local time.  No call is placed before
    ``start_date``, after ``end_date`` or on a holiday.
    """

    timezone: str
    windows: Mapping[int, tuple[TimeWindow, ...]]
    holidays: frozenset[date]
    start_date: date
    end_date: date
    max_attempts: int
    retry_delays: Mapping[str, timedelta]
    calls_per_second: float
    max_concurrent_calls: int
    ring_timeout_seconds: int
    call_time_limit_seconds: int

    #: Where the parts of the day begin (``retry_day_parts``), for spreading retries.
    retry_day_parts: tuple[time, ...] = calling.DEFAULT_DAY_PARTS
    #: How a retry after no contact is placed: ``"fixed"`` (:func:`minping.calling.spread_retry`)
    #: or ``"learned"`` (:func:`minping.calling.learned_retry` with :mod:`minping.calltimes`).
    retry_method: str = "fixed"
    #: Beta-binomial prior strength, in attempts, of the learned contact chances.
    learned_prior_strength: float = 20.0
    #: How far past the retry delay a learned retry may look for a better part of the day.
    learned_horizon_days: float = 2.0

    @property
    def tz(self) -> ZoneInfo:
        """The campaign's time zone."""
        return ZoneInfo(self.timezone)

    # The schedule itself lives in minping.calling; these keep the rules' own API.
    def windows_on(self, day: date) -> tuple[TimeWindow, ...]:
        """The calling windows of a local calendar day (empty on closed days)."""
        return calling.windows_on(self, day)

    def is_callable(self, when: datetime) -> bool:
        """Whether a call may be placed at ``when`` (:func:`minping.calling.is_allowed`)."""
        return calling.is_allowed(self, when)

    def next_callable(self, after: datetime) -> datetime | None:
        """The earliest callable moment at or after ``after`` (:func:`minping.calling.next_allowed`)."""
        return calling.next_allowed(self, after)

    def window_end(self, when: datetime) -> datetime | None:
        """When the window containing ``when`` closes; ``None`` outside windows."""
        return calling.window_end(self, when)

    def retry_delay(self, outcome: str) -> timedelta:
        """The wait before the next attempt after an attempt ending in ``outcome``."""
        try:
            return self.retry_delays[outcome]
        except KeyError:
            raise KeyError(
                f"no retry delay for outcome {outcome!r} "
                f"(configured: {', '.join(self.retry_delays)})"
            ) from None

    def next_attempt(self, after: datetime, outcome: str) -> datetime | None:
        """The earliest callable moment once the retry delay of ``outcome`` has passed."""
        return calling.next_attempt(self, after, outcome)


def _time_windows(check: _Check, ranges: list, path: str) -> tuple[TimeWindow, ...]:
    windows: list[tuple[str, TimeWindow]] = []
    for i, text in enumerate(ranges):
        wp = f"{path}[{i}]"
        match = _TIME_RANGE.match(text) if isinstance(text, str) else None
        if match is None:
            check.add(wp, f"{_show(text)} is not a time range HH:MM-HH:MM")
            continue
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        window = TimeWindow(time(h1, m1), time(h2, m2))
        if window.end <= window.start:
            check.add(wp, f"{_show(text)} does not end after it starts")
            continue
        windows.append((wp, window))
    windows.sort(key=lambda pw: pw[1].start)
    for (_, before), (wp, after) in zip(windows, windows[1:], strict=False):
        if after.start < before.end:
            check.add(wp, f'"{after}" overlaps "{before}"')
    return tuple(w for _, w in windows)


def _calling(
    check: _Check, data: dict, facts: dict[str, Any], campaign: Campaign | None
) -> CallingRules | None:
    t = check.table(data, "calling", "")
    if t is None:
        return None
    p = "calling"
    mark = check.mark()
    check.unknown(
        t,
        p,
        (
            "timezone",
            "windows",
            "holidays",
            "max_attempts",
            "retry_delay_minutes",
            "calls_per_second",
            "max_concurrent_calls",
            "ring_timeout_seconds",
            "call_time_limit_seconds",
            "retry_day_parts",
            "retry_method",
            "learned_prior_strength",
            "learned_horizon_days",
        ),
    )
    tz_name = check.text(t, "timezone", p)
    if tz_name is not None:
        try:
            ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            check.add(
                f"{p}.timezone",
                f"{_show(tz_name)} is not a known time zone (IANA name, e.g. Asia/Shanghai)",
            )

    windows: dict[int, tuple[TimeWindow, ...]] = {}
    wt = check.table(t, "windows", p)
    if wt is not None:
        check.unknown(wt, f"{p}.windows", WEEKDAYS)
        for index, day in enumerate(WEEKDAYS):
            ranges = check.array(wt, day, f"{p}.windows")
            if ranges is not None:
                windows[index] = _time_windows(check, ranges, f"{p}.windows.{day}")
        if all(not w for w in windows.values()) and len(windows) == len(WEEKDAYS):
            check.add(f"{p}.windows", "no calling window on any day")

    holidays: set[date] = set()
    for i, value in enumerate(check.array(t, "holidays", p) or ()):
        hp = f"{p}.holidays[{i}]"
        day = check.day_value(value, hp)
        if day is None:
            continue
        if day in holidays:
            check.add(hp, f"{day.isoformat()} is listed twice")
        first, last = facts.get("start_date"), facts.get("end_date")
        if first is not None and last is not None and not first <= day <= last:
            check.add(
                hp,
                f"{day.isoformat()} is outside the campaign "
                f"({first.isoformat()} to {last.isoformat()})",
            )
        holidays.add(day)

    max_attempts = check.integer(t, "max_attempts", p, lo=1, hi=50)
    delays: dict[str, timedelta] = {}
    dt = check.table(t, "retry_delay_minutes", p)
    if dt is not None:
        dp = f"{p}.retry_delay_minutes"
        for outcome in RETRY_OUTCOMES:
            if outcome not in dt:
                check.add(_join(dp, outcome), "missing required key")
        for outcome in dt:
            if not _SLUG.match(outcome):
                check.add(_join(dp, outcome), "outcome names are lowercase words joined by hyphens")
                continue
            minutes = check.number(dt, outcome, dp, lo=0)
            if minutes is not None:
                delays[outcome] = timedelta(minutes=minutes)
    rate = check.number(t, "calls_per_second", p, lo=0, hi=100, lo_open=True)
    concurrent = check.integer(t, "max_concurrent_calls", p, lo=1)
    ring = check.integer(t, "ring_timeout_seconds", p, lo=5, hi=600)
    limit = check.integer(t, "call_time_limit_seconds", p, lo=30, hi=86400)
    day_parts = calling.DEFAULT_DAY_PARTS
    if "retry_day_parts" in t:
        day_parts = _day_parts(check, check.array(t, "retry_day_parts", p), f"{p}.retry_day_parts")
    method = "fixed"
    if "retry_method" in t:
        method = check.text(t, "retry_method", p)
        if method is not None and method not in RETRY_METHODS:
            check.add(f"{p}.retry_method", f"{_show(method)} is not one of "
                                           + ", ".join(f'"{m}"' for m in RETRY_METHODS))
    strength = 20.0
    if "learned_prior_strength" in t:
        strength = check.number(t, "learned_prior_strength", p, lo=0, hi=1e6, lo_open=True)
    horizon = 2.0
    if "learned_horizon_days" in t:
        horizon = check.number(t, "learned_horizon_days", p, lo=0, hi=14)
    if not check.clean_since(mark) or campaign is None:
        return None
    return CallingRules(
        timezone=tz_name,
        windows=_frozen(windows),
        holidays=frozenset(holidays),
        start_date=campaign.start_date,
        end_date=campaign.end_date,
        max_attempts=max_attempts,
        retry_delays=_frozen(delays),
        calls_per_second=rate,
        max_concurrent_calls=concurrent,
        ring_timeout_seconds=ring,
        call_time_limit_seconds=limit,
        retry_day_parts=day_parts,
        retry_method=method,
        learned_prior_strength=float(strength),
        learned_horizon_days=float(horizon),
    )


def _day_parts(check: _Check, values: list | None, path: str) -> tuple[time, ...]:
    """``["12:00", "17:00"]``: where the afternoon and the evening begin (strictly increasing)."""
    parts: list[time] = []
    for i, text in enumerate(values or ()):
        match = _CLOCK.match(text) if isinstance(text, str) else None
        if match is None:
            check.add(f"{path}[{i}]", f"{_show(text)} is not a time of day HH:MM")
            continue
        moment = time(int(match.group(1)), int(match.group(2)))
        if moment == time(0, 0) or (parts and moment <= parts[-1]):
            check.add(f"{path}[{i}]", f"{_show(text)} must come after midnight and after "
                                      "the previous boundary")
            continue
        parts.append(moment)
    return tuple(parts)
