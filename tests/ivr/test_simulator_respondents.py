"""The simulator's respondents: unanswered lines, answering machines, refusals,
break-offs, wrong keys and hang-ups (harness: :mod:`tests.ivr.simulator_harness`)."""

from __future__ import annotations

from collections import Counter

import pytest
from flask import request

from ivr.simulator import (
    BehaviourModel,
    Persona,
)
from tests.ivr.simulator_harness import (  # noqa: F401 (fixtures)
    ALL_EVENTS,
    COOPERATIVE,
    FROM,
    PUBLIC,
    SID,
    TOKEN,
    UNITS,
    Harness,
    callbacks,
    survey_app,
    twilio_client_http,
    twiml_app,
    xml,
)

# --- respondents ---------------------------------------------------------------------------


@pytest.mark.parametrize(("persona", "status", "sip"), [
    (Persona(line="busy"), "busy", "486"),
    (Persona(line="never-answers"), "no-answer", "487"),
    (Persona(line="non-working"), "failed", "404"),
])
def test_unanswered_lines_get_twilios_statuses(inproc, persona, status, sip):
    h = inproc(survey_app())
    h.sim.set_persona("+8613800000020", persona)
    sid = h.call("+8613800000020", timeout=20)
    h.sim.run_until_idle()
    call = h.sim.call(sid)
    final = callbacks(h.sim, sid)[-1].form
    assert (final["CallStatus"], final["SipResponseCode"], final["CallDuration"]) == (
        status, sip, "0")
    assert call.status == status and call.answered_at is None
    assert h.sim.exchanges_for(sid, "voice") == []
    if status == "no-answer":
        assert (call.end_time - call.date_created).total_seconds() == pytest.approx(20.5)
    assert h.client.calls(sid).fetch().status == status


@pytest.mark.parametrize(("line", "detection", "answered_by"), [
    ("machine", "Enable", "machine_start"),
    ("machine", "DetectMessageEnd", "machine_end_beep"),
    ("fax", "Enable", "fax"),
    ("human", "Enable", "human"),
])
def test_async_answering_machine_detection(inproc, line, detection, answered_by):
    h = inproc(twiml_app({"/voice": "<Response><Pause length='30'/><Say>hello</Say></Response>"}))
    h.sim.set_persona("+8613800000021", Persona(line=line))
    sid = h.call("+8613800000021", machine_detection=detection, async_amd="true",
                 async_amd_status_callback=PUBLIC + "/amd")
    h.sim.run_until_idle()
    call = h.sim.call(sid)
    (amd,) = h.sim.exchanges_for(sid, "amd-callback")
    assert amd.form["AnsweredBy"] == answered_by
    assert int(amd.form["MachineDetectionDuration"]) > 1000
    assert amd.signature_valid(TOKEN)
    # asynchronous: the call's TwiML was requested at answer, before the AMD result
    assert h.sim.exchanges_for(sid, "voice")[0].at == call.answered_at < amd.at
    assert h.client.calls(sid).fetch().answered_by == answered_by
    assert call.status == "completed"
    if line == "fax":
        assert call.hangup_reason == "fax hung up"


def test_app_hangs_up_on_a_machine_from_inside_a_webhook(harness_factory):
    app = twiml_app({"/voice": "<Response><Pause length='30'/><Say>hello</Say></Response>"})

    @app.post("/hangup-machines")
    def hangup_machines():
        if request.form["AnsweredBy"].startswith("machine"):
            app.config["CLIENT"].calls(request.form["CallSid"]).update(status="completed")
        return "", 204

    h = harness_factory(app)
    app.config["CLIENT"] = h.client
    h.sim.set_persona("+8613800000023", Persona(line="machine"))
    sid = h.call("+8613800000023", machine_detection="Enable", async_amd="true",
                 async_amd_status_callback=PUBLIC + "/hangup-machines")
    h.sim.run_until_idle()
    call = h.sim.call(sid)
    assert call.hangup_reason == "hung up by the REST API"
    assert call.transcript.said() == []
    assert 3 <= call.duration <= 6
    final = callbacks(h.sim, sid)[-1].form
    assert (final["CallStatus"], final["AnsweredBy"]) == ("completed", "machine_start")
    assert final["Timestamp"].endswith("+0000")


