"""Sampling: frame import and validation, allocation, stratified draw, unit assignment, balance.

A pure core: plain values and numpy arrays in, frozen dataclasses out; no
database and no web framework.  Randomness always comes from an injected
``numpy.random.Generator``.

Modules
-------
frame
    :func:`~sampling.frame.read_frame` reads a CSV (UTF-8, UTF-8 with BOM,
    GB18030) or XLSX frame file into a :class:`~sampling.frame.FrameFile`.
allocation
    :func:`~sampling.allocation.allocate` and
    :func:`~sampling.allocation.allocate_two_way`.
draw
    :func:`~sampling.draw.draw`, :func:`~sampling.draw.verify_draw`,
    :func:`~sampling.draw.frame_hash` and the :class:`~sampling.draw.DrawAudit`.
assign
    :func:`~sampling.assign.assign_units`.
balance
    :func:`~sampling.balance.stratum_balance`,
    :func:`~sampling.balance.unit_balance`, :func:`~sampling.balance.kish`.
"""

from sampling.allocation import (
    Allocation,
    AllocationError,
    TwoWayAllocation,
    allocate,
    allocate_two_way,
)
from sampling.assign import Assignment, AssignmentError, assign_units
from sampling.balance import Kish, StratumBalance, UnitBalance, kish, stratum_balance, unit_balance
from sampling.draw import (
    Draw,
    DrawAudit,
    DrawError,
    DrawnCase,
    DrawVerification,
    canonical_order,
    draw,
    frame_hash,
    make_audit,
    rederive,
    verify_draw,
)
from sampling.frame import FrameFile, FrameRow, SkippedRow, read_frame, write_rejects

__all__ = [
    "Allocation",
    "AllocationError",
    "Assignment",
    "AssignmentError",
    "Draw",
    "DrawAudit",
    "DrawError",
    "DrawVerification",
    "DrawnCase",
    "FrameFile",
    "FrameRow",
    "Kish",
    "SkippedRow",
    "StratumBalance",
    "TwoWayAllocation",
    "UnitBalance",
    "allocate",
    "allocate_two_way",
    "assign_units",
    "canonical_order",
    "draw",
    "frame_hash",
    "kish",
    "make_audit",
    "read_frame",
    "rederive",
    "stratum_balance",
    "unit_balance",
    "verify_draw",
    "write_rejects",
]
