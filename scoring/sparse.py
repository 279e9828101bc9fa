"""The linearised estimators of many units from the long ratings table, in O(ratings).

``StratifiedDesign.domain_means`` and ``AssignedDesign.domain_means`` work on
respondents × units matrices, whose size grows with respondents × units
although each respondent rates only a few units.  Everything the linearised
variance and the covariance need is a sum over the rated rows:

* the estimate of unit u: Σ w y / Σ w over its domain rows;
* the linearised value z = w (y − ȳ_u)/Σ w on a domain row (0 elsewhere);
* per stratum h and unit u the sums S1_hu = Σ z and S2_hu = Σ z², so that
  Σ_{i∈h} (z_iu − z̄_hu)² = S2_hu − S1_hu²/n (n the rows the centring runs
  over: the stratum's respondents, or its respondents assigned u);
* the covariance Σ_h c_h Σ_{i∈h} (z_ij − z̄_hj)(z_ik − z̄_hk) =
  Σ_i c_h(i) z_ij z_ik − Σ_h c_h S1_hj S1_hk / n_h: a Gram matrix of the
  rated rows plus a strata × units product.  The Gram matrix sums the products
  of the pairs of rows of one respondent (``gram``): O(Σ_i k_i²) for respondents
  rating k_i units, i.e. linear in the ratings when each rates a few of them,
  with no respondents × units array (a dense product when most respondents
  rate most units).

The numbers are those of the dense estimators (``scoring.estimators``) up to
rounding; ``tests/scoring/test_sparse.py`` checks them to 1e-9.  Raking and
replicate weights use the dense estimators.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring.assigned import rescale_covariance
from scoring.codes import factorise, first_seen_codes
from scoring.intervals import CiMethod, half_width, proportion_interval

__all__ = ["LongRatings", "UnitEstimates", "estimate_units", "factorise", "first_seen_codes",
           "gram", "respondent_pairs", "respondent_runs"]


@dataclass(frozen=True)
class LongRatings:
    """The rated rows as integer codes.

    ``resp``, ``unit``: codes of each row; ``stratum``: the stratum code of each
    respondent; ``y``, ``sat``: points and satisfied flag of each row; ``inside``:
    the row is in its unit's domain; ``assigned``: the row's unit was assigned
    to the respondent (``None``: the plain design, every row counts); ``width``:
    the rows are grouped by respondent, ``width`` rows each, respondent i's rows
    at ``i * width`` onwards (``None``: any order).
    """

    resp: np.ndarray
    unit: np.ndarray
    stratum: np.ndarray
    n_units: int
    y: np.ndarray
    sat: np.ndarray
    inside: np.ndarray
    assigned: np.ndarray | None
    width: int | None = None


@dataclass(frozen=True)
class UnitEstimates:
    """Per unit: estimate, SE, df (NaN for an empty domain), interval, n, Kish n_eff
    and deff; the satisfaction rate with its SE and interval; the covariance matrix."""

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: np.ndarray
    n_eff: np.ndarray
    deff: np.ndarray
    sat: np.ndarray
    sat_se: np.ndarray
    sat_low: np.ndarray
    sat_high: np.ndarray
    covariance: np.ndarray


def estimate_units(data: LongRatings, N_h: np.ndarray, *, fpc: bool = True,
                   level: float = 0.95, ci_method: CiMethod = "beta") -> UnitEstimates:
    """Linearised estimates of every unit (plain design, or per-unit design when
    ``data.assigned`` is given), as ``StratifiedDesign`` / ``AssignedDesign`` compute them.

    Every sum runs over all the rows, a row outside its unit's domain weighing 0
    (its z is 0), so that no row is gathered or moved.
    """
    H, K = N_h.size, data.n_units
    n_h = np.bincount(data.stratum, minlength=H).astype(float)
    h_row = data.stratum[data.resp]
    u = data.unit
    cell = h_row * K
    cell += u  # (stratum, unit) of each row
    f_h = 1.0 - n_h / N_h if fpc else np.ones(H)
    with np.errstate(invalid="ignore", divide="ignore"):
        c_h = np.where(n_h >= 2, f_h * n_h / (n_h - 1.0), 0.0)
    if data.assigned is None:
        domain = data.inside
        w = np.where(domain, (N_h / n_h)[h_row], 0.0)
        centre_n = np.broadcast_to(n_h[:, None], (H, K))  # centring over the stratum
        factor = np.broadcast_to(c_h[:, None], (H, K))
        lonely = np.zeros((H, K), dtype=bool)
    else:
        n_hu = np.bincount(cell, weights=data.assigned, minlength=H * K).reshape(H, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            w_hu = np.where(n_hu > 0, N_h[:, None] / n_hu, 0.0)
            f_hu = 1.0 - n_hu / N_h[:, None] if fpc else np.ones((H, K))
            c_hu = np.where(n_hu >= 2, f_hu * n_hu / (n_hu - 1.0), 0.0)
        lonely = n_hu == 1  # R's survey.lonely.psu = "adjust": not centred, factor f
        factor = np.where(lonely, f_hu, c_hu)
        centre_n = n_hu
        domain = data.inside & data.assigned
        w = np.where(domain, w_hu.ravel()[cell], 0.0)
    n = np.bincount(u, weights=domain, minlength=K).astype(np.int64)
    s1 = np.bincount(u, weights=w, minlength=K)
    s2 = np.bincount(u, weights=w * w, minlength=K)
    strata_in = (np.bincount(cell, weights=domain, minlength=H * K).reshape(H, K) > 0).sum(axis=0)
    df = np.where(n > 0, (n - strata_in).astype(float), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = s1 * s1 / s2
        deff = n * s2 / (s1 * s1)
    w_share = w / np.where(s1 > 0, s1, 1.0)[u]  # w / Σ w of the row's unit

    def linearise(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            est = np.bincount(u, weights=w * y, minlength=K) / s1
        z = y - np.nan_to_num(est)[u]
        z *= w_share
        t1 = np.bincount(cell, weights=z, minlength=H * K).reshape(H, K)
        t2 = np.bincount(cell, weights=z * z, minlength=H * K).reshape(H, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            centred = np.where(lonely, t2, t2 - np.where(centre_n > 0, t1 * t1 / centre_n, 0.0))
        var = (factor * centred).sum(axis=0)
        se = np.where(n > 0, np.sqrt(np.maximum(var, 0.0)), np.nan)
        return est, se, z, t1

    est, se, z, t1 = linearise(np.where(domain, data.y, 0.0))
    half = half_width(level, df, se)
    sat, sat_se, _, _ = linearise(data.sat.astype(float))
    sat_low, sat_high = proportion_interval(sat, sat_se ** 2, n=n, df=df, method=ci_method,
                                            level=level)
    cov = _covariance(z, t1, data, h_row, n_h, c_h)
    if data.assigned is not None:
        cov = rescale_covariance(cov, np.where(n > 0, se * se, 0.0))
    return UnitEstimates(estimate=est, se=se, df=df, ci_low=est - half, ci_high=est + half,
                         n=n, n_eff=n_eff, deff=deff, sat=sat, sat_se=sat_se,
                         sat_low=sat_low, sat_high=sat_high, covariance=cov)


def _covariance(z: np.ndarray, t1: np.ndarray, data: LongRatings, h_row: np.ndarray,
                n_h: np.ndarray, c_h: np.ndarray) -> np.ndarray:
    """Σ_h c_h Σ_{i∈h} (z_ij − z̄_hj)(z_ik − z̄_hk), z̄ over the stratum's n_h respondents
    (``t1``: Σ z per stratum and unit)."""
    scaled = np.sqrt(c_h)[h_row]
    scaled *= z
    g = gram(data.resp, data.unit, scaled, data.n_units, width=data.width)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(n_h > 0, c_h / n_h, 0.0)
    out = g - t1.T @ (t1 * per[:, None])
    return (out + out.T) / 2.0


def respondent_runs(resp: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The rows grouped by respondent: an order (``None`` when each respondent's rows
    are already together, as in a table read respondent by respondent) and, for each
    row in that order, the end (exclusive) of its respondent's rows.  O(rows) when
    the rows are together, a stable sort otherwise."""
    resp = np.asarray(resp)
    m = resp.size
    order = None
    if m > 1:
        starts = np.flatnonzero(resp[1:] != resp[:-1]) + 1
        if starts.size + 1 != np.count_nonzero(np.bincount(resp)):
            order = np.argsort(resp, kind="stable")
            r = resp[order]
            starts = np.flatnonzero(r[1:] != r[:-1]) + 1
    else:
        starts = np.empty(0, dtype=np.int64)
    bounds = np.concatenate(([0], starts, [m]))
    end = np.repeat(bounds[1:], np.diff(bounds))
    return order, end


