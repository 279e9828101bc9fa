"""Two-way allocation (groups × towns): controlled rounding of a real allocation to integers.

Split from :mod:`sampling.allocation`, which re-exports these functions.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from sampling.allocation import (  # noqa: E402
    AllocationError,
    Method,
    TwoWayAllocation,
    _as_int,
    allocate,
)

__all__ = ["allocate_two_way", "controlled_round"]


# ---------------------------------------------------------------------------
# two-way


def controlled_round(real: np.ndarray, n: int) -> np.ndarray:
    """Round a real matrix so that cells and both margins stay within floor/ceil.

    Finds an integer matrix ``X`` with ``floor(r_ij) <= X_ij <= ceil(r_ij)``,
    each row sum and column sum the floor or ceil of the real margin, and
    ``X.sum() == n`` (zero-restricted controlled rounding, [5]_).  Such a
    matrix always exists: the constraints form a network (transportation)
    polytope with integer bounds that contains ``real``, so it has integer
    vertices.  Among them the one closest to ``real`` is chosen by
    minimising ``sum (1 - 2 f) y`` over the cells, rows and columns rounded
    up, ``f`` their fractional parts — the two-way analogue of largest
    remainder.  The problem is solved with ``scipy.optimize.milp`` (HiGHS).

    Parameters
    ----------
    real : numpy.ndarray, shape (R, C)
        Real allocation summing to ``n``.
    n : int
        Integer total.

    Returns
    -------
    numpy.ndarray of int64, shape (R, C)
    """
    x = np.asarray(real, dtype=float)
    R, C = x.shape
    if abs(x.sum() - n) > 1e-6 * max(1, n):
        raise AllocationError(f"real allocation sums to {x.sum()!r}, not {n}")

    def split(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = np.where(np.abs(v - np.round(v)) < 1e-7, np.round(v), v)
        fl = np.floor(v)
        return fl.astype(np.int64), v - fl

    cf, cfrac = split(x)
    rf, rfrac = split(x.sum(axis=1))
    kf, kfrac = split(x.sum(axis=0))
    cell_vars = [(i, j) for i in range(R) for j in range(C) if cfrac[i, j] > 0]
    row_vars = [i for i in range(R) if rfrac[i] > 0]
    col_vars = [j for j in range(C) if kfrac[j] > 0]
    nv = len(cell_vars) + len(row_vars) + len(col_vars)
    out = cf.copy()
    if nv == 0:
        if int(out.sum()) != n:
            raise AllocationError(f"cannot round the allocation to a total of {n}")
        return out
    cost = np.concatenate(
        [
            [1 - 2 * cfrac[i, j] for i, j in cell_vars],
            [1 - 2 * rfrac[i] for i in row_vars],
            [1 - 2 * kfrac[j] for j in col_vars],
        ]
    )
    A = []
    b = []
    row_pos = {i: len(cell_vars) + p for p, i in enumerate(row_vars)}
    col_pos = {j: len(cell_vars) + len(row_vars) + p for p, j in enumerate(col_vars)}
    for i in range(R):  # sum_j (cf + y) - (rf + u) = 0
        coef = np.zeros(nv)
        for p, (ci, _cj) in enumerate(cell_vars):
            if ci == i:
                coef[p] = 1
        if i in row_pos:
            coef[row_pos[i]] = -1
        A.append(coef)
        b.append(rf[i] - cf[i].sum())
    for j in range(C):
        coef = np.zeros(nv)
        for p, (_ci, cj) in enumerate(cell_vars):
            if cj == j:
                coef[p] = 1
        if j in col_pos:
            coef[col_pos[j]] = -1
        A.append(coef)
        b.append(kf[j] - cf[:, j].sum())
    coef = np.zeros(nv)
    coef[: len(cell_vars)] = 1
    A.append(coef)
    b.append(n - cf.sum())
    Am = np.array(A)
    bv = np.array(b, dtype=float)
    res = milp(
        cost,
        constraints=LinearConstraint(Am, bv, bv),
        integrality=np.ones(nv),
        bounds=Bounds(np.zeros(nv), np.ones(nv)),
    )
    if not res.success or res.x is None:
        raise AllocationError(f"controlled rounding failed: {res.message}")
    y = np.round(res.x).astype(np.int64)
    for p, (i, j) in enumerate(cell_vars):
        out[i, j] += y[p]
    return out


def _split_row_totals(flatN: dict, rows_t: tuple, cols_t: tuple, row_totals: Sequence[int],
                      n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each group's fixed total spread over its towns in proportion to ``N``: (N, real)."""
    R, C = len(rows_t), len(cols_t)
    Nint = np.array(
        [
            [_as_int(flatN[(r, c)], f"N[{r!r}, {c!r}]", minimum=0) for c in cols_t]
            for r in rows_t
        ],
        dtype=np.int64,
    )
    rt = [_as_int(v, f"row_totals[{rows_t[i]!r}]", minimum=0) for i, v in enumerate(row_totals)]
    if len(rt) != R:
        raise AllocationError(f"row_totals has {len(rt)} values for {R} groups")
    if sum(rt) != n:
        raise AllocationError(f"row_totals sum to {sum(rt)}, not the sample size {n}")
    real = np.zeros((R, C))
    for i in range(R):
        Ni = int(Nint[i].sum())
        if rt[i] > Ni:
            raise AllocationError(
                f"group {rows_t[i]!r}: total {rt[i]} is above its frame size {Ni}"
            )
        if Ni > 0:
            real[i] = rt[i] * Nint[i] / Ni
    return Nint, real


