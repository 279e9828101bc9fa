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

import numpy as np

from scoring.intervals import (
    CiMethod,
    ConfidenceInterval,
    DomainMean,
    DomainMeans,
    check_level,
    domain_df,
    half_width,
    proportion_interval,
)
from scoring.weighting import (
    Margin,
    RakingError,
    ReplicateWeights,
    _Calibration,
    _indicators,
    bootstrap_weights,
    rake,
    weighting_deff,
)

__all__ = [
    "AssignedDesign",
    "CiMethod",
    "ConfidenceInterval",
    "DomainMean",
    "DomainMeans",
    "Margin",
    "RakingError",
    "ReplicateWeights",
    "StratifiedDesign",
    "bootstrap_weights",
    "proportion_interval",
    "rake",
    "weighting_deff",
]


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
        self._setup(strata, labels, codes, population, respondent_ids, fpc)

    @classmethod
    def from_codes(cls, labels: np.ndarray, codes: np.ndarray,
                   population: Mapping[Hashable, float], *, fpc: bool = True) -> StratifiedDesign:
        """The design of respondents given as stratum codes into sorted ``labels``.

        The same design as ``StratifiedDesign(labels[codes], population)``, without
        sorting the respondents' stratum labels again.
        """
        labels, codes = np.asarray(labels), np.asarray(codes, dtype=np.int64)
        if codes.ndim != 1 or codes.size == 0:
            raise ValueError("strata must be a non-empty one-dimensional array")
        out = object.__new__(cls)
        out._setup(labels[codes], labels, codes, population, None, fpc)
        return out

    def _setup(self, strata: np.ndarray, labels: np.ndarray, codes: np.ndarray,
               population: Mapping[Hashable, float], respondent_ids, fpc: bool) -> None:
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
        level = check_level(level)
        y, d = self._prepare(y, in_domain)
        est, z = self._linearise(y, d, self.weights)
        if replicates is None:
            var = self._variance_from_z(z)
        else:
            var = self._replicate_variance(y, d, est, replicates)
        se = np.sqrt(np.maximum(var, 0.0))
        n = d.sum(axis=0)
        se = np.where(n > 0, se, np.nan)
        df = domain_df(self.degrees_of_freedom(d), n)
        half = half_width(level, df, se)
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
        level = check_level(level)
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


from scoring.assigned import AssignedDesign  # noqa: E402  (it builds on StratifiedDesign)