def respondent_pairs(end: np.ndarray):
    """For d = 1, 2, …: (d, the rows p whose respondent has a row p + d)."""
    active = np.flatnonzero(end > np.arange(end.size) + 1)
    d = 1
    while active.size:
        yield d, active
        d += 1
        active = active[end[active] > active + d]


def gram(resp: np.ndarray, unit: np.ndarray, x: np.ndarray, K: int, *,
         chunk: int = 1 << 16, width: int | None = None) -> np.ndarray:
    """G[j, k] = Σ_i x_ij x_ik over respondents i (x_ij the value of i's row of unit j;
    a respondent has at most one row per unit): K × K.

    The products of the pairs of rows of each respondent, summed with ``bincount``:
    O(Σ_i k_i²), linear in the rows when each respondent has a few of them.  With
    ``width`` (the rows grouped by respondent, ``width`` rows each) the rows are a
    respondents × width table and each pair of its columns is one ``bincount``;
    otherwise one ``bincount`` per offset between a respondent's rows, by cache-sized
    chunks.  When most respondents rate most units, a dense product by blocks of
    respondents (BLAS) is cheaper.
    """
    resp, unit = np.asarray(resp), np.asarray(unit)
    x = np.asarray(x, dtype=float)
    if width is not None and 2 * width * (width + 1) < K:  # else the dense product, below
        return _table_gram(unit, x, K, width)
    order, end = respondent_runs(resp)
    if order is not None:
        resp, unit, x = resp[order], unit[order], x[order]
    ends = end[np.concatenate((end[1:] != end[:-1], [True]))] if end.size else end
    lengths = np.diff(np.concatenate(([0], ends)))
    respondents = lengths.size
    pairs = int((lengths * (lengths + 1) // 2).sum())
    if respondents and 4 * pairs >= respondents * K:  # dense: most respondents rate most units
        return _dense_gram(resp, unit, x, K)
    flat = np.bincount(unit * (K + 1), weights=x * x, minlength=K * K)  # the diagonal
    off = np.zeros(K * K)
    # By chunks of whole respondents, so that the temporaries stay in the cache.
    cuts = np.searchsorted(ends, np.arange(chunk, end.size, chunk), side="left")
    lo = 0
    for hi in [*ends[cuts].tolist(), end.size]:
        if hi <= lo:
            continue
        u, v = unit[lo:hi], x[lo:hi]
        first = u * K
        for d, p in respondent_pairs(end[lo:hi] - lo):
            off += np.bincount(first[p] + u[p + d], weights=v[p] * v[p + d], minlength=K * K)
        lo = hi
    off = off.reshape(K, K)
    return flat.reshape(K, K) + off + off.T


def _table_gram(unit: np.ndarray, x: np.ndarray, K: int, width: int) -> np.ndarray:
    """``gram`` of rows grouped by respondent, ``width`` rows each: one ``bincount`` per
    pair of columns of the respondents × width table (kept column by column)."""
    units = unit.reshape(-1, width).T.copy()
    values = x.reshape(-1, width).T.copy()
    first = units * K
    off = np.zeros(K * K)
    for a in range(width - 1):
        for b in range(a + 1, width):
            off += np.bincount(first[a] + units[b], weights=values[a] * values[b], minlength=K * K)
    off = off.reshape(K, K)
    return np.diag(np.bincount(unit, weights=x * x, minlength=K)) + off + off.T


def _dense_gram(resp: np.ndarray, unit: np.ndarray, x: np.ndarray, K: int,
                block: int = 4096) -> np.ndarray:
    """``gram`` as Z'Z, Z the respondents × units matrix, by blocks of respondents."""
    b = resp // block
    order = np.argsort(b, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(b))))
    out = np.zeros((K, K))
    for k in range(bounds.size - 1):
        sel = order[bounds[k]:bounds[k + 1]]
        if sel.size:
            z = np.zeros((block, K))
            z[resp[sel] - k * block, unit[sel]] = x[sel]
            out += z.T @ z
    return out
