"""The hand-over key as Twilio plays it (issue #13, point 3).

The simulator signs every request with the real ``RequestValidator`` and
executes the TwiML: the hand-over key, ``<Dial>`` to the interviewer's phone (a
simulated phone that answers or not), the ``<Dial>`` action request with
``DialCallStatus`` and ``DialCallDuration``, and the call-back offer's
``<Gather>``.  The prompts a caller hears must say what the system then does.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ivr.handoff import CALLBACK_KEY, CALLBACK_NOTE, END_KEY, HANDOFF_PRIORITY
from ivr.simulator import Persona
from minping.models import Appointment, AttemptEvent, AuditLog

INTERVIEWER_PHONE = "+8613700000001"


def _prompt(rig, key):
    values = {"callback_key": CALLBACK_KEY, "end_key": END_KEY} \
        if key == "handoff_unavailable" else {}
    return rig.cfg.render_prompt(key, "cmn-CN", **values)


def _interviewer(rig, answers: bool):
    from tests.cati.helpers import add_user

    user_id = add_user(rig.db, "wang", phone=INTERVIEWER_PHONE)
    rig.sim.set_persona(INTERVIEWER_PHONE, Persona(
        line="human" if answers else "never-answers", answer_probability=1.0,
        busy_probability=0.0, ring_seconds=3))
    return user_id


def _appointments(rig):
    with rig.db.session() as s:
        return [(a.kind, a.status, a.note) for a in s.scalars(
            select(Appointment).where(Appointment.case_id == rig.case_id())).all()]


def _dial_actions(rig, sid):
    return [x for x in rig.sim.exchanges_for(sid)
            if x.purpose == "action" and "/ivr/handoff" in x.url]


# choice: the key pressed at the call-back offer ("" = silence every time)
@pytest.mark.parametrize(("interviewer", "choice"), [
    ("answers", None), ("no-answer", CALLBACK_KEY), ("nobody", CALLBACK_KEY),
    ("nobody", END_KEY), ("nobody", "")])
def test_hand_over_key_puts_the_caller_through_or_offers_a_call_back_by_key(
        rig_factory, interviewer, choice):
    from minping.scheduler import held_by

    rig = rig_factory()
    user_id = _interviewer(rig, interviewer == "answers") if interviewer != "nobody" else None
    keys = ["1", "3", "8"] + ([choice] if choice else [])
    rig.persona(keys=keys, record_seconds=0)
    rig.dial()
    (call,) = rig.calls_to()
    said = call.transcript.said()
    dials = call.transcript.of_kind("dial")
    case = rig.case()
    assert rig.answers() == {0: "3"}
    handoff, offer, booked, declined, invalid, silence = (_prompt(rig, k) for k in (
        "handoff", "handoff_unavailable", "handoff_callback", "handoff_declined",
        "invalid_key", "no_answer"))
    # "connecting you" only when a phone is rung; the offer names its keys
    assert (handoff in said) == (interviewer != "nobody")
    assert f"请按{CALLBACK_KEY}" in offer and f"请按{END_KEY}" in offer
    with rig.db.session() as s:
        on_screen = held_by(s, user_id, now=rig.clock.now()) if user_id else None
    if interviewer == "answers":
        assert said[-1] == handoff and offer not in said
        assert [(d.text, d.detail) for d in dials] == [(INTERVIEWER_PHONE, "completed")]
        (action,) = _dial_actions(rig, call.sid)  # Twilio's <Dial> action request
        assert dict(action.params)["DialCallStatus"] == "completed"
        assert int(dict(action.params)["DialCallDuration"]) > 0
        assert on_screen is not None and on_screen.id == rig.case_id()  # the CATI screen has it
        assert case.state == "handoff_cati" and case.priority == 0
        assert _appointments(rig) == []
        return
    assert [d.detail for d in dials] == ([] if interviewer == "nobody" else ["no-answer"])
    if interviewer == "no-answer":
        (action,) = _dial_actions(rig, call.sid)
        assert (dict(action.params)["DialCallStatus"], dict(action.params)["DialCallDuration"]) == \
            ("no-answer", "0")
    assert on_screen is None and case.lock_channel is None
    if choice == END_KEY:
        assert said[-2:] == [offer, declined]
        assert case.state == "in_field" and case.priority == 0  # the normal queue
        assert _appointments(rig) == []
        with rig.db.session() as s:
            logged = s.scalars(select(AuditLog.action).where(
                AuditLog.entity_id == str(rig.case_id()))).all()
            kinds = s.scalars(select(AttemptEvent.kind)).all()
        assert "case.callback_declined" in logged and "callback_declined" in kinds
        return
    if choice == "":  # no choice after the re-asks: the caller asked for a person
        assert said.count(offer) == 1 + rig.cfg.ivr.max_reasks and silence in said
    else:
        assert said[-2:] == [offer, booked] and invalid not in said
    assert said[-1] == booked
    assert case.state == "handoff_cati" and case.priority == HANDOFF_PRIORITY  # top of CATI
    assert _appointments(rig) == [("soft", "pending", CALLBACK_NOTE)]
    rig.later(days=1)
    assert rig.dial().placed == 0  # the dialer leaves it to the interviewers


def test_a_key_outside_the_offer_is_asked_again_then_the_choice_counts(rig_factory):
    rig = rig_factory()
    rig.persona(keys=["1", "8", "5", END_KEY], record_seconds=0)
    rig.dial()
    (call,) = rig.calls_to()
    said = call.transcript.said()
    offer = _prompt(rig, "handoff_unavailable")
    assert said[-4:] == [offer, _prompt(rig, "invalid_key"), offer,
                         _prompt(rig, "handoff_declined")]
    assert rig.case().state == "in_field" and _appointments(rig) == []


def test_the_demo_respondents_choice_is_recorded_once_when_twilio_repeats_the_request(
        rig_factory, client):
    """The call-back request delivered twice (Twilio retries) books one call-back."""
    from tests.ivr.conftest import signed_post

    rig = rig_factory()
    rig.persona(keys=["1", "8", CALLBACK_KEY], record_seconds=0)
    rig.dial()
    (call,) = rig.calls_to()
    (request,) = [x for x in rig.sim.exchanges_for(call.sid) if "/ivr/callback" in x.url]
    path = request.url.removeprefix(rig.public_url)
    response = signed_post(client, rig.public_url, path, dict(request.params))
    assert response.status_code == 200 and "<Hangup" in response.get_data(as_text=True)
    assert _appointments(rig) == [("soft", "pending", CALLBACK_NOTE)]


def test_an_interviewer_takes_the_called_back_case_first_and_its_priority_is_then_reset(
        rig_factory):
    """The CATI pickup: the booked call-back is the first case an interviewer gets."""
    from cati import service
    from minping.models import User
    from tests.cati.helpers import add_user

    rig = rig_factory(n_cases=3)
    rig.persona(1, keys=["1", "8", CALLBACK_KEY], record_seconds=0)
    for i in (0, 2):
        rig.persona(i, answer_probability=0.0)
    for _ in range(5):  # until the dialer has reached case 1 (pacing)
        if rig.attempts(1):
            break
        rig.dial()
    assert rig.case(1).priority == HANDOFF_PRIORITY
    user_id = add_user(rig.db, "zhou")
    now = rig.clock.now()
    with rig.db.transaction() as s:
        user = s.get(User, user_id)
        case = service.take_next(s, user, now=now, cfg=rig.cfg)
        assert case.id == rig.case_id(1)  # the hand-over first
        service.begin_attempt(s, case, user, now=now)
        service.close_attempt(s, case, user, code="3.13", now=now, cfg=rig.cfg)
    case = rig.case(1)
    assert case.priority == 0 and case.state == "handoff_cati"  # still the interviewers'
