"""Design-based estimators for a stratified simple random sample.

The estimators follow the R ``survey`` package (Lumley 2004, 2010): stratified
Hájek domain means with the linearised (Taylor) variance and the finite
population correction, t intervals with the domain's degrees of freedom, and
Korn–Graubard intervals for proportions.  Everything here is pure: numpy
arrays in, frozen dataclasses out.

The core works on many domains at once.  A *domain* is a column of a boolean
matrix ``in_domain`` (respondents × domains); the values are the matching
column of ``y``.  For minping a domain is a rated unit: the respondents who
gave that unit a rating on the points scale ("don't know" is outside).

References
----------
.. [1] Lumley, T. (2004). Analysis of complex survey samples. *Journal of
   Statistical Software* 9(8).  R package ``survey``: ``svymean``,
   ``svyciprop``, ``degf``, ``calibrate``, ``as.svrepdesign``.
.. [2] Korn, E. L. and Graubard, B. I. (1998). Confidence intervals for
   proportions with small expected number of positive counts estimated from
   survey data. *Survey Methodology* 24, 193–201.
.. [3] Kish, L. (1965). *Survey Sampling*. Wiley.  (Weighting design effect.)
.. [4] Deville, J.-C. and Särndal, C.-E. (1992). Calibration estimators in
   survey sampling. *JASA* 87, 376–382.
.. [5] Rao, J. N. K., Wu, C. F. J. and Yue, K. (1992). Some recent work on
   resampling methods for complex surveys. *Survey Methodology* 18, 209–217.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats

__all__ = [
    "AssignedDesign",
    "ConfidenceInterval",
    "DomainMean",
    "DomainMeans",
    "Margin",
    "RakingError",
    "ReplicateWeights",
    "StratifiedDesign",
    "bootstrap_weights",
    "kish",
    "proportion_interval",
    "rake",
]

CiMethod = Literal["beta", "wilson", "logit"]


@dataclass(frozen=True)
class ConfidenceInterval:
    """A two-sided confidence interval."""

    low: float
    high: float


@dataclass(frozen=True)
class DomainMean:
    """The estimate for one domain.

    Attributes
    ----------
    estimate : float
        Hájek mean (or proportion) in the domain; NaN when the domain is empty.
    se : float
        Standard error (linearised, or from replicate weights).
    df : int or None
        Degrees of freedom of the interval: respondents in the domain minus
        the strata represented in it (R ``degf`` on the subset design);
        ``None`` for a domain with nobody in it.
    ci : ConfidenceInterval
        NaN ends (no interval) when df is 0 or ``None``.
    n : int
        Respondents in the domain.
    n_eff : float
        Kish effective sample size of the domain's weights, (Σw)² / Σw².
    deff : float
        Kish weighting design effect, n Σw² / (Σw)².
    """

    estimate: float
    se: float
    df: int | None
    ci: ConfidenceInterval
    n: int
    n_eff: float
    deff: float


@dataclass(frozen=True)
class DomainMeans:
    """Estimates for many domains at once (one entry per column of the input).

    ``z`` holds the linearised values (respondents × domains) used for the
    variance; ``covariance`` of two domains is built from them.
    """

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: np.ndarray
    n_eff: np.ndarray
    deff: np.ndarray
    level: float
    z: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return int(self.estimate.shape[0])

    def __getitem__(self, k: int) -> DomainMean:
        return DomainMean(
            estimate=float(self.estimate[k]),
            se=float(self.se[k]),
            df=int(self.df[k]) if np.isfinite(self.df[k]) else None,
            ci=ConfidenceInterval(float(self.ci_low[k]), float(self.ci_high[k])),
            n=int(self.n[k]),
            n_eff=float(self.n_eff[k]),
            deff=float(self.deff[k]),
        )


@dataclass(frozen=True)
class Margin:
    """A known population margin for raking or post-stratification.

    Parameters
    ----------
    codes : array of hashable, one per respondent
        The respondent's category on this margin (e.g. the respondent's town).
    totals : mapping category -> population total
        Known population count of every category that occurs in ``codes``.
    name : str
        Used in error messages.
    """

    codes: np.ndarray
    totals: Mapping[Hashable, float]
    name: str = "margin"


class RakingError(ValueError):
    """Raking did not converge, or a margin cannot be met."""


@dataclass(frozen=True)
class _Calibration:
    """What the linearised variance needs after raking (see ``StratifiedDesign.rake``)."""

    x: np.ndarray  # respondents × indicator columns of all margins
    base_weights: np.ndarray  # weights before raking
    g: np.ndarray  # final / base weights


@dataclass(frozen=True)
class ReplicateWeights:
    """Replicate weights and the variance scale: V = scale · Σ_r (θ_r − c)².

    ``c`` is the mean of the replicate estimates (``mse=False``, R's default)
    or the full-sample estimate (``mse=True``).
    """

    weights: np.ndarray  # respondents × replicates
    scale: float
    mse: bool = False


def _tcrit(level: float, df: np.ndarray) -> np.ndarray:
    df = np.asarray(df, dtype=float)
    out = np.full(df.shape, np.nan)
    ok = df > 0
    out[ok] = stats.t.ppf(0.5 + level / 2, df[ok])
    return out


def _domain_df(df: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Degrees of freedom as floats, NaN (reported as null) for a domain with nobody in it."""
    return np.where(np.asarray(n) > 0, np.asarray(df, dtype=float), np.nan)


def _half_width(level: float, df: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Half-width of the t interval: NaN (no interval) unless df > 0, as R's ``confint``
    with ``qt(·, df)``; 0 when the SE is 0 and df > 0 (every stratum a census)."""
    half = _tcrit(level, df) * se
    return np.where((se == 0.0) & (np.asarray(df, dtype=float) > 0), 0.0, half)


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    return level


def kish(weights: np.ndarray) -> tuple[float, float]:
    """Kish effective sample size and weighting design effect.

    Returns ``(n_eff, deff)`` with n_eff = (Σw)²/Σw² and deff = n Σw²/(Σw)²
    (Kish 1965).  For no weights both are NaN.
    """
    w = np.asarray(weights, dtype=float)
    if w.size == 0:
        return float("nan"), float("nan")
    s1, s2 = w.sum(), (w * w).sum()
    return float(s1 * s1 / s2), float(w.size * s2 / (s1 * s1))


class StratifiedDesign:
    """A stratified simple random sample of respondents, built once.

    Parameters
    ----------
    strata : array of hashable, one per respondent
        The stratum of each respondent (one row per distinct respondent).
    population : mapping stratum -> N_h
        Population size of every stratum in ``strata``.
    respondent_ids : array, optional
        Identifiers of the respondents, checked to be distinct.
    fpc : bool, keyword-only
        Apply the finite population correction (1 − n_h/N_h), as R ``survey``
        does when given ``fpc=``.

    Notes
    -----
    The weight of a respondent of stratum h is N_h/n_h, n_h the number of
    respondents of stratum h.  A stratum with a single respondent has no
    variance estimate and is rejected (R's default ``survey.lonely.psu =
    "fail"``), unless it is a census of its stratum under ``fpc``.
    """

    def __init__(
        self,
        strata: Sequence[Hashable] | np.ndarray,
        population: Mapping[Hashable, float],
        *,
        respondent_ids: Sequence[Hashable] | np.ndarray | None = None,
        fpc: bool = True,
    ) -> None:
        strata = np.asarray(strata)
        if strata.ndim != 1 or strata.size == 0:
            raise ValueError("strata must be a non-empty one-dimensional array")
        labels, codes = np.unique(strata, return_inverse=True)
        n_h = np.bincount(codes, minlength=labels.size).astype(float)
        big_n = np.empty(labels.size)
        for h, label in enumerate(labels.tolist()):
            if label not in population:
                raise ValueError(f"stratum {label!r} has no population size")
            value = float(population[label])
            if not np.isfinite(value) or value < n_h[h]:
                raise ValueError(
                    f"stratum {label!r}: population size N_h={population[label]!r} "
                    f"is smaller than its {int(n_h[h])} respondents"
                )
            big_n[h] = value
        if respondent_ids is not None:
            ids = np.asarray(respondent_ids)
            if ids.shape != strata.shape:
                raise ValueError("respondent_ids and strata differ in length")
            uniq, counts = np.unique(ids, return_counts=True)
            if (counts > 1).any():
                raise ValueError(f"respondent {uniq[counts > 1].tolist()[0]!r} appears more than once")
            self.respondent_ids = ids
        else:
            self.respondent_ids = None
        f = 1.0 - n_h / big_n if fpc else np.ones_like(n_h)
        c = np.zeros_like(n_h)
        for h in range(labels.size):
            if n_h[h] >= 2:
                c[h] = f[h] * n_h[h] / (n_h[h] - 1.0)
            elif not (fpc and f[h] == 0.0):
                raise ValueError(
                    f"stratum {labels.tolist()[h]!r} has a single respondent; its variance cannot be estimated"
                )
        self.fpc = bool(fpc)
        self.strata = strata
        self.stratum_labels = labels
        self.stratum_index = codes
        self.n_h = n_h
        self.N_h = big_n
        self.base_weights = (big_n / n_h)[codes]
        self.weights = self.base_weights
        self._var_factor = c  # f_h · n_h / (n_h − 1), per stratum
        self._calibration: _Calibration | None = None
        order = np.argsort(codes, kind="stable")
        self._order = order
        self._starts = np.searchsorted(codes[order], np.arange(labels.size))

    # -- shape helpers -------------------------------------------------
    @property
    def n(self) -> int:
        """Number of respondents."""
        return int(self.strata.size)

    def _prepare(self, y: np.ndarray, in_domain: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(y, dtype=float)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[0] != self.n:
            raise ValueError(f"y must have {self.n} rows (one per respondent), got shape {y.shape}")
        if in_domain is None:
            d = np.ones(y.shape, dtype=bool)
        else:
            d = np.asarray(in_domain, dtype=bool)
            if d.ndim == 1:
                d = d[:, None]
            if d.shape != y.shape:
                raise ValueError(f"in_domain has shape {d.shape}, y has shape {y.shape}")
        bad = d & ~np.isfinite(y)
        if bad.any():
            i, k = np.argwhere(bad)[0]
            raise ValueError(f"y is not a finite number for respondent {i} in domain {k}: {float(y[i, k])!r}")
        return np.where(d, y, 0.0), d

    def _stratum_sums(self, a: np.ndarray) -> np.ndarray:
        """Per-stratum column sums of ``a`` (respondents × k) → strata × k."""
        return np.add.reduceat(a[self._order], self._starts, axis=0)

    def _centred(self, z: np.ndarray) -> np.ndarray:
        """Linearised values residualised for raking, then centred within strata."""
        if self._calibration is not None:
            z = self._calibrate_residuals(z)
        zbar = self._stratum_sums(z) / self.n_h[:, None]
        return z - zbar[self.stratum_index]

    def _calibrate_residuals(self, z: np.ndarray) -> np.ndarray:
        # As R survey does for a calibrated design (svyrecvar, greg_calibration):
        # regress z/(g·w0) on the margin indicators with weights w0 and keep
        # the residuals times the final weights w = g·w0 (Deville & Särndal 1992).
        cal = self._calibration
        root = np.sqrt(cal.base_weights)
        a = cal.x * root[:, None]
        b = z / (cal.g * root)[:, None]
        beta, *_ = np.linalg.lstsq(a, b, rcond=None)
        return (b - a @ beta) * (cal.g * root)[:, None]

    def linearise(self, y: np.ndarray, in_domain: np.ndarray | None = None,
                  *, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Domain means and their linearised values.

        Returns ``(estimate, z)``: estimate (k,) = Σ w δ y / Σ w δ and
        z (n × k) = w δ (y − estimate) / Σ w δ, zero outside the domain.
        """
        y, d = self._prepare(y, in_domain)
        return self._linearise(y, d, self.weights if weights is None else weights)

    @staticmethod
    def _linearise(y: np.ndarray, d: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wd = w[:, None] * d
        nd = wd.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            est = (wd * y).sum(axis=0) / nd
            z = wd * (y - np.where(np.isfinite(est), est, 0.0)) / np.where(nd > 0, nd, 1.0)
        return est, z

    def _variance_from_z(self, z: np.ndarray) -> np.ndarray:
        zc = self._centred(z)
        ss = self._stratum_sums(zc * zc)
        return self._var_factor @ ss

    def covariance(self, y: np.ndarray, in_domain: np.ndarray | None = None) -> np.ndarray:
        """Linearised covariance matrix of the domain means (k × k).

        Cov(ȳ_j, ȳ_k) = Σ_h f_h n_h/(n_h − 1) Σ_{i∈h} (z_ij − z̄_hj)(z_ik − z̄_hk):
        domains that share respondents are correlated.
        """
        _, z = self.linearise(y, in_domain)
        return self.covariance_from_z(z)

    def covariance_from_z(self, z: np.ndarray) -> np.ndarray:
        """Covariance matrix from linearised values (as in ``DomainMeans.z``)."""
        zc = self._centred(np.asarray(z, dtype=float))
        scaled = zc * self._var_factor[self.stratum_index][:, None]
        return zc.T @ scaled

    def degrees_of_freedom(self, in_domain: np.ndarray) -> np.ndarray:
        """Respondents in each domain minus the strata represented in it."""
        d = np.asarray(in_domain, dtype=bool)
        if d.ndim == 1:
            d = d[:, None]
        per_stratum = self._stratum_sums(d.astype(np.int64))
        return d.sum(axis=0) - (per_stratum > 0).sum(axis=0)

    # -- estimators ----------------------------------------------------
    def domain_means(
        self,
        y: np.ndarray,
        in_domain: np.ndarray | None = None,
        *,
        level: float = 0.95,
        replicates: ReplicateWeights | None = None,
    ) -> DomainMeans:
        """Hájek means of many domains with t intervals.

        Parameters
        ----------
        y : array (n,) or (n, k)
            Values; entries outside the domain are ignored (may be NaN).
        in_domain : bool array like ``y``, optional
            Domain membership; all respondents when omitted.
        level : float
            Confidence level of the two-sided t interval.
        replicates : ReplicateWeights, optional
            Use the replicate variance instead of the linearised one.  The
            interval keeps the domain's degrees of freedom.

        Returns
        -------
        DomainMeans
        """
        level = _check_level(level)
        y, d = self._prepare(y, in_domain)
        est, z = self._linearise(y, d, self.weights)
        if replicates is None:
            var = self._variance_from_z(z)
        else:
            var = self._replicate_variance(y, d, est, replicates)
        se = np.sqrt(np.maximum(var, 0.0))
        n = d.sum(axis=0)
        se = np.where(n > 0, se, np.nan)
        df = _domain_df(self.degrees_of_freedom(d), n)
        half = _half_width(level, df, se)
        w = self.weights[:, None] * d
        s1, s2 = w.sum(axis=0), (w * w).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            n_eff = s1 * s1 / s2
            deff = n * s2 / (s1 * s1)
        return DomainMeans(
            estimate=est, se=se, df=df, ci_low=est - half, ci_high=est + half,
            n=n, n_eff=n_eff, deff=deff, level=level, z=z,
        )

    def domain_mean(self, y: np.ndarray, in_domain: np.ndarray | None = None,
                    *, level: float = 0.95, replicates: ReplicateWeights | None = None) -> DomainMean:
        """Hájek mean of one domain (see ``domain_means``)."""
        y = np.asarray(y, dtype=float)
        if y.ndim != 1:
            raise ValueError("domain_mean takes one column; use domain_means for many")
        return self.domain_means(y, in_domain, level=level, replicates=replicates)[0]

    def proportions(
        self,
        y: np.ndarray,
        in_domain: np.ndarray | None = None,
        *,
        method: CiMethod = "beta",
        level: float = 0.95,
        replicates: ReplicateWeights | None = None,
    ) -> DomainMeans:
        """Proportions (y ∈ {0, 1}) in many domains with intervals for proportions.

        The estimate and SE are the domain mean's; the interval is from
        ``proportion_interval`` (Korn–Graubard by default, as R
        ``svyciprop(method="beta")``).
        """
        level = _check_level(level)
        yy, d = self._prepare(y, in_domain)
        if not np.isin(yy[d], (0.0, 1.0)).all():
            raise ValueError("a proportion needs values 0 or 1 inside the domain")
        m = self.domain_means(yy, d, level=level, replicates=replicates)
        low, high = proportion_interval(m.estimate, m.se ** 2, n=m.n, df=m.df,
                                        method=method, level=level)
        return DomainMeans(
            estimate=m.estimate, se=m.se, df=m.df, ci_low=low, ci_high=high,
            n=m.n, n_eff=m.n_eff, deff=m.deff, level=level, z=m.z,
        )

    def proportion(self, y: np.ndarray, in_domain: np.ndarray | None = None,
                   *, method: CiMethod = "beta", level: float = 0.95,
                   replicates: ReplicateWeights | None = None) -> DomainMean:
        """Proportion in one domain (see ``proportions``)."""
        y = np.asarray(y, dtype=float)
        if y.ndim != 1:
            raise ValueError("proportion takes one column; use proportions for many")
        return self.proportions(y, in_domain, method=method, level=level, replicates=replicates)[0]

    # -- weighting -----------------------------------------------------
    def rake(self, margins: Sequence[Margin], *, max_iter: int = 100,
             tol: float = 1e-10) -> StratifiedDesign:
        """A new design whose weights are raked to known population margins.

        One margin is post-stratification.  The linearised variance of the
        raked design uses the calibration residuals (Deville & Särndal 1992),
        exactly as R ``survey`` does for ``calibrate(..., calfun="raking")``:
        the linearised values z are replaced by w·(z/w − x'β̂), β̂ from the
        regression of z/(g·w₀) on the margin indicators x with weights w₀
        (w₀ the design weights, g = w/w₀).
        """
        new_w = rake(self.weights, margins, max_iter=max_iter, tol=tol)
        x = _indicators(margins, self.n)
        out = object.__new__(StratifiedDesign)
        out.__dict__.update(self.__dict__)
        out.weights = new_w
        out._calibration = _Calibration(x=x, base_weights=self.base_weights,
                                        g=new_w / self.base_weights)
        return out

    def _replicate_variance(self, y: np.ndarray, d: np.ndarray, est: np.ndarray,
                            rep: ReplicateWeights) -> np.ndarray:
        wr = np.asarray(rep.weights, dtype=float)
        if wr.ndim != 2 or wr.shape[0] != self.n:
            raise ValueError(f"replicate weights must have {self.n} rows, got shape {wr.shape}")
        dy = np.where(d, y, 0.0)
        df_ = d.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            theta = (wr.T @ dy) / (wr.T @ df_)  # replicates × domains
        centre = est[None, :] if rep.mse else np.nanmean(theta, axis=0)[None, :]
        return rep.scale * np.nansum((theta - centre) ** 2, axis=0)


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
        cd = np.diag(c)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where((cd > 0) & (v > 0), np.sqrt(np.maximum(v, 0.0) / cd), 0.0)
        out = c * scale[:, None] * scale[None, :]
        out = (out + out.T) / 2.0
        np.fill_diagonal(out, np.where(np.isfinite(v), np.maximum(v, 0.0), 0.0))
        return out

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
        level = _check_level(level)
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
        df = _domain_df(d.sum(axis=0) - (self._sums(d.astype(float)) > 0).sum(axis=0), n)
        half = _half_width(level, df, se)
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
        level = _check_level(level)
        yy, d = self._prepare(y, in_domain)
        if not np.isin(yy[d], (0.0, 1.0)).all():
            raise ValueError("a proportion needs values 0 or 1 inside the domain")
        m = self.domain_means(yy, d, level=level, replicates=replicates)
        low, high = proportion_interval(m.estimate, m.se ** 2, n=m.n, df=m.df,
                                        method=method, level=level)
        return DomainMeans(estimate=m.estimate, se=m.se, df=m.df, ci_low=low, ci_high=high,
                           n=m.n, n_eff=m.n_eff, deff=m.deff, level=level, z=m.z)


def _indicators(margins: Sequence[Margin], n: int) -> np.ndarray:
    cols = []
    for m in margins:
        codes = np.asarray(m.codes)
        for label in np.unique(codes).tolist():
            cols.append(codes == label)
    return np.column_stack(cols).astype(float) if cols else np.zeros((n, 0))


def rake(weights: np.ndarray, margins: Sequence[Margin], *, max_iter: int = 100,
         tol: float = 1e-10) -> np.ndarray:
    """Rake weights to known population margins by iterative proportional fitting.

    Parameters
    ----------
    weights : array (n,)
        Starting (design) weights, positive.
    margins : sequence of Margin
        Each margin's categories must all have a known total; with one margin
        this is post-stratification (exact after one pass).
    max_iter : int
        Passes over all margins before giving up.
    tol : float
        Convergence when every margin's weighted totals are within
        ``tol`` × total of the known totals.

    Returns
    -------
    numpy.ndarray
        The raked weights.

    Raises
    ------
    RakingError
        When a category has no respondent, a category is missing from the
        totals, margins disagree on the population size, or the iteration does
        not converge within ``max_iter`` passes.

    References
    ----------
    Deming, W. E. and Stephan, F. F. (1940). On a least squares adjustment of
    a sampled frequency table when the expected marginal totals are known.
    *Ann. Math. Statist.* 11, 427–444.
    """
    w = np.asarray(weights, dtype=float).copy()
    if w.ndim != 1 or (w <= 0).any() or not np.isfinite(w).all():
        raise RakingError("weights must be a one-dimensional array of positive numbers")
    if not margins:
        raise RakingError("no margins given")
    prepared = []
    sizes = []
    for m in margins:
        codes = np.asarray(m.codes)
        if codes.shape != w.shape:
            raise RakingError(f"margin {m.name!r}: {codes.size} codes for {w.size} weights")
        labels, idx = np.unique(codes, return_inverse=True)
        target = np.empty(labels.size)
        for j, label in enumerate(labels.tolist()):
            if label not in m.totals:
                raise RakingError(f"margin {m.name!r}: category {label!r} has no population total")
            target[j] = float(m.totals[label])
            if not target[j] > 0:
                raise RakingError(f"margin {m.name!r}: total of {label!r} must be positive, got {m.totals[label]!r}")
        missing = [k for k in m.totals if k not in set(labels.tolist()) and float(m.totals[k]) > 0]
        if missing:
            raise RakingError(f"margin {m.name!r}: category {missing[0]!r} has no respondent")
        prepared.append((idx, target, m.name))
        sizes.append(target.sum())
    if not np.allclose(sizes, sizes[0], rtol=1e-9):
        raise RakingError(f"margins disagree on the population size: {sizes}")
    for _ in range(max_iter):
        for idx, target, _name in prepared:
            current = np.bincount(idx, weights=w, minlength=target.size)
            w *= (target / current)[idx]
        worst = max(
            np.max(np.abs(np.bincount(idx, weights=w, minlength=t.size) - t) / t)
            for idx, t, _ in prepared
        )
        if worst <= tol:
            return w
    raise RakingError(
        f"raking did not converge in {max_iter} iterations (largest relative margin error {worst:.3g}); "
        "the margins may be inconsistent with the sample (a cell empty in the sample but needed)"
    )


def bootstrap_weights(design: StratifiedDesign, *, replicates: int = 500,
                      rng: np.random.Generator) -> ReplicateWeights:
    """Rao–Wu–Yue rescaling bootstrap replicate weights.

    In each replicate, m_h = n_h − 1 respondents are drawn with replacement in
    every stratum (r_hi times respondent i) and the weight becomes
    w_hi · (1 − λ_h + λ_h · (n_h/m_h) · r_hi), λ_h = √(m_h (1 − f_h)/(n_h − 1)),
    f_h = n_h/N_h when the design has ``fpc`` and 0 otherwise.  Without fpc
    these are R ``survey``'s ``subbootweights``.  The variance is
    Σ_r (θ_r − θ̄)² / (R − 1).

    The replicates rescale the design's current weights; for a raked design
    they are not raked again, so they miss the variance reduction of raking
    (use the linearised variance, which accounts for it, in that case).

    Parameters
    ----------
    design : StratifiedDesign
    replicates : int
        Number of replicates R (at least 2).
    rng : numpy.random.Generator
        Source of randomness (seed it for reproducible results).
    """
    if int(replicates) < 2:
        raise ValueError(f"replicates must be at least 2, got {replicates!r}")
    replicates = int(replicates)
    out = np.repeat(design.weights[:, None], replicates, axis=1)
    for h in range(design.stratum_labels.size):
        members = np.flatnonzero(design.stratum_index == h)
        nh = members.size
        if nh < 2:
            continue
        mh = nh - 1
        f = nh / design.N_h[h] if design.fpc else 0.0
        lam = np.sqrt(mh * (1.0 - f) / (nh - 1.0))
        r = rng.multinomial(mh, np.full(nh, 1.0 / nh), size=replicates).T  # nh × R
        out[members] *= 1.0 - lam + lam * (nh / mh) * r
    return ReplicateWeights(weights=out, scale=1.0 / (replicates - 1), mse=False)


def proportion_interval(
    p: np.ndarray,
    variance: np.ndarray,
    *,
    n: np.ndarray,
    df: np.ndarray,
    method: CiMethod = "beta",
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence intervals for proportions estimated from a survey.

    Parameters
    ----------
    p, variance : arrays
        Estimated proportions and their variances.
    n : array
        Respondents in each domain (n_d).
    df : array
        Degrees of freedom of each domain.
    method : {"beta", "wilson", "logit"}
        ``"beta"``: Korn & Graubard (1998), as R ``svyciprop(method="beta")``:
        n_eff = p̂(1 − p̂)/V̂ · [t(α/2, n_d − 1)/t(α/2, df)]²,
        low = qbeta(α/2, n_eff p̂, n_eff(1 − p̂) + 1),
        high = qbeta(1 − α/2, n_eff p̂ + 1, n_eff(1 − p̂)).
        ``"wilson"``: the Wilson score interval with the effective size
        p̂(1 − p̂)/V̂ and the t quantile with the domain's df.
        ``"logit"``: as R ``svyciprop(method="logit")``,
        expit(logit p̂ ± t_df · SE(p̂)/(p̂(1 − p̂))).
    level : float

    Notes
    -----
    Where p̂ is 0 or 1 the variance is 0 and R returns NA; here the effective
    size is n_d, which gives the Clopper–Pearson interval for ``"beta"`` (for
    p̂ = 1: [(α/2)^(1/n_d), 1]), Wilson's interval on n_d for ``"wilson"``,
    and, because the logit is infinite there, the Clopper–Pearson interval
    for ``"logit"`` too.  Where 0 < p̂ < 1 and V̂ = 0 (every stratum a census)
    the interval is [p̂, p̂].  Where df ≤ 0 (a single rater, say) or df is
    NaN (an empty domain) there is no interval (NaN), as in R, whose t
    quantile with 0 df is NaN.
    """
    level = _check_level(level)
    if method not in ("beta", "wilson", "logit"):
        raise ValueError(f"method must be 'beta', 'wilson' or 'logit', got {method!r}")
    p = np.atleast_1d(np.asarray(p, dtype=float))
    v = np.atleast_1d(np.asarray(variance, dtype=float))
    n = np.atleast_1d(np.asarray(n, dtype=float))
    df = np.atleast_1d(np.asarray(df, dtype=float))
    alpha = 1.0 - level
    low = np.full(p.shape, np.nan)
    high = np.full(p.shape, np.nan)
    has_df = np.nan_to_num(df, nan=0.0) > 0  # no interval without degrees of freedom
    edge = np.isfinite(p) & ((p == 0.0) | (p == 1.0)) & (n > 0) & has_df
    inner = np.isfinite(p) & (p > 0.0) & (p < 1.0) & has_df
    census = inner & (v == 0.0)
    low[census] = p[census]
    high[census] = p[census]
    inner &= v > 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "beta":
            ratio = _tcrit_lower(alpha, n - 1.0) / _tcrit_lower(alpha, df)
            n_eff = p * (1.0 - p) / v * ratio ** 2
            ok = inner & np.isfinite(n_eff)
            low[ok] = stats.beta.ppf(alpha / 2, n_eff[ok] * p[ok], n_eff[ok] * (1 - p[ok]) + 1)
            high[ok] = stats.beta.ppf(1 - alpha / 2, n_eff[ok] * p[ok] + 1, n_eff[ok] * (1 - p[ok]))
        elif method == "wilson":
            t = _tcrit(level, df)
            n_eff = p * (1.0 - p) / v
            ok = inner & np.isfinite(t)
            lo, hi = _wilson(p[ok], n_eff[ok], t[ok])
            low[ok], high[ok] = lo, hi
        else:
            t = _tcrit(level, df)
            se_logit = np.sqrt(v) / (p * (1.0 - p))
            centre = np.log(p / (1.0 - p))
            ok = inner & np.isfinite(t)
            low[ok] = _expit(centre[ok] - t[ok] * se_logit[ok])
            high[ok] = _expit(centre[ok] + t[ok] * se_logit[ok])
    if edge.any():
        if method == "wilson":
            t = _tcrit(level, df[edge])
            lo, hi = _wilson(p[edge], n[edge], t)
        else:
            lo, hi = _clopper_pearson_edge(p[edge], n[edge], alpha)
        low[edge], high[edge] = lo, hi
    return low, high


def _tcrit_lower(alpha: float, df: np.ndarray) -> np.ndarray:
    df = np.asarray(df, dtype=float)
    out = np.full(df.shape, np.nan)
    ok = df > 0
    out[ok] = stats.t.ppf(alpha / 2, df[ok])
    return out


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _wilson(p: np.ndarray, n: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def _clopper_pearson_edge(p: np.ndarray, n: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    # p is 0 or 1 here: the beta quantiles have closed forms.
    one = p == 1.0
    low = np.where(one, (alpha / 2) ** (1.0 / n), 0.0)
    high = np.where(one, 1.0, 1.0 - (alpha / 2) ** (1.0 / n))
    return low, high
