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
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
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
from scoring.sparse import LongRatings, UnitEstimates, estimate_units, factorise

__all__ = ["RespondentMargin", "UnitScore", "UnitScores", "score_units"]


@dataclass(frozen=True)
class UnitScore:
    """The phone-survey result of one unit.

    ``n`` is the number of raters in the unit's domain; ``score, se, df,
    ci_low, ci_high`` the Hájek mean with its t interval; ``sat, sat_low,
    sat_high`` the satisfaction rate with its interval; ``n_eff, deff`` the
    Kish weighting diagnostics; ``reliable`` is ``n >= min_raters`` (see
    ``status``); ``uncovered`` names the eligible strata with nobody assigned
    the unit (they drop out of its estimate: "not every stratum covered").  Quantities that cannot be estimated are NaN: everything for
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
    uncovered: tuple[str, ...] = ()

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
        out["uncovered"] = list(self.uncovered)
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
        return tuple(self._position)

    @cached_property
    def _position(self) -> dict[str, int]:
        return {u.unit: k for k, u in enumerate(self.units)}

    def __len__(self) -> int:
        return len(self.units)

    def __iter__(self):
        return iter(self.units)

    def __getitem__(self, unit: str) -> UnitScore:
        return self.units[self._index(unit)]

    def _index(self, unit: str) -> int:
        try:
            return self._position[str(unit)]
        except KeyError:
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
    eligible_strata: Mapping[str, Sequence[str]] | None = None,
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
    eligible_strata : mapping unit -> strata, optional
        The strata whose respondents may rate each unit; a unit's
        ``uncovered`` lists those of them with no respondent assigned the
        unit (no row at all in the plain design).
    """
    scale = scale or RatingScale.default()
    _check_options(min_raters, variance, rng)
    # The long table as integer codes, checked (one stratum per respondent, one rating per unit).
    rows = _long_rows(respondent_id, stratum, unit, rating, scale, assigned)
    dense = bool(margins) or variance == "bootstrap"
    if dense:  # raked weights and replicates take the respondents in sorted order
        rows = rows.by_respondent_id()
    design = StratifiedDesign.from_codes(rows.strata_ids, rows.resp_stratum,
                                         {str(k): v for k, v in population.items()}, fpc=fpc)
    # The estimates: O(ratings) sums for the linearised variance, respondents × units
    # matrices for raked weights and replicates.
    if dense:
        est = _dense_estimates(rows, design, margins, variance, replicates, rng, level, ci_method)
    else:
        est = estimate_units(
            LongRatings(resp=rows.resp, unit=rows.unit, stratum=design.stratum_index,
                        n_units=rows.unit_ids.size, y=rows.points, sat=rows.sat,
                        inside=rows.inside, assigned=rows.assigned, width=rows.width),
            design.N_h, fpc=fpc, level=level, ci_method=ci_method)
    return UnitScores(units=_unit_scores(rows, est, int(min_raters), _uncovered(rows, eligible_strata)),
                      level=float(level), ci_method=ci_method, min_raters=int(min_raters),
                      covariance=est.covariance)


def _check_options(min_raters: int, variance: str, rng: np.random.Generator | None) -> None:
    if int(min_raters) < 0:
        raise ValueError(f"min_raters must be 0 or more, got {min_raters!r}")
    if variance not in ("linearised", "bootstrap"):
        raise ValueError(f"variance must be 'linearised' or 'bootstrap', got {variance!r}")
    if variance == "bootstrap" and rng is None:
        raise ValueError("variance='bootstrap' needs rng (a numpy.random.Generator)")


def _unit_scores(rows: _Rows, est: UnitEstimates, min_raters: int,
                 uncovered: Mapping[str, tuple[str, ...]]) -> tuple[UnitScore, ...]:
    """One ``UnitScore`` per unit, in sorted unit order (the arrays read once, as lists)."""
    return tuple(
        UnitScore(unit=unit, n=int(n), score=score, se=se,
                  df=int(df) if math.isfinite(df) else None, ci_low=low, ci_high=high,
                  sat=sat, sat_low=sat_low, sat_high=sat_high, n_eff=n_eff, deff=deff,
                  reliable=n >= min_raters, uncovered=uncovered.get(unit, ()))
        for unit, n, score, se, df, low, high, sat, sat_low, sat_high, n_eff, deff in zip(
            rows.unit_ids.tolist(), *(np.asarray(a, dtype=float).tolist() for a in (
                est.n, est.estimate, est.se, est.df, est.ci_low, est.ci_high, est.sat,
                est.sat_low, est.sat_high, est.n_eff, est.deff)), strict=True)
    )


@dataclass(frozen=True)
class _Rows:
    """The long table as codes: respondent and unit of each row, the respondents'
    strata (codes into ``strata_ids`` and labels), and each row's points, domain
    flag, satisfied flag and assignment.  Respondents are numbered as they first
    appear (``by_respondent_id`` sorts them); ``width``: each respondent's rows are
    together, ``width`` rows each (``None`` otherwise)."""

    resp_ids: np.ndarray
    strata_ids: np.ndarray
    resp_stratum: np.ndarray
    unit_ids: np.ndarray
    resp: np.ndarray
    unit: np.ndarray
    points: np.ndarray
    inside: np.ndarray
    sat: np.ndarray
    assigned: np.ndarray | None
    width: int | None = None

    @property
    def resp_strata(self) -> np.ndarray:
        """The stratum label of every respondent."""
        return self.strata_ids[self.resp_stratum]

    def by_respondent_id(self) -> _Rows:
        """The same table with the respondents numbered in the order of their sorted
        ids (the order raking and replicate weights take them in)."""
        order = np.argsort(self.resp_ids, kind="stable")
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size)
        return replace(self, resp_ids=self.resp_ids[order], resp_stratum=self.resp_stratum[order],
                       resp=rank[self.resp], width=None)


