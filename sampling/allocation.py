"""Sample allocation to strata and integer rounding that keeps totals.

One-way allocation (:func:`allocate`) spreads a sample of ``n`` over ``H``
strata by one of four methods; two-way allocation (:func:`allocate_two_way`)
does the same over the cells of a groups × towns table and rounds so that the
row and column margins are kept.

Every allocation is first computed in real numbers, then rounded to integers
that sum exactly to ``n``, never leave a stratum's bounds and never ask a
stratum for more contacts than it holds.

References
----------
.. [1] Cochran, W. G. (1977). *Sampling Techniques*, 3rd ed., §5.5 (Neyman
   allocation) and §5.9 (strata where the optimum exceeds N_h). Wiley.
.. [2] Wesołowski, J., Wieczorkowski, R. and Wójciak, W. (2022). Optimality
   of the recursive Neyman allocation. *Journal of Survey Statistics and
   Methodology* 10(5), 1263–1275.
.. [3] Wójciak, W. (2023). Another solution for some optimum allocation
   problem (RNABOX). *Statistics in Transition new series* 24(5), 203–219;
   R package ``stratallo``.
.. [4] Balinski, M. L. and Young, H. P. (2001). *Fair Representation*, 2nd
   ed. (Hamilton's largest-remainder method). Brookings.
.. [5] Cox, L. H. and Ernst, L. R. (1982). Controlled rounding. *INFOR* 20(4),
   423–432.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sampling.errors import SamplingError

__all__ = [
    "METHODS",
    "Allocation",
    "AllocationError",
    "TwoWayAllocation",
    "allocate",
    "allocate_two_way",
    "largest_remainder",
]

Method = Literal["proportional", "equal", "neyman", "fixed"]
METHODS: tuple[str, ...] = ("proportional", "equal", "neyman", "fixed")

_EPS = 1e-9


class AllocationError(SamplingError):
    """The requested allocation cannot be made (the message says why)."""


@dataclass(frozen=True)
class Allocation:
    """A sample size allocated to strata.

    Attributes
    ----------
    strata : tuple
        Stratum labels, in the order of every other tuple (``0..H-1`` when the
        population sizes were given as a sequence).
    method : str
        ``"proportional"``, ``"equal"``, ``"neyman"`` or ``"fixed"``.
    n : int
        Total sample size; ``sum(counts) == n``.
    N : tuple of int
        Stratum population (frame) sizes.
    real : tuple of float
        The allocation before rounding (within the bounds; sums to ``n``).
    counts : tuple of int
        The rounded allocation.
    lower, upper : tuple of int
        The bounds that were applied (``upper`` defaults to ``N``).
    S : tuple of float or None
        Prior standard deviations (Neyman only).
    """

    strata: tuple[Hashable, ...]
    method: str
    n: int
    N: tuple[int, ...]
    real: tuple[float, ...]
    counts: tuple[int, ...]
    lower: tuple[int, ...]
    upper: tuple[int, ...]
    S: tuple[float, ...] | None = None

    def as_dict(self) -> dict[Hashable, int]:
        """Return ``{stratum: count}``."""
        return dict(zip(self.strata, self.counts, strict=True))


@dataclass(frozen=True)
class TwoWayAllocation:
    """A sample allocated to the cells of a groups × towns table.

    Attributes
    ----------
    rows, cols : tuple
        Row (group) and column (town) labels.
    method : str
        The method used for the real allocation (or ``"row_totals"`` when
        the group totals were fixed and towns allocated proportionally
        within each group).
    n : int
        Total sample size.
    N : tuple of tuple of int
        Cell population sizes.
    real : tuple of tuple of float
        The real allocation per cell.
    counts : tuple of tuple of int
        The rounded allocation per cell: each is ``floor`` or ``ceil`` of its
        real value, never above the cell's population.
    row_totals, col_totals : tuple of int
        Margins of ``counts``; each is ``floor`` or ``ceil`` of the real
        margin, and both sum to ``n``.
    """

    rows: tuple[Hashable, ...]
    cols: tuple[Hashable, ...]
    method: str
    n: int
    N: tuple[tuple[int, ...], ...]
    real: tuple[tuple[float, ...], ...]
    counts: tuple[tuple[int, ...], ...]
    row_totals: tuple[int, ...]
    col_totals: tuple[int, ...]

    def as_dict(self) -> dict[tuple[Hashable, Hashable], int]:
        """Return ``{(group, town): count}`` for every cell."""
        return {
            (r, c): self.counts[i][j]
            for i, r in enumerate(self.rows)
            for j, c in enumerate(self.cols)
        }


# ---------------------------------------------------------------------------
# input checking


def _labels_and_values(N: Sequence[int] | Mapping[Hashable, int]) -> tuple[tuple, np.ndarray]:
    if isinstance(N, Mapping):
        labels = tuple(N.keys())
        values = [N[k] for k in labels]
    else:
        values = list(N)
        labels = tuple(range(len(values)))
    if not values:
        raise AllocationError("no strata: the population sizes are empty")
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        out[i] = _as_int(v, f"N[{labels[i]!r}]", minimum=0)
    return labels, out


def _as_int(v: object, name: str, *, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer | float | np.floating):
        raise AllocationError(f"{name} must be a whole number, got {v!r}")
    if isinstance(v, float | np.floating) and (not math.isfinite(v) or v != int(v)):
        raise AllocationError(f"{name} must be a whole number, got {v!r}")
    iv = int(v)
    if minimum is not None and iv < minimum:
        raise AllocationError(f"{name} must be at least {minimum}, got {v!r}")
    return iv


def _aligned(x: Sequence | Mapping | None, labels: tuple, name: str) -> list | None:
    if x is None:
        return None
    if isinstance(x, Mapping):
        extra = [k for k in x if k not in set(labels)]
        if extra:
            raise AllocationError(f"{name} names unknown strata: {extra!r}")
        missing = [k for k in labels if k not in x]
        if missing:
            raise AllocationError(f"{name} has no value for strata {missing!r}")
        return [x[k] for k in labels]
    values = list(x)
    if len(values) != len(labels):
        raise AllocationError(f"{name} has {len(values)} values but there are {len(labels)} strata")
    return values


def _int_vector(x: Sequence | Mapping | None, labels: tuple, name: str) -> np.ndarray | None:
    values = _aligned(x, labels, name)
    if values is None:
        return None
    return np.array(
        [_as_int(v, f"{name}[{labels[i]!r}]", minimum=0) for i, v in enumerate(values)],
        dtype=np.int64,
    )


def _bounds(N: np.ndarray, labels: tuple, lower, upper) -> tuple[np.ndarray, np.ndarray]:
    lo = _int_vector(lower, labels, "lower")
    up = _int_vector(upper, labels, "upper")
    lo = np.zeros_like(N) if lo is None else lo
    up = N.copy() if up is None else np.minimum(up, N)
    for i, lab in enumerate(labels):
        if lo[i] > N[i]:
            raise AllocationError(
                f"stratum {lab!r}: lower bound {int(lo[i])} is above the stratum size {int(N[i])}"
            )
        if lo[i] > up[i]:
            raise AllocationError(
                f"stratum {lab!r}: lower bound {int(lo[i])} is above upper bound {int(up[i])}"
            )
    return lo, up


def _check_total(n: int, lo: np.ndarray, up: np.ndarray, N: np.ndarray) -> None:
    if n > int(N.sum()):
        raise AllocationError(f"sample size {n} is larger than the frame ({int(N.sum())} contacts)")
    if n > int(up.sum()):
        raise AllocationError(
            f"sample size {n} is larger than the sum of the upper bounds ({int(up.sum())})"
        )
    if n < int(lo.sum()):
        raise AllocationError(
            f"sample size {n} is smaller than the sum of the lower bounds ({int(lo.sum())})"
        )


# ---------------------------------------------------------------------------
# real allocation under box constraints


def _box_allocation(a: np.ndarray, n: float, lo: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Solve ``sum(clip(lam * a, lo, up)) == n`` for ``lam`` and return the allocation.

    For Neyman weights ``a_h = N_h S_h`` this is the optimum of
    ``min sum a_h^2 / x_h`` subject to ``sum x_h = n, lo <= x <= up``, which
    is what the recursive Neyman algorithm (and RNABOX) converges to
    ([2]_, [3]_).  With ``a_h = N_h`` it is proportional allocation, with
    ``a_h = 1`` equal allocation, under the same bounds.

    Strata with ``a_h = 0`` (or below ``1e-12`` of the largest weight) stay at their lower bound unless the other strata
    are all at their upper bounds and the total is still short, in which case
    the remainder is spread over them in proportion to their room.
    """
    a = a.astype(float)
    if a.max(initial=0.0) > 0:
        # scale-free; weights below 1e-12 of the largest count as zero
        a = a / a.max()
        a[a < 1e-12] = 0.0
    lo_f = lo.astype(float)
    up_f = up.astype(float)
    pos = a > 0
    base = lo_f.copy()
    # Capacity reachable through the positive-weight strata alone.
    cap_pos = float(up_f[pos].sum() + lo_f[~pos].sum())
    if n >= cap_pos - _EPS:
        x = np.where(pos, up_f, lo_f)
        short = n - cap_pos
        if short > _EPS:
            room = (up_f - lo_f) * (~pos)
            x = x + short * room / room.sum()
        return x
    if not pos.any():
        return base
    # g(lam) = sum clip(lam a, lo, up) is piecewise linear and non-decreasing;
    # its breakpoints are lo/a and up/a of the positive-weight strata.
    ap = a[pos]
    bps = np.unique(np.concatenate([[0.0], lo_f[pos] / ap, up_f[pos] / ap]))
    gs = np.array([np.clip(b * a, lo_f, up_f).sum() for b in bps])
    k = int(np.searchsorted(gs, n - _EPS, side="left"))
    if k == 0:
        lam = float(bps[0])
    else:
        g0, g1 = gs[k - 1], gs[k]
        b0, b1 = bps[k - 1], bps[k]
        lam = float(b1 if g1 == g0 else b0 + (n - g0) * (b1 - b0) / (g1 - g0))
    x = np.clip(lam * a, lo_f, up_f)
    free = pos & (x > lo_f) & (x < up_f)
    drift = n - x.sum()
    if drift != 0 and free.any():
        x[free] += drift * a[free] / a[free].sum()
        x = np.clip(x, lo_f, up_f)
    return x


