"""Composite scores per track, flags under the threshold, and rank intervals.

A track's composite of unit j is

    C_j = Σ_p a_p · S_jp − D_j

over the track's parts p (phone survey, in-person assessment, online vote,
on-site rating) with the configured weights a_p (departments and agencies:
0.5 phone + 0.5 assessment; windows: 0.7 phone + 0.3 online) and D_j the
points deducted by daily inspection.

Uncertainty.  A part that is a sample (phone survey, assessment ballots) has a
standard error; an online vote count is not a sample of anything (it is a
count of whoever chose to vote) and has none, nor do deductions.  Parts are
independent samples, so Var(C_j) = Σ_p a_p² SE_jp²; with a single sampled
part this is the reference formula SE(C) = a·SE(S_phone).  The interval is t
with the Welch–Satterthwaite degrees of freedom of the sampled parts (the
part's own df when there is one).

Missing parts.  A unit without a part the track weighs (a window nobody voted
for online, a unit no assessment ballot rated) gets, by default
(``missing="renormalise"``), a composite over the parts it has with their
weights rescaled to sum to 1, and ``complete=False`` with the missing parts
named: its score stays on the same 0–100 scale and comparable, and the gap is
visible in the report rather than silently scored as zero.  With
``missing="exclude"`` such a unit gets no composite, no flag and no rank.
A unit with no scored part at all (e.g. deductions only) has no composite
(status ``"no-score"``); its deductions are still reported.

Insufficient data.  A unit whose sampled parts have fewer than ``min_raters``
raters (status ``"insufficient-data"``), or whose interval cannot be formed
(a sampled part with df 0, e.g. a single phone rater, or no df at all), is
never tested, flagged nor ranked, and is not in the multiplicity family.

Flags.  For threshold T (70) and level 1 − α (0.95) each tested unit gets the
one-sided p-value of "C_j is below T", p_j = F_t((C_j − T)/SE_j; df_j)
(0 or 1 when SE = 0).  The p-values of a track's tested units are adjusted
(Holm by default, Benjamini–Hochberg or none) and the unit is

* ``"below"`` when its adjusted p is under α/2 (0.025): a one-sided test at
  α/2, the level at which, without correction, this is exactly "the upper end
  of the two-sided interval is under T";
* ``"possibly-below"`` when it is not "below" but the lower end of its
  two-sided 1 − α interval (unadjusted) is under T: the interval contains T,
  or lies under T but the unit does not survive the multiplicity correction;
* not flagged otherwise.

Ranks.  Within a track, units j and k are told apart when the two-sided test
of C_j = C_k rejects at α, with Var(C_j − C_k) = Var C_j + Var C_k −
2 Cov(C_j, C_k), Cov from the units' shared phone raters
(a_j a_k Cov(S_j, S_k); the assessment parts are taken as independent between
units) and the smaller of the two df.  Rank interval of j: [1 + #units told
apart from j and above it, m − #units told apart and below], m the ranked
units.  The multiplicity (``ranks=``, after the csranks method of Mogstad,
Romano, Shaikh and Wilhelm 2024, with Holm's step-down in place of their
max-t critical value): ``"marginal"`` (default) adjusts each unit's m − 1
comparisons with Holm, so each unit's interval covers its true rank with
probability at least 1 − α; ``"simultaneous"`` adjusts all m(m − 1)/2
comparisons together, so all intervals of the track cover jointly;
``"pairwise"`` does not adjust (each comparison at α; narrower, and not a
1 − α interval for a rank).  Units with no composite or with insufficient
data are not ranked.

References
----------
Holm, S. (1979). A simple sequentially rejective multiple test procedure.
*Scand. J. Statist.* 6, 65–70.
Benjamini, Y. and Hochberg, Y. (1995). Controlling the false discovery rate.
*JRSS B* 57, 289–300.
Satterthwaite, F. E. (1946). An approximate distribution of estimates of
variance components. *Biometrics Bulletin* 2, 110–114.
Goldstein, H. and Spiegelhalter, D. J. (1996). League tables and their
limitations. *JRSS A* 159, 385–443.
Mogstad, M., Romano, J. P., Shaikh, A. M. and Wilhelm, D. (2024). Inference for
ranks with applications to mobility across neighbourhoods and academic
achievement across countries. *Review of Economic Studies* 91, 476–518.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

from scoring.scale import RatingScale
from scoring.sparse import factorise
from scoring.units import UnitScores

__all__ = [
    "CompositeScore",
    "PartScore",
    "TrackScores",
    "adjust_pvalues",
    "assessment_scores",
    "composite_scores",
    "deduction_totals",
    "online_scores",
    "pairwise_pvalues",
    "phone_parts",
    "rank_rejections",
]

Correction = Literal["holm", "bh", "none"]
RankCoverage = Literal["marginal", "simultaneous", "pairwise"]


@dataclass(frozen=True)
class PartScore:
    """One part's score of one unit.

    ``se`` is 0 and ``df`` is ``None`` for a part that is not a sample.
    """

    unit: str
    score: float
    se: float
    df: float | None
    n: int
    sampled: bool


@dataclass(frozen=True)
class CompositeScore:
    """A unit's composite score in its track, its flag and its rank interval.

    ``status`` is ``"ok"``, ``"incomplete"`` (parts missing, see ``missing``)
    or ``"no-score"``.  ``weights`` are the weights actually applied (after
    renormalisation).  ``flag`` is ``"below"``, ``"possibly-below"`` or
    ``None``.  ``rank`` (1 = best), ``rank_low`` and ``rank_high`` are
    ``None`` for units that are not ranked.
    """

    unit: str
    composite: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    parts: Mapping[str, float]
    weights: Mapping[str, float]
    missing: tuple[str, ...]
    deduction: float
    status: str
    reliable: bool
    p_below: float
    p_adjusted: float
    flag: str | None
    rank: int | None
    rank_low: int | None
    rank_high: int | None

    @property
    def complete(self) -> bool:
        return not self.missing

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["parts"] = dict(self.parts)
        out["weights"] = dict(self.weights)
        out["missing"] = list(self.missing)
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
        return out


@dataclass(frozen=True)
class TrackScores:
    """All units of one track."""

    track: str
    units: tuple[CompositeScore, ...]
    threshold: float
    correction: str
    level: float
    ranks: str = "marginal"

    def __getitem__(self, unit: str) -> CompositeScore:
        for u in self.units:
            if u.unit == unit:
                return u
        raise KeyError(f"unit {unit!r} is not in track {self.track!r}")

    def __iter__(self):
        return iter(self.units)

    def __len__(self) -> int:
        return len(self.units)


def phone_parts(scores: UnitScores) -> dict[str, PartScore]:
    """The phone-survey part of every unit that has raters."""
    return {
        u.unit: PartScore(u.unit, u.score, u.se, float(u.df), u.n, True)
        for u in scores
        if u.n > 0
    }


def assessment_scores(unit: Sequence[str], rating: Sequence[str], *,
                      scale: RatingScale | None = None,
                      count: Sequence[int] | None = None) -> dict[str, PartScore]:
    """In-person assessment: mean points of each unit's ballots.

    Ballots whose rating is outside the domain are left out.  The standard
    error is that of a simple random sample, s/√n, with n − 1 df (a unit
    with one ballot has no SE: NaN).  ``count`` (optional) gives how many
    ballots each row stands for (ballots tallied by unit and rating).
    """
    scale = scale or RatingScale.default()
    points, inside, _ = scale.encode(rating)
    names, code = factorise(np.asarray(unit).astype(str)[inside])
    x = points[inside]
    c = np.ones(x.size) if count is None else np.asarray(count, dtype=float)[inside]
    n = np.bincount(code, weights=c, minlength=names.size).round().astype(np.int64)
    mean = np.bincount(code, weights=c * x, minlength=names.size) / np.maximum(n, 1)
    ss = np.bincount(code, weights=c * (x - mean[code]) ** 2, minlength=names.size)
    out: dict[str, PartScore] = {}
    for k, u in enumerate(names.tolist()):
        nk = int(n[k])
        se = math.sqrt(ss[k] / (nk - 1)) / math.sqrt(nk) if nk > 1 else float("nan")
        out[u] = PartScore(u, float(mean[k]), se, float(nk - 1) if nk > 1 else None, nk, True)
    return out


def online_scores(unit: Sequence[str], option: Sequence[str], count: Sequence[float], *,
                  scale: RatingScale | None = None) -> dict[str, PartScore]:
    """Online vote: the points-weighted share of each unit's votes.

    S = Σ count·points / Σ count over the options on the points scale (votes
    for an option outside the domain are left out).  Not a sample: SE 0.  A
    unit whose in-domain votes total 0 has no online part.
    """
    scale = scale or RatingScale.default()
    points, inside, _ = scale.encode(option)
    c = np.asarray(count, dtype=float)
    if (c < 0).any() or not np.isfinite(c).all():
        raise ValueError("vote counts must be finite numbers of 0 or more")
    units = np.asarray(unit).astype(str)
    out: dict[str, PartScore] = {}
    for u in sorted(set(units.tolist())):
        sel = (units == u) & inside
        total = c[sel].sum()
        if total > 0:
            out[u] = PartScore(u, float((c[sel] * points[sel]).sum() / total), 0.0, None,
                               int(total), False)
    return out


def deduction_totals(unit: Sequence[str], points: Sequence[float]) -> dict[str, float]:
    """Points deducted per unit (the sum of its inspection records)."""
    out: dict[str, float] = {}
    for u, p in zip(unit, points, strict=True):
        p = float(p)
        if not math.isfinite(p) or p < 0:
            raise ValueError(f"points deducted from unit {u!r} must be 0 or more, got {p!r}")
        out[str(u)] = out.get(str(u), 0.0) + p
    return out


def adjust_pvalues(p: Sequence[float] | np.ndarray, method: Correction) -> np.ndarray:
    """Holm (family-wise) or Benjamini–Hochberg (false discovery rate) adjusted p-values."""
    p = np.asarray(p, dtype=float)
    if method == "none" or p.size == 0:
        return p.copy()
    if method == "bh":
        order = np.argsort(p, kind="stable")[::-1]  # largest first
        m = p.size
        adj = np.minimum.accumulate(p[order] * m / (m - np.arange(m)))
        out = np.empty(m)
        out[order] = np.minimum(adj, 1.0)
        return out
    if method == "holm":
        order = np.argsort(p, kind="stable")
        m = p.size
        adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
        out = np.empty(m)
        out[order] = np.minimum(adj, 1.0)
        return out
    raise ValueError(f"correction must be 'holm', 'bh' or 'none', got {method!r}")


def composite_scores(
    track: str,
    units: Iterable[str],
    weights: Mapping[str, float],
    parts: Mapping[str, Mapping[str, PartScore]],
    deductions: Mapping[str, float] | None = None,
    *,
    covariances: Mapping[str, Callable[[str, str], float]] | None = None,
    threshold: float = 70.0,
    correction: Correction = "holm",
    level: float = 0.95,
    min_raters: int = 30,
    missing: Literal["renormalise", "exclude"] = "renormalise",
    ranks: RankCoverage = "marginal",
) -> TrackScores:
    """Composite scores, flags and rank intervals of one track's units.

    Parameters
    ----------
    track : str
        Track id (for messages).
    units : iterable of str
        The track's units, in report order.
    weights : mapping part -> weight
        The track's weights (parts with weight 0 are ignored); they must sum to 1.
    parts : mapping part -> mapping unit -> PartScore
        Part scores (``phone_parts``, ``assessment_scores``, ``online_scores``).
    deductions : mapping unit -> points, optional
        Points deducted (``deduction_totals``).
    covariances : mapping part -> callable(unit, unit) -> float, optional
        Between-unit covariance of a sampled part's scores (for the phone part:
        ``UnitScores.cov``); used for the rank intervals.
    threshold, correction, level
        The flag rule (see the module notes).
    min_raters : int
        A unit whose sampled parts have fewer raters is unreliable: scored,
        flagged, but not ranked.
    missing : {"renormalise", "exclude"}
        What a unit without one of the track's parts gets (see the module notes).
    ranks : {"marginal", "simultaneous", "pairwise"}
        Coverage of the rank intervals (see ``rank_rejections``).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    if correction not in ("holm", "bh", "none"):
        raise ValueError(f"correction must be 'holm', 'bh' or 'none', got {correction!r}")
    if missing not in ("renormalise", "exclude"):
        raise ValueError(f"missing must be 'renormalise' or 'exclude', got {missing!r}")
    used = {p: float(a) for p, a in weights.items() if float(a) != 0.0}
    if any(a < 0 for a in used.values()) or not math.isclose(sum(used.values()), 1.0, abs_tol=1e-9):
        raise ValueError(f"track {track!r}: weights must be 0 or more and sum to 1, got {dict(weights)}")
    unknown = [p for p in used if p not in parts]
    if unknown:
        raise ValueError(f"track {track!r}: no scores given for part {unknown[0]!r}")
    deductions = deductions or {}
    covariances = covariances or {}
    unit_list = [str(u) for u in units]
    if len(set(unit_list)) != len(unit_list):
        raise ValueError(f"track {track!r}: a unit is listed twice")

    if ranks not in ("marginal", "simultaneous", "pairwise"):
        raise ValueError(f"ranks must be 'marginal', 'simultaneous' or 'pairwise', got {ranks!r}")
    rows = _composite_rows(unit_list, used, parts, deductions, missing, min_raters)
    _flag(rows, threshold, correction, level)
    rank_of = _rank_intervals(rows, covariances, level, ranks)
    results = []
    for i, r in enumerate(rows):
        rank, low, high = rank_of.get(i, (None, None, None))
        results.append(CompositeScore(
            unit=r["unit"], composite=r["composite"], se=r["se"], df=r["df"],
            ci_low=r["ci_low"], ci_high=r["ci_high"], parts=r["parts"], weights=r["weights"],
            missing=r["missing"], deduction=r["deduction"], status=r["status"],
            reliable=r["reliable"], p_below=r["p_below"], p_adjusted=r["p_adjusted"],
            flag=r["flag"], rank=rank, rank_low=low, rank_high=high,
        ))
    return TrackScores(track=track, units=tuple(results), threshold=float(threshold),
                       correction=correction, level=float(level), ranks=ranks)


