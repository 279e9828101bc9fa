"""Interviewer effects: intra-interviewer correlation, design effect, outlying interviewers.

Ratings given through a live interviewer (CATI) may carry the interviewer's
influence.  With ratings y of units by respondents, each respondent
interviewed by one interviewer:

* **Comparable cases.**  Units differ in level and interviewers rate
  different mixes of units, so the ratings are first centred on their unit's
  mean: r = y − ȳ_unit.  Everything below is computed on r.
* **ρ_int** by the one-way ANOVA (method of moments) estimator with
  interviewers as groups: with a interviewers, N ratings, m_i ratings of
  interviewer i, MSB = Σ m_i (r̄_i − r̄)²/(a − 1), MSW = Σ Σ (r − r̄_i)²/(N − a),
  m₀ = (N − Σ m_i²/N)/(a − 1): σ̂²_b = (MSB − MSW)/m₀ and
  ρ̂_int = σ̂²_b/(σ̂²_b + MSW).  The raw value may be negative (sampling
  noise); ``rho`` reports max(0, ρ̂), ``rho_raw`` the raw value.
* **Interviewer design effect** 1 + (m̄ − 1) ρ_int with m̄ = N/a the mean
  number of ratings per interviewer (Kish 1962).
* **Outlying interviewers**: interviewer i's mean residual r̄_i against 0 with
  the pooled within-interviewer SE √(MSW/m_i) and N − a df (R
  ``summary(lm(r ~ 0 + interviewer))``), two-sided p-values Holm-adjusted over
  the interviewers; outlying when the adjusted p is under α.

This treats the ratings as independent apart from the interviewer (it ignores
the sampling design and the several ratings of one respondent): a screening
measure for supervisors, not a design-based estimate.

References
----------
Kish, L. (1962). Studies of interviewer variance for attitudinal variables.
*JASA* 57, 92–115.
Searle, S. R., Casella, G. and McCulloch, C. E. (1992). *Variance Components*,
ch. 3 (ANOVA estimation, unbalanced one-way classification). Wiley.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from scoring.sparse import factorise

__all__ = ["InterviewerEffect", "InterviewerRow", "interviewer_effects"]


@dataclass(frozen=True)
class InterviewerRow:
    """One interviewer: ratings, mean residual (unit-centred), its SE, p and adjusted p."""

    interviewer: str
    n: int
    mean_residual: float
    se: float
    p: float
    p_adjusted: float
    outlying: bool


@dataclass(frozen=True)
class InterviewerEffect:
    """ρ_int (ANOVA), the interviewer design effect and the per-interviewer tests."""

    n: int
    interviewers: int
    rho: float
    rho_raw: float
    deff: float
    mean_per_interviewer: float
    msb: float
    msw: float
    rows: tuple[InterviewerRow, ...]

    def as_dict(self) -> dict:
        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v

        out = {k: clean(getattr(self, k)) for k in ("n", "interviewers", "rho", "rho_raw",
                                                      "deff", "mean_per_interviewer", "msb", "msw")}
        out["rows"] = [{k: clean(v) for k, v in r.__dict__.items()} for r in self.rows]
        return out


def interviewer_effects(interviewer: Sequence[Hashable], unit: Sequence[Hashable],
                        points: Sequence[float], *, alpha: float = 0.05) -> InterviewerEffect:
    """Interviewer effects from ratings (one row per rating on the points scale).

    See the module notes.  Needs at least two interviewers and more ratings
    than interviewers; otherwise the statistics are NaN.
    """
    y = np.asarray(points, dtype=float)
    if not (len(interviewer) == len(unit) == y.size):
        raise ValueError("interviewer, unit and points differ in length")
    if not np.isfinite(y).all():
        raise ValueError("points must be finite numbers (ratings on the points scale only)")
    names, g = factorise(interviewer)
    _, u = factorise(unit)
    n, a = y.size, names.size
    if n == 0:
        return InterviewerEffect(0, 0, math.nan, math.nan, math.nan, math.nan, math.nan,
                                 math.nan, ())
    unit_mean = np.bincount(u, weights=y) / np.bincount(u)
    r = y - unit_mean[u]
    m = np.bincount(g, minlength=a).astype(float)
    mean_i = np.bincount(g, weights=r, minlength=a) / m
    grand = r.mean()
    nan = math.nan
    msb = float((m * (mean_i - grand) ** 2).sum() / (a - 1)) if a > 1 else nan
    msw = float(((r - mean_i[g]) ** 2).sum() / (n - a)) if n > a else nan
    m0 = (n - (m * m).sum() / n) / (a - 1) if a > 1 else nan
    sigma_b = (msb - msw) / m0 if a > 1 and n > a else nan
    rho_raw = sigma_b / (sigma_b + msw) if math.isfinite(sigma_b) and sigma_b + msw > 0 else nan
    rho = max(0.0, rho_raw) if math.isfinite(rho_raw) else nan
    mbar = n / a
    deff = 1.0 + (mbar - 1.0) * rho if math.isfinite(rho) else nan
    rows: list[InterviewerRow] = []
    if n > a and msw > 0:
        se = np.sqrt(msw / m)
        p = 2.0 * special.stdtr(n - a, -np.abs(mean_i) / se)
        order = np.argsort(p, kind="stable")
        adj = np.empty(a)
        adj[order] = np.minimum(np.maximum.accumulate((a - np.arange(a)) * p[order]), 1.0)
        for i in range(a):
            rows.append(InterviewerRow(str(names[i]), int(m[i]), float(mean_i[i]), float(se[i]),
                                       float(p[i]), float(adj[i]), bool(adj[i] < alpha)))
    return InterviewerEffect(n=n, interviewers=a, rho=rho, rho_raw=rho_raw, deff=deff,
                             mean_per_interviewer=mbar, msb=msb, msw=msw, rows=tuple(rows))
