"""Edge domains: no interval without degrees of freedom, empty domains, insufficient data.

Reference numbers from ``data/reference_edge.R`` (R 4.2.2, survey 4.1.1): per
unit ``svydesign(id=~1, strata=~stratum, fpc=~N, data=<assigned to u>)``,
``svymean(~y, subset(design, answered))``, ``degf`` and
``confint(df = degf)`` on the fixture ``data/edge_units.csv``.  R gives no
interval (NaN) when df = 0 and has no domain at all when nobody answered.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from scoring.composite import PartScore, composite_scores, phone_parts
from scoring.scale import RatingScale
from scoring.units import score_units

DATA = Path(__file__).parent / "data"
POPULATION = {"a": 60, "b": 40}
NAN = math.nan
# reference_edge.R: n, svymean, SE, degf, confint low, high (NaN: none; None: no domain).
R_EDGE = {
    "all1": (5, 100.0, 0.0, 3, 100.0, 100.0),
    "dk": (0, None, None, None, None, None),
    "mix": (5, 39.3333333333333, 20.9326963809677, 3, -27.2838489239029, 105.95051559057),
    "pair": (2, 50.0, 48.7339717240448, 1, -569.223822332662, 669.223822332662),
    "solo": (1, 0.0, 0.0, 0, NAN, NAN),
}


def _scale() -> RatingScale:
    base = RatingScale.default()  # plus "" for an assigned unit left unanswered
    return RatingScale(points={**base.points, "": None}, satisfied=base.satisfied,
                       labels={**base.labels, "": ""})


def _edge_scores(**kwargs):
    with open(DATA / "edge_units.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return score_units([r["respondent_id"] for r in rows], [r["stratum"] for r in rows],
                       [r["unit"] for r in rows], [r["rating"] for r in rows], POPULATION, scale=_scale(),
                       assigned=np.array([r["assigned"] == "1" for r in rows]), **kwargs)


def test_edge_domains_match_r():
    scores = _edge_scores(min_raters=2)
    for unit, (n, est, se, df, low, high) in R_EDGE.items():
        u = scores[unit]
        assert u.n == n, unit
        if est is None:
            assert math.isnan(u.score) and u.df is None
            assert math.isnan(u.ci_low) and math.isnan(u.ci_high)
            continue
        assert u.score == pytest.approx(est, abs=1e-9), unit
        assert u.se == pytest.approx(se, abs=1e-9), unit
        assert u.df == df, unit
        if math.isnan(low):
            assert math.isnan(u.ci_low) and math.isnan(u.ci_high), unit
        else:
            assert u.ci_low == pytest.approx(low, abs=1e-9), unit
            assert u.ci_high == pytest.approx(high, abs=1e-9), unit


def test_no_satisfaction_interval_without_degrees_of_freedom():
    scores = _edge_scores()
    solo = scores["solo"]
    assert solo.sat == 0.0
    assert math.isnan(solo.sat_low) and math.isnan(solo.sat_high)
    for method in ("wilson", "logit"):
        other = _edge_scores(ci_method=method)["solo"]
        assert math.isnan(other.sat_low) and math.isnan(other.sat_high)


def test_json_reports_null_df_and_interval_and_insufficient_status():
    scores = _edge_scores(min_raters=2)
    data = json.loads(json.dumps(scores.as_dict()))
    by = {u["unit"]: u for u in data["units"]}
    assert by["dk"]["df"] is None and by["dk"]["score"] is None
    assert by["dk"]["status"] == "no-raters"
    assert by["solo"]["ci_low"] is None and by["solo"]["ci_high"] is None
    assert by["solo"]["status"] == "insufficient-data"
    assert by["mix"]["status"] == "ok"


def test_single_phone_rater_is_never_flagged_or_ranked():
    # A window whose only phone rater pressed 3: score 0, SE 0, df 0.
    scores = _edge_scores(min_raters=0)
    parts = {"phone": phone_parts(scores),
             "online": {"solo": PartScore("solo", 50.0, 0.0, None, 100, False),
                        "mix": PartScore("mix", 50.0, 0.0, None, 100, False),
                        "dk": PartScore("dk", 50.0, 0.0, None, 100, False)}}
    track = composite_scores("windows", ["solo", "mix", "dk"], {"phone": 0.7, "online": 0.3},
                             parts, min_raters=0)
    solo = track["solo"]
    assert solo.composite == pytest.approx(15.0)
    assert math.isnan(solo.ci_low) and math.isnan(solo.p_below)
    assert solo.flag is None and solo.rank is None
    # dk has only its online part: a count, not a sample; it is scored but has no phone part.
    assert track["dk"].missing == ("phone",)


def test_insufficient_data_is_never_flagged_or_ranked():
    def part(unit, score, n):
        return PartScore(unit, score, 2.0, float(n - 1), n, True)

    parts = {"phone": {"A": part("A", 40.0, 10), "B": part("B", 90.0, 50), "C": part("C", 20.0, 60)}}
    track = composite_scores("t", ["A", "B", "C"], {"phone": 1.0}, parts, min_raters=30)
    a = track["A"]
    assert a.status == "insufficient-data" and not a.reliable
    assert a.flag is None and a.rank is None and math.isnan(a.p_adjusted)
    # A keeps its interval (it is an estimate) but is out of the multiplicity family:
    # Holm over B and C only.
    assert math.isfinite(a.ci_low)
    assert track["C"].flag == "below"
    assert track["C"].p_adjusted == pytest.approx(2 * track["C"].p_below)
    assert {u.unit for u in track if u.rank is not None} == {"B", "C"}
