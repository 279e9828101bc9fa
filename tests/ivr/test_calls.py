"""Whole calls through the simulator (real twilio client, signed webhooks, virtual clock)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from ivr.simulator import CallbackFaults, Persona
from minping.models import AttemptEvent, DoNotCall, Recording
from minping.settings import SIMULATOR_FROM_NUMBER


def test_complete_interview(rig_factory):
    rig = rig_factory()
    rig.persona(keys=["1", "1", "2", "3"], record_seconds=5)
    assert rig.dial().placed == 1
    assert rig.answers() == {0: "1", 1: "2", 2: "3"}
    case = rig.case()
    assert (case.state, case.final_disposition, case.lock_channel) == ("final", "1.1", None)
    (attempt,) = rig.attempts()
    assert (attempt.outcome, attempt.status, attempt.answered_by) == ("1.1", "completed", "human")
    (call,) = rig.calls_to()
    said = call.transcript.said()
    assert rig.cfg.campaign.polling_center in said[0]  # the greeting names the center
    assert rig.cfg.campaign.name in said[0]  # and the purpose
    names = rig.unit_names()
    assert [n for n in names if any(n in s for s in said)] == names
    assert {e.detail for e in call.transcript.of_kind("say")} == {"Polly.Zhiyu/cmn-CN"}
    with rig.db.session() as s:
        (rec,) = s.scalars(select(Recording)).all()
        assert rec.kind == "comment" and rec.url.startswith("https://") and rec.duration_seconds
        kinds = [e.kind for e in s.scalars(select(AttemptEvent).where(
            AttemptEvent.attempt_id == attempt.id).order_by(AttemptEvent.id))]
    assert kinds.count("status") == 4 and "consent" in kinds and "comment" in kinds
    # a completed case is never dialed again
    rig.later(days=1)
    assert rig.dial().placed == 0


def test_partial_then_resumed_on_a_second_call(rig_factory):
    rig = rig_factory()
    rig.persona(keys=["1", "2", "1"], hangup_after_gathers=3)  # hangs up at the third question
    rig.dial()
    assert rig.answers() == {0: "2", 1: "1"}
    case = rig.case()
    assert case.state == "in_field" and case.current_disposition == "1.2"
    assert case.next_attempt_at >= rig.clock.now() + timedelta(minutes=30)  # break-off delay
    rig.persona(keys=["1", "3"])
    rig.dial_when_due()
    assert rig.answers() == {0: "2", 1: "1", 2: "3"}
    case = rig.case()
    assert case.final_disposition == "1.1"
    second = rig.calls_to()[-1].transcript.said()
    names = rig.unit_names()
    assert any(names[2] in s for s in second)
    assert not any(names[0] in s or names[1] in s for s in second)  # not asked again


def test_refusal_by_hanging_up_at_the_greeting_is_retried(rig_factory):
    rig = rig_factory()
    rig.persona(refuses="hangup")
    rig.dial()
    case = rig.case()
    assert rig.attempts()[0].outcome == "3.21"
    assert case.state == "in_field" and case.next_attempt_at is not None
    assert rig.answers() == {}


def test_opt_out_puts_the_number_on_do_not_call_and_it_is_never_dialed_again(rig_factory):
    rig = rig_factory()
    rig.persona(keys=["1", "2", "9"])
    rig.dial()
    with rig.db.session() as s:
        assert s.get(DoNotCall, rig.phone()) is not None
    case = rig.case()
    assert (case.state, case.final_disposition) == ("final", "2.112")
    assert rig.answers() == {0: "2"}
    said = rig.calls_to()[0].transcript.said()
    assert rig.cfg.render_prompt("opt_out_confirmation", "cmn-CN") in said[-1]
    for _ in range(3):
        rig.later(days=1)
        rig.dial()
    assert len(rig.calls_to()) == 1


def test_answering_machine_gets_no_questions_and_is_rescheduled(rig_factory):
    rig = rig_factory()
    rig.persona(line="machine")
    rig.dial()
    (call,) = rig.calls_to()
    (attempt,) = rig.attempts()
    assert attempt.answered_by == "machine_start" and attempt.outcome == "3.14"
    assert call.duration < 30  # hung up by the application after AMD, no message left
    assert not any(n in s for n in rig.unit_names() for s in call.transcript.said())
    case = rig.case()
    assert case.state == "in_field"
    assert case.next_attempt_at >= call.end_time + timedelta(minutes=240)


def test_busy_then_no_answer_retries_until_the_attempt_cap(rig_factory):
    rig = rig_factory()
    rig.persona(line="busy")
    cap = rig.cfg.calling.max_attempts
    for _ in range(cap + 2):
        rig.dial_when_due()
    attempts = rig.attempts()
    assert len(attempts) == cap
    assert {a.outcome for a in attempts} == {"3.12"}
    case = rig.case()
    assert (case.state, case.final_disposition) == ("final", "3.12")
    for a, b in zip(attempts, attempts[1:], strict=False):
        assert b.started_at - a.ended_at >= timedelta(minutes=20)
        assert rig.cfg.calling.is_callable(b.started_at)


def test_no_answer_retries_spread_over_the_day_and_end_at_the_cap(rig_factory):
    rig = rig_factory()
    rig.persona(line="never-answers")
    for _ in range(rig.cfg.calling.max_attempts + 1):
        rig.dial_when_due()
    attempts = rig.attempts()
    assert [a.outcome for a in attempts] == ["3.13"] * rig.cfg.calling.max_attempts
    assert rig.case().final_disposition == "3.13"
    tz = rig.cfg.calling.tz
    parts = {0 if h < 12 else 1 if h < 17 else 2
             for h in (a.started_at.astimezone(tz).hour for a in attempts)}
    assert parts == {0, 1, 2}  # morning, afternoon and evening were all tried


def test_invalid_keys_are_reasked_then_recorded_as_no_answer(rig_factory):
    rig = rig_factory()
    # unit 0: an invalid key, then a valid one; unit 1: three invalid keys (no answer)
    rig.persona(keys=["1", "7", "2", "5", "6", "7", "3"])
    rig.dial()
    assert rig.answers() == {0: "2", 1: None, 2: "3"}
    said = rig.calls_to()[0].transcript.said()
    invalid = rig.cfg.render_prompt("invalid_key", "cmn-CN")
    assert sum(invalid in s for s in said) == 3
    # every unit was asked: nothing left to retry, the case ends as a partial
    case = rig.case()
    assert (case.state, case.final_disposition) == ("final", "1.2")


def test_silence_is_reasked(rig_factory):
    rig = rig_factory()
    rig.persona(keys=["1", None, "1", "2", "3"])
    rig.dial()
    assert rig.answers() == {0: "1", 1: "2", 2: "3"}
    said = rig.calls_to()[0].transcript.said()
    assert any(rig.cfg.render_prompt("no_answer", "cmn-CN") in s for s in said)
    assert rig.case().final_disposition == "1.1"


def test_star_repeats_the_question(rig_factory):
    rig = rig_factory()
    rig.persona(keys=["1", "*", "1", "2", "3"])
    rig.dial()
    said = rig.calls_to()[0].transcript.said()
    first = rig.unit_names()[0]
    assert sum(first in s for s in said) == 2
    assert rig.answers() == {0: "1", 1: "2", 2: "3"}


def test_hand_over_key_sends_the_case_to_cati_with_its_answers(rig_factory):
    rig = rig_factory()
    rig.persona(keys=["1", "3", "8"])
    rig.dial()
    case = rig.case()
    assert case.state == "handoff_cati" and case.lock_channel is None
    assert rig.answers() == {0: "3"}
    assert rig.attempts()[0].outcome is not None
    rig.later(days=1)
    assert rig.dial().placed == 0  # the dialer leaves it to the interviewers


def test_inbound_known_caller_resumes_their_interview(rig_factory):
    rig = rig_factory()
    rig.persona(keys=["1", "1"], hangup_after_gathers=2)
    rig.dial()
    assert rig.answers() == {0: "1"}
    rig.later(minutes=5)
    rig.persona(keys=["1", "2", "3"])
    sid = rig.sim.incoming_call(from_=rig.phone(), to=SIMULATOR_FROM_NUMBER,
                                url=rig.public_url + "/ivr/inbound",
                                status_callback=rig.public_url + "/ivr/status",
                                status_callback_events=("initiated", "ringing", "answered",
                                                        "completed"))
    rig.sim.run_until_idle()
    assert rig.answers() == {0: "1", 1: "2", 2: "3"}
    attempts = rig.attempts()
    assert attempts[-1].call_sid == sid and attempts[-1].direction == "inbound"
    assert attempts[-1].outcome == "1.1"
    assert rig.case().final_disposition == "1.1"


def test_inbound_unknown_caller_hears_who_we_are_and_is_not_surveyed(rig_factory):
    rig = rig_factory()
    rig.sim.set_persona("+8613999999999", Persona(keys=["1", "1", "1"]))
    sid = rig.sim.incoming_call(from_="+8613999999999", to=SIMULATOR_FROM_NUMBER,
                                url=rig.public_url + "/ivr/inbound",
                                status_callback=rig.public_url + "/ivr/status")
    rig.sim.run_until_idle()
    said = rig.sim.call(sid).transcript.said()
    assert said == [rig.cfg.render_prompt("unknown_caller", "cmn-CN")]
    assert rig.sim.call(sid).transcript.of_kind("gather") == []
    with rig.db.session() as s:
        assert s.scalar(select(func.count()).select_from(AttemptEvent)) == 0


def test_duplicate_and_reordered_callbacks_change_nothing(rig_factory):
    rig = rig_factory()
    rig.sim.set_callback_faults(CallbackFaults(duplicate=frozenset(
        {"initiated", "ringing", "answered", "completed"}), reorder=True))
    rig.persona(keys=["1", "1", "2", "3"], record_seconds=0)
    rig.dial()
    (attempt,) = rig.attempts()
    assert attempt.outcome == "1.1" and attempt.status == "completed"
    with rig.db.session() as s:
        statuses = s.scalars(select(AttemptEvent.payload).where(
            AttemptEvent.attempt_id == attempt.id, AttemptEvent.kind == "status")).all()
    assert sorted(p["CallStatus"] for p in statuses) == sorted(
        ["initiated", "ringing", "in-progress", "completed"])  # each stored once
    exchanges = rig.sim.exchanges_for(rig.calls_to()[0].sid, "status-callback")
    assert len(exchanges) == 8 and all(x.status_code == 200 for x in exchanges)
    assert rig.case().final_disposition == "1.1"


def test_sms_advance_notice_comes_before_the_first_call(rig_factory):
    from tests.ivr.conftest import quiet_config

    rig = rig_factory()
    rig.dialer.cfg = quiet_config(rig.cfg, sms_advance_notice=True)
    assert rig.dial().placed == 0
    (message,) = rig.sim.messages.values()
    assert message.to == rig.phone() and SIMULATOR_FROM_NUMBER in message.body
    assert rig.cfg.campaign.polling_center in message.body
    notified = rig.case().notified_at
    assert notified <= rig.clock.now()
    rig.persona(keys=["1", "1", "1", "1"])
    rig.dial_when_due()
    (call,) = rig.calls_to()
    assert call.date_created >= notified + rig.dialer.notice_lead
    assert len(rig.sim.messages) == 1
