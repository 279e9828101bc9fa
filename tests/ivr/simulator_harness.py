"""The simulator tests' harness: tiny Flask apps (TwiML built with ``VoiceResponse``,
signatures checked with ``RequestValidator``) and a simulator driven by the real
``twilio`` client over either transport: in-process (``SimulatorHttpClient`` +
WSGI) or real HTTP on loopback (``SimulatorServer`` + a werkzeug server behind a
simulated reverse proxy).  Used by ``tests/ivr/test_simulator*.py``.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.serving import make_server

from ivr.simulator import (
    BehaviourModel,
    HttpWebhookTransport,
    Simulator,
    SimulatorServer,
    WsgiWebhookTransport,
    twilio_client,
)

SID = "AC" + "5" * 32
TOKEN = "test-auth-token"
PUBLIC = "https://survey.example.org"
FROM = "+85230010000"  # not +86: Twilio presents +86 caller IDs in China only via BYOC
#: The Messaging Service SMS to mainland numbers go out through (the simulator refuses
#: them from a number, as Twilio does).
SERVICE = "MG" + "5" * 32
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


def twilio_client_http(base_url: str) -> Client:
    client = Client(SID, TOKEN)
    client.api.base_url = base_url
    return client
