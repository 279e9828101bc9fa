"""Twilio's call vocabulary and what it means for a survey: one home for it.

The IVR webhooks (:mod:`ivr.callstate`, :mod:`ivr.interview`), the dialer, the simulator and the AAPOR
coding (:func:`scoring.aapor.from_twilio_status`) all read Twilio's
``CallStatus`` and ``AnsweredBy`` values from here.  Standard library only.

References
----------
.. [1] Twilio, Call resource, ``Status`` values,
   https://www.twilio.com/docs/voice/api/call-resource#call-status-values
.. [2] Twilio, Answering Machine Detection, ``AnsweredBy`` values,
   https://www.twilio.com/docs/voice/answering-machine-detection
"""

from __future__ import annotations

#: ``CallStatus`` values of a call still under way, in the order a call goes through them.
NON_FINAL_STATUSES: tuple[str, ...] = ("queued", "initiated", "ringing", "in-progress")
#: ``CallStatus`` values that end a call.
FINAL_STATUSES: tuple[str, ...] = ("completed", "busy", "no-answer", "canceled", "failed")

#: Forward order of call statuses (``answered`` is the status-callback event name of
#: ``in-progress``); a call never moves to a lower rank, and every final status ranks
#: :data:`FINAL_RANK`.
STATUS_RANK: dict[str, int] = {
    "queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3, "answered": 3,
    **{status: 4 for status in FINAL_STATUSES},
}
FINAL_RANK = 4

#: ``AnsweredBy`` values of an answering machine.
MACHINE: tuple[str, ...] = ("machine_start", "machine_end_beep", "machine_end_silence",
                            "machine_end_other")
#: Every ``AnsweredBy`` value.
ANSWERED_BY: tuple[str, ...] = ("human", "unknown", "fax", *MACHINE)
#: ``AnsweredBy`` values that are not a person: no questions for them.
NOT_A_PERSON: tuple[str, ...] = ("fax", *MACHINE)


def is_final(status: str | None) -> bool:
    """True for a ``CallStatus`` that ends a call."""
    return status in FINAL_STATUSES
