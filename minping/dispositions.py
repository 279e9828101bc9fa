"""Whether a disposition fits what happened: the one rule for every channel.

The catalogue of codes is :mod:`scoring.dispositions`; the life of a case is
:mod:`minping.cases`.  This module decides whether a code, a rating or a
supervisor's change is *consistent with the interview's state*, and is called by
the CATI screen (:mod:`cati.service`), the supervisor's edit and the automatic
closing of abandoned attempts.  The IVR computes its code from the same rule
(:func:`scoring.dispositions.interview_code`, through
:func:`scoring.twilio_status.from_twilio_status`).

* Every disposition of an attempt needs a dial: the attempt must be open.
* 1.1 complete, 1.2 partial and 2.12 break-off need the respondent's consent in
  this attempt, and must be the code the answers earn
  (:func:`~scoring.dispositions.interview_code`: every assigned unit answered,
  "don't know" included, is 1.1; half of them or more is 1.2; fewer is 2.12).
* A rating is saved only after consent.
* A supervisor's change of an answer may not leave a finished interview with a
  code its answers no longer earn, nor add ratings to a case nobody consented in.

Refusals are :class:`Refused` errors carrying an English template and its values,
so a screen shows them in the user's language.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from minping.cases import Refused, answer_counts
from minping.models import Answer, AttemptEvent, CallAttempt, CaseUnit, SampleCase
from scoring.dispositions import disposition, interview_code

#: Codes that say an interview began (they need consent and must match the answers).
INTERVIEW_CODES = frozenset({"1.1", "1.2", "2.12"})


@dataclass(frozen=True)
class InterviewState:
    """What happened so far: a dial, a consent, and the answers of the case."""

    dialled: bool
    consent: bool
    answered: int
    total: int

    @property
    def earned(self) -> str:
        """The code the answers earn if the interview ended now."""
        return interview_code(self.answered, self.total)


def has_consent(session: Session, attempt: CallAttempt | None) -> bool:
    if attempt is None:
        return False
    return bool(session.scalar(select(exists().where(
        AttemptEvent.attempt_id == attempt.id, AttemptEvent.kind == "consent"))))


def state_of(session: Session, case: SampleCase, attempt: CallAttempt | None) -> InterviewState:
    """The interview's state for ``attempt`` (the open attempt, or ``None``: not dialled)."""
    answered, total = answer_counts(session, case.id)
    return InterviewState(dialled=attempt is not None, consent=has_consent(session, attempt),
                          answered=answered, total=total)


def check_code(code: str, state: InterviewState) -> None:
    """Raise :class:`Refused` unless ``code`` is consistent with ``state``."""
    info = disposition(code)
    if not state.dialled:
        raise Refused("Dial first: {code} is the outcome of a call, and no call is open.",
                      code=info.code)
    if info.code in INTERVIEW_CODES or info.category in ("I", "P"):
        if not state.consent:
            raise Refused("{code} needs the respondent's consent: press 'Consent given' first.",
                          code=info.code)
        earned = state.earned
        if info.code != earned:
            raise Refused("{answered} of {total} units have an answer (\"don't know\" counts): "
                          "the interview is {earned}, not {code}.",
                          answered=state.answered, total=state.total, earned=earned,
                          code=info.code)


def check_rating(state: InterviewState) -> None:
    """Raise :class:`Refused` unless a rating may be saved now (dialled, consent given)."""
    if not state.dialled:
        raise Refused("Dial first (the call is not open).")
    if not state.consent:
        raise Refused("Record the respondent's consent before the ratings.")


def check_supervisor_change(session: Session, case: SampleCase, unit_id: int,
                            rating: str | None) -> None:
    """Raise :class:`Refused` when a supervisor's change of one answer would make the
    case inconsistent: ratings on a case nobody consented in, or a finished interview
    (1.1, 1.2) whose answers would no longer earn its code."""
    consented = session.scalar(select(exists().where(
        AttemptEvent.kind.in_(("consent", "handoff")),
        AttemptEvent.attempt_id.in_(select(CallAttempt.id).where(CallAttempt.case_id == case.id)))))
    had = session.scalar(select(Answer.rating).where(Answer.case_id == case.id,
                                                     Answer.unit_id == unit_id))
    if not consented:
        raise Refused("Case {case}: the respondent never consented, so it has no ratings "
                      "to change.", case=case.pseudo_id)
    final = case.final_disposition
    if final not in ("1.1", "1.2"):
        return
    answered, total = answer_counts(session, case.id)
    assigned = session.scalar(select(func.count()).where(CaseUnit.case_id == case.id,
                                                         CaseUnit.unit_id == unit_id))
    if not assigned:
        return  # record_answer refuses it, naming the unit
    answered += (rating is not None) - (had is not None)
    earned = interview_code(answered, total)
    if earned != final:
        raise Refused("Case {case} is {final}; with this change {answered} of {total} units "
                      "would have an answer, which is {earned}.", case=case.pseudo_id,
                      final=final, answered=answered, total=total, earned=earned)


__all__ = ["INTERVIEW_CODES", "InterviewState", "Refused", "check_code", "check_rating",
           "check_supervisor_change", "has_consent", "state_of"]
