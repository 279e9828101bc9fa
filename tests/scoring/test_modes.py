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


def test_mode_adjusted_moves_the_score_by_the_cati_share_of_delta():
    """Worked example: δ = −10 ± 2.5 (df 187), a unit at 80 ± 3 (df 40) with 40% of its
    weighted ratings given to an interviewer: 80 + 0.4·(−10) = 76, SE bound 3 + 0.4·2.5 = 4,
    interval 76 ± t(0.975, 40)·4 (t = 2.02107539030627, R qt(0.975, 40))."""
    from scoring.modes import ModeDifference, mode_adjusted

    delta = ModeDifference("ivr", "cati", 70.0, 80.0, 100, 90, -10.0, 2.5, 187.0, -14.9, -5.1, 0.95)
    a = mode_adjusted(80.0, 3.0, 40, 0.4, delta)
    assert (a.adjusted, a.shift, a.se_bound, a.df) == (pytest.approx(76.0), pytest.approx(-4.0),
                                                       pytest.approx(4.0), 40.0)
    assert a.ci_low == pytest.approx(76.0 - 2.02107539030627 * 4.0, rel=1e-12)
    assert a.ci_high == pytest.approx(76.0 + 2.02107539030627 * 4.0, rel=1e-12)
    # no CATI ratings: nothing moves; one rater (df 0): no interval
    assert mode_adjusted(80.0, 3.0, 40, 0.0, delta).adjusted == 80.0
    single = mode_adjusted(100.0, 0.0, 0, 1.0, delta)
    assert single.adjusted == 90.0 and single.ci_low != single.ci_low  # NaN
    with pytest.raises(ValueError, match="cati_share must be between 0 and 1, got 1.5"):
        mode_adjusted(80.0, 3.0, 40, 1.5, delta)