def _composite_rows(unit_list: list[str], used: Mapping[str, float],
                    parts: Mapping[str, Mapping[str, PartScore]], deductions: Mapping[str, float],
                    missing: str, min_raters: int) -> list[dict]:
    """Each unit's composite, SE and df from the parts it has (see the module notes)."""
    rows = []
    for u in unit_list:
        have = {p: parts[p][u] for p in used if u in parts[p]}
        absent = tuple(p for p in used if p not in have)
        deduction = float(deductions.get(u, 0.0))
        if not have or (absent and missing == "exclude"):
            rows.append(dict(unit=u, composite=math.nan, se=math.nan, df=math.nan,
                             parts={p: s.score for p, s in have.items()}, weights={},
                             missing=absent, deduction=deduction,
                             status="no-score" if not have else "incomplete",
                             reliable=False, scored=False))
            continue
        total = sum(used[p] for p in have)
        a = {p: used[p] / total for p in have}
        composite = sum(a[p] * have[p].score for p in have) - deduction
        pieces = [(a[p] ** 2 * have[p].se ** 2, have[p].df) for p in have if have[p].sampled]
        var = sum(v for v, _ in pieces)
        df = _satterthwaite(pieces)
        reliable = all(have[p].n >= min_raters for p in have if have[p].sampled)
        status = "insufficient-data" if not reliable else "incomplete" if absent else "ok"
        rows.append(dict(unit=u, composite=composite, se=math.sqrt(var) if math.isfinite(var) else math.nan,
                         df=df, parts={p: s.score for p, s in have.items()}, weights=a,
                         missing=absent, deduction=deduction, status=status,
                         reliable=reliable, scored=True))
    return rows


