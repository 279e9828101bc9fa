"""The draw in the database: allocate, draw, assign units, release, verify, balance.

Thin adapters around :mod:`sampling`: they load the frame from the database,
call the pure core and store the result, each in the caller's transaction.

Draw
    :func:`draw_sample` reads the frame's phones, groups and towns in one
    pass (two aggregates built by the database and taken apart by numpy,
    :func:`~minping.draws.frame.load_frame`), counts it per stratum,
    allocates (:func:`sampling.allocation.allocate`, or
    :func:`~sampling.allocation.allocate_two_way` for groups × towns), draws
    with ``numpy.random.default_rng(seed)`` over the canonical frame (contacts
    sorted by phone, :func:`sampling.draw.canonical_order`), assigns units and
    stores the audit record (:class:`~minping.models.SampleDraw`), the strata,
    the cases (held) and their units; the drawn contacts' ids are looked up by
    phone (:func:`~minping.draws.frame.contact_ids`).

Stratum codes
    The group id (``residents``) or ``group/town`` (``residents/chengguan``).

Unit assignment
    ``k = cfg.campaign.units_per_respondent`` units among the tracks the case's
    group rates, by :func:`sampling.assign.assign_units` with
    ``priority="group"``: each group's rating slots are spread evenly over the
    units it may rate, so every group reaches every one of its units at the same
    subsampling rate ``k / m_g``.  The design's mix of groups within a unit is
    then known exactly (:meth:`~sampling.assign.Assignment.expected_shares`) and
    the balance test compares against it; every unit keeps raters from every
    group that may rate it.  ``priority="total"`` would even out the raw totals
    between tracks (departments are rated only by deputies and business
    representatives, a small share of the sample) by starving the groups'
    presence in the other tracks — a group mix that changes from unit to unit
    and that no stratum weight can undo.  Sample cases are assigned with
    ``default_rng([seed, 1])`` in draw order (stratum, release order); reserve
    cases separately with ``default_rng([seed, 2])``, so that the sample's own
    assignment is balanced whatever the reserve.  Both digests
    (:meth:`~sampling.assign.Assignment.digest`) are in the audit record.

Release and reserve
    Replicates ``1..R`` are released one at a time (:func:`release`).  The
    reserve replicate ``R + 1`` is never released wholesale:
    :func:`release_reserve` releases, per stratum, one reserve case (in release
    order) for every case of that stratum whose final disposition is not
    eligible (AAPOR 4.x), less the reserve cases already released there — so
    running it again releases only what new ineligible numbers call for, and an
    ineligible reserve case is itself replaced.

Verification
    :func:`verify` re-derives the draw from the frame (in the database, or an
    external copy of it) and the stored seed, compares case by case, and
    checks the stored units of every case against the assignment digest.

Modules
    :mod:`~minping.draws.frame` (the frame in canonical order, counts per
    stratum), :mod:`~minping.draws.draw` (allocation, the draw, its audit
    record), :mod:`~minping.draws.release` (replicates and the reserve; the CLI
    and the supervisors' screen both release through it),
    :mod:`~minping.draws.verify` and :mod:`~minping.draws.balance`.  The text
    and CSV output of the balance report is in :mod:`minping.commands.sample`.
"""

from minping.draws.balance import balance_report
from minping.draws.draw import (
    ASSIGNMENT_PRIORITY,
    DrawSummary,
    current_draw,
    draw_sample,
    units_digest,
)
from minping.draws.frame import (
    STRATIFICATIONS,
    FrameColumns,
    frame_counts,
    frame_from_file,
    load_frame,
    stratum_code,
)
from minping.draws.release import (
    ReleasePlan,
    next_release,
    release,
    release_all,
    release_next,
    release_reserve,
)
from minping.draws.verify import verify

__all__ = [
    "ASSIGNMENT_PRIORITY",
    "STRATIFICATIONS",
    "DrawSummary",
    "FrameColumns",
    "ReleasePlan",
    "balance_report",
    "current_draw",
    "draw_sample",
    "frame_counts",
    "frame_from_file",
    "load_frame",
    "next_release",
    "release",
    "release_all",
    "release_next",
    "release_reserve",
    "stratum_code",
    "units_digest",
    "verify",
]
