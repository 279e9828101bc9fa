"""The local Twilio simulator, driven by the real ``twilio`` client.

Every test plays calls against tiny Flask apps defined here (TwiML built with
``VoiceResponse``, signatures checked with ``RequestValidator``), over both
transports: in-process (``SimulatorHttpClient`` + WSGI) and real HTTP on loopback
(``SimulatorServer`` + a werkzeug server behind a simulated reverse proxy).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import requests
from flask import Flask, Response, abort, request
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.serving import make_server

from ivr.simulator import (
    APPLICATION_ERROR_TEXT,
    BehaviourModel,
    CallbackFaults,
    HttpWebhookTransport,
    Persona,
    RealClock,
    Simulator,
    SimulatorServer,
    VirtualClock,
    WebhookFault,
    WsgiWebhookTransport,
    twilio_client,
)

SID = "AC" + "5" * 32
TOKEN = "test-auth-token"
PUBLIC = "https://survey.example.org"
FROM = "+8657100000000"
UNITS = ("税务局", "公安局", "医保窗口")
ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]
#: A model where everyone answers and does as asked (tests add the faults they need).
COOPERATIVE = BehaviourModel(
    p_never_answers=0, p_busy_line=0, p_machine=0, p_fax=0, p_non_working=0, p_busy_attempt=0,
    answer_by_hour=(1.0,) * 24, propensity=(1.0, 1.0), p_refuse_key=0, p_refuse_hangup=0,
    p_breakoff=0, p_wrong_key=0, p_silence=0, p_star=0)


# --- applications --------------------------------------------------------------------


def xml(response: VoiceResponse) -> Response:
    return Response(str(response), mimetype="text/xml")


def survey_app(token: str = TOKEN) -> Flask:
    """Greets, asks consent and one keypad rating per unit, records a comment, hangs up."""
    app = Flask("survey")
    log = app.config["LOG"] = []
    answers = app.config["ANSWERS"] = []
    recordings = app.config["RECORDINGS"] = []

    @app.before_request
    def verify():
        ok = RequestValidator(token).validate(request.url, request.form,
                                              request.headers.get("X-Twilio-Signature", ""))
        log.append((request.path, request.form.to_dict(), ok, dict(request.headers)))
        if not ok:
            abort(403)

    def ask(response: VoiceResponse, step: int) -> Response:
        gather = response.gather(num_digits=1, timeout=5, finish_on_key="",
                                 action_on_empty_result=True, action=f"/answer/{step}")
        if step == 0:
            gather.say("您好，这里是县统计局民意调查中心。同意参加请按1，拒绝请按9。",
                       voice="Polly.Zhiyu", language="cmn-CN")
        else:
            gather.say(f"请为{UNITS[step - 1]}打分：满意请按1，基本满意请按2，不满意请按3，"
                       "不了解请按0。", voice="Polly.Zhiyu", language="cmn-CN")
        return xml(response)

    @app.post("/voice")
    def voice():
        return ask(VoiceResponse(), 0)

    @app.post("/answer/<int:step>")
    def answer(step):
        digits = request.form.get("Digits", "")
        answers.append((request.form["CallSid"], step, digits))
        response = VoiceResponse()
        if step == 0 and digits != "1":
            response.say("感谢您的时间，再见。")
            response.hangup()
            return xml(response)
        if step < len(UNITS):
            return ask(response, step + 1)
        response.say("请在提示音后留下您的意见。")
        response.record(max_length=20, timeout=3, action="/recorded")
        response.say("没有录到留言，再见。")
        return xml(response)

    @app.post("/recorded")
    def recorded():
        recordings.append(request.form["RecordingUrl"])
        response = VoiceResponse()
        response.say("谢谢，再见。")
        response.hangup()
        return xml(response)

    @app.post("/status")
    @app.post("/amd")
    @app.post("/sms-status")
    def callbacks():
        return "", 204

    return app


def twiml_app(docs: dict[str, str]) -> Flask:
    """Serves fixed TwiML per path (GET or POST) and 204 elsewhere; logs every request."""
    app = Flask("twiml")
    log = app.config["LOG"] = []

    @app.route("/<path:name>", methods=["GET", "POST"])
    def serve(name):
        ok = RequestValidator(TOKEN).validate(request.url, request.form,
                                              request.headers.get("X-Twilio-Signature", ""))
        log.append((request.method, "/" + name, request.values.to_dict(), ok))
        body = docs.get("/" + name)
        if body is None:
            return "", 204
        return Response(body, mimetype="text/xml")

    return app


# --- harness -------------------------------------------------------------------------


class Harness:
    """A simulator, a real twilio client wired to it, and the app it calls."""

    def __init__(self, kind: str, app: Flask, **options):
        self.kind, self.app = kind, app
        self._closers = []
        options.setdefault("rng", np.random.default_rng(20240301))
        options.setdefault("behaviour", COOPERATIVE)
        if kind == "in-process":
            transport = WsgiWebhookTransport(app)
            self.sim = Simulator(account_sid=SID, auth_token=TOKEN, transport=transport,
                                 **options)
            self.client = twilio_client(self.sim)
        else:
            web = make_server("127.0.0.1", 0, ProxyFix(app, x_proto=1, x_host=1), threaded=True)
            threading.Thread(target=web.serve_forever, args=(0.05,), daemon=True).start()
            self._closers.append(web.server_close)
            self._closers.append(web.shutdown)
            transport = HttpWebhookTransport(routes={PUBLIC: f"http://127.0.0.1:{web.server_port}"})
            self._closers.append(transport.close)
            self.sim = Simulator(account_sid=SID, auth_token=TOKEN, transport=transport,
                                 **options)
            server = SimulatorServer(self.sim)
            self.base_url = server.start()
            self._closers.append(server.stop)
            self.client = twilio_client(self.sim, base_url=self.base_url)
            self._closers.append(self.client.http_client.session.close)

    def call(self, to: str, *, path: str = "/voice", **kwargs) -> str:
        kwargs.setdefault("status_callback", PUBLIC + "/status")
        kwargs.setdefault("status_callback_event", ALL_EVENTS)
        return self.client.calls.create(to=to, from_=FROM, url=PUBLIC + path, **kwargs).sid

    def close(self) -> None:
        for close in reversed(self._closers):
            close()


@pytest.fixture(params=["in-process", "http"])
def harness_factory(request):
    made = []

    def make(app: Flask, **options) -> Harness:
        made.append(Harness(request.param, app, **options))
        return made[-1]

    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def inproc():
    """In-process only: for the behaviour tests that do not depend on the transport."""
    made = []

    def make(app: Flask, **options) -> Harness:
        made.append(Harness("in-process", app, **options))
        return made[-1]

    yield make
    for harness in made:
        harness.close()


def callbacks(sim: Simulator, sid: str):
    return [x for x in sim.exchanges_for(sid, "status-callback") if x.outcome != "dropped"]


# --- a whole interview -----------------------------------------------------------------


def test_interview_end_to_end(harness_factory):
    app = survey_app()
    h = harness_factory(app)
    to = "+8613800000001"
    h.sim.set_persona(to, Persona(keys=["1", "1", "2", "3"], record_seconds=6))
    sid = h.call(to)
    assert re.fullmatch(r"CA[0-9a-f]{32}", sid)
    assert h.client.calls(sid).fetch().status == "queued"
    h.sim.run_until_idle()

    call = h.sim.call(sid)
    said = call.transcript.said()
    assert said[0].startswith("您好，这里是县统计局")
    assert [s[2:5] for s in said[1:4]] == ["税务局", "公安局", "医保窗"]
    assert said[-1] == "谢谢，再见。"
    assert call.transcript.pressed() == ["1", "1", "2", "3"]
    assert call.digits == ["1", "1", "2", "3"]
    assert app.config["ANSWERS"] == [(sid, 0, "1"), (sid, 1, "1"), (sid, 2, "2"), (sid, 3, "3")]
    assert call.transcript.statuses() == ["queued", "initiated", "ringing", "in-progress",
                                          "completed"]
    assert call.hangup_reason == "TwiML <Hangup>"

    # every request the app got validated, and the simulator says so too
    assert app.config["LOG"] and all(ok for _, _, ok, _ in app.config["LOG"])
    assert all(x.signature_valid(TOKEN) for x in h.sim.exchanges)
    assert all(x.outcome == "ok" for x in h.sim.exchanges)
    tokens = [x.idempotency_token for x in h.sim.exchanges]
    assert len(set(tokens)) == len(tokens)
    first_headers = app.config["LOG"][0][3]
    assert first_headers["I-Twilio-Idempotency-Token"] == tokens[0]

    # status callbacks in order with increasing SequenceNumber and Twilio's fields
    forms = [x.form for x in callbacks(h.sim, sid)]
    assert [f["CallStatus"] for f in forms] == ["initiated", "ringing", "in-progress", "completed"]
    assert [int(f["SequenceNumber"]) for f in forms] == [0, 1, 2, 3]
    assert {f["CallbackSource"] for f in forms} == {"call-progress-events"}
    assert {f["Direction"] for f in forms} == {"outbound-api"}
    assert {f["ApiVersion"] for f in forms} == {"2010-04-01"}
    assert int(forms[-1]["CallDuration"]) == call.duration > 20

    fetched = h.client.calls(sid).fetch()
    assert fetched.status == "completed" and int(fetched.duration) == call.duration
    assert fetched.start_time is not None and fetched.end_time is not None
    assert [c.sid for c in h.client.calls.list(status="completed")] == [sid]
    assert h.client.calls.list(status="in-progress") == []

    (recording_url,) = app.config["RECORDINGS"]
    assert recording_url == call.transcript.of_kind("record")[0].url
    recording = h.client.recordings(recording_url.rsplit("/", 1)[1]).fetch()
    assert (recording.call_sid, recording.duration) == (sid, "6")
    if h.kind == "http":
        audio = requests.get(recording_url, timeout=5)
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
        # the application saw the public URL through the proxy headers
        assert first_headers["X-Forwarded-Host"] == "survey.example.org"


def test_wrong_signature_gives_403_and_an_application_error(harness_factory):
    app = survey_app(token="not-the-account-token")
    h = harness_factory(app)
    sid = h.call("+8613800000002")
    h.sim.run_until_idle()
    call = h.sim.call(sid)
    voice = h.sim.exchanges_for(sid, "voice")
    assert [x.status_code for x in voice] == [403]
    assert {x.status_code for x in callbacks(h.sim, sid)} == {403}
    assert call.transcript.said() == [APPLICATION_ERROR_TEXT]
    assert call.transcript.of_kind("error")[0].text == "11200"
    assert call.status == "completed"


# --- REST API errors -------------------------------------------------------------------


def test_rest_errors_have_twilios_shape(harness_factory):
    h = harness_factory(survey_app(), calls_per_second=1.0)
    bad = Client(SID, "wrong-token")
    if h.kind == "http":
        bad.api.base_url = h.base_url
    else:
        bad.http_client = h.client.http_client
    with pytest.raises(TwilioRestException) as info:
        bad.calls.create(to="+8613800000003", from_=FROM, url=PUBLIC + "/voice")
    assert (info.value.status, info.value.code) == (401, 20003)
    if h.kind == "http":
        bad.http_client.session.close()

    with pytest.raises(TwilioRestException) as info:
        h.client.calls.create(to="12345", from_=FROM, url=PUBLIC + "/voice")
    assert (info.value.status, info.value.code) == (400, 21211)
    assert "12345" in info.value.msg

    h.call("+8613800000003")
    with pytest.raises(TwilioRestException) as info:
        h.call("+8613800000004")
    assert (info.value.status, info.value.code) == (429, 20429)
    h.sim.advance(1.0)
    h.call("+8613800000004")

    with pytest.raises(TwilioRestException) as info:
        h.client.calls("CA" + "0" * 32).fetch()
    assert (info.value.status, info.value.code) == (404, 20404)
    statuses = [status for _, _, _, status in h.sim.api_requests]
    assert statuses == [401, 400, 201, 429, 201, 404]


# --- status callback faults --------------------------------------------------------------


def test_duplicated_callbacks_are_identical(inproc):
    h = inproc(survey_app())
    h.sim.set_callback_faults(CallbackFaults(duplicate={"completed", "answered"}))
    sid = h.call("+8613800000010")
    h.sim.run_until_idle()
    forms = [x.form for x in callbacks(h.sim, sid)]
    assert [f["CallStatus"] for f in forms] == ["initiated", "ringing", "in-progress",
                                                "in-progress", "completed", "completed"]
    exchanges = callbacks(h.sim, sid)
    assert exchanges[2].params == exchanges[3].params
    assert exchanges[4].idempotency_token == exchanges[5].idempotency_token
    assert [x.fault for x in exchanges] == [None, None, None, "duplicate", None, "duplicate"]


def test_reordered_and_delayed_callbacks(inproc):
    h = inproc(survey_app())
    h.sim.set_callback_faults(CallbackFaults(reorder=True, delay_seconds=90),
                              to="+8613800000011")
    sid = h.call("+8613800000011")
    other = h.call("+8613800000012")
    h.sim.run_until_idle()
    call = h.sim.call(sid)
    exchanges = callbacks(h.sim, sid)
    assert [x.form["CallStatus"] for x in exchanges] == ["completed", "in-progress", "ringing",
                                                         "initiated"]
    assert [int(x.form["SequenceNumber"]) for x in exchanges] == [3, 2, 1, 0]
    assert all(x.at == call.end_time + timedelta(seconds=90) for x in exchanges)
    # another number is untouched
    assert [x.form["CallStatus"] for x in callbacks(h.sim, other)][0] == "initiated"


def test_dropped_callbacks_are_recorded_but_not_sent(inproc):
    h = inproc(survey_app())
    h.sim.set_callback_faults(CallbackFaults(drop={"ringing"}))
    sid = h.call("+8613800000013")
    h.sim.run_until_idle()
    sent = [x.form["CallStatus"] for x in callbacks(h.sim, sid)]
    assert sent == ["initiated", "in-progress", "completed"]
    dropped = [x for x in h.sim.exchanges_for(sid, "status-callback") if x.outcome == "dropped"]
    assert [x.form["CallStatus"] for x in dropped] == ["ringing"]
    assert [p for p, *_ in h.app.config["LOG"]].count("/status") == 3


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
    message = h.client.messages.create(to="+8613800000090", from_=FROM, body="您的预约已确认",
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


# --- clocks ----------------------------------------------------------------------------


def test_virtual_clock_runs_a_field_period_of_days_instantly(inproc):
    docs = {"/voice": """<Response><Gather numDigits="1" action="/a"><Say>同意请按1</Say>
            </Gather></Response>""",
            "/a": "<Response><Say>谢谢</Say><Hangup/></Response>"}
    start = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)  # 08:00 in Beijing
    clock = VirtualClock(start)
    h = inproc(twiml_app(docs), behaviour=BehaviourModel(), clock=clock, calls_per_second=5,
               rate_burst=5)
    numbers = [f"+86135{i:08d}" for i in range(80)]
    pending = set(numbers)
    tried = Counter()
    answered = Counter()
    for day in range(4):
        for local_hour in (10, 19):
            slot = start + timedelta(days=day, hours=local_hour - 8)
            h.sim.advance((slot - clock.now()).total_seconds())
            sids = {}
            for number in sorted(pending):
                while True:
                    try:
                        sids[number] = h.call(number, status_callback_event=["completed"])
                        break
                    except TwilioRestException as exc:
                        assert exc.status == 429
                        h.sim.advance(0.2)
            h.sim.run_until_idle()
            for number, sid in sids.items():
                call = h.sim.call(sid)
                tried[local_hour] += 1
                if call.answered_at is not None:
                    answered[local_hour] += 1
                if call.digits == ["1"]:
                    pending.discard(number)
    assert clock.now() - start > timedelta(days=3, hours=10)
    statuses = Counter(c.status for c in h.sim.calls.values())
    assert {"completed", "no-answer", "busy", "failed"} <= set(statuses)
    # answering is likelier in the evening, so spreading attempts over the day matters
    assert answered[19] / tried[19] > answered[10] / tried[10] + 0.1
    assert len(pending) < len(numbers) / 2


def test_real_clock_with_background_thread_over_http():
    app = twiml_app({"/voice": "<Response><Say>hi</Say><Hangup/></Response>"})
    web = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=web.serve_forever, args=(0.05,), daemon=True).start()
    transport = HttpWebhookTransport()
    sim = Simulator(account_sid=SID, auth_token=TOKEN, rng=np.random.default_rng(3),
                    transport=transport, clock=RealClock(),
                    behaviour=BehaviourModel(ring_seconds=(0.1, 0.2), p_never_answers=0,
                                             p_busy_line=0, p_machine=0, p_fax=0,
                                             p_non_working=0, p_busy_attempt=0,
                                             answer_by_hour=(1.0,) * 24))
    server = SimulatorServer(sim)
    client = twilio_client(sim, base_url=server.start())
    sim.start()
    try:
        base = f"http://127.0.0.1:{web.server_port}"
        began = time.monotonic()
        sid = client.calls.create(to="+8613800000100", from_=FROM, url=base + "/voice",
                                  status_callback=base + "/status").sid
        sim.wait_until_idle(timeout=10)
        assert client.calls(sid).fetch().status == "completed"
        assert time.monotonic() - began > 1.0  # the real clock ran the rings and the say
        assert all(ok for *_, ok in app.config["LOG"])
    finally:
        sim.stop()
        server.stop()
        client.http_client.session.close()
        transport.close()
        web.shutdown()
        web.server_close()


def test_standalone_server_runs_from_the_command_line():
    process = subprocess.Popen(
        [sys.executable, "-m", "ivr.simulator", "--port", "0", "--account-sid", SID,
         "--auth-token", TOKEN], stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stderr.readline()
        base_url = re.search(r"http://127\.0\.0\.1:\d+", banner).group(0)
        client = twilio_client_http(base_url)
        try:
            message = client.messages.create(to="+8613800000110", from_=FROM, body="hello")
            assert client.messages(message.sid).fetch().body == "hello"
        finally:
            client.http_client.session.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()
    assert process.returncode == 0


def twilio_client_http(base_url: str) -> Client:
    client = Client(SID, TOKEN)
    client.api.base_url = base_url
    return client