def largest_remainder(
    real: Sequence[float] | np.ndarray,
    n: int,
    *,
    lower: Sequence[int] | np.ndarray | None = None,
    upper: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Round a real allocation to integers summing to ``n`` (Hamilton's method).

    Each stratum first gets ``floor(real_h)``; the remaining units go one each
    to the strata with the largest fractional parts (ties to the larger real
    value, then to the earlier stratum) among those still below their upper
    bound [4]_.

    Parameters
    ----------
    real : array_like of float
        Real allocation; must sum to ``n`` (within 1e-6).
    n : int
        Required integer total.
    lower, upper : array_like of int, optional
        Integer bounds that ``real`` respects; the result respects them too.

    Returns
    -------
    numpy.ndarray of int64
    """
    x = np.asarray(real, dtype=float)
    lo = np.zeros(len(x)) if lower is None else np.asarray(lower, dtype=float)
    up = np.full(len(x), np.inf) if upper is None else np.asarray(upper, dtype=float)
    if abs(x.sum() - n) > 1e-6 * max(1, n):
        raise AllocationError(f"real allocation sums to {x.sum()!r}, not {n}")
    x = np.clip(x, lo, up)
    near = np.abs(x - np.round(x)) < _EPS
    x = np.where(near, np.round(x), x)
    base = np.floor(x).astype(np.int64)
    remainder = n - int(base.sum())
    frac = x - base
    eligible = base < up
    # sort: largest fraction first, then largest real, then earliest index
    order = np.lexsort((np.arange(len(x)), -x, -frac))
    order = [i for i in order if eligible[i]]
    if remainder < 0 or remainder > len(order):
        raise AllocationError(f"cannot round the allocation to a total of {n}")
    for i in order[:remainder]:
        base[i] += 1
    return base


# ---------------------------------------------------------------------------
# one-way


def _fixed_counts(fixed, labels: tuple, n: int, Nv: np.ndarray, lo: np.ndarray, up: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The ``fixed`` counts, checked against the sample size, stratum sizes and bounds."""
    fx = _int_vector(fixed, labels, "fixed")
    if fx is None:
        raise AllocationError("method 'fixed' needs the counts per stratum (fixed=...)")
    if int(fx.sum()) != n:
        raise AllocationError(f"fixed counts sum to {int(fx.sum())}, not the sample size {n}")
    for i, lab in enumerate(labels):
        if fx[i] > Nv[i]:
            raise AllocationError(
                f"stratum {lab!r}: fixed count {int(fx[i])} is above the stratum size {int(Nv[i])}"
            )
        if not lo[i] <= fx[i] <= up[i]:
            raise AllocationError(
                f"stratum {lab!r}: fixed count {int(fx[i])} is outside the bounds "
                f"[{int(lo[i])}, {int(up[i])}]"
            )
    return fx.astype(float), fx.copy()


def _prior_sds(S, labels: tuple) -> np.ndarray:
    """Neyman's prior standard deviations per stratum, checked (finite, >= 0)."""
    Sv = _aligned(S, labels, "S")
    if Sv is None:
        raise AllocationError("Neyman allocation needs prior standard deviations S")
    Sa = np.empty(len(labels))
    for i, v in enumerate(Sv):
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise AllocationError(f"S[{labels[i]!r}] is not a number: {v!r}") from None
        if not math.isfinite(fv) or fv < 0:
            raise AllocationError(
                f"S[{labels[i]!r}] must be a finite number >= 0, got {v!r}"
            )
        Sa[i] = fv
    return Sa


def allocate(
    N: Sequence[int] | Mapping[Hashable, int],
    n: int,
    *,
    method: Method = "proportional",
    S: Sequence[float] | Mapping[Hashable, float] | None = None,
    fixed: Sequence[int] | Mapping[Hashable, int] | None = None,
    lower: Sequence[int] | Mapping[Hashable, int] | None = None,
    upper: Sequence[int] | Mapping[Hashable, int] | None = None,
) -> Allocation:
    """Allocate a sample of ``n`` to strata.

    Parameters
    ----------
    N : sequence of int or mapping stratum -> int
        Stratum population (frame) sizes.  With a mapping, every other
        per-stratum argument may be a mapping with the same keys.
    n : int
        Total sample size (the project default is 2,020).
    method : {"proportional", "equal", "neyman", "fixed"}
        ``proportional``: ``n_h ∝ N_h``; ``equal``: ``n_h = n/H``;
        ``neyman``: ``n_h ∝ N_h S_h`` [1]_; ``fixed``: the counts in ``fixed``.
        With bounds, the strata that would break a bound are held at it and
        the rest re-allocated by the same rule (recursive Neyman, [2]_, [3]_).
    S : sequence or mapping of float, optional
        Prior standard deviations per stratum; required for ``neyman``.
    fixed : sequence or mapping of int, optional
        The counts for ``fixed``; they must sum to ``n``.
    lower, upper : sequence or mapping of int, optional
        Bounds per stratum; ``upper`` is always capped at ``N_h``.

    Returns
    -------
    Allocation

    Raises
    ------
    AllocationError
        For a sample larger than the frame, bounds that cannot be met,
        ``S`` missing for Neyman, negative or non-integer sizes, fixed counts
        that do not sum to ``n`` or exceed a stratum.

    Examples
    --------
    The ``stratallo`` README example:

    >>> a = allocate([3000, 4000, 5000, 2000], 190, method="neyman", S=[48, 79, 76, 16])
    >>> a.counts
    (31, 69, 83, 7)
    """
    labels, Nv = _labels_and_values(N)
    n = _as_int(n, "sample size n", minimum=0)
    if method not in METHODS:
        raise AllocationError(f"unknown allocation method {method!r}; use one of {METHODS}")
    lo, up = _bounds(Nv, labels, lower, upper)
    _check_total(n, lo, up, Nv)
    S_t: tuple[float, ...] | None = None

    if method == "fixed":
        real, counts = _fixed_counts(fixed, labels, n, Nv, lo, up)
    else:
        if fixed is not None:
            raise AllocationError(f"fixed counts were given but the method is {method!r}")
        if method == "neyman":
            Sa = _prior_sds(S, labels)
            S_t = tuple(float(s) for s in Sa)
            a = Nv * Sa
        elif method == "proportional":
            a = Nv.astype(float)
        else:  # equal
            a = (Nv > 0).astype(float)
        real = _box_allocation(a, float(n), lo, up)
        counts = largest_remainder(real, n, lower=lo, upper=up)

    return Allocation(
        strata=labels,
        method=method,
        n=n,
        N=tuple(int(v) for v in Nv),
        real=tuple(float(v) for v in real),
        counts=tuple(int(v) for v in counts),
        lower=tuple(int(v) for v in lo),
        upper=tuple(int(v) for v in up),
        S=S_t,
    )


# the two-way allocation lives in its own module
from sampling.allocation_two_way import allocate_two_way, controlled_round  # noqa: E402, F401
