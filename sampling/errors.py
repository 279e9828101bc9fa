"""The errors of the sampling core.

Every error raised by :mod:`sampling` is a :class:`SamplingError` with a
message meant for the user (what is wrong and with which stratum, unit or
case).  The core knows nothing of the application: ``minping`` shows a
``SamplingError`` to the user as it shows its own errors (the command line
prints it and exits with status 1).
"""

from __future__ import annotations

__all__ = ["SamplingError"]


class SamplingError(Exception):
    """A sample cannot be allocated, drawn, assigned or checked with these inputs."""