def _flag(rows: list[dict], threshold: float, correction: Correction, level: float) -> None:
    """Intervals, one-sided p-values, their adjustment and the flags (see the module notes)."""
    # Intervals and one-sided p-values of "below the threshold".
    # No interval without degrees of freedom (a part from a single rater: df 0), and
    # no test for a unit with insufficient data: it is never flagged nor ranked.
    for r in rows:
        r["ci_low"], r["ci_high"], r["p_below"] = math.nan, math.nan, math.nan
        df = r["df"]
        if not r["scored"] or not math.isfinite(r["se"]) or not df > 0:
            continue
        if r["se"] == 0.0:
            r["ci_low"] = r["ci_high"] = r["composite"]
            p_below = 0.0 if r["composite"] < threshold else 1.0
        else:
            t = float(special.stdtrit(df, 0.5 + level / 2))
            r["ci_low"] = r["composite"] - t * r["se"]
            r["ci_high"] = r["composite"] + t * r["se"]
            p_below = float(special.stdtr(df, (r["composite"] - threshold) / r["se"]))
        if r["reliable"]:
            r["p_below"] = p_below
    tested = [i for i, r in enumerate(rows) if math.isfinite(r["p_below"])]
    adjusted = adjust_pvalues([rows[i]["p_below"] for i in tested], correction)
    for r in rows:
        r["p_adjusted"] = math.nan
    for i, p in zip(tested, adjusted, strict=True):
        rows[i]["p_adjusted"] = float(p)
    alpha = 1.0 - level
    for r in rows:
        if not math.isfinite(r["p_adjusted"]):
            r["flag"] = None
        elif r["p_adjusted"] < alpha / 2:
            r["flag"] = "below"
        elif r["ci_low"] < threshold:
            r["flag"] = "possibly-below"
        else:
            r["flag"] = None


