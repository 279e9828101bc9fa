"""Twilio call outcomes as AAPOR disposition codes.

See ``scoring.aapor`` for the codes and ``scoring.callstatus`` for Twilio's own
vocabulary (what each ``CallStatus`` and ``AnsweredBy`` value is).
"""

from __future__ import annotations

import math
from numbers import Real

from scoring.callstatus import ANSWERED_BY, FINAL_STATUSES, MACHINE, NON_FINAL_STATUSES
from scoring.dispositions import COMPLETE_SHARE, PARTIAL_SHARE, interview_code

__all__ = ["SIP_CODE_DISPOSITIONS", "from_twilio_status"]

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
    partial_share: float = PARTIAL_SHARE,
    complete_share: float = COMPLETE_SHARE,
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
    _check_arguments(call_status, answered_by, sip_code, answered_units, total_units,
                     partial_share, complete_share)
    # not completed: nobody picked up
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
        return interview_code(answered_units, total_units, partial_share=partial_share,
                              complete_share=complete_share)
    if answered_by == "fax":
        return "4.20"
    if answered_by in _MACHINE:
        return "2.22" if known_eligible else "3.14"
    if had_consent:
        return "2.12"
    if known_eligible:
        return "2.1111"
    return "3.21"


def _check_arguments(call_status: str, answered_by: str | None, sip_code: int | None,
                     answered_units: int, total_units: int, partial_share: float,
                     complete_share: float) -> None:
    """The ``ValueError`` of ``from_twilio_status`` for a bad argument."""
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


def _check_share(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not math.isfinite(value)
        or not 0 < value <= 1
    ):
        raise ValueError(f"{name} must be a number in (0, 1], not {value!r}")
