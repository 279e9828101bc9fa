"""Scoring: design-based estimators, unit scores, composite scores, flags and ranks.

The core is pure (numpy/scipy in, frozen dataclasses out); readers for plain
files live in ``scoring.inputs``.
"""

from scoring.estimators import (
    ConfidenceInterval,
    DomainMean,
    DomainMeans,
    Margin,
    RakingError,
    ReplicateWeights,
    StratifiedDesign,
    bootstrap_weights,
    proportion_interval,
    rake,
    weighting_deff,
)
from scoring.scale import RatingScale
from scoring.units import RespondentMargin, UnitScore, UnitScores, score_units

__all__ = [
    "ConfidenceInterval",
    "DomainMean",
    "DomainMeans",
    "Margin",
    "RakingError",
    "RatingScale",
    "ReplicateWeights",
    "RespondentMargin",
    "StratifiedDesign",
    "UnitScore",
    "UnitScores",
    "bootstrap_weights",
    "weighting_deff",
    "proportion_interval",
    "rake",
    "score_units",
]
