"""The calling schedule: when a respondent may be called, and when to try again.

The one home of the calling rules (surveda's ``Ask.Schedule``): the weekday
windows, the holidays and the campaign dates, the retry delays and the parts of
the day a retry is spread over all come from the campaign's ``[calling]`` table
(:class:`minping.config.CallingRules`); every channel asks this module.

- :func:`is_allowed` -- may a call be placed at this instant?
- :func:`next_allowed` -- the first allowed instant at or after a moment.
- :func:`window_end` -- when the window around an instant closes.
- :func:`next_attempt` -- the first allowed instant once an outcome's retry delay passed.
- :func:`appointment_slots` -- the times an appointment may be booked for.
- :func:`day_part`, :func:`spread_retry` -- the retry moved to a part of the day
  (``calling.retry_day_parts``; default morning / afternoon from 12:00 /
  evening from 17:00) where the case was not tried yet.
- :func:`slot_starts`, :func:`learned_retry` -- the retry placed in the permitted
  part of the day with the best expected contact (``calling.retry_method =
  "learned"``; the chances come from :mod:`minping.calltimes`).

Users: the IVR dialer (``ivr/dialer.py``) and its retry logic (``ivr/callstate.py``),
the case life cycle (``minping/cases.py``), the CATI scheduler
(``minping/scheduler.py``) and screens (``cati/views.py``), the CATI simulation
(``cati/simulate.py``) and the demo (``minping/demo.py``).  Every instant is an
aware datetime; the rules' time zone decides the local day and clock.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

__all__ = ["DEFAULT_DAY_PARTS", "appointment_slots", "best_slot", "day_part", "is_allowed",
           "last_calling_day", "learned_retry", "next_allowed", "next_attempt", "slot_starts",
           "spread_retry", "window_end", "windows_on"]

#: Where the parts of the day begin after midnight: afternoon at 12:00, evening at 17:00.
DEFAULT_DAY_PARTS: tuple[time, ...] = (time(12, 0), time(17, 0))


def _aware(when: datetime, name: str) -> datetime:
    if not isinstance(when, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(when).__name__} {when!r}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {when.isoformat()}")
    return when


def windows_on(rules, day: date) -> tuple:
    """The calling windows of a local calendar day (empty on closed days)."""
    if day < rules.start_date or day > rules.end_date or day in rules.holidays:
        return ()
    return rules.windows.get(day.weekday(), ())


def is_allowed(rules, when: datetime) -> bool:
    """Whether a call may be placed at the aware datetime ``when``.

    ``when`` is converted to the campaign time zone first, so
    ``2026-11-17 01:00 UTC`` is 09:00 in Asia/Shanghai and allowed.
    """
    local = _aware(when, "when").astimezone(rules.tz)
    clock = local.time()
    return any(clock in w for w in windows_on(rules, local.date()))


def next_allowed(rules, after: datetime) -> datetime | None:
    """The earliest allowed instant at or after ``after``.

    ``after`` itself (in the campaign time zone) when it is allowed, else the
    start of the next window; ``None`` when no window is left in the campaign.
    """
    tz = rules.tz
    local = _aware(after, "after").astimezone(tz)
    day = max(local.date(), rules.start_date)
    while day <= rules.end_date:
        for window in windows_on(rules, day):
            opens = datetime.combine(day, window.start, tzinfo=tz)
            closes = datetime.combine(day, window.end, tzinfo=tz)
            if closes > local:
                return max(opens, local)
        day += timedelta(days=1)
    return None


def window_end(rules, when: datetime) -> datetime | None:
    """When the window containing ``when`` closes; ``None`` outside windows."""
    tz = rules.tz
    local = _aware(when, "when").astimezone(tz)
    for window in windows_on(rules, local.date()):
        if local.time() in window:
            return datetime.combine(local.date(), window.end, tzinfo=tz)
    return None


def next_attempt(rules, after: datetime, outcome: str) -> datetime | None:
    """The earliest allowed instant once the retry delay of ``outcome`` has passed."""
    return next_allowed(rules, _aware(after, "after") + rules.retry_delay(outcome))


def _parts(rules) -> tuple[time, ...]:
    return tuple(getattr(rules, "retry_day_parts", None) or DEFAULT_DAY_PARTS)


def day_part(rules, when: datetime) -> int:
    """The part of the (local) day ``when`` falls in: 0 before the first boundary, 1, 2 ..."""
    clock = _aware(when, "when").astimezone(rules.tz).time().replace(tzinfo=None)
    return sum(clock >= boundary for boundary in _parts(rules))


def spread_retry(rules, *, now: datetime, outcome: str, tried: set[int]) -> datetime | None:
    """The next attempt time, moved to a part of the day not tried yet.

    After the outcome's retry delay, the first allowed instant in a part of the
    day (:func:`day_part`) where the case was not yet tried without contact;
    once every part was tried, simply the first allowed instant.
    """
    parts = _parts(rules)
    due = next_attempt(rules, now, outcome)
    if due is None or tried >= set(range(len(parts) + 1)):
        return due
    for _ in range(4 * (len(parts) + 1)):
        if due is None or day_part(rules, due) not in tried:
            return due
        local = due.astimezone(rules.tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        part = day_part(rules, due)
        if part < len(parts):
            boundary = parts[part]
            nxt = midnight + timedelta(hours=boundary.hour, minutes=boundary.minute)
        else:
            nxt = midnight + timedelta(days=1)
        due = next_allowed(rules, nxt)
    return due


def slot_starts(rules, after: datetime, until: datetime) -> list[datetime]:
    """The first allowed instant of every (window, part of the day) piece in ``[after, until]``.

    A calling window is cut at the boundaries of the parts of the day
    (``retry_day_parts``); each piece that is still open at ``after`` gives its
    opening instant (or ``after`` itself when the piece is already open).  Every
    instant returned is allowed (:func:`is_allowed`), in time order.
    """
    tz = rules.tz
    lo = _aware(after, "after").astimezone(tz)
    hi = _aware(until, "until").astimezone(tz)
    parts = _parts(rules)
    out: list[datetime] = []
    day = max(lo.date(), rules.start_date)
    while day <= min(hi.date(), rules.end_date):
        for window in windows_on(rules, day):
            cuts = [window.start] + [b for b in parts if window.start < b < window.end]
            ends = cuts[1:] + [window.end]
            for start, end in zip(cuts, ends, strict=True):
                opens = datetime.combine(day, start, tzinfo=tz)
                closes = datetime.combine(day, end, tzinfo=tz)
                if closes <= lo:
                    continue
                moment = max(opens, lo)
                if moment <= hi:
                    out.append(moment)
        day += timedelta(days=1)
    return out


def best_slot(rules, *, after: datetime, p_contact, horizon_days: float = 2.0,
              daily_discount: float = 0.1) -> tuple[datetime | None, float]:
    """The piece of a calling window within ``horizon_days`` of ``after`` with the best score.

    Every piece (:func:`slot_starts`) is scored ``p_contact(weekday, part) *
    (1 - daily_discount) ** days_waited`` (waiting costs field time); returned:
    the best piece's first allowed instant (the earliest on a tie) and its score,
    or ``(next_allowed(after), -1.0)`` when no piece is in reach, ``(None, -1.0)``
    when the field period has no window left.
    """
    start = next_allowed(rules, after)
    if start is None:
        return None, -1.0
    best, best_score = start, -1.0
    for moment in slot_starts(rules, start, start + timedelta(days=horizon_days)):
        local = moment.astimezone(rules.tz)
        waited = (moment - start).total_seconds() / 86400.0
        score = float(p_contact(local.weekday(), day_part(rules, moment))) \
            * (1.0 - daily_discount) ** waited
        if score > best_score + 1e-12:
            best, best_score = moment, score
    return best, best_score


def last_calling_day(rules) -> date | None:
    """The campaign's last local date with a calling window (``None``: no window at all)."""
    day = rules.end_date
    while day >= rules.start_date:
        if windows_on(rules, day):
            return day
        day -= timedelta(days=1)
    return None


