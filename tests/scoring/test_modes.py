"""The IVR − CATI difference against R survey.

Reference numbers from ``data/reference_modes.R`` (R 4.2.2, survey 4.1.1):
``svycontrast(svyby(~y, ~arm, design, svymean, covmat = TRUE), c(cati = -1, ivr = 1))``
with ``confint(df = degf(design))``, by randomised arm (experimental) and by
the mode used (observational), on the synthetic fixture ``data/modes.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from scoring.modes import mode_difference

DATA = Path(__file__).parent / "data"
# reference_modes.R: mean ivr, mean cati, ivr - cati, SE, degf, confint
R_MODES = {
    "arm": (68.1182664716255, 78.9128740749306, -10.7946076033051, 2.57736512786011, 187,
            -15.8790557754607, -5.71015943114955),
    "mode": (66.2329053866882, 77.6329926157652, -11.400087229077, 2.34759095704083, 187,
             -16.0312527637816, -6.76892169437244),
}


@pytest.mark.parametrize("by", sorted(R_MODES))
def test_mode_difference_matches_svycontrast(by):
    with open(DATA / "modes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    population = {r["stratum"]: float(r["N"]) for r in rows}
    got = mode_difference([r["stratum"] for r in rows], population,
                          [float(r["y"]) for r in rows], [r[by] for r in rows])
    ivr, cati, diff, se, df, low, high = R_MODES[by]
    assert got.mean_a == pytest.approx(ivr, rel=1e-12)
    assert got.mean_b == pytest.approx(cati, rel=1e-12)
    assert got.difference == pytest.approx(diff, rel=1e-12)
    assert got.se == pytest.approx(se, rel=1e-10)
    assert got.df == df
    assert (got.ci_low, got.ci_high) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))