def _satterthwaite(pieces: list[tuple[float, float | None]]) -> float:
    """Welch–Satterthwaite df of a sum of independent variance pieces (inf when none)."""
    if not pieces:
        return math.inf
    if any(df is None or not df > 0 for _, df in pieces):
        return math.nan  # a sampled part without variance estimate: no interval
    if len(pieces) == 1:
        return float(pieces[0][1])
    total = sum(v for v, _ in pieces)
    if total == 0.0:
        return math.inf
    denom = 0.0
    for v, df in pieces:
        if v > 0:
            denom += v * v / df
    if denom == 0.0:  # no finite positive variance (e.g. a unit with one ballot): no df
        return math.nan
    return total * total / denom


def _rank_intervals(rows: list[dict], covariances: Mapping[str, Callable[[str, str], float]],
                    level: float, ranks: RankCoverage) -> dict[int, tuple[int, int, int]]:
    ranked = [i for i, r in enumerate(rows)
              if r["scored"] and r["reliable"] and math.isfinite(r["ci_low"])]
    m = len(ranked)
    out: dict[int, tuple[int, int, int]] = {}
    if m == 0:
        return out
    comp = np.array([rows[i]["composite"] for i in ranked])
    var = np.array([rows[i]["se"] ** 2 for i in ranked])
    dfs = np.array([rows[i]["df"] for i in ranked], dtype=float)
    cov = np.zeros((m, m))
    for part, fn in covariances.items():
        a = np.array([rows[i]["weights"].get(part, 0.0) for i in ranked])
        has = np.flatnonzero(a)
        for x, j in enumerate(has):
            for k in has[x + 1:]:
                c = a[j] * a[k] * float(fn(rows[ranked[j]]["unit"], rows[ranked[k]]["unit"]))
                cov[j, k] += c
                cov[k, j] += c
    p = pairwise_pvalues(comp, var, cov, dfs)
    clear = rank_rejections(p, 1.0 - level, ranks)  # clear[j, k]: j and k told apart
    higher = comp[None, :] > comp[:, None]  # higher[j, k]: C_k > C_j
    for pos, i in enumerate(ranked):
        rank = 1 + int(higher[pos].sum())
        low = 1 + int((clear[pos] & higher[pos]).sum())
        high = m - int((clear[pos] & (comp < comp[pos])).sum())
        out[i] = (rank, low, high)
    return out