def learned_retry(rules, *, now: datetime, outcome: str, p_contact, horizon_days: float = 2.0,
                  daily_discount: float = 0.1) -> datetime | None:
    """The retry placed where contact is most likely, within ``horizon_days`` of the due time.

    After the outcome's retry delay (:func:`next_attempt`), the best piece of a
    calling window (:func:`best_slot`); ``p_contact`` takes the local weekday
    (Monday = 0) and the part of the day (:func:`day_part`).  The result is
    always allowed, never before the delay has passed, and ``None`` only when
    the field period has no window left.
    """
    due = next_attempt(rules, now, outcome)
    if due is None:
        return None
    return best_slot(rules, after=due, p_contact=p_contact, horizon_days=horizon_days,
                     daily_discount=daily_discount)[0]


def appointment_slots(rules, after: datetime, *, days: int = 14,
                      step: timedelta = timedelta(minutes=15)) -> list[tuple[date, list[time]]]:
    """The times an appointment may be booked for: every ``step`` inside the calling
    windows of the next ``days`` local days, later than ``after`` (the CATI screen's
    picker offers only these)."""
    tz = rules.tz
    start = _aware(after, "after").astimezone(tz)
    out: list[tuple[date, list[time]]] = []
    for i in range(days):
        day = start.date() + timedelta(days=i)
        times: list[time] = []
        for window in windows_on(rules, day):
            moment = datetime.combine(day, window.start, tzinfo=tz)
            end = datetime.combine(day, window.end, tzinfo=tz)
            while moment < end:
                if moment > start:
                    times.append(moment.time())
                moment += step
        if times:
            out.append((day, times))
    return out
