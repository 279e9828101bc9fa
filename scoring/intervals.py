"""Estimates with intervals: result types, t intervals, intervals for proportions.

Pure functions shared by the designs (``scoring.estimators``,
``scoring.assigned``) and the fast path (``scoring.sparse``).  See
``scoring.estimators`` for the references.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import special

__all__ = [
    "CiMethod",
    "ConfidenceInterval",
    "DomainMean",
    "DomainMeans",
    "check_level",
    "domain_df",
    "half_width",
    "proportion_interval",
    "tcrit",
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


def tcrit(level: float, df: np.ndarray) -> np.ndarray:
    df = np.asarray(df, dtype=float)
    out = np.full(df.shape, np.nan)
    ok = df > 0
    out[ok] = special.stdtrit(df[ok], 0.5 + level / 2)  # t quantile
    return out


def domain_df(df: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Degrees of freedom as floats, NaN (reported as null) for a domain with nobody in it."""
    return np.where(np.asarray(n) > 0, np.asarray(df, dtype=float), np.nan)


def half_width(level: float, df: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Half-width of the t interval: NaN (no interval) unless df > 0, as R's ``confint``
    with ``qt(·, df)``; 0 when the SE is 0 and df > 0 (every stratum a census)."""
    half = tcrit(level, df) * se
    return np.where((se == 0.0) & (np.asarray(df, dtype=float) > 0), 0.0, half)


def check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    return level


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
    level = check_level(level)
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
            low[ok] = special.betaincinv(n_eff[ok] * p[ok], n_eff[ok] * (1 - p[ok]) + 1, alpha / 2)
            high[ok] = special.betaincinv(n_eff[ok] * p[ok] + 1, n_eff[ok] * (1 - p[ok]), 1 - alpha / 2)
        elif method == "wilson":
            t = tcrit(level, df)
            n_eff = p * (1.0 - p) / v
            ok = inner & np.isfinite(t)
            lo, hi = _wilson(p[ok], n_eff[ok], t[ok])
            low[ok], high[ok] = lo, hi
        else:
            t = tcrit(level, df)
            se_logit = np.sqrt(v) / (p * (1.0 - p))
            centre = np.log(p / (1.0 - p))
            ok = inner & np.isfinite(t)
            low[ok] = _expit(centre[ok] - t[ok] * se_logit[ok])
            high[ok] = _expit(centre[ok] + t[ok] * se_logit[ok])
    if edge.any():
        if method == "wilson":
            t = tcrit(level, df[edge])
            lo, hi = _wilson(p[edge], n[edge], t)
        else:
            lo, hi = _clopper_pearson_edge(p[edge], n[edge], alpha)
        low[edge], high[edge] = lo, hi
    return low, high


def _tcrit_lower(alpha: float, df: np.ndarray) -> np.ndarray:
    df = np.asarray(df, dtype=float)
    out = np.full(df.shape, np.nan)
    ok = df > 0
    out[ok] = special.stdtrit(df[ok], alpha / 2)
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

