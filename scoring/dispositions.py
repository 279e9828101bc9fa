"""AAPOR telephone disposition codes: the catalogue, code look-up and the final code of a case.

See ``scoring.aapor`` for the sources, the local sub-codes and the rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from scoring.errors import ScoringError

__all__ = [
    "CATEGORIES",
    "CATI_CHOICES",
    "CODES",
    "DISPOSITIONS",
    "Disposition",
    "UNKNOWN_PRECEDENCE",
    "UnknownDispositionError",
    "disposition",
    "final_disposition",
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


class UnknownDispositionError(ScoringError, LookupError):
    """A disposition code that is not in the telephone catalogue.

    ``code`` is the value that was looked up.  Callers reading a file catch this
    and report it as a problem with the file, row and
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


#: Share of assigned units answered ("don't know" counts) that makes a partial (1.2)
#: and a complete (1.1).  AAPOR lets a survey set these; Standard Definitions gives
#: 50% and 80% as common choices.  minping: a partial from half the units, a complete
#: only when every unit has an answer.
PARTIAL_SHARE = 0.5
COMPLETE_SHARE = 1.0


def interview_code(answered_units: int, total_units: int, *,
                   partial_share: float = PARTIAL_SHARE,
                   complete_share: float = COMPLETE_SHARE) -> str:
    """The code an interview that began earns from its answers: 1.1, 1.2 or 2.12.

    ``answered_units`` of ``total_units`` assigned units have an answer (a scale
    key, "don't know" included).  Share >= ``complete_share``: 1.1 complete;
    >= ``partial_share``: 1.2 partial; less: 2.12 break-off.  The one rule for
    the IVR (:func:`scoring.twilio_status.from_twilio_status`) and for the
    dispositions an interviewer or a supervisor chooses (:mod:`minping.dispositions`).
    """
    if total_units <= 0 or answered_units <= 0:
        return "2.12"
    share = answered_units / total_units
    if share >= complete_share:
        return "1.1"
    if share >= partial_share:
        return "1.2"
    return "2.12"