def test_synchronous_detection_delays_the_webhook(inproc):
    h = inproc(survey_app())
    h.sim.set_persona("+8613800000022", Persona(line="machine"))
    sid = h.call("+8613800000022", machine_detection="Enable")
    h.sim.run_until_idle()
    voice = h.sim.exchanges_for(sid, "voice")[0]
    assert voice.form["AnsweredBy"] == "machine_start"
    assert voice.at > h.sim.call(sid).answered_at


def test_refusal_breakoff_and_rating_tendencies(inproc):
    model = BehaviourModel(
        p_never_answers=0, p_busy_line=0, p_machine=0, p_fax=0, p_non_working=0,
        p_busy_attempt=0, answer_by_hour=(1.0,) * 24, propensity=(1.0, 1.0), p_refuse_key=0.2, p_refuse_hangup=0.1,
        p_breakoff=0.2, breakoff_gathers=(2, 2), p_wrong_key=0, p_silence=0, p_star=0,
        ratings={"税务局": {"3": 1.0}, "公安局": {"1": 0.5, "2": 0.5}})
    h = inproc(survey_app(), behaviour=model)
    numbers = [f"+86139{i:08d}" for i in range(60)]
    for number in numbers:
        h.call(number, status_callback_event=["completed"])
    h.sim.run_until_idle()
    answers = h.app.config["ANSWERS"]
    by_step = {step: Counter(d for _, s, d in answers if s == step) for step in range(4)}
    assert set(by_step[0]) == {"1", "9"}            # consent or the refusal key
    assert set(by_step[1]) == {"3"}                 # 税务局: always dissatisfied
    assert set(by_step[2]) == {"1", "2"}            # 公安局: half and half
    assert set(by_step[3]) <= {"0", "1", "2", "3"}  # 医保窗口: the default distribution
    personas = [h.sim.persona(n) for n in numbers]
    hangups = sum(p.refuses == "hangup" for p in personas)
    breakoffs = sum(p.refuses is None and p.hangup_after_gathers == 2 for p in personas)
    refusals = sum(p.refuses == "key" for p in personas)
    assert hangups and breakoffs and refusals
    assert by_step[0]["9"] == refusals
    assert sum(by_step[0].values()) == len(numbers) - hangups
    assert sum(by_step[2].values()) == len(numbers) - hangups - refusals - breakoffs


def test_wrong_keys_star_and_silence_appear(inproc):
    model = BehaviourModel(
        p_never_answers=0, p_busy_line=0, p_machine=0, p_fax=0, p_non_working=0,
        p_busy_attempt=0, answer_by_hour=(1.0,) * 24, propensity=(1.0, 1.0), p_refuse_key=0,
        p_refuse_hangup=0, p_breakoff=0, p_wrong_key=0.2, p_silence=0.2, p_star=0.2)
    h = inproc(survey_app(), behaviour=model)
    for i in range(15):
        h.call(f"+86137{i:08d}", status_callback_event=["completed"])
    h.sim.run_until_idle()
    digits = Counter(d for _, s, d in h.app.config["ANSWERS"] if s > 0)
    assert digits[""] and digits["*"]
    assert any(d in "456789" for d in digits if d)


def test_hangup_mid_survey_keeps_answers_so_far(inproc):
    h = inproc(survey_app())
    h.sim.set_persona("+8613800000030", Persona(keys=["1", "2", "2"], hangup_after_gathers=2))
    sid = h.call("+8613800000030")
    h.sim.run_until_idle()
    call = h.sim.call(sid)
    assert [step for _, step, _ in h.app.config["ANSWERS"]] == [0, 1]
    assert call.hangup_reason == "respondent hung up" and call.status == "completed"
    assert callbacks(h.sim, sid)[-1].form["CallStatus"] == "completed"
