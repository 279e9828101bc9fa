"""Units rated by random subsamples of a stratified sample: one design per unit.

See ``scoring.estimators`` for the references.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from scoring.intervals import (
    CiMethod,
    DomainMeans,
    check_level,
    domain_df,
    half_width,
    proportion_interval,
)
from scoring.weighting import ReplicateWeights

if TYPE_CHECKING:
    from scoring.estimators import StratifiedDesign

__all__ = ["AssignedDesign"]


class AssignedDesign:
    """Domains rated by random subsamples of a stratified sample (one design per unit).

    Each respondent rates only the units assigned to them.  Within stratum h
    the n_hu respondents assigned unit u are, by the random assignment, a
    simple random subsample of the stratum's n_h respondents, so unit u has
    its own stratified simple random sample: the n_hu assigned respondents of
    N_h, weight w_iu = N_h/n_hu.  Everything is computed for all units at
    once (respondents × units matrices).

    Parameters
    ----------
    design : StratifiedDesign
        The respondents (one row each).  When it is raked, the raking factor
        g_i = w_i/(N_h/n_h) of each respondent multiplies the unit weights:
        w_iu = g_i N_h/n_hu.
    assigned : bool array (n, k)
        ``assigned[i, u]``: unit u was assigned to respondent i.

    Notes
    -----
    *Estimate*: the Hájek mean of the domain (assigned and answered on the
    points scale) with the weights w_iu.

    *Variance* of unit u: the stratified SRS variance of the per-unit design,
    V̂_u = Σ_h (1 − n_hu/N_h) n_hu/(n_hu − 1) Σ_{i∈h, assigned u}
    (z_iu − z̄_hu)², z the linearised values with the unit weights and z̄_hu
    their mean over the n_hu assigned respondents of stratum h (R
    ``svydesign(id=~1, strata=~h, fpc=~N, data=<assigned to u>)`` and
    ``svymean`` on the answered subset).  A stratum with a single respondent
    assigned u (n_hu = 1 < N_h) contributes (1 − 1/N_h) z_iu², as R survey
    4.x does with ``options(survey.lonely.psu = "adjust")``.  Degrees of
    freedom: raters in the domain minus the strata represented in it.

    *Covariance* of units j ≠ k (rank intervals): units rated by different
    but overlapping subsamples.  The correlation is taken from the
    respondent-level linearised values with each unit's own weights (zero
    where the unit was not assigned), centred within strata over all n_h
    respondents, as the same-stratum sums of products
    C_jk = Σ_h (1 − n_h/N_h) n_h/(n_h − 1) Σ_{i∈h} (z_ij − z̄_hj)(z_ik − z̄_hk)
    — the phase-one covariance of two subsample estimators when the
    subsamples are drawn independently of the ratings, which the random
    assignment ensures — and rescaled to the per-unit variances:
    Cov_jk = C_jk √(V̂_j V̂_k / (C_jj C_kk)).  The matrix is then positive
    semi-definite and its diagonal is exactly V̂.

    *Raking*: the calibration residuals are taken per unit (the linearised
    values regressed on the margin indicators over the unit's assigned
    respondents with the weights N_h/n_hu), as for a raked per-unit design.

    *Replicates*: the phase-one replicate factors (Rao–Wu–Yue, on all
    respondents) multiply the unit weights, so each replicate resamples the
    respondents together with their assigned units.
    """

    def __init__(self, design: StratifiedDesign, assigned: np.ndarray) -> None:
        a = np.asarray(assigned, dtype=bool)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[0] != design.n:
            raise ValueError(f"assigned must have {design.n} rows (one per respondent), got shape {a.shape}")
        self.design = design
        self.assigned = a
        # respondents × strata indicator: per-stratum sums as one matrix product
        self._onehot = np.zeros((design.n, design.stratum_labels.size))
        self._onehot[np.arange(design.n), design.stratum_index] = 1.0
        n_hu = self._sums(a.astype(float))  # strata × k
        self.n_hu = n_hu
        big_n = design.N_h[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            w_hu = np.where(n_hu > 0, big_n / n_hu, 0.0)
        self.g = design.weights / design.base_weights
        self.base_weights = np.where(a, w_hu[design.stratum_index], 0.0)
        self.weights = self.base_weights * self.g[:, None]
        f = 1.0 - n_hu / big_n if design.fpc else np.ones_like(n_hu)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(n_hu >= 2, f * n_hu / (n_hu - 1.0), 0.0)
        self.lonely = n_hu == 1
        # R survey's "adjust": a lonely stratum is not centred, scale f = 1 − 1/N_h.
        self._var_factor = np.where(self.lonely, f, c)

    @property
    def n(self) -> int:
        return self.design.n

    def _sums(self, a: np.ndarray) -> np.ndarray:
        """Per-stratum column sums (respondents × k → strata × k)."""
        return self._onehot.T @ a

    def _prepare(self, y: np.ndarray, in_domain: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        y, d = self.design._prepare(y, in_domain)
        if d.shape != self.assigned.shape:
            raise ValueError(f"in_domain has shape {d.shape}, assigned has shape {self.assigned.shape}")
        d = d & self.assigned
        return np.where(d, y, 0.0), d

    def _calibrated(self, z: np.ndarray) -> np.ndarray:
        cal = self.design._calibration
        if cal is None:
            return z
        out = np.zeros_like(z)
        for k in range(z.shape[1]):
            rows = self.assigned[:, k]
            if not rows.any():
                continue
            root = np.sqrt(self.base_weights[rows, k])
            g = self.g[rows]
            a = cal.x[rows] * root[:, None]
            b = z[rows, k] / (g * root)
            beta, *_ = np.linalg.lstsq(a, b, rcond=None)
            out[rows, k] = (b - a @ beta) * g * root
        return out

    def _unit_centred(self, z: np.ndarray) -> np.ndarray:
        """z centred within stratum over each unit's assigned respondents (0 elsewhere)."""
        design = self.design
        with np.errstate(invalid="ignore", divide="ignore"):
            zbar = np.where(self.n_hu >= 2, self._sums(z) / self.n_hu, 0.0)
        return np.where(self.assigned, z - zbar[design.stratum_index], 0.0)

    def variance_from_z(self, z: np.ndarray) -> np.ndarray:
        """Per-unit design variances from the linearised values (see the notes)."""
        zc = self._unit_centred(self._calibrated(np.asarray(z, dtype=float)))
        ss = self._sums(zc * zc)
        return (self._var_factor * ss).sum(axis=0)

    def covariance_from_z(self, z: np.ndarray, variance: np.ndarray | None = None) -> np.ndarray:
        """Covariance matrix of the units' estimates (see the notes).

        ``variance`` (the per-unit variances, e.g. from replicates) is the
        diagonal; by default ``variance_from_z(z)``.
        """
        z = self._calibrated(np.asarray(z, dtype=float))
        design = self.design
        zbar = self._sums(z) / design.n_h[:, None]
        zc = z - zbar[design.stratum_index]
        f = 1.0 - design.n_h / design.N_h if design.fpc else np.ones_like(design.n_h)
        with np.errstate(invalid="ignore", divide="ignore"):
            ch = np.where(design.n_h >= 2, f * design.n_h / (design.n_h - 1.0), 0.0)
        c = zc.T @ (zc * ch[design.stratum_index][:, None])
        v = self.variance_from_z(z) if variance is None else np.asarray(variance, dtype=float)
        return rescale_covariance(c, v)

    def replicate_estimates(self, y: np.ndarray, in_domain: np.ndarray,
                            replicates: ReplicateWeights) -> np.ndarray:
        """Replicate estimates (replicates × units) with the phase-one replicate factors."""
        y, d = self._prepare(y, in_domain)
        return self._replicate_estimates(y, d, replicates)

    def _replicate_estimates(self, y: np.ndarray, d: np.ndarray,
                             replicates: ReplicateWeights) -> np.ndarray:
        wr = np.asarray(replicates.weights, dtype=float)
        if wr.ndim != 2 or wr.shape[0] != self.n:
            raise ValueError(f"replicate weights must have {self.n} rows, got shape {wr.shape}")
        factors = wr / self.design.weights[:, None]
        wd = self.weights * d
        with np.errstate(invalid="ignore", divide="ignore"):
            return (factors.T @ (wd * y)) / (factors.T @ wd)

    def domain_means(self, y: np.ndarray, in_domain: np.ndarray | None = None, *,
                     level: float = 0.95, replicates: ReplicateWeights | None = None) -> DomainMeans:
        """Hájek means of the units with their per-unit designs (see the notes).

        ``y`` and ``in_domain`` are respondents × units like ``assigned``;
        the domain of unit u is ``in_domain & assigned``.
        """
        level = check_level(level)
        y, d = self._prepare(y, in_domain)
        wd = self.weights * d
        nd = wd.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            est = (wd * y).sum(axis=0) / nd
            z = wd * (y - np.where(np.isfinite(est), est, 0.0)) / np.where(nd > 0, nd, 1.0)
        if replicates is None:
            var = self.variance_from_z(z)
        else:
            theta = self._replicate_estimates(y, d, replicates)
            centre = est[None, :] if replicates.mse else np.nanmean(theta, axis=0)[None, :]
            var = replicates.scale * np.nansum((theta - centre) ** 2, axis=0)
        n = d.sum(axis=0)
        se = np.where(n > 0, np.sqrt(np.maximum(var, 0.0)), np.nan)
        df = domain_df(d.sum(axis=0) - (self._sums(d.astype(float)) > 0).sum(axis=0), n)
        half = half_width(level, df, se)
        s1, s2 = wd.sum(axis=0), (wd * wd).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            n_eff = s1 * s1 / s2
            deff = n * s2 / (s1 * s1)
        return DomainMeans(estimate=est, se=se, df=df, ci_low=est - half, ci_high=est + half,
                           n=n, n_eff=n_eff, deff=deff, level=level, z=z)

    def proportions(self, y: np.ndarray, in_domain: np.ndarray | None = None, *,
                    method: CiMethod = "beta", level: float = 0.95,
                    replicates: ReplicateWeights | None = None) -> DomainMeans:
        """Proportions (y ∈ {0, 1}) of the units with intervals for proportions."""
        level = check_level(level)
        yy, d = self._prepare(y, in_domain)
        if not np.isin(yy[d], (0.0, 1.0)).all():
            raise ValueError("a proportion needs values 0 or 1 inside the domain")
        m = self.domain_means(yy, d, level=level, replicates=replicates)
        low, high = proportion_interval(m.estimate, m.se ** 2, n=m.n, df=m.df,
                                        method=method, level=level)
        return DomainMeans(estimate=m.estimate, se=m.se, df=m.df, ci_low=low, ci_high=high,
                           n=m.n, n_eff=m.n_eff, deff=m.deff, level=level, z=m.z)


def rescale_covariance(c: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The phase-one covariance ``c`` rescaled so that its diagonal is the per-unit
    variances ``v`` (correlations kept; a unit with no variance gets none)."""
    cd = np.diag(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where((cd > 0) & (v > 0), np.sqrt(np.maximum(v, 0.0) / cd), 0.0)
    out = c * scale[:, None] * scale[None, :]
    out = (out + out.T) / 2.0
    np.fill_diagonal(out, np.where(np.isfinite(v), np.maximum(v, 0.0), 0.0))
    return out
