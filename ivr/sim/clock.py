"""Clocks for the simulator, the dialer and the scheduler.

Everything that needs the time takes a :class:`Clock` and calls ``now()``; nothing
reads the system time directly.  :class:`RealClock` is the wall clock;
:class:`VirtualClock` only moves when it is told to, so a field period of several
days runs in seconds: the simulator advances it from one due event to the next.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the time as a timezone-aware UTC ``datetime``."""

    def now(self) -> datetime:
        """Return the current time (timezone-aware, UTC)."""
        ...


class RealClock:
    """The wall clock (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "RealClock()"


class VirtualClock:
    """A clock that stands still until advanced.

    Parameters
    ----------
    start
        The initial time; a naive ``datetime`` is taken as UTC.  Defaults to
        2024-01-01 00:00 UTC (08:00 in Beijing) so that runs are reproducible.
    """

    def __init__(self, start: datetime | None = None):
        if start is None:
            start = datetime(2024, 1, 1, tzinfo=UTC)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by ``seconds`` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a virtual clock cannot go back: seconds={seconds!r}")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def advance_to(self, when: datetime) -> datetime:
        """Move the clock to ``when``; a time in the past leaves it where it is."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        with self._lock:
            if when > self._now:
                self._now = when.astimezone(UTC)
            return self._now

    def __repr__(self) -> str:
        return f"VirtualClock({self.now().isoformat()})"