def _long_rows(respondent_id, stratum, unit, rating, scale: RatingScale, assigned) -> _Rows:
    # Check the table: equal lengths, a stratum per respondent, one rating per unit.
    n = len(respondent_id)
    if not (n == len(stratum) == len(unit) == len(rating)):
        raise ValueError("respondent_id, stratum, unit and rating differ in length")
    if n == 0:
        raise ValueError("there are no ratings")
    points, inside, sat = scale.encode(rating)
    given = None
    if assigned is not None:
        given = np.asarray(assigned)
        if given.shape != (n,) or given.dtype != bool:
            raise ValueError("assigned must be one bool per rating row")
    # Respondents numbered as they first appear (no sort): when each respondent's rows
    # are together (a table read respondent by respondent) the codes rise row by row.
    resp_ids, r = factorise(respondent_id, sort=False)
    strata_ids, s = factorise(stratum)
    R = resp_ids.size
    grouped = n == 1 or bool((r[1:] >= r[:-1]).all())
    if grouped:
        first = np.flatnonzero(np.concatenate(([True], r[1:] != r[:-1])))
    else:
        first = np.full(R, -1)
        first[r[::-1]] = np.arange(n)[::-1]
    resp_s = s[first]
    clash = resp_s[r] != s
    if clash.any():
        i = int(np.flatnonzero(clash)[0])
        raise ValueError(
            f"respondent {str(resp_ids[r[i]])!r} is in two strata: "
            f"{str(strata_ids[resp_s[r[i]]])!r} and {str(strata_ids[s[i]])!r}"
        )
    unit_ids, u = factorise(unit)
    K = unit_ids.size
    # The same (respondent, unit) twice: equal neighbours once each respondent's units
    # are sorted.  Rows grouped by respondent, as many for each: a (respondents × width)
    # table whose rows are sorted; otherwise the (respondent, unit) keys, sorted by a
    # stable sort (timsort: about linear when the rows are grouped).
    width = n // R if grouped and n % R == 0 and (np.diff(first) == n // R).all() else None
    if width is not None:
        table = np.sort(u.reshape(R, width), axis=1)
        i, j = np.divmod(np.flatnonzero(table[:, 1:] == table[:, :-1]), max(width - 1, 1))
        twice = i * K + table[i, j]
    else:
        pair = np.sort(r * K + u, kind="stable")
        twice = pair[1:][pair[1:] == pair[:-1]]
    if twice.size:
        dup = int(twice.min())
        raise ValueError(
            f"respondent {str(resp_ids[dup // K])!r} rated unit "
            f"{str(unit_ids[dup % K])!r} more than once"
        )
    return _Rows(resp_ids=resp_ids, strata_ids=strata_ids, resp_stratum=resp_s,
                 unit_ids=unit_ids, resp=r, unit=u, points=points, inside=inside, sat=sat,
                 assigned=given, width=width)


def _uncovered(rows: _Rows, eligible: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """Per unit, its eligible strata with no respondent assigned it (sorted)."""
    if not eligible:
        return {}
    counted = slice(None) if rows.assigned is None else rows.assigned
    n_strata = rows.strata_ids.size
    pairs = np.unique(rows.unit[counted] * n_strata + rows.resp_stratum[rows.resp[counted]])
    covered: dict[str, set[str]] = {}
    for u, h in zip((pairs // n_strata).tolist(), (pairs % n_strata).tolist(), strict=True):
        covered.setdefault(str(rows.unit_ids[u]), set()).add(str(rows.strata_ids[h]))
    out = {}
    for u, strata in eligible.items():
        missing = sorted(set(map(str, strata)) - covered.get(str(u), set()))
        if missing:
            out[str(u)] = tuple(missing)
    return out


def _dense_estimates(rows: _Rows, design: StratifiedDesign, margins, variance, replicates,
                     rng, level: float, ci_method: CiMethod) -> UnitEstimates:
    """Raked weights or replicate variance: the respondents × units estimators."""
    if margins:
        design = design.rake([_align(m, rows.resp_ids) for m in margins])
    shape = (rows.resp_ids.size, rows.unit_ids.size)
    y = np.zeros(shape)
    d = np.zeros(shape, dtype=bool)
    s = np.zeros(shape)
    y[rows.resp, rows.unit] = np.where(rows.inside, rows.points, 0.0)
    d[rows.resp, rows.unit] = rows.inside
    s[rows.resp, rows.unit] = rows.sat
    target: StratifiedDesign | AssignedDesign = design
    if rows.assigned is not None:
        a = np.zeros(shape, dtype=bool)
        a[rows.resp, rows.unit] = rows.assigned
        target = AssignedDesign(design, a)
    reps = None
    if variance == "bootstrap":
        reps = bootstrap_weights(design, replicates=replicates, rng=rng)
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
    return UnitEstimates(estimate=m.estimate, se=m.se, df=m.df, ci_low=m.ci_low,
                         ci_high=m.ci_high, n=m.n, n_eff=m.n_eff, deff=m.deff, sat=p.estimate,
                         sat_se=p.se, sat_low=p.ci_low, sat_high=p.ci_high, covariance=cov)


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
