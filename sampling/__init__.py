"""Sampling: allocation, stratified draw, unit assignment, balance.

A pure core: plain values and numpy arrays in, frozen dataclasses out; no
database and no web framework.  Randomness always comes from an injected
``numpy.random.Generator``.

Modules
-------
errors
    :class:`~sampling.errors.SamplingError`, the base of every error raised
    here (the command line shows it as it shows its own errors).
allocation
    :func:`~sampling.allocation.allocate` and
    :func:`~sampling.allocation.allocate_two_way`.
draw
    :func:`~sampling.draw.draw` and :func:`~sampling.draw.frame_hash`; the
    :class:`~sampling.audit.DrawAudit` and :func:`~sampling.audit.verify_draw` are in
    ``audit`` (also reachable as ``sampling.draw.DrawAudit``).
assign
    :func:`~sampling.assign.assign_units`.
balance
    :func:`~sampling.balance.stratum_balance`,
    :func:`~sampling.balance.unit_balance`, :func:`~sampling.balance.kish`.

Reading frame files (CSV/XLSX, phone numbers) is the application's job:
:mod:`minping.tables`, :mod:`minping.phones`, :mod:`minping.frame_file`.

The names are loaded on first use (``sampling.balance`` alone does not load the
allocation's scipy.optimize, say).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "SamplingError": "sampling.errors",
    "Allocation": "sampling.allocation",
    "AllocationError": "sampling.allocation",
    "TwoWayAllocation": "sampling.allocation",
    "allocate": "sampling.allocation",
    "allocate_two_way": "sampling.allocation",
    "Assignment": "sampling.assign",
    "AssignmentError": "sampling.assign",
    "assign_units": "sampling.assign",
    "Kish": "sampling.balance",
    "StratumBalance": "sampling.balance",
    "UnitBalance": "sampling.balance",
    "kish": "sampling.balance",
    "stratum_balance": "sampling.balance",
    "unit_balance": "sampling.balance",
    "Draw": "sampling.draw",
    "DrawAudit": "sampling.audit",
    "DrawError": "sampling.draw",
    "DrawnCase": "sampling.draw",
    "DrawVerification": "sampling.audit",
    "canonical_order": "sampling.draw",
    "draw": "sampling.draw",
    "frame_hash": "sampling.draw",
    "make_audit": "sampling.audit",
    "rederive": "sampling.audit",
    "verify_draw": "sampling.audit",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'sampling' has no attribute {name!r}")
