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

A mode-adjusted score may only use the experimental estimate.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scoring.estimators import StratifiedDesign
from scoring.intervals import check_level, tcrit

__all__ = ["ModeDifference", "mode_difference"]


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
