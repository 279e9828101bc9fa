"""The local Twilio simulator, driven by the real ``twilio`` client: a whole
interview over both transports, REST errors, status callback faults and clocks
(harness: :mod:`tests.ivr.simulator_harness`)."""

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
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
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
    twilio_client,
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
            message = client.messages.create(to="+8613800000110", messaging_service_sid=SERVICE,
                                             body="hello")
            assert client.messages(message.sid).fetch().body == "hello"
        finally:
            client.http_client.session.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()
    assert process.returncode == 0
