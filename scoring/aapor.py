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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from numbers import Real
from typing import Literal

from minping.errors import MinpingError
from scoring.callstatus import ANSWERED_BY, FINAL_STATUSES, MACHINE, NON_FINAL_STATUSES

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

Category = Literal["I", "P", "R", "NC", "O", "UH", "UO", "NE"]
Eligibility = Literal["eligible", "unknown", "ineligible"]

#: The eight AAPOR outcome aggregates, in AAPOR's order.
CATEGORIES: tuple[str, ...] = ("I", "P", "R", "NC", "O", "UH", "UO", "NE")

_ELIGIBILITY: dict[str, str] = {
    "I": "eligible",
    "P": "eligible",
    "R": "eligible",
    "NC": "eligible",
    "O": "eligible",
    "UH": "unknown",
    "UO": "unknown",
    "NE": "ineligible",
}


class UnknownDispositionError(MinpingError, LookupError):
    """A disposition code that is not in the telephone catalogue.

    ``code`` is the value that was looked up.  Callers reading a file catch this
    and report it as a :class:`minping.errors.Problem` with the file, row and
    field.
    """

    def __init__(self, code: object, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Disposition:
    """One telephone disposition code.

    Attributes
    ----------
    code : str
        The code, e.g. ``"2.112"``.
    label_zh, label_en : str
        What the CATI screen and the reports show.
    category : {"I", "P", "R", "NC", "O", "UH", "UO", "NE"}
        The AAPOR aggregate the code is counted in.
    final : bool
        True when setting the code on an attempt ends the case.
    eligibility : {"eligible", "unknown", "ineligible"}
        What the code says about the case's eligibility (from ``category``).
    reported_as : str
        The AAPOR code a case gets when it ends on this code.  Equal to
        ``code`` except for the local sub-codes (2.1111, 2.1121 and 2.211).
    """

    code: str
    label_zh: str
    label_en: str
    category: Category
    final: bool
    eligibility: Eligibility
    reported_as: str

    @property
    def is_local(self) -> bool:
        """True for a local sub-code that is reported under its AAPOR parent."""
        return self.reported_as != self.code


def _d(
    code: str,
    label_zh: str,
    label_en: str,
    category: Category,
    final: bool,
    reported_as: str | None = None,
) -> Disposition:
    return Disposition(
        code=code,
        label_zh=label_zh,
        label_en=label_en,
        category=category,
        final=final,
        eligibility=_ELIGIBILITY[category],  # type: ignore[arg-type]
        reported_as=reported_as or code,
    )


_CATALOGUE: tuple[Disposition, ...] = (
    # 1 Interview
    _d("1.1", "成功访问", "Complete interview", "I", True),
    _d("1.2", "部分完成", "Partial interview", "P", False),
    # 2.10 Refusal and break-off (R)
    _d("2.11", "拒访", "Refusal", "R", True),
    _d(
        "2.111",
        "家人/他人代拒（硬）",
        "Household-level refusal (hard: do not call again)",
        "R",
        True,
    ),
    _d(
        "2.1111",
        "家人/他人代拒（软）",
        "Household-level soft refusal (call back for refusal conversion)",
        "R",
        False,
        "2.111",
    ),
    _d("2.112", "拒访（硬）", "Known-respondent refusal (hard: do not call again)", "R", True),
    _d(
        "2.1121",
        "拒访（软）",
        "Known-respondent soft refusal (call back for refusal conversion)",
        "R",
        False,
        "2.112",
    ),
    _d("2.12", "中途挂断", "Break-off", "R", False),
    # 2.20 Non-contact (NC)
    _d("2.21", "受访者不在", "Respondent never available", "NC", False),
    _d("2.211", "预约", "Appointment (call back at the agreed time)", "NC", False, "2.21"),
    _d(
        "2.22",
        "答录机（已确认本人号码）",
        "Answering device confirms an eligible number",
        "NC",
        False,
    ),
    _d(
        "2.221",
        "答录机（已确认，已留言）",
        "Answering device, eligible number: message left",
        "NC",
        False,
    ),
    _d(
        "2.222",
        "答录机（已确认，未留言）",
        "Answering device, eligible number: no message left",
        "NC",
        False,
    ),
    # 2.30 Other (O)
    _d("2.31", "受访者已去世", "Respondent dead", "O", True),
    _d("2.32", "因身体或精神原因无法受访", "Physically or mentally unable", "O", True),
    _d("2.33", "语言障碍", "Language problem", "O", True),
    _d("2.331", "语言障碍（接听人）", "Household-level language problem", "O", True),
    _d("2.332", "语言障碍（受访者）", "Respondent language problem", "O", True),
    _d(
        "2.333",
        "无相应语言/方言访员",
        "No interviewer available for the needed language",
        "O",
        True,
    ),
    _d("2.34", "通话质量差", "Inadequate audio quality", "O", False),
    _d(
        "2.35",
        "受访者当前不便（如正在开车）",
        "Location or activity not allowing an interview",
        "O",
        False,
    ),
    _d("2.36", "其他原因未访（合格）", "Miscellaneous (eligible, no interview)", "O", True),
    # 3.10 Unknown if the number is eligible (UH)
    _d("3.11", "未拨打", "Not attempted or worked", "UH", False),
    _d("3.12", "占线", "Always busy", "UH", False),
    _d("3.13", "无人接听", "No answer", "UH", False),
    _d("3.14", "答录机（未确认）", "Answering device, eligibility unknown", "UH", False),
    _d("3.15", "来电拦截", "Call blocking", "UH", False),
    _d("3.16", "技术故障", "Technical phone problems", "UH", False),
    # 3.20 Number works, unknown if it reaches an eligible respondent (UO; UR in the 10th ed.)
    _d("3.21", "有人接听，未确认受访者", "No screener completed", "UO", False),
    _d("3.90", "其他（资格未知）", "Other, eligibility unknown", "UO", False),
    # 4 Not eligible (NE)
    _d("4.10", "不在抽样范围", "Out of sample", "NE", True),
    _d("4.20", "传真/数据线", "Fax or data line", "NE", True),
    _d("4.31", "空号", "Non-working number", "NE", True),
    _d("4.32", "停机", "Disconnected number", "NE", True),
    _d("4.33", "暂停服务", "Number temporarily out of service", "NE", True),
    _d("4.41", "号码已更换", "Number changed", "NE", True),
    _d(
        "4.51",
        "单位号码（企业、机关）",
        "Business, government office or other organisation",
        "NE",
        True,
    ),
    _d("4.52", "机构（医院、养老院等）", "Institution", "NE", True),
    _d("4.53", "集体宿舍", "Group quarters", "NE", True),
    _d("4.70", "不符合条件", "No eligible respondent", "NE", True),
    _d("4.80", "配额已满", "Quota filled", "NE", True),
    _d("4.90", "其他不符合条件", "Other ineligible", "NE", True),
)

#: Every code, by code.
DISPOSITIONS: dict[str, Disposition] = {d.code: d for d in _CATALOGUE}

#: Every code, in AAPOR order.
CODES: tuple[str, ...] = tuple(d.code for d in _CATALOGUE)

_HEADINGS: dict[str, str] = {
    "1.0": "interview",
    "2.0": "eligible, no interview",
    "2.10": "refusal and break-off",
    "2.20": "non-contact",
    "2.30": "other (eligible)",
    "3.0": "unknown eligibility",
    "3.10": "unknown if the number is eligible",
    "3.20": "number works, unknown if it reaches an eligible respondent",
    "4.0": "not eligible",
    "4.30": "non-working or disconnected number",
    "4.40": "special technological circumstances",
    "4.50": "not a residence",
}

#: The choices on the CATI screen, in the order they are shown.
CATI_CHOICES: tuple[Disposition, ...] = tuple(
    DISPOSITIONS[c]
    for c in (
        "1.1",
        "1.2",
        "2.211",
        "2.21",
        "2.1121",
        "2.112",
        "2.1111",
        "2.111",
        "2.12",
        "3.13",
        "3.12",
        "3.14",
        "2.221",
        "2.222",
        "4.31",
        "4.32",
        "4.20",
        "4.51",
        "4.10",
        "4.41",
        "4.70",
        "2.332",
        "2.333",
        "2.32",
        "2.31",
        "2.34",
        "2.35",
        "3.21",
        "3.15",
        "3.16",
    )
)


def _heading_children(heading: str) -> list[str]:
    # "2.10" -> "2.1", "2.0" -> "2."
    prefix = heading.rstrip("0")
    return [c for c in CODES if c.startswith(prefix) and not DISPOSITIONS[c].is_local]


def disposition(code: str) -> Disposition:
    """Look up a telephone disposition code.

    Parameters
    ----------
    code : str
        A code such as ``"2.112"``; surrounding blanks are ignored.

    Returns
    -------
    Disposition

    Raises
    ------
    UnknownDispositionError
        If ``code`` is not a telephone disposition, naming the value and, for an
        AAPOR group heading such as ``"2.10"``, the codes under it.
    """
    if not isinstance(code, str):
        raise UnknownDispositionError(
            code, f"a disposition code must be a string like '2.112', not {code!r}"
        )
    key = code.strip()
    found = DISPOSITIONS.get(key)
    if found is not None:
        return found
    if key in _HEADINGS:
        children = ", ".join(_heading_children(key))
        raise UnknownDispositionError(
            code,
            f"{key!r} is AAPOR's heading for {_HEADINGS[key]}, not a code a case can "
            f"carry; use one of {children}",
        )
    raise UnknownDispositionError(
        code,
        f"unknown AAPOR telephone disposition code {code!r}; known codes are {', '.join(CODES)}",
    )


# --- final code selection ------------------------------------------------------------------

#: When the attempts run out with only unknown-eligibility codes, the final
#: code is the first of these that the case ever had: a person answering
#: (3.21, 3.90) says the most about the number; an answering machine, a
#: blocking message or ringing with no answer show a working line; "busy" may
#: be a network signal; a technical failure says nothing about the number.
UNKNOWN_PRECEDENCE: tuple[str, ...] = (
    "3.21",
    "3.90",
    "3.14",
    "3.15",
    "3.13",
    "3.12",
    "3.16",
    "3.11",
)

# Among eligible temporary codes: a refusal (contact, said no) says more than
# another reason for no interview (contact, but could not do it), which says
# more than a non-contact.
_ELIGIBLE_PRECEDENCE: tuple[str, ...] = ("R", "O", "NC")


def final_disposition(attempt_codes: Sequence[str], *, attempts_exhausted: bool) -> str | None:
    """Choose a case's final AAPOR code from the codes of its attempts.

    Rules, in order:

    1. A complete (1.1) anywhere wins over everything.
    2. Otherwise the most recent *final* code wins, except that an eligible
       non-interview (R, NC or O: e.g. a hard refusal on a later call) after a
       partial interview (1.2) gives 1.2: AAPOR classifies a case by the data
       collected, and a partial has enough of it.
    3. Otherwise, while attempts remain, the case is still in the field: ``None``.
    4. When the attempts are exhausted:

       a. a partial (1.2) if the case ever had one;
       b. else, if the case was ever known to be eligible, its most recent code
          of the most informative eligible category, R before O before NC, as
          reported (soft refusal 2.1121 -> 2.112, 2.1111 -> 2.111,
          appointment 2.211 -> 2.21, answering machine at a known-eligible
          number 2.22x stays 2.22x);
       c. else the first code of :data:`UNKNOWN_PRECEDENCE` the case ever had
          (3.21/3.90 > 3.14 > 3.15 > 3.13 > 3.12 > 3.16 > 3.11);
       d. a case with no attempts at all is 3.11 (not attempted).

    Parameters
    ----------
    attempt_codes : sequence of str
        The codes of the case's attempts, oldest first.
    attempts_exhausted : bool
        True when no further attempt will be made (attempt cap reached, or the
        field period is over).

    Returns
    -------
    str or None
        An AAPOR code (never a local sub-code), or ``None`` while the case is
        still in the field.

    Raises
    ------
    UnknownDispositionError
        If a code is not in the catalogue; the message names its position.
    """
    if isinstance(attempt_codes, str):
        raise TypeError(
            f"attempt_codes must be a sequence of codes, not the single string {attempt_codes!r}"
        )
    found: list[Disposition] = []
    for i, code in enumerate(attempt_codes, start=1):
        try:
            found.append(disposition(code))
        except UnknownDispositionError as exc:
            raise UnknownDispositionError(code, f"attempt {i}: {exc}") from None

    if any(d.code == "1.1" for d in found):
        return "1.1"
    had_partial = any(d.category == "P" for d in found)
    finals = [d for d in found if d.final]
    if finals:
        last = finals[-1]
        if had_partial and last.category in ("R", "NC", "O"):
            return "1.2"
        return last.reported_as
    if not attempts_exhausted:
        return None
    if had_partial:
        return "1.2"
    for category in _ELIGIBLE_PRECEDENCE:
        matching = [d for d in found if d.category == category]
        if matching:
            return matching[-1].reported_as
    seen = {d.code for d in found}
    for code in UNKNOWN_PRECEDENCE:
        if code in seen:
            return code
    return "3.11"


# --- Twilio call outcomes ------------------------------------------------------------------

# Twilio's vocabulary (CallStatus, AnsweredBy) lives in scoring.callstatus.
_TERMINAL_STATUSES = FINAL_STATUSES
_NON_TERMINAL_STATUSES = NON_FINAL_STATUSES
_MACHINE = MACHINE
_ANSWERED_BY = ANSWERED_BY

#: Disposition of a ``failed`` call by its SIP response code.  Codes not listed
#: (other 4xx, 5xx, or no SIP code) are 3.16 technical problems.
SIP_CODE_DISPOSITIONS: dict[int, str] = {
    404: "4.31",  # Not Found: no such number (空号)
    484: "4.31",  # Address Incomplete: not a valid number
    604: "4.31",  # Does Not Exist Anywhere
    410: "4.32",  # Gone: the number existed and has been disconnected (停机)
    486: "3.12",  # Busy Here
    600: "3.12",  # Busy Everywhere
    408: "3.13",  # Request Timeout: nobody picked up
    480: "3.13",  # Temporarily Unavailable: phone off or out of coverage (关机/不在服务区)
    603: "3.15",  # Decline: rejected by the callee's device
    607: "3.15",  # Unwanted (RFC 8197): rejected as an unwanted call
    608: "3.15",  # Rejected (RFC 8688): blocked by an intermediary (spam filter)
}


def from_twilio_status(
    call_status: str,
    answered_by: str | None = None,
    sip_code: int | None = None,
    had_consent: bool = False,
    answered_units: int = 0,
    total_units: int = 0,
    refused: bool = False,
    *,
    known_eligible: bool = False,
    partial_share: float = 0.5,
    complete_share: float = 1.0,
) -> str:
    """Disposition of one IVR call from its final Twilio status.

    ======================================  =====================================
    Twilio outcome                          code
    ======================================  =====================================
    ``busy``                                3.12 busy
    ``no-answer``                           3.13 no answer
    ``canceled`` (withdrawn by us)          3.11 not attempted
    ``failed``                              by SIP code, :data:`SIP_CODE_DISPOSITIONS`;
                                            otherwise 3.16 technical problems
    ``completed``, ``refused``              2.112 known-respondent refusal (consent
                                            refused or opt-out key: final)
    ``completed``, answers given            share = answered/total units:
                                            >= ``complete_share`` 1.1 complete,
                                            >= ``partial_share`` 1.2 partial,
                                            less 2.12 break-off
    ``completed``, ``AnsweredBy`` fax       4.20 fax
    ``completed``, answering machine        3.14, or 2.22 if ``known_eligible``
    ``completed``, consent, no answer yet   2.12 break-off
    ``completed``, hung up before consent   3.21 (a person answered; not known
                                            to be the respondent's number), or
                                            2.1111 household-level soft refusal
                                            if ``known_eligible``
    ======================================  =====================================

    Answers given override the answering-machine detection (a machine does not
    press keys).  Parameters are validated; unknown statuses raise.

    Parameters
    ----------
    call_status : str
        Twilio ``CallStatus`` of the finished call.
    answered_by : str, optional
        Twilio ``AnsweredBy`` (human, machine_start, machine_end_beep,
        machine_end_silence, machine_end_other, fax, unknown), if AMD ran.
    sip_code : int, optional
        Twilio ``SipResponseCode`` of a failed call.
    had_consent : bool
        The respondent passed the consent step.
    answered_units, total_units : int
        Units rated so far (over all calls of the case: answers are kept) and
        units assigned to the case.
    refused : bool
        The respondent declined consent or pressed the opt-out key.
    known_eligible : bool
        The number is already known to reach the respondent (an earlier
        contact); decides 2.22 versus 3.14 for an answering machine.
    partial_share, complete_share : float
        AAPOR lets a survey set the share of applicable questions answered that
        makes a partial and a complete; Standard Definitions gives 50% and 80%
        as common choices.  Defaults: partial from 50%, complete only when every
        unit is rated.

    Returns
    -------
    str
        A code of the catalogue: an AAPOR code, or 2.1111 (soft refusal).

    Raises
    ------
    ValueError
        For a call status that is unknown or not final, an unknown
        ``answered_by``, or counts and shares out of range.
    """
    if call_status in _NON_TERMINAL_STATUSES:
        raise ValueError(
            f"call_status {call_status!r} is not a final call status; "
            f"expected one of {', '.join(_TERMINAL_STATUSES)}"
        )
    if call_status not in _TERMINAL_STATUSES:
        raise ValueError(
            f"unknown Twilio call_status {call_status!r}; "
            f"expected one of {', '.join(_TERMINAL_STATUSES)}"
        )
    if answered_by is not None and answered_by not in _ANSWERED_BY:
        raise ValueError(
            f"unknown Twilio answered_by {answered_by!r}; expected one of {', '.join(_ANSWERED_BY)}"
        )
    if sip_code is not None and (
        isinstance(sip_code, bool) or not isinstance(sip_code, int) or not 100 <= sip_code <= 699
    ):
        raise ValueError(f"sip_code must be a SIP response code from 100 to 699, not {sip_code!r}")
    for name, value in (("answered_units", answered_units), ("total_units", total_units)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
    if answered_units > total_units:
        raise ValueError(
            f"answered_units ({answered_units}) cannot exceed total_units ({total_units})"
        )
    _check_share("partial_share", partial_share)
    _check_share("complete_share", complete_share)
    if partial_share > complete_share:
        raise ValueError(
            f"partial_share ({partial_share}) cannot exceed complete_share ({complete_share})"
        )

    if call_status == "busy":
        return "3.12"
    if call_status == "no-answer":
        return "3.13"
    if call_status == "canceled":
        return "3.11"
    if call_status == "failed":
        if sip_code is None:
            return "3.16"
        return SIP_CODE_DISPOSITIONS.get(sip_code, "3.16")

    # completed: somebody or something picked up
    if refused:
        return "2.112"
    if answered_units > 0:
        share = answered_units / total_units
        if share >= complete_share:
            return "1.1"
        if share >= partial_share:
            return "1.2"
        return "2.12"
    if answered_by == "fax":
        return "4.20"
    if answered_by in _MACHINE:
        return "2.22" if known_eligible else "3.14"
    if had_consent:
        return "2.12"
    if known_eligible:
        return "2.1111"
    return "3.21"


def _check_share(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not math.isfinite(value)
        or not 0 < value <= 1
    ):
        raise ValueError(f"{name} must be a number in (0, 1], not {value!r}")


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
