"""Tests for scoring.aapor's outcome rates: counts of final codes, RR/COOP/REF/CON and e.

Reference numbers:

* The main fixture (I=400, P=50, R=200, NC=150, O=30, UH=300, UO=20, NE=250) is
  computed by hand below as exact fractions; the same numbers were recomputed
  in R 4 with the AAPOR formulas typed out (RR3 = 0.371772805507745,
  CON2 = 0.632013769363167, e = 0.768518518518518, ...).
* The second fixture and its expected rates come from the test suite of the R
  package ``outcomerate`` (rOpenSci, tests/testthat/test-rate.R, vector ``x1``
  with e = 0.5), an independent implementation of AAPOR's formulas.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction as F

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring.aapor import (
    E_DEFAULT_FORMULA,
    OutcomeCounts,
    UnknownDispositionError,
    counts_from_codes,
    final_disposition,
    outcome_rates,
)

# --- counts -------------------------------------------------------------------------------


def test_counts_from_codes():
    codes = ["1.1", "1.1", "1.2", "2.112", "2.12", "2.21", "2.222", "2.31", "2.333",
             "3.13", "3.14", "3.21", "3.90", "4.31", "4.70"]  # fmt: skip
    c = counts_from_codes(codes)
    assert c == OutcomeCounts(I=2, P=1, R=2, NC=2, O=2, UH=2, UO=2, NE=2)
    assert c.total == len(codes)
    assert c.known_eligible == 9 and c.unknown == 4


def test_counts_from_codes_rejects_unknown_and_temporary_subcodes():
    with pytest.raises(UnknownDispositionError, match=r"case 3: unknown .*'5\.1'"):
        counts_from_codes(["1.1", "3.13", "5.1"])
    with pytest.raises(UnknownDispositionError, match=r"case 2: 2\.1121 .* ends on it is 2\.112"):
        counts_from_codes(["1.1", "2.1121"])
    with pytest.raises(TypeError):
        counts_from_codes("1.1")


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, "3", True])
def test_counts_must_be_finite_and_non_negative(bad):
    with pytest.raises(ValueError, match=r"outcome count NC must be a finite number >= 0"):
        OutcomeCounts(I=1, P=0, R=0, NC=bad, O=0, UH=0, UO=0, NE=0)


# --- rates: hand-computed fixture ---------------------------------------------------------

COUNTS = OutcomeCounts(I=400, P=50, R=200, NC=150, O=30, UH=300, UO=20, NE=250)
# Sums used below:
#   I+P              = 400 + 50                         = 450
#   known eligible K = I+P+R+NC+O = 400+50+200+150+30    = 830
#   unknown U        = UH+UO = 300 + 20                  = 320
#   D = K + U        = 830 + 320                         = 1150
#   contacts         = (I+P)+R+O = 450 + 200 + 30        = 680
#   (I+P)+R          = 450 + 200                         = 650
# Default e (AAPOR calculator): e = K / (K + NE) = 830 / (830 + 250) = 830/1080 = 83/108
#   = 0.768518518...
#   e*U = 83/108 * 320 = 26560/108 = 6640/27 = 245.925925...
#   De  = K + e*U = 830 + 6640/27 = (22410 + 6640)/27 = 29050/27 = 1075.925925...
E_DEFAULT = F(83, 108)
DE = F(29050, 27)
EXPECTED_DEFAULT = {
    "RR1": F(400, 1150),  # I/D = 0.347826...
    "RR2": F(450, 1150),  # (I+P)/D = 0.391304...
    "RR3": 400 / DE,  # I/De = 400*27/29050 = 10800/29050 = 0.371772...
    "RR4": 450 / DE,  # (I+P)/De = 12150/29050 = 0.418244...
    "RR5": F(400, 830),  # I/K = 0.481927...
    "RR6": F(450, 830),  # (I+P)/K = 0.542168...
    "COOP1": F(400, 680),  # I/[(I+P)+R+O] = 0.588235...
    "COOP2": F(450, 680),  # 0.661764...
    "COOP3": F(400, 650),  # I/[(I+P)+R] = 0.615384...
    "COOP4": F(450, 650),  # 0.692307...
    "REF1": F(200, 1150),  # R/D = 0.173913...
    "REF2": 200 / DE,  # R/De = 5400/29050 = 0.185886...
    "REF3": F(200, 830),  # R/K = 0.240963...
    "CON1": F(680, 1150),  # 0.591304...
    "CON2": 680 / DE,  # 18360/29050 = 0.632013...
    "CON3": F(680, 830),  # 0.819277...
}
# R 4 (formulas typed out), printed with 15 decimals:
R_REFERENCE = {
    "RR3": 0.371772805507745,
    "RR4": 0.418244406196213,
    "REF2": 0.185886402753873,
    "CON2": 0.632013769363167,
    "CON3": 0.819277108433735,
}


def test_rates_hand_computed_default_e():
    r = outcome_rates(COUNTS)
    assert r.e_basis == "default"
    assert r.e == pytest.approx(float(E_DEFAULT), rel=1e-15)
    assert r.e == pytest.approx(0.768518518518518, abs=1e-15)  # R
    for name, value in EXPECTED_DEFAULT.items():
        assert getattr(r, name) == pytest.approx(float(value), rel=1e-14), name
    for name, value in R_REFERENCE.items():
        assert getattr(r, name) == pytest.approx(value, abs=1e-14), name


def test_rates_hand_computed_given_e():
    # e = 0.6: De = K + 0.6*U = 830 + 0.6*320 = 830 + 192 = 1022
    r = outcome_rates(COUNTS, e=0.6)
    assert (r.e, r.e_basis) == (0.6, "given")
    assert r.rates()["RR3"] == pytest.approx(400 / 1022, rel=1e-14)  # 0.391389...
    assert r.rates()["RR4"] == pytest.approx(450 / 1022, rel=1e-14)  # 0.440313...
    assert r.rates()["REF2"] == pytest.approx(200 / 1022, rel=1e-14)  # 0.195694...
    assert r.rates()["CON2"] == pytest.approx(680 / 1022, rel=1e-14)  # 0.665362...
    # R 4: RR3 = 0.391389432485323, CON2 = 0.665362035225049
    assert r.rates()["RR3"] == pytest.approx(0.391389432485323, abs=1e-14)
    assert r.rates()["CON2"] == pytest.approx(0.665362035225049, abs=1e-14)
    # rates that do not use e are unchanged
    assert r.rates()["RR1"] == pytest.approx(400 / 1150)
    assert r.rates()["COOP1"] == pytest.approx(400 / 680)


def test_e_bounds_collapse_to_rr1_and_rr5():
    # e = 1 counts every unknown case as eligible (RR3 = RR1); e = 0 none (RR3 = RR5)
    r1 = outcome_rates(COUNTS, e=1)
    r0 = outcome_rates(COUNTS, e=0)
    assert r1.rates()["RR3"] == pytest.approx(r1.RR1)
    assert r1.rates()["CON2"] == pytest.approx(r1.CON1)
    assert r0.rates()["RR3"] == pytest.approx(r0.RR5)
    assert r0.rates()["REF2"] == pytest.approx(r0.REF3)


def test_rates_match_outcomerate_reference():
    # outcomerate tests/testthat/test-rate.R: x1 has I=5, P=3, R=2, NC=1, O=2,
    # UH=1, UO=1, NE=1; expected rates for e = 0.5 as published there.
    r = outcome_rates(OutcomeCounts(I=5, P=3, R=2, NC=1, O=2, UH=1, UO=1, NE=1), e=0.5)
    expected = {
        "RR1": 1 / 3, "RR2": 8 / 15, "RR3": 5 / 14, "RR4": 4 / 7, "RR5": 5 / 13,
        "RR6": 8 / 13, "COOP1": 5 / 12, "COOP2": 2 / 3, "COOP3": 1 / 2, "COOP4": 4 / 5,
        "REF1": 2 / 15, "REF2": 1 / 7, "REF3": 2 / 13, "CON1": 4 / 5, "CON2": 6 / 7,
        "CON3": 12 / 13,
    }  # fmt: skip
    assert r.rates() == pytest.approx(expected, rel=1e-14)


def test_zero_denominators_give_none_not_nan():
    # outcomerate's "low-count" case: a single UO case, e = 0.3.  outcomerate
    # returns NaN for RR5, RR6, COOP1-4, REF3, CON3; here those are None.
    r = outcome_rates(OutcomeCounts(I=0, P=0, R=0, NC=0, O=0, UH=0, UO=1, NE=0), e=0.3)
    for name in ("RR1", "RR2", "RR3", "RR4", "REF1", "REF2", "CON1", "CON2"):
        assert getattr(r, name) == 0.0, name
    for name in ("RR5", "RR6", "COOP1", "COOP2", "COOP3", "COOP4", "REF3", "CON3"):
        assert getattr(r, name) is None, name
    json.dumps(r.as_dict(), allow_nan=False)


def test_default_e_undefined_without_known_eligibility_cases():
    # only unknown cases: e = 0/0 is undefined, so the rates that need it are None
    r = outcome_rates(OutcomeCounts(I=0, P=0, R=0, NC=0, O=0, UH=4, UO=1, NE=0))
    assert r.e is None and r.e_basis == "default"
    assert r.RR1 == 0.0
    assert r.RR3 is None and r.RR4 is None and r.REF2 is None and r.CON2 is None


def test_e_not_needed_when_no_unknown_cases():
    # outcomerate test-e.R: I=4, P=1, R=2, NC=3, O=1 -> RR3 = 4/11, CON2 = 8/11
    r = outcome_rates(OutcomeCounts(I=4, P=1, R=2, NC=3, O=1, UH=0, UO=0, NE=0))
    assert r.e == 1.0  # K/(K+0)
    assert r.rates()["RR3"] == pytest.approx(4 / 11) and r.rates()["CON2"] == pytest.approx(8 / 11)
    empty = outcome_rates(OutcomeCounts(I=0, P=0, R=0, NC=0, O=0, UH=0, UO=0, NE=0))
    assert empty.e is None
    assert all(v is None for v in empty.rates().values())


def test_only_ineligible_cases():
    r = outcome_rates(OutcomeCounts(I=0, P=0, R=0, NC=0, O=0, UH=0, UO=0, NE=7))
    assert r.e == 0.0
    assert all(v is None for v in r.rates().values())


@pytest.mark.parametrize("bad", [-0.1, 1.01, math.nan, math.inf, "0.5", True])
def test_given_e_is_validated(bad):
    with pytest.raises(ValueError, match="e must be a number in"):
        outcome_rates(COUNTS, e=bad)


def test_outcome_rates_needs_counts():
    with pytest.raises(TypeError, match="OutcomeCounts"):
        outcome_rates({"I": 1})  # type: ignore[arg-type]


def test_as_dict_is_json_ready():
    d = outcome_rates(COUNTS).as_dict()
    assert list(d)[:16] == [
        "RR1", "RR2", "RR3", "RR4", "RR5", "RR6", "COOP1", "COOP2", "COOP3", "COOP4",
        "REF1", "REF2", "REF3", "CON1", "CON2", "CON3",
    ]  # fmt: skip
    assert d["e_basis"] == "default" and d["e_formula"] == E_DEFAULT_FORMULA
    assert d["counts"] == {"I": 400, "P": 50, "R": 200, "NC": 150, "O": 30, "UH": 300,
                           "UO": 20, "NE": 250}  # fmt: skip
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    given_e = outcome_rates(COUNTS, e=0.5).as_dict()
    assert given_e["e_basis"] == "given" and given_e["e_formula"] is None


def test_rates_from_final_codes_end_to_end():
    # 3 cases through final_disposition, then counted and rated
    histories = [
        (["3.13", "1.1"], False),  # complete
        (["2.1121", "3.13", "3.13"], True),  # soft refusal, cap reached -> 2.112 (R)
        (["3.13", "3.12", "3.13"], True),  # never answered -> 3.13 (UH)
        (["4.31"], False),  # non-working -> NE
    ]
    finals = [final_disposition(a, attempts_exhausted=x) for a, x in histories]
    assert finals == ["1.1", "2.112", "3.13", "4.31"]
    r = outcome_rates(counts_from_codes(finals))
    # K = 2, U = 1, NE = 1: e = 2/3; RR1 = 1/3; RR3 = 1/(2 + 2/3) = 3/8; COOP1 = 1/2
    assert r.e == pytest.approx(2 / 3)
    assert r.rates()["RR1"] == pytest.approx(1 / 3)
    assert r.rates()["RR3"] == pytest.approx(3 / 8)
    assert r.rates()["COOP1"] == pytest.approx(1 / 2)


# --- properties ---------------------------------------------------------------------------

count = st.one_of(
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
)
counts_strategy = st.builds(
    OutcomeCounts, I=count, P=count, R=count, NC=count, O=count, UH=count, UO=count, NE=count
)
e_strategy = st.one_of(st.none(), st.floats(min_value=0, max_value=1))

TOL = 1e-12


def _le(a, b):
    """a <= b up to rounding, when both rates are defined."""
    return a is None or b is None or a <= b + TOL


@given(counts_strategy, e_strategy)
def test_rates_lie_in_unit_interval_and_are_ordered(counts, e):
    r = outcome_rates(counts, e=e)
    for name, value in r.rates().items():
        assert value is None or (0 <= value <= 1 + TOL), (name, value)
        assert value is None or not math.isnan(value)
    if r.e is not None:
        assert 0 <= r.e <= 1
    # P >= 0: the "with partials" rates are at least the "completes only" ones
    for lo, hi in [("RR1", "RR2"), ("RR3", "RR4"), ("RR5", "RR6"),
                   ("COOP1", "COOP2"), ("COOP3", "COOP4")]:  # fmt: skip
        assert _le(getattr(r, lo), getattr(r, hi)), (lo, hi)
    # 0 <= e <= 1: D >= De >= known eligible
    for a, b, c in [("RR1", "RR3", "RR5"), ("RR2", "RR4", "RR6"),
                    ("REF1", "REF2", "REF3"), ("CON1", "CON2", "CON3")]:  # fmt: skip
        assert _le(getattr(r, a), getattr(r, b)), (a, b)
        assert _le(getattr(r, b), getattr(r, c)), (b, c)
    # RR1 <= RR2 <= RR4 and RR1 <= RR3 <= RR5 <= RR6
    assert _le(r.RR2, r.RR4) and _le(r.RR5, r.RR6)
    # removing O (and NC) from the denominator can only raise the rate
    assert _le(r.COOP1, r.COOP3) and _le(r.COOP2, r.COOP4)
    assert _le(r.RR6, r.COOP2) and _le(r.RR5, r.COOP1)
    # an interview is a contact
    assert _le(r.RR2, r.CON1) and _le(r.RR4, r.CON2) and _le(r.RR6, r.CON3)
