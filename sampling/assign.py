"""Assignment of rated units to respondents.

Each respondent rates ``k`` distinct units among those their group may rate.
The assignment is a resolvable, balanced incomplete design built greedily,
group by group (groups in sorted order, cases in the order given): every case
takes the ``k`` eligible units that come first by the key

* ``priority="group"`` (default): (times the unit was given to this group,
  times the unit was given in all, random tie-break);
* ``priority="total"``: (times given in all, times given to this group,
  random tie-break);

(with ``priority="total"`` the cases are taken in the order given, all groups
mixed, so that each group sees what the others have filled), with a fresh
seeded random tie-break for each case (so the blocks of units
that share a respondent vary, approaching a balanced incomplete block design
in which every pair of units shares about the same number of raters [1]_).

What this guarantees (``priority="group"``):

* every group's slots are spread evenly over its eligible units: the counts
  of one group on its units differ by at most one — so within a unit the
  groups appear in proportion to ``n_g / m_g`` (group size over the number of
  units the group may rate), which is the sample's proportion ``n_g`` when the
  groups rate the same units;
* among units that the same set of groups may rate, the total counts differ
  by at most one;
* no respondent gets a unit twice.

With ``strata`` (the stratum of each case; strata nest in groups) the first
key is the times the unit was given in the case's stratum: within every
stratum the counts over the group's m units differ by at most one, so every
unit has cases in every stratum with n_h·k ≥ m (a balanced incomplete block
design within each stratum, still random through the seeded tie-break); the
group counts then stay close to even rather than within one.
:meth:`Assignment.holes` lists the (unit, stratum) pairs left empty.

Units rated by different sets of groups cannot in general get equal totals
(a unit only residents rate gets what the residents give it);
``priority="total"`` evens the totals across such units at the expense of the
group mix within units.

References
----------
.. [1] Cochran, W. G. and Cox, G. M. (1957). *Experimental Designs*, 2nd ed.,
   ch. 11 (balanced incomplete block designs). Wiley.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sampling.errors import SamplingError

__all__ = ["Assignment", "AssignmentError", "assign_units"]


class AssignmentError(SamplingError):
    """Units cannot be assigned with these inputs."""


@dataclass(frozen=True)
class Assignment:
    """Units assigned to each case.

    Attributes
    ----------
    k : int
        Units per case.
    units : tuple of tuple
        For each case (in the order given) its ``k`` distinct units.
    unit_counts : Mapping[unit, int]
        Cases assigned to each unit (every eligible unit, zero included).
    unit_group_counts : Mapping[unit, Mapping[group, int]]
        The same by group (groups eligible for the unit, zero included).
    group_sizes : Mapping[group, int]
        Cases per group.
    eligible : Mapping[group, tuple]
        The units each group may rate, as given.
    priority : str
        ``"group"`` or ``"total"``.
    """

    k: int
    units: tuple[tuple[Hashable, ...], ...]
    unit_counts: Mapping[Hashable, int]
    unit_group_counts: Mapping[Hashable, Mapping[Hashable, int]]
    group_sizes: Mapping[Hashable, int]
    eligible: Mapping[Hashable, tuple[Hashable, ...]]
    priority: str
    unit_stratum_counts: Mapping[Hashable, Mapping[Hashable, int]] = field(default_factory=dict)

    def holes(self) -> list[tuple[Hashable, Hashable]]:
        """(unit, stratum) pairs of an eligible stratum with no case assigned the unit.

        Empty whenever every stratum h has n_h·k ≥ m_h (cases × units per case at
        least the units its group may rate); only filled when ``strata`` were given.
        """
        return [(u, h) for u in self.unit_stratum_counts
                for h, c in self.unit_stratum_counts[u].items() if c == 0]

    def expected_shares(self) -> dict[Hashable, dict[Hashable, float]]:
        """Design share of each group among a unit's raters.

        Group ``g`` spreads ``n_g k`` slots evenly over its ``m_g`` eligible
        units, so its expected share in unit ``u`` is ``(n_g / m_g)`` over the
        sum of that quantity for the groups that may rate ``u``.  Use these as
        the expected group mix in :func:`sampling.balance.unit_balance`.
        """
        rate = {g: self.group_sizes.get(g, 0) / len(us) for g, us in self.eligible.items() if us}
        out: dict[Hashable, dict[Hashable, float]] = {}
        for u, by_group in self.unit_group_counts.items():
            tot = sum(rate.get(g, 0.0) for g in by_group)
            out[u] = {g: (rate.get(g, 0.0) / tot if tot > 0 else 0.0) for g in by_group}
        return out

    def digest(self) -> str:
        """SHA-256 of the assignment (cases in order, units in order), for the audit record."""
        payload = json.dumps([[repr(u) for u in us] for us in self.units], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _sorted(labels) -> list:
    labels = list(labels)
    try:
        return sorted(labels)
    except TypeError:
        return sorted(labels, key=repr)


def assign_units(
    case_groups: Sequence[Hashable],
    units_by_group: Mapping[Hashable, Sequence[Hashable]],
    k: int,
    *,
    rng: np.random.Generator,
    priority: Literal["group", "total"] = "group",
    strata: Sequence[Hashable] | None = None,
) -> Assignment:
    """Assign ``k`` distinct units to every case, balanced over units and groups.

    Parameters
    ----------
    case_groups : sequence
        Group id of each case, in a canonical order (e.g. the draw's order).
    units_by_group : mapping group -> sequence of unit ids
        The units each group may rate (the units of the tracks it rates).
    k : int
        Units per respondent (``units_per_respondent`` in the configuration).
    rng : numpy.random.Generator
        Seeded generator for the tie-breaks.
    priority : {"group", "total"}
        See the module docstring.
    strata : sequence, optional
        Stratum of each case (strata nest in groups: the group, or group ×
        town).  When given, each case first takes the units its stratum has
        been given least often, so that within a stratum the counts over the
        group's m units differ by at most one and every unit is assigned in
        every stratum with n_h·k ≥ m (then the group and total keys above).

    Returns
    -------
    Assignment

    Raises
    ------
    AssignmentError
        ``k < 1``; a case's group absent from ``units_by_group``; a group with
        cases and fewer than ``k`` units; a unit listed twice for a group.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise AssignmentError(f"k (units per respondent) must be a whole number >= 1, got {k!r}")
    if priority not in ("group", "total"):
        raise AssignmentError(f"priority must be 'group' or 'total', got {priority!r}")
    eligible: dict[Hashable, tuple[Hashable, ...]] = {}
    for g, us in units_by_group.items():
        us = tuple(us)
        seen: set = set()
        for u in us:
            if u in seen:
                raise AssignmentError(f"group {g!r} lists unit {u!r} twice")
            seen.add(u)
        eligible[g] = us
    cases_of: dict[Hashable, list[int]] = {}
    for i, g in enumerate(case_groups):
        if g not in eligible:
            raise AssignmentError(f"case {i}: group {g!r} has no units to rate")
        cases_of.setdefault(g, []).append(i)
    for g in cases_of:
        if len(eligible[g]) < k:
            raise AssignmentError(
                f"group {g!r} may rate {len(eligible[g])} units, fewer than k = {k}"
            )

    all_units = _sorted({u for us in eligible.values() for u in us})
    uid = {u: j for j, u in enumerate(all_units)}
    total = np.zeros(len(all_units), dtype=np.int64)
    by_group: dict[Hashable, np.ndarray] = {}
    result: list[tuple[Hashable, ...] | None] = [None] * len(case_groups)

    cols_of = {g: np.array([uid[u] for u in eligible[g]], dtype=np.int64) for g in cases_of}
    for g in cases_of:
        by_group[g] = np.zeros(len(cols_of[g]), dtype=np.int64)
    if priority == "group":
        # group by group: each group's slots are dealt evenly over its units
        sequence = [i for g in _sorted(cases_of) for i in cases_of[g]]
    else:
        # in the order given, so that every group sees what the others filled
        sequence = list(range(len(case_groups)))
    if strata is not None and len(strata) != len(case_groups):
        raise AssignmentError(f"{len(strata)} strata for {len(case_groups)} cases")
    by_stratum: dict[Hashable, np.ndarray] = {}
    group_of_stratum: dict[Hashable, Hashable] = {}
    for i in sequence:
        g = case_groups[i]
        cols, gc = cols_of[g], by_group[g]
        tie = rng.random(len(cols))
        tot = total[cols]
        keys = (tie, tot, gc) if priority == "group" else (tie, gc, tot)
        if strata is not None:
            h = strata[i]
            if group_of_stratum.setdefault(h, g) != g:
                raise AssignmentError(f"stratum {h!r} has cases of groups {group_of_stratum[h]!r} and {g!r}")
            sc = by_stratum.setdefault(h, np.zeros(len(cols), dtype=np.int64))
            keys = (*keys, sc)  # the stratum's counts first (lexsort: last key is primary)
        pick = np.lexsort(keys)[:k]
        gc[pick] += 1
        if strata is not None:
            sc[pick] += 1
        total[cols[pick]] += 1
        result[i] = tuple(all_units[c] for c in cols[pick])

    unit_counts = {u: int(total[uid[u]]) for u in all_units}
    ugc: dict[Hashable, dict[Hashable, int]] = {u: {} for u in all_units}
    for g in _sorted(eligible):
        gc = by_group.get(g)
        for p, u in enumerate(eligible[g]):
            ugc[u][g] = int(gc[p]) if gc is not None else 0
    return Assignment(
        k=int(k),
        units=tuple(r for r in result if r is not None),
        unit_counts=unit_counts,
        unit_group_counts=ugc,
        group_sizes={g: len(cases_of.get(g, ())) for g in _sorted(eligible)},
        eligible=eligible,
        priority=priority,
        unit_stratum_counts={
            u: {h: int(by_stratum[h][p]) for h in _sorted(by_stratum)
                for p in np.flatnonzero(cols_of[group_of_stratum[h]] == uid[u]).tolist()}
            for u in all_units
        },
    )
