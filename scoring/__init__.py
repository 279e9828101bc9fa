"""Scoring: design-based estimators, unit scores, composite scores, flags and ranks.

The core is pure (numpy/scipy in, frozen dataclasses out); readers of plain
files, the HTML report and the exports live in ``minping`` (``minping.input_files``,
``minping.report``, ``minping.export``).  The names below are loaded on first use, so
that importing one module (``scoring.errors``, say) does not load them all.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "ConfidenceInterval": "scoring.intervals",
    "DomainMean": "scoring.intervals",
    "DomainMeans": "scoring.intervals",
    "proportion_interval": "scoring.intervals",
    "Margin": "scoring.weighting",
    "RakingError": "scoring.weighting",
    "ReplicateWeights": "scoring.weighting",
    "bootstrap_weights": "scoring.weighting",
    "rake": "scoring.weighting",
    "weighting_deff": "scoring.weighting",
    "StratifiedDesign": "scoring.estimators",
    "AssignedDesign": "scoring.estimators",
    "RatingScale": "scoring.scale",
    "RespondentMargin": "scoring.units",
    "UnitScore": "scoring.units",
    "UnitScores": "scoring.units",
    "score_units": "scoring.units",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'scoring' has no attribute {name!r}")
