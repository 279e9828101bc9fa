"""TwiML as the simulator plays it (``<Gather>``, GET webhooks, REST hang-up and
redirect, fallbacks, ``<Dial>``), inbound calls and SMS (harness:
:mod:`tests.ivr.simulator_harness`)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import VoiceResponse

from ivr.simulator import (
    APPLICATION_ERROR_TEXT,
    Persona,
    VirtualClock,
    WebhookFault,
)
from tests.ivr.simulator_harness import (  # noqa: F401 (fixtures)
    ALL_EVENTS,
    COOPERATIVE,
    FROM,
    PUBLIC,
    SERVICE,
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

# --- TwiML -------------------------------------------------------------------------------------


def test_gather_fall_through_rules(inproc):
    docs = {
        "/voice": """<Response>
            <Gather numDigits="1" timeout="4" action="/never"><Say>Silent one</Say></Gather>
            <Say>fell through</Say>
            <Gather numDigits="1" timeout="4" action="/empty" actionOnEmptyResult="true">
              <Say>Silent two</Say></Gather></Response>""",
        "/empty": """<Response>
            <Gather finishOnKey="#" action="next"><Play>https://cdn.example.org/q.mp3</Play>
            </Gather></Response>""",
        "/next": """<Response><Gather numDigits="2"><Say>two digits</Say></Gather>
            <Say>after the gather</Say></Response>""",
    }
    app = twiml_app(docs)
    h = inproc(app)
    h.sim.set_persona("+8613800000040", Persona(keys=[None, "", "12#", "345", None]))
    sid = h.call("+8613800000040")
    h.sim.run_until_idle()
    call = h.sim.call(sid)
    requests_seen = [(m, p, v) for m, p, v, _ in app.config["LOG"] if p != "/status"]
    # silent with actionOnEmptyResult false: no request, the next verb plays
    assert "/never" not in [p for _, p, _ in requests_seen]
    assert call.transcript.said()[:2] == ["Silent one", "fell through"]
    # silent with actionOnEmptyResult true: the action gets an empty Digits
    assert requests_seen[1][1] == "/empty" and requests_seen[1][2]["Digits"] == ""
    # finishOnKey ends input and is not part of Digits; relative action resolved
    assert requests_seen[2][1] == "/next"
    assert (requests_seen[2][2]["Digits"], requests_seen[2][2]["FinishedOnKey"]) == ("12", "#")
    # numDigits stops at 2; no action attribute: the current document's URL is requested
    assert requests_seen[3][1] == "/next" and requests_seen[3][2]["Digits"] == "34"
    # silent at the last Gather (no actionOnEmptyResult): the next verb plays, the document ends
    assert call.transcript.said()[-1] == "after the gather"
    assert call.hangup_reason == "end of TwiML document"
    assert call.transcript.submitted() == ["", "", "12", "34", ""]
    assert all(ok for *_, ok in app.config["LOG"])


def test_get_webhooks_are_signed_over_the_query_string(inproc):
    app = twiml_app({"/voice": "<Response><Pause length='2'/><Say>bye</Say></Response>"})
    h = inproc(app)
    sid = h.call("+8613800000041", method="GET", status_callback_method="GET")
    h.sim.run_until_idle()
    methods = {(m, p) for m, p, _, _ in app.config["LOG"]}
    assert methods == {("GET", "/voice"), ("GET", "/status")}
    assert all(ok for *_, ok in app.config["LOG"])
    assert h.sim.call(sid).transcript.of_kind("pause")[0].detail == "2"


def test_rest_hangup_cancel_redirect_and_time_limit(inproc):
    docs = {"/voice": "<Response><Say>Please hold</Say><Pause length='600'/></Response>",
            "/moved": "<Response><Say>moved here</Say><Hangup/></Response>"}
    clock = VirtualClock()
    start = clock.now()
    h = inproc(twiml_app(docs), clock=clock)
    for n, ring in (("+8613800000050", 5), ("+8613800000051", 5), ("+8613800000052", 5),
                    ("+8613800000053", 30)):
        h.sim.set_persona(n, Persona(ring_seconds=ring))
    hangup = h.call("+8613800000050")
    redirect = h.call("+8613800000051")
    limited = h.call("+8613800000052", time_limit=20)
    ringing = h.call("+8613800000053")
    h.sim.advance(10)
    in_progress = {c.sid for c in h.client.calls.list(status="in-progress")}
    assert in_progress == {hangup, redirect, limited}
    assert h.client.calls(ringing).fetch().status == "ringing"

    assert h.client.calls(hangup).update(status="completed").status == "completed"
    assert h.client.calls(ringing).update(status="canceled").status == "canceled"
    h.client.calls(redirect).update(url=PUBLIC + "/moved")
    h.sim.run_until_idle()
    assert h.sim.call(hangup).hangup_reason == "hung up by the REST API"
    assert h.sim.call(ringing).status == "canceled"
    assert h.sim.call(redirect).transcript.said() == ["Please hold", "moved here"]
    assert h.sim.exchanges_for(redirect, "redirect")[0].url == PUBLIC + "/moved"
    limited_call = h.sim.call(limited)
    assert limited_call.hangup_reason == "time limit" and limited_call.duration == 20
    with pytest.raises(TwilioRestException) as info:
        h.client.calls(hangup).update(url=PUBLIC + "/moved")
    assert info.value.code == 21220
    # the abandoned 600 s pauses do not hold the clock: it stopped at the last real event
    assert clock.now() - start < timedelta(seconds=60)
    assert h.sim.pending_events == 0


def test_webhook_failures_use_the_fallback_or_end_the_call(inproc):
    app = survey_app()

    @app.post("/fallback")
    def fallback_twiml():
        response = VoiceResponse()
        response.say("fallback")
        return xml(response)

    h = inproc(app)
    h.sim.add_webhook_fault(WebhookFault(kind="error", status=500, url_contains="/answer/2"))
    h.sim.set_persona("+8613800000060", Persona(keys=["1", "1", "2", "3"]))
    with_fallback = h.call("+8613800000060", fallback_url=PUBLIC + "/fallback")
    h.sim.run_until_idle()
    (fallback,) = h.sim.exchanges_for(with_fallback, "fallback")
    assert (fallback.form["ErrorCode"], fallback.form["ErrorUrl"]) == ("11200",
                                                                     PUBLIC + "/answer/2")
    assert h.sim.call(with_fallback).transcript.said()[-1] == "fallback"
    # the failed request never reached the app: it holds the answers before it
    assert [s for c, s, _ in app.config["ANSWERS"] if c == with_fallback] == [0, 1]

    h.sim.add_webhook_fault(WebhookFault(kind="timeout", url_contains="/answer/1"))
    h.sim.set_persona("+8613800000061", Persona(keys=["1", "1"]))
    timed_out = h.call("+8613800000061")
    h.sim.run_until_idle()
    call = h.sim.call(timed_out)
    (late,) = [x for x in h.sim.exchanges_for(timed_out) if x.outcome == "timeout"]
    assert late.fault == "timeout" and late.status_code == 200
    # delivered (the app stored the answer) but too late: Twilio's error, then hang-up
    assert [s for c, s, _ in app.config["ANSWERS"] if c == timed_out] == [0, 1]
    assert call.transcript.said()[-1] == APPLICATION_ERROR_TEXT
    assert (call.end_time - late.at).total_seconds() > 15
    assert callbacks(h.sim, timed_out)[-1].form["CallStatus"] == "completed"


def test_dial_bridges_a_second_leg(inproc):
    docs = {"/voice": f"""<Response><Say>Connecting</Say>
        <Dial action="{PUBLIC}/dialed" timeout="20" record="record-from-answer">
        <Number>+8613800000071</Number></Dial></Response>""",
            "/dialed": "<Response><Hangup/></Response>"}
    app = twiml_app(docs)
    h = inproc(app)
    sid = h.call("+8613800000070")
    h.sim.run_until_idle()
    (child,) = h.client.calls.list(parent_call_sid=sid)
    assert child.status == "completed" and child.to == "+8613800000071"
    dialed = [v for m, p, v, _ in app.config["LOG"] if p == "/dialed"][0]
    assert dialed["DialCallStatus"] == "completed" and dialed["DialCallSid"] == child.sid
    assert int(dialed["DialCallDuration"]) >= 30 and dialed["RecordingUrl"]


# --- inbound, SMS -------------------------------------------------------------------------


def test_inbound_call(inproc):
    app = survey_app()
    h = inproc(app)
    h.sim.set_persona("+8613800000080", Persona(keys=["1", "2", "2", "1"], record_seconds=0))
    sid = h.sim.incoming_call(from_="+8613800000080", to=FROM, url=PUBLIC + "/voice",
                              status_callback=PUBLIC + "/status")
    h.sim.run_until_idle()
    first = h.sim.exchanges_for(sid, "voice")[0].form
    assert (first["CallStatus"], first["Direction"], first["From"]) == (
        "ringing", "inbound", "+8613800000080")
    call = h.sim.call(sid)
    assert call.digits == ["1", "2", "2", "1"]
    # silent at <Record>: no recording, the next verb plays, then the document ends
    assert call.transcript.said()[-1] == "没有录到留言，再见。"
    assert callbacks(h.sim, sid)[-1].form["CallStatus"] == "completed"

    rejecting = inproc(twiml_app({"/voice": "<Response><Reject reason='busy'/></Response>"}))
    rejected = rejecting.sim.incoming_call(from_="+8613800000081", to=FROM, url=PUBLIC + "/voice")
    rejecting.sim.run_until_idle()
    assert rejecting.sim.call(rejected).status == "busy"
    assert rejecting.sim.call(rejected).answered_at is None


def test_sms(harness_factory):
    h = harness_factory(survey_app())
    with pytest.raises(TwilioRestException) as info:  # to China, from a number: refused
        h.client.messages.create(to="+8613800000090", from_=FROM, body="您的预约已确认")
    assert info.value.code == 21612 and h.sim.messages == {}
    message = h.client.messages.create(to="+8613800000090", messaging_service_sid=SERVICE,
                                       body="您的预约已确认",
                                       status_callback=PUBLIC + "/sms-status")
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid) and message.status == "queued"
    h.sim.run_until_idle()
    assert h.client.messages(message.sid).fetch().status == "delivered"
    assert h.sim.messages[message.sid].body == "您的预约已确认"
    updates = h.sim.exchanges_for(None, "message-status")
    assert [x.form["MessageStatus"] for x in updates] == ["sent", "delivered"]
    assert all(x.signature_valid(TOKEN) for x in updates)
    with pytest.raises(TwilioRestException) as info:
        h.client.messages.create(to="not-a-number", from_=FROM, body="x")
    assert info.value.code == 21211
