"""Sample balance: per stratum, per unit, and the Kish design effect.

References
----------
.. [1] Kish, L. (1965). *Survey Sampling*, §11.7; Kish, L. (1992). Weighting
   for unequal P_i. *Journal of Official Statistics* 8(2), 183–200
   (``deff_w = n Σw² / (Σw)²``).
.. [2] Duncan, O. D. and Duncan, B. (1955). A methodological analysis of
   segregation indexes. *American Sociological Review* 20(2), 210–217
   (the dissimilarity index ``½ Σ |p_g − q_g|``).
.. [3] ``scipy.stats.chisquare`` (Pearson's goodness-of-fit test).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from sampling.errors import SamplingError

__all__ = [
    "BalanceError",
    "Kish",
    "StratumBalance",
    "UnitBalance",
    "kish",
    "stratum_balance",
    "unit_balance",
]


class BalanceError(SamplingError):
    """Balance statistics cannot be computed from these inputs."""


@dataclass(frozen=True)
class Kish:
    """Kish's design effect from weighting.

    Attributes
    ----------
    n : int
        Number of weights.
    deff : float
        ``n Σw² / (Σw)²`` (1 for equal weights; ``nan`` when ``n == 0``).
    n_eff : float
        Effective sample size ``(Σw)² / Σw²`` (0 when ``n == 0``).
    """

    n: int
    deff: float
    n_eff: float


def kish(weights: Sequence[float] | np.ndarray) -> Kish:
    """Kish design effect and effective sample size of a set of weights [1]_.

    Parameters
    ----------
    weights : array_like of float
        Positive weights (e.g. ``N_h / n_h`` of the respondents).

    Examples
    --------
    >>> k = kish([1, 1, 2, 2])
    >>> round(k.deff, 6), round(k.n_eff, 6)
    (1.111111, 3.6)
    """
    w = np.asarray(weights, dtype=float).ravel()
    if w.size and (not np.all(np.isfinite(w)) or np.any(w < 0)):
        bad = float(w[~np.isfinite(w) | (w < 0)][0])
        raise BalanceError(f"weights must be finite and >= 0, got {bad!r}")
    n = int(w.size)
    s1 = float(w.sum())
    s2 = float((w * w).sum())
    if n == 0 or s2 == 0:
        return Kish(n=n, deff=math.nan, n_eff=0.0)
    return Kish(n=n, deff=n * s2 / (s1 * s1), n_eff=s1 * s1 / s2)


@dataclass(frozen=True)
class StratumBalance:
    """One stratum's progress against its target.

    ``gap = completed − target``; ``relative_gap = gap / target`` (``None``
    for a zero target).
    """

    stratum: Hashable
    frame_size: int
    target: int
    drawn: int
    released: int
    completed: int
    gap: int
    relative_gap: float | None


def stratum_balance(
    *,
    frame_size: Mapping[Hashable, int],
    target: Mapping[Hashable, int],
    drawn: Mapping[Hashable, int] | None = None,
    released: Mapping[Hashable, int] | None = None,
    completed: Mapping[Hashable, int] | None = None,
) -> tuple[StratumBalance, ...]:
    """Per-stratum table: frame size, target, drawn, released, completed, gaps.

    Parameters
    ----------
    frame_size, target, drawn, released, completed : mapping stratum -> int
        Plain counts; a stratum missing from one of them counts 0.

    Returns
    -------
    tuple of StratumBalance
        One row per stratum in any of the mappings, sorted by stratum label.
    """
    maps = {
        "frame_size": frame_size,
        "target": target,
        "drawn": drawn or {},
        "released": released or {},
        "completed": completed or {},
    }
    keys: set = set()
    for name, m in maps.items():
        for s, v in m.items():
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                raise BalanceError(f"{name}[{s!r}] must be a whole number >= 0, got {v!r}")
        keys.update(m)
    try:
        ordered = sorted(keys)
    except TypeError:
        ordered = sorted(keys, key=repr)
    rows = []
    for s in ordered:
        vals = {name: int(m.get(s, 0)) for name, m in maps.items()}
        gap = vals["completed"] - vals["target"]
        rows.append(
            StratumBalance(
                stratum=s,
                **vals,
                gap=gap,
                relative_gap=(gap / vals["target"]) if vals["target"] else None,
            )
        )
    return tuple(rows)


@dataclass(frozen=True)
class UnitBalance:
    """Group mix of one unit's raters against the expected mix.

    Attributes
    ----------
    unit : hashable
    groups : tuple
        The groups, in the order of the count tuples.
    assigned, answered : tuple of int
        Raters assigned to / who answered the unit, by group.
    expected_assigned, expected_answered : tuple of float
        Expected counts: the unit's total times each group's expected share.
    tested : str
        ``"answered"`` or ``"assigned"``: which counts the test used.
    chi2 : float
        Pearson's statistic on the tested counts (``nan`` when untestable).
    p_value : float
        ``scipy.stats.chisquare`` p-value (``nan`` when untestable: no
        raters, or fewer than two groups with a positive expected share).
    dissimilarity : float
        ``½ Σ_g |observed share − expected share|`` (``nan`` with no raters).
    passed : bool
    reason : str
        Why the unit failed (empty when it passed).
    kish : Kish or None
        Design effect of the raters' weights, when weights were given.
    """

    unit: Hashable
    groups: tuple[Hashable, ...]
    assigned: tuple[int, ...]
    expected_assigned: tuple[float, ...]
    answered: tuple[int, ...]
    expected_answered: tuple[float, ...]
    tested: str
    chi2: float
    p_value: float
    dissimilarity: float
    passed: bool
    reason: str
    kish: Kish | None = None


def _gof(obs: np.ndarray, share: np.ndarray) -> tuple[float, float, float, np.ndarray, str]:
    """Chi-square GOF and dissimilarity of ``obs`` against ``share``."""
    total = float(obs.sum())
    expected = total * share
    if total == 0:
        return math.nan, math.nan, math.nan, expected, "no raters"
    diss = 0.5 * float(np.abs(obs / total - share).sum())
    zero = share <= 0
    if np.any(obs[zero] > 0):
        # raters from a group that should not rate the unit at all
        return math.inf, 0.0, diss, expected, "raters from a group with no expected share"
    keep = ~zero
    if keep.sum() < 2:
        return math.nan, math.nan, diss, expected, ""
    # Pearson's chi-square (scipy.stats.chisquare), p from the chi-square survival function
    stat = float(((obs[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    return stat, float(special.chdtrc(int(keep.sum()) - 1, stat)), diss, expected, ""


def unit_balance(
    assigned: Mapping[Hashable, Mapping[Hashable, int]],
    *,
    answered: Mapping[Hashable, Mapping[Hashable, int]] | None = None,
    shares: Mapping[Hashable, float] | Mapping[Hashable, Mapping[Hashable, float]],
    weights: Mapping[Hashable, Sequence[float]] | None = None,
    alpha: float = 0.01,
    max_dissimilarity: float = 0.1,
) -> tuple[UnitBalance, ...]:
    """Per-unit group balance, failing units first.

    Parameters
    ----------
    assigned : mapping unit -> mapping group -> int
        Raters assigned, by group (e.g. ``Assignment.unit_group_counts``).
    answered : mapping unit -> mapping group -> int, optional
        Raters who answered, by group.  When given, the test is on these;
        otherwise on ``assigned``.
    shares : mapping group -> float, or mapping unit -> mapping group -> float
        Expected share of each group among a unit's raters: one mix for all
        units (e.g. the groups' shares of the sample) or one per unit (e.g.
        ``Assignment.expected_shares()``).  Shares are renormalised over the
        unit's groups; a group with no share is expected to have no raters.
    weights : mapping unit -> sequence of float, optional
        Weights of the unit's raters, for the per-unit Kish design effect.
    alpha : float, default 0.01
        A unit fails when the chi-square p-value is below ``alpha`` ...
    max_dissimilarity : float, default 0.1
        ... or when the dissimilarity index is above this, or it has no raters.

    Returns
    -------
    tuple of UnitBalance
        Failing units first (lowest p-value, then highest dissimilarity),
        then passing units in the same order.
    """
    if not 0 < alpha < 1:
        raise BalanceError(f"alpha must be between 0 and 1, got {alpha!r}")
    if not 0 <= max_dissimilarity <= 1:
        raise BalanceError(f"max_dissimilarity must be between 0 and 1, got {max_dissimilarity!r}")
    per_unit = bool(shares) and all(isinstance(v, Mapping) for v in shares.values())
    units = list(assigned)
    if answered is not None:
        units += [u for u in answered if u not in assigned]
    out: list[UnitBalance] = []
    for u in units:
        a_map = assigned.get(u, {})
        r_map = answered.get(u, {}) if answered is not None else {}
        sh_map = shares.get(u, {}) if per_unit else shares  # type: ignore[union-attr]
        groups_set = set(a_map) | set(r_map) | set(sh_map)
        try:
            groups = tuple(sorted(groups_set))
        except TypeError:
            groups = tuple(sorted(groups_set, key=repr))
        share = np.array([float(sh_map.get(g, 0.0)) for g in groups])
        if np.any(~np.isfinite(share)) or np.any(share < 0):
            raise BalanceError(f"unit {u!r}: shares must be finite and >= 0")
        if share.sum() <= 0:
            raise BalanceError(f"unit {u!r}: no group has a positive expected share")
        share = share / share.sum()
        a_obs = np.array([int(a_map.get(g, 0)) for g in groups], dtype=float)
        r_obs = np.array([int(r_map.get(g, 0)) for g in groups], dtype=float)
        tested = "answered" if answered is not None else "assigned"
        obs = r_obs if answered is not None else a_obs
        chi2, p, diss, _exp, reason = _gof(obs, share)
        if not reason:
            if not math.isnan(p) and p < alpha:
                reason = f"chi-square p = {p:.3g} < {alpha:g}"
            elif diss > max_dissimilarity + 1e-12:
                reason = f"dissimilarity {diss:.3f} > {max_dissimilarity:g}"
        k = kish(weights[u]) if weights is not None and u in weights else None
        out.append(
            UnitBalance(
                unit=u,
                groups=groups,
                assigned=tuple(int(v) for v in a_obs),
                expected_assigned=tuple(float(v) for v in a_obs.sum() * share),
                answered=tuple(int(v) for v in r_obs),
                expected_answered=tuple(float(v) for v in r_obs.sum() * share),
                tested=tested,
                chi2=chi2,
                p_value=p,
                dissimilarity=diss,
                passed=not reason,
                reason=reason,
                kish=k,
            )
        )

    def key(b: UnitBalance) -> tuple:
        p = -1.0 if math.isnan(b.p_value) and not b.passed else b.p_value
        p = 2.0 if math.isnan(p) else p
        d = b.dissimilarity if not math.isnan(b.dissimilarity) else 1.0
        return (b.passed, p, -d)

    out.sort(key=key)
    return tuple(out)