def pairwise_pvalues(estimate: np.ndarray, variance: np.ndarray, covariance: np.ndarray,
                     df: np.ndarray) -> np.ndarray:
    """Two-sided p-values of "θ_j = θ_k" for every pair (m × m, diagonal 1).

    t = (C_j − C_k)/√(V_j + V_k − 2 Cov_jk) with min(df_j, df_k) degrees of
    freedom; a difference with variance 0 has p = 0 (or 1 when the estimates
    are equal).
    """
    est = np.asarray(estimate, dtype=float)
    v = np.asarray(variance, dtype=float)
    diff = est[:, None] - est[None, :]
    dvar = np.maximum(v[:, None] + v[None, :] - 2.0 * np.asarray(covariance, dtype=float), 0.0)
    df = np.minimum.outer(np.asarray(df, dtype=float), np.asarray(df, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(diff) / np.sqrt(dvar)
        p = 2.0 * special.stdtr(df, -t)
    p = np.where(dvar == 0.0, np.where(diff != 0.0, 0.0, 1.0), p)
    p = np.where(np.isfinite(p), p, 1.0)
    np.fill_diagonal(p, 1.0)
    return p


def rank_rejections(p: np.ndarray, alpha: float, coverage: RankCoverage) -> np.ndarray:
    """Which pairwise comparisons are rejected for the rank intervals (m × m, symmetric
    for ``"simultaneous"``).

    ``"marginal"``: row j is unit j's family of m − 1 comparisons, Holm-adjusted
    within the row; a 1 − α interval for each unit's rank (csranks'
    ``coverage = "individual"``).  ``"simultaneous"``: the m(m − 1)/2 pairs
    Holm-adjusted together; the intervals of all units cover their ranks jointly
    with probability 1 − α (csranks' ``coverage = "simultaneous"``).
    ``"pairwise"``: no multiplicity adjustment (each comparison at α; not a
    1 − α interval for a rank).
    """
    m = p.shape[0]
    off = ~np.eye(m, dtype=bool)
    if coverage == "pairwise" or m < 2:
        return (p < alpha) & off
    if coverage == "marginal":
        out = np.zeros((m, m), dtype=bool)
        for j in range(m):
            adj = adjust_pvalues(p[j, off[j]], "holm")
            out[j, off[j]] = adj < alpha
        return out
    if coverage == "simultaneous":
        iu = np.triu_indices(m, 1)
        adj = adjust_pvalues(p[iu], "holm")
        out = np.zeros((m, m), dtype=bool)
        out[iu] = adj < alpha
        return out | out.T
    raise ValueError(f"ranks must be 'marginal', 'simultaneous' or 'pairwise', got {coverage!r}")
