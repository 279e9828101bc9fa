"""AAPOR case dispositions, final-code selection and outcome rates.

The disposition codes follow the telephone table of the AAPOR *Standard
Definitions*, 10th edition (2023) [1]_.  For the outcome rates the 10th
edition's one change is a separate aggregate, ``UR``, for code 3.20 (a working
number, unknown whether it reaches an eligible respondent).  Here 3.2x is
counted in ``UO`` as the 9th edition (2016) did: with one eligibility estimate
``e`` for all unknown cases the rates are identical either way, because every
rate treats the two aggregates alike.  Of AAPOR's 4.4x "special technological
circumstances" only 4.41 (number changed) is kept: the others (cell phone, call
forwarding, pagers) describe landline random-digit samples, not a list of
named respondents' phone numbers.

Three kinds of code live in the catalogue:

* AAPOR's codes, final and temporary.  A code is *final* (``Disposition.final``)
  when setting it on an attempt ends the case: a complete, a hard refusal, a
  dead respondent, a non-working number.  Temporary codes (no answer, busy,
  answering machine, break-off, partial, appointment ...) leave the case in the
  field; when the attempts run out, :func:`final_disposition` turns the most
  informative of them into the case's final code.
* Group headings (2.10, 2.20, 2.30, 3.10, 3.20, 4.30, 4.40, 4.50) are not codes
  a case can carry; :func:`disposition` says which codes sit under them.
* Three local sub-codes, made by adding a digit as AAPOR allows for finer
  categories, for choices the CATI screen needs and AAPOR folds together:
  2.1111 and 2.1121 soft refusals (household level / respondent; temporary,
  they go to refusal conversion and are reported as 2.111 / 2.112 if the case
  ends on them) and 2.211 appointment (reported as 2.21).

**Appointments.**  An appointment means somebody at the number told the
interviewer when to call back: the number reaches an eligible respondent, and
the interview has not happened.  AAPOR's code for an eligible case whose
respondent is never interviewed for that reason is 2.21 "respondent never
available" (non-contact, NC), so an appointment is recorded as 2.211, a
temporary sub-code of 2.21: the case stays in the field, and if it never gets
its interview it closes as 2.21.

Rates
-----
With ``D = (I+P) + (R+NC+O) + (UH+UO)`` and ``De = (I+P) + (R+NC+O) + e(UH+UO)``:
RR1 = I/D, RR2 = (I+P)/D, RR3 = I/De, RR4 = (I+P)/De, RR5 = I/[(I+P)+(R+NC+O)],
RR6 = (I+P)/[(I+P)+(R+NC+O)]; COOP1 = I/[(I+P)+R+O], COOP2 = (I+P)/[(I+P)+R+O],
COOP3 = I/[(I+P)+R], COOP4 = (I+P)/[(I+P)+R]; REF1 = R/D, REF2 = R/De,
REF3 = R/[(I+P)+(R+NC+O)]; CON1 = [(I+P)+R+O]/D, CON2 = [(I+P)+R+O]/De,
CON3 = [(I+P)+R+O]/[(I+P)+(R+NC+O)].

A rate whose denominator is zero is ``None`` (no cases to base it on), never
NaN, so that JSON output stays valid and a report can print "—".

References
----------
.. [1] The American Association for Public Opinion Research (2023). *Standard
   Definitions: Final Dispositions of Case Codes and Outcome Rates for
   Surveys*, 10th edition. AAPOR.
.. [2] AAPOR Outcome Rate Calculator, version 4.0 (2016): default
   e = (I+P+R+NC+O) / (I+P+R+NC+O+NE).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from numbers import Real
from typing import Literal

from scoring.dispositions import (
    CATEGORIES,
    CATI_CHOICES,
    CODES,
    DISPOSITIONS,
    UNKNOWN_PRECEDENCE,
    Disposition,
    UnknownDispositionError,
    disposition,
    final_disposition,
)
from scoring.twilio_status import SIP_CODE_DISPOSITIONS, from_twilio_status

__all__ = [
    "CATEGORIES",
    "CATI_CHOICES",
    "CODES",
    "DISPOSITIONS",
    "E_DEFAULT_FORMULA",
    "Disposition",
    "OutcomeCounts",
    "OutcomeRates",
    "SIP_CODE_DISPOSITIONS",
    "UNKNOWN_PRECEDENCE",
    "UnknownDispositionError",
    "counts_from_codes",
    "disposition",
    "final_disposition",
    "from_twilio_status",
    "outcome_rates",
]


# --- outcome counts and rates --------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeCounts:
    """Cases (or summed weights) in each AAPOR outcome aggregate.

    Counts may be weighted (non-negative reals); they are validated on
    construction.
    """

    I: float  # noqa: E741 - AAPOR's name for completes
    P: float
    R: float
    NC: float
    O: float  # noqa: E741 - AAPOR's name for "other"
    UH: float
    UO: float
    NE: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, Real)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"outcome count {f.name} must be a finite number >= 0, not {value!r}"
                )

    @property
    def known_eligible(self) -> float:
        """I + P + R + NC + O."""
        return self.I + self.P + self.R + self.NC + self.O

    @property
    def unknown(self) -> float:
        """UH + UO."""
        return self.UH + self.UO

    @property
    def total(self) -> float:
        """All cases."""
        return self.known_eligible + self.unknown + self.NE

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in CATEGORIES}


def counts_from_codes(codes: Iterable[str]) -> OutcomeCounts:
    """Count final AAPOR codes into the eight outcome aggregates.

    Parameters
    ----------
    codes : iterable of str
        One final code per case, e.g. from :func:`final_disposition`.

    Raises
    ------
    UnknownDispositionError
        If a code is unknown, or is a local temporary sub-code (2.1111, 2.1121,
        2.211) that a case cannot end on; the message names its position.
    """
    if isinstance(codes, str):
        raise TypeError(f"codes must be an iterable of codes, not the single string {codes!r}")
    tally = dict.fromkeys(CATEGORIES, 0)
    for i, code in enumerate(codes, start=1):
        try:
            d = disposition(code)
        except UnknownDispositionError as exc:
            raise UnknownDispositionError(code, f"case {i}: {exc}") from None
        if d.is_local:
            raise UnknownDispositionError(
                code,
                f"case {i}: {d.code} ({d.label_en}) is a temporary code, not a final "
                f"disposition; a case that ends on it is {d.reported_as}",
            )
        tally[d.category] += 1
    return OutcomeCounts(**tally)


E_DEFAULT_FORMULA = "(I+P+R+NC+O)/(I+P+R+NC+O+NE)"

_RATE_NAMES = (
    "RR1", "RR2", "RR3", "RR4", "RR5", "RR6",
    "COOP1", "COOP2", "COOP3", "COOP4",
    "REF1", "REF2", "REF3",
    "CON1", "CON2", "CON3",
)  # fmt: skip


@dataclass(frozen=True)
class OutcomeRates:
    """AAPOR outcome rates, with the eligibility estimate they used.

    Each rate is a float in [0, 1], or ``None`` when its denominator is zero.
    RR3, RR4, REF2 and CON2 are also ``None`` when there are unknown-eligibility
    cases but no ``e`` could be formed (no case of known eligibility).

    Attributes
    ----------
    e : float or None
        The estimated share of unknown-eligibility cases that are eligible.
    e_basis : {"given", "default"}
        ``"given"``: supplied by the caller; ``"default"``: AAPOR's calculator
        default :data:`E_DEFAULT_FORMULA`.
    counts : OutcomeCounts
        The counts the rates were computed from.
    """

    RR1: float | None
    RR2: float | None
    RR3: float | None
    RR4: float | None
    RR5: float | None
    RR6: float | None
    COOP1: float | None
    COOP2: float | None
    COOP3: float | None
    COOP4: float | None
    REF1: float | None
    REF2: float | None
    REF3: float | None
    CON1: float | None
    CON2: float | None
    CON3: float | None
    e: float | None
    e_basis: Literal["given", "default"]
    counts: OutcomeCounts

    def rates(self) -> dict[str, float | None]:
        """The sixteen rates by name, in AAPOR's order."""
        return {name: getattr(self, name) for name in _RATE_NAMES}

    def as_dict(self) -> dict:
        """A JSON-ready dictionary (``None`` for undefined rates)."""
        out: dict = self.rates()
        out["e"] = self.e
        out["e_basis"] = self.e_basis
        out["e_formula"] = E_DEFAULT_FORMULA if self.e_basis == "default" else None
        out["counts"] = self.counts.as_dict()
        return out


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def outcome_rates(counts: OutcomeCounts, *, e: float | None = None) -> OutcomeRates:
    """AAPOR response, cooperation, refusal and contact rates.

    Parameters
    ----------
    counts : OutcomeCounts
        Final dispositions by aggregate (see :func:`counts_from_codes`).
    e : float, optional
        Estimated share of the unknown-eligibility cases (UH + UO) that are
        eligible, in [0, 1].  When omitted, AAPOR's Outcome Rate Calculator
        default is used: ``e = (I+P+R+NC+O) / (I+P+R+NC+O+NE)``, the eligible
        share among cases whose eligibility is known.  Every report that shows
        RR3, RR4, REF2 or CON2 must state ``e`` and its basis.

    Returns
    -------
    OutcomeRates
        Rates are ``None`` (not NaN) where the denominator is zero.

    Examples
    --------
    >>> r = outcome_rates(OutcomeCounts(I=5, P=3, R=2, NC=1, O=2, UH=1, UO=1, NE=1), e=0.5)
    >>> round(r.RR3, 6), r.e_basis
    (0.357143, 'given')
    """
    if not isinstance(counts, OutcomeCounts):
        raise TypeError(f"counts must be an OutcomeCounts, not {type(counts).__name__}")
    if e is None:
        basis: Literal["given", "default"] = "default"
        e_used = _ratio(counts.known_eligible, counts.known_eligible + counts.NE)
    else:
        if (
            isinstance(e, bool)
            or not isinstance(e, Real)
            or not math.isfinite(e)
            or not 0 <= e <= 1
        ):
            raise ValueError(f"e must be a number in [0, 1], not {e!r}")
        basis = "given"
        e_used = float(e)

    c = counts
    interviews = c.I + c.P
    known = c.known_eligible
    d_all = known + c.unknown
    contacts = interviews + c.R + c.O
    if c.unknown == 0:
        d_e: float | None = known
    elif e_used is None:
        d_e = None
    else:
        d_e = known + e_used * c.unknown

    def over_de(num: float) -> float | None:
        return None if d_e is None else _ratio(num, d_e)

    return OutcomeRates(
        RR1=_ratio(c.I, d_all),
        RR2=_ratio(interviews, d_all),
        RR3=over_de(c.I),
        RR4=over_de(interviews),
        RR5=_ratio(c.I, known),
        RR6=_ratio(interviews, known),
        COOP1=_ratio(c.I, contacts),
        COOP2=_ratio(interviews, contacts),
        COOP3=_ratio(c.I, interviews + c.R),
        COOP4=_ratio(interviews, interviews + c.R),
        REF1=_ratio(c.R, d_all),
        REF2=over_de(c.R),
        REF3=_ratio(c.R, known),
        CON1=_ratio(contacts, d_all),
        CON2=over_de(contacts),
        CON3=_ratio(contacts, known),
        e=e_used,
        e_basis=basis,
        counts=counts,
    )
