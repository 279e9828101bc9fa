"""Mode effects: the design-based IVR − CATI difference of mean ratings.

Respondent i has a score y_i (e.g. the mean points of the units of a track it
rated) and a mode group (``"ivr"`` or ``"cati"``).  The two group means are
domain means of the stratified design (``StratifiedDesign.domain_means``), and
their difference has the linearised variance
V(ȳ_a − ȳ_b) = V_a + V_b − 2 C_ab, C_ab from the same linearised values
(``StratifiedDesign.covariance_from_z``): exactly R ``survey``'s
``svycontrast(svyby(~y, ~mode, design, svymean, covmat = TRUE), c(1, -1))``.
The interval is t with the design's degrees of freedom (respondents minus
strata, R ``degf``).

Two uses, reported side by side:

* **experimental**: the groups are the randomised arms of the embedded mode
  experiment (a seeded fraction of released cases routed CATI-first instead of
  IVR-first), compared as assigned (intention to treat) among the experiment's
  respondents: the measurement effect of the mode without selection bias;
* **observational**: the groups are the modes the respondents actually
  answered in, all respondents: confounds who answers by CATI with how they
  answer.

A mode-adjusted score may only use the experimental estimate
(:func:`mode_adjusted`): each CATI rating is moved to the keypad's level by
the experimental difference δ = IVR − CATI, which moves a unit's Hájek mean
by s·δ, s being the weighted share of the unit's ratings given to an
interviewer.  Its SE is bounded by SE(score) + s·SE(δ) (the two estimates
share respondents and their covariance is not estimated; the bound holds
whatever it is), the interval is t with min(df) on that bound: conservative.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scoring.estimators import StratifiedDesign
from scoring.intervals import check_level, tcrit

__all__ = ["ModeAdjusted", "ModeDifference", "mode_adjusted", "mode_difference"]


@dataclass(frozen=True)
class ModeDifference:
    """ȳ_a − ȳ_b with its SE, df and interval; the two means and their sizes."""

    a: str
    b: str
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    difference: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    level: float


def mode_difference(strata: Sequence[Hashable], population: Mapping[Hashable, float],
                    y: Sequence[float], mode: Sequence[Hashable], *, a: str = "ivr",
                    b: str = "cati", level: float = 0.95, fpc: bool = True) -> ModeDifference:
    """The design-based difference of the mean of ``y`` between modes ``a`` and ``b``.

    One entry per respondent in ``strata``, ``y`` and ``mode``; respondents of
    other modes stay in the design (they count in n_h) but in neither domain.
    """
    level = check_level(level)
    design = StratifiedDesign(np.asarray(strata).astype(str),
                              {str(k): v for k, v in population.items()}, fpc=fpc)
    yy = np.asarray(y, dtype=float)
    md = np.asarray(mode).astype(str)
    d = np.column_stack([md == a, md == b])
    values = np.where(d, yy[:, None], 0.0)
    m = design.domain_means(values, d, level=level)
    cov = design.covariance_from_z(m.z)
    diff = float(m.estimate[0] - m.estimate[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    df = float(design.n - design.stratum_labels.size)
    t = float(tcrit(level, np.array([df]))[0])
    return ModeDifference(a=a, b=b, mean_a=float(m.estimate[0]), mean_b=float(m.estimate[1]),
                          n_a=int(m.n[0]), n_b=int(m.n[1]), difference=diff, se=se, df=df,
                          ci_low=diff - t * se, ci_high=diff + t * se, level=level)


@dataclass(frozen=True)
class ModeAdjusted:
    """A unit's score moved to the keypad (IVR) level: score + cati_share·δ, with its bound."""

    score: float
    adjusted: float
    shift: float
    cati_share: float
    se_bound: float
    df: float
    ci_low: float
    ci_high: float


def mode_adjusted(score: float, se: float, df: float | None, cati_share: float,
                  difference: ModeDifference, *, level: float = 0.95) -> ModeAdjusted:
    """The mode-adjusted score of a unit (see the module notes); use only an experimental δ.

    ``cati_share`` is the weighted share of the unit's in-domain ratings given
    to an interviewer (0..1).
    """
    level = check_level(level)
    if not 0.0 <= cati_share <= 1.0:
        raise ValueError(f"cati_share must be between 0 and 1, got {cati_share!r}")
    shift = cati_share * difference.difference
    adjusted = score + shift
    bound = se + cati_share * difference.se
    d = min(float(df), difference.df) if df is not None else float("nan")
    if np.isfinite(d) and d > 0 and np.isfinite(bound):
        t = float(tcrit(level, np.array([d]))[0])
        low, high = adjusted - t * bound, adjusted + t * bound
    else:
        low = high = float("nan")
    return ModeAdjusted(score=score, adjusted=adjusted, shift=shift, cati_share=cati_share,
                        se_bound=bound, df=d, ci_low=low, ci_high=high)