def allocate_two_way(
    N: Sequence[Sequence[int]] | np.ndarray,
    n: int,
    *,
    rows: Sequence[Hashable] | None = None,
    cols: Sequence[Hashable] | None = None,
    method: Method = "proportional",
    S: Sequence[Sequence[float]] | np.ndarray | None = None,
    fixed: Sequence[Sequence[int]] | np.ndarray | None = None,
    lower: Sequence[Sequence[int]] | np.ndarray | None = None,
    upper: Sequence[Sequence[int]] | np.ndarray | None = None,
    row_totals: Sequence[int] | None = None,
) -> TwoWayAllocation:
    """Allocate a sample to the cells of a groups × towns table.

    The cells are the strata.  The real allocation is either that of
    :func:`allocate` over the flattened cells (``method``, ``S``, ``fixed``,
    ``lower``, ``upper`` given as R × C matrices), or, with ``row_totals``,
    each group's fixed total spread over its towns in proportion to ``N``.
    The result is then rounded by :func:`controlled_round`, so that every
    cell is the floor or ceil of its real value, the group (row) and town
    (column) totals are the floor or ceil of their real margins, and the
    grand total is exactly ``n``.

    Parameters
    ----------
    N : array_like of int, shape (R, C)
        Cell population sizes (rows are groups, columns towns).
    n : int
        Total sample size.
    rows, cols : sequence, optional
        Labels; default ``0..R-1`` and ``0..C-1``.
    method, S, fixed, lower, upper
        As for :func:`allocate`, given per cell.
    row_totals : sequence of int, optional
        Exact totals per group (e.g. from a file); must sum to ``n``.

    Returns
    -------
    TwoWayAllocation
    """
    Nm = np.asarray(N)
    if Nm.ndim != 2 or Nm.size == 0:
        raise AllocationError("the groups × towns population table must be a non-empty matrix")
    R, C = Nm.shape
    rows_t = tuple(range(R)) if rows is None else tuple(rows)
    cols_t = tuple(range(C)) if cols is None else tuple(cols)
    if len(rows_t) != R or len(cols_t) != C:
        raise AllocationError(
            f"labels do not fit the table: {len(rows_t)} rows × {len(cols_t)} columns "
            f"for a {R} × {C} table"
        )
    cells = [(r, c) for r in rows_t for c in cols_t]
    flatN = {cell: v for cell, v in zip(cells, Nm.ravel().tolist(), strict=True)}
    n = _as_int(n, "sample size n", minimum=0)

    def flat(m, name):
        if m is None:
            return None
        arr = np.asarray(m)
        if arr.shape != (R, C):
            raise AllocationError(f"{name} must be a {R} × {C} table, got shape {arr.shape}")
        return dict(zip(cells, arr.ravel().tolist(), strict=True))

    if row_totals is not None:
        if method != "proportional" or S is not None or fixed is not None:
            raise AllocationError("row_totals allocates towns proportionally; give no other method")
        if lower is not None or upper is not None:
            raise AllocationError("row_totals cannot be combined with cell bounds")
        Nint, real = _split_row_totals(flatN, rows_t, cols_t, row_totals, n)
        used_method = "row_totals"
    else:
        one = allocate(
            flatN,
            n,
            method=method,
            S=flat(S, "S"),
            fixed=flat(fixed, "fixed"),
            lower=flat(lower, "lower"),
            upper=flat(upper, "upper"),
        )
        Nint = np.array(one.N, dtype=np.int64).reshape(R, C)
        real = np.array(one.real).reshape(R, C)
        used_method = method
    counts = controlled_round(real, n)
    return TwoWayAllocation(
        rows=rows_t,
        cols=cols_t,
        method=used_method,
        n=n,
        N=tuple(tuple(int(v) for v in row) for row in Nint),
        real=tuple(tuple(float(v) for v in row) for row in real),
        counts=tuple(tuple(int(v) for v in row) for row in counts),
        row_totals=tuple(int(v) for v in counts.sum(axis=1)),
        col_totals=tuple(int(v) for v in counts.sum(axis=0)),
    )
