"""Score every rated unit from a long table of phone ratings.

One row per (respondent, unit) rating; the design is stratified simple random
sampling of respondents (weight N_h/n_h, n_h the distinct respondents of
stratum h).  Each unit is a domain: the respondents who rated it on the points
scale.  See ``scoring.estimators`` for the estimators and references.

When each respondent was asked only a random subset of the units (the
database mode: ``assigned`` marks the rows of assigned units), unit u has its
own design: the n_hu respondents of stratum h assigned u are a simple random
subsample of the stratum's respondents, with weight N_h/n_hu, and the
variance is that of this per-unit stratified design
(``scoring.estimators.AssignedDesign``).  Without ``assigned`` (the plain
ratings file), every respondent keeps the weight N_h/n_h.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from scoring.estimators import (
    AssignedDesign,
    CiMethod,
    Margin,
    StratifiedDesign,
    bootstrap_weights,
)
from scoring.scale import RatingScale

__all__ = ["RespondentMargin", "UnitScore", "UnitScores", "score_units"]


@dataclass(frozen=True)
class UnitScore:
    """The phone-survey result of one unit.

    ``n`` is the number of raters in the unit's domain; ``score, se, df,
    ci_low, ci_high`` the Hájek mean with its t interval; ``sat, sat_low,
    sat_high`` the satisfaction rate with its interval; ``n_eff, deff`` the
    Kish weighting diagnostics; ``reliable`` is ``n >= min_raters`` (see
    ``status``).  Quantities that cannot be estimated are NaN: everything for
    a unit with no raters (``df`` is then ``None``), the intervals when df is
    0 (a single rater).
    """

    unit: str
    n: int
    score: float
    se: float
    df: int | None
    ci_low: float
    ci_high: float
    sat: float
    sat_low: float
    sat_high: float
    n_eff: float
    deff: float
    reliable: bool

    @property
    def status(self) -> str:
        """``"ok"``; ``"insufficient-data"`` (fewer than ``min_raters`` raters: never
        flagged nor ranked); ``"no-raters"`` (nobody in the domain)."""
        if self.n == 0:
            return "no-raters"
        return "ok" if self.reliable else "insufficient-data"

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON; NaN becomes ``None``."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
        out["status"] = self.status
        return out


@dataclass(frozen=True)
class UnitScores:
    """All units' scores, in sorted unit order, with their covariance matrix.

    ``covariance[j, k]`` is the linearised covariance of the scores of units
    j and k (units share raters); its diagonal is ``se**2``.
    """

    units: tuple[UnitScore, ...]
    level: float
    ci_method: str
    min_raters: int
    covariance: np.ndarray = field(repr=False)

    @property
    def unit_ids(self) -> tuple[str, ...]:
        return tuple(u.unit for u in self.units)

    def __len__(self) -> int:
        return len(self.units)

    def __iter__(self):
        return iter(self.units)

    def __getitem__(self, unit: str) -> UnitScore:
        return self.units[self._index(unit)]

    def _index(self, unit: str) -> int:
        try:
            return self.unit_ids.index(str(unit))
        except ValueError:
            raise KeyError(f"unit {unit!r} has no ratings") from None

    def cov(self, a: str, b: str) -> float:
        """Covariance of the scores of units ``a`` and ``b``."""
        return float(self.covariance[self._index(a), self._index(b)])

    def as_dict(self) -> dict[str, Any]:
        return {"units": [u.as_dict() for u in self.units]}


@dataclass(frozen=True)
class RespondentMargin:
    """A population margin for raking, given per respondent id.

    ``category_of`` maps every respondent id to its category (e.g. town);
    ``totals`` maps every category to its known population count.
    """

    name: str
    category_of: Mapping[Hashable, Hashable]
    totals: Mapping[Hashable, float]


def score_units(
    respondent_id: Sequence[Hashable] | np.ndarray,
    stratum: Sequence[Hashable] | np.ndarray,
    unit: Sequence[Hashable] | np.ndarray,
    rating: Sequence[Any] | np.ndarray,
    population: Mapping[Hashable, float],
    *,
    scale: RatingScale | None = None,
    level: float = 0.95,
    min_raters: int = 30,
    ci_method: CiMethod = "beta",
    fpc: bool = True,
    margins: Sequence[RespondentMargin] = (),
    variance: Literal["linearised", "bootstrap"] = "linearised",
    replicates: int = 500,
    rng: np.random.Generator | None = None,
    assigned: Sequence[bool] | np.ndarray | None = None,
) -> UnitScores:
    """Score all units from a long table of ratings.

    Parameters
    ----------
    respondent_id, stratum, unit, rating : arrays of equal length
        One row per rating.  A respondent belongs to one stratum and rates a
        unit at most once.
    population : mapping stratum -> N_h
    scale : RatingScale, optional
        Defaults to ``RatingScale.default()``.
    level : float
        Confidence level of the intervals.
    min_raters : int
        Units with fewer raters in their domain are marked ``reliable=False``.
    ci_method : {"beta", "wilson", "logit"}
        Interval of the satisfaction rate (see
        ``scoring.estimators.proportion_interval``).
    fpc : bool
        Finite population correction.
    margins : sequence of RespondentMargin
        Rake the design weights to these margins first (post-stratification
        for one margin); the variance then uses the calibration residuals.
    variance : {"linearised", "bootstrap"}
        ``"bootstrap"`` uses Rao–Wu–Yue rescaling bootstrap replicate weights
        (``replicates`` of them, drawn with ``rng``, which is then required).
    assigned : array of bool, one per row, optional
        ``True`` where the row's unit was assigned to the respondent.  When
        given, each unit is scored on its own design: the respondents
        assigned the unit, weight N_h/n_hu (n_hu the respondents of stratum
        h assigned unit u); a row not assigned is outside every domain (the
        respondent still counts in n_h).  See ``AssignedDesign`` for the
        variance, the covariance between units, raking and replicates.
        Without it every respondent has weight N_h/n_h in every unit.
    """
    scale = scale or RatingScale.default()
    if int(min_raters) < 0:
        raise ValueError(f"min_raters must be 0 or more, got {min_raters!r}")
    rid = np.asarray(respondent_id).astype(str)
    strata = np.asarray(stratum).astype(str)
    units = np.asarray(unit).astype(str)
    keys = list(rating)
    if not (rid.size == strata.size == units.size == len(keys)):
        raise ValueError("respondent_id, stratum, unit and rating differ in length")
    if rid.size == 0:
        raise ValueError("there are no ratings")
    points, inside, sat = scale.encode(keys)
    if assigned is not None:
        given = np.asarray(assigned)
        if given.shape != rid.shape or given.dtype != bool:
            raise ValueError("assigned must be one bool per rating row")

    resp_ids, r = np.unique(rid, return_inverse=True)
    first = np.full(resp_ids.size, -1)
    first[r[::-1]] = np.arange(rid.size)[::-1]
    resp_strata = strata[first]
    clash = resp_strata[r] != strata
    if clash.any():
        i = int(np.flatnonzero(clash)[0])
        raise ValueError(
            f"respondent {str(rid[i])!r} is in two strata: {str(resp_strata[r[i]])!r} and {str(strata[i])!r}"
        )
    unit_ids, u = np.unique(units, return_inverse=True)
    pair = r.astype(np.int64) * unit_ids.size + u
    uniq, counts = np.unique(pair, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        raise ValueError(
            f"respondent {str(resp_ids[dup // unit_ids.size])!r} rated unit "
            f"{str(unit_ids[dup % unit_ids.size])!r} more than once"
        )
    pop = {str(k): v for k, v in population.items()}
    design = StratifiedDesign(resp_strata, pop, respondent_ids=resp_ids, fpc=fpc)
    if margins:
        design = design.rake([_align(m, resp_ids) for m in margins])

    y = np.zeros((resp_ids.size, unit_ids.size))
    d = np.zeros(y.shape, dtype=bool)
    s = np.zeros(y.shape)
    y[r, u] = np.where(inside, points, 0.0)
    d[r, u] = inside
    s[r, u] = sat
    target: StratifiedDesign | AssignedDesign = design
    if assigned is not None:
        a = np.zeros(y.shape, dtype=bool)
        a[r, u] = given
        target = AssignedDesign(design, a)
    reps = None
    if variance == "bootstrap":
        if rng is None:
            raise ValueError("variance='bootstrap' needs rng (a numpy.random.Generator)")
        reps = bootstrap_weights(design, replicates=replicates, rng=rng)
    elif variance != "linearised":
        raise ValueError(f"variance must be 'linearised' or 'bootstrap', got {variance!r}")
    m = target.domain_means(y, d, level=level, replicates=reps)
    p = target.proportions(s, d, method=ci_method, level=level, replicates=reps)
    if isinstance(target, AssignedDesign):
        if reps is None:
            cov = target.covariance_from_z(m.z, variance=np.nan_to_num(m.se ** 2))
        else:
            theta = target.replicate_estimates(y, d, reps)
            dev = np.nan_to_num(theta - np.nanmean(theta, axis=0)[None, :])
            cov = reps.scale * dev.T @ dev
    elif reps is None:
        cov = design.covariance_from_z(m.z)
    else:
        cov = _replicate_covariance(y, d, m.estimate, reps.weights, reps.scale)
    scores = tuple(
        UnitScore(
            unit=str(unit_ids[k]),
            n=int(m.n[k]),
            score=float(m.estimate[k]),
            se=float(m.se[k]),
            df=int(m.df[k]) if np.isfinite(m.df[k]) else None,
            ci_low=float(m.ci_low[k]),
            ci_high=float(m.ci_high[k]),
            sat=float(p.estimate[k]),
            sat_low=float(p.ci_low[k]),
            sat_high=float(p.ci_high[k]),
            n_eff=float(m.n_eff[k]),
            deff=float(m.deff[k]),
            reliable=bool(m.n[k] >= int(min_raters)),
        )
        for k in range(unit_ids.size)
    )
    return UnitScores(units=scores, level=float(level), ci_method=ci_method,
                      min_raters=int(min_raters), covariance=cov)


def _align(margin: RespondentMargin, resp_ids: np.ndarray) -> Margin:
    lookup = {str(k): v for k, v in margin.category_of.items()}
    codes = []
    for rid in resp_ids.tolist():
        if rid not in lookup:
            raise ValueError(f"margin {margin.name!r}: respondent {rid!r} has no category")
        codes.append(lookup[rid])
    return Margin(codes=np.asarray(codes), totals=margin.totals, name=margin.name)


def _replicate_covariance(y: np.ndarray, d: np.ndarray, est: np.ndarray,
                          wr: np.ndarray, scale: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = (wr.T @ (y * d)) / (wr.T @ d.astype(float))
    dev = theta - np.nanmean(theta, axis=0)[None, :]
    dev = np.nan_to_num(dev)
    return scale * dev.T @ dev
