"""Interviewer effects against R.

Reference numbers from ``data/reference_interviewers.R`` (R 4.2.2: ``aov`` for
the ANOVA estimator of ρ_int, ``summary(lm(r ~ 0 + interviewer))`` and
``p.adjust(method = "holm")`` for the per-interviewer tests) on the synthetic
fixture ``data/interviewers.csv``.  R's lme4 REML gives ρ = 0.142 on the same
data (printed by the script for comparison; not the estimator used).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from scoring.interviewers import interviewer_effects

DATA = Path(__file__).parent / "data"
# reference_interviewers.R "anova": MSB, MSW, m0, rho, deff
R_ANOVA = (2354.55042090541, 424.238625038672, 30.200583090379, 0.130934590546002,
           4.8789372449253)
R_MEANS = [2.38462248616711, -4.08221088322571, -8.57478861560946, 9.11656532635937,
           0.0584716978578871, 19.5219839137857, -7.78078580340301, -1.83757196609094]
R_SE = [3.2566801540782, 4.2947826033895, 3.69934006773254, 4.11941075902208,
        4.99551931610408, 4.2947826033895, 3.14102125681809, 3.14102125681809]
R_HOLM = [1, 1, 0.12783504522764, 0.139229543973343, 1, 6.99211607596791e-05,
          0.0975954644891147, 1]


def _fixture():
    with open(DATA / "interviewers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return ([r["interviewer"] for r in rows], [r["unit"] for r in rows],
            [float(r["points"]) for r in rows])


def test_rho_and_design_effect_match_r():
    eff = interviewer_effects(*_fixture())
    msb, msw, _, rho, deff = R_ANOVA
    assert eff.msb == pytest.approx(msb, rel=1e-10)
    assert eff.msw == pytest.approx(msw, rel=1e-10)
    assert eff.rho == pytest.approx(rho, rel=1e-10)
    assert eff.deff == pytest.approx(deff, rel=1e-10)
    assert eff.interviewers == 8


def test_outlying_interviewers_match_r():
    eff = interviewer_effects(*_fixture())
    np.testing.assert_allclose([r.mean_residual for r in eff.rows], R_MEANS, rtol=1e-10)
    np.testing.assert_allclose([r.se for r in eff.rows], R_SE, rtol=1e-10)
    np.testing.assert_allclose([r.p_adjusted for r in eff.rows], R_HOLM, rtol=1e-8)
    assert [r.interviewer for r in eff.rows if r.outlying] == ["I05"]


def test_no_interviewer_effect_gives_rho_near_zero():
    rng = np.random.default_rng(1)
    n = 4000
    iv = rng.integers(0, 20, n).astype(str)
    unit = rng.integers(0, 30, n).astype(str)
    y = rng.choice([100.0, 60.0, 0.0], size=n)
    eff = interviewer_effects(iv, unit, y)
    assert abs(eff.rho_raw) < 0.02
    assert eff.deff == pytest.approx(1.0 + (n / 20 - 1) * eff.rho)
