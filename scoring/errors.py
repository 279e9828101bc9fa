"""Errors of the scoring core (no dependency on the application).

``minping`` shows a ``ScoringError`` to the user as it shows its own errors.
"""

from __future__ import annotations

__all__ = ["ScoringError"]


class ScoringError(Exception):
    """An error with a message meant for the user, raised by the scoring core."""
