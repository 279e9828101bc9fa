"""Weights: raking to known margins, bootstrap replicate weights, Kish's design effect.

See ``scoring.estimators`` for the references.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scoring.estimators import StratifiedDesign

__all__ = [
    "Margin",
    "RakingError",
    "ReplicateWeights",
    "bootstrap_weights",
    "rake",
    "weighting_deff",
]

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


def weighting_deff(weights: np.ndarray) -> tuple[float, float]:
    """Kish effective sample size and weighting design effect.

    Returns ``(n_eff, deff)`` with n_eff = (Σw)²/Σw² and deff = n Σw²/(Σw)²
    (Kish 1965).  For no weights both are NaN.
    """
    w = np.asarray(weights, dtype=float)
    if w.size == 0:
        return float("nan"), float("nan")
    s1, s2 = w.sum(), (w * w).sum()
    return float(s1 * s1 / s2), float(w.size * s2 / (s1 * s1))


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


