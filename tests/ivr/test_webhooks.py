"""Webhook security and robustness: signatures, proxies, bad input, callback order."""

from __future__ import annotations

from sqlalchemy import select, text

from ivr.simulator import CallbackFaults
from minping.app import settings_of
from minping.models import Base, CallAttempt
from tests.ivr.conftest import sign, signed_post


def snapshot(db) -> dict[str, list]:
    """Every row of every table (to prove a request changed nothing)."""
    out = {}
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(text(f'SELECT * FROM "{table.name}"')).all()
            out[table.name] = sorted(map(repr, rows))
    return out


def _open_attempt(rig):
    """Place one call and stop the network before it is answered."""
    rig.persona(keys=["1", "1", "1", "1"], ring_seconds=5)
    rig.dialer.step()
    with rig.db.session() as s:
        return s.scalars(select(CallAttempt)).one()


def test_bad_or_missing_signature_is_refused_and_changes_nothing(rig_factory, client):
    rig = rig_factory()
    attempt = _open_attempt(rig)
    path = f"/ivr/answer?attempt={attempt.id}&pos=0&try=0"
    form = {"CallSid": attempt.call_sid, "Digits": "1", "AccountSid": rig.sim.account_sid}
    before = snapshot(rig.db)
    url = rig.public_url + path
    cases = [
        {},  # unsigned
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        {"X-Twilio-Signature": sign(url, form, token="another-token")},
        {"X-Twilio-Signature": sign(url, form | {"Digits": "3"})},  # tampered digits
        {"X-Twilio-Signature": sign(url.replace("pos=0", "pos=1"), form)},  # another URL
    ]
    for headers in cases:
        response = client.post(path, data=form, headers=headers)
        assert response.status_code == 403, headers
    for endpoint in ("/ivr/status", "/ivr/amd", "/ivr/inbound", "/ivr/voice", "/ivr/comment"):
        assert client.post(endpoint, data=form).status_code == 403
    assert snapshot(rig.db) == before
    # the same request, correctly signed, is accepted and stores the answer
    ok = signed_post(client, rig.public_url, path, form)
    assert ok.status_code == 200 and ok.mimetype == "text/xml"
    assert rig.answers() == {0: "1"}


def test_signature_uses_the_public_url_behind_a_reverse_proxy(rig_factory, app):
    # Twilio calls https://survey.example.org/minping/...; the proxy forwards to the
    # application at http://10.1.2.3:8000/... (another scheme, host and path).
    public = "https://survey.example.org/minping"
    app.extensions["minping.settings"] = settings_of(app).with_overrides(public_url=public)
    rig = rig_factory(routes={public: "http://10.1.2.3:8000"})
    rig.persona(keys=["1", "1", "2", "3"], record_seconds=0)
    rig.dial()
    assert rig.case().final_disposition == "1.1"
    exchanges = rig.sim.exchanges_for(rig.calls_to()[0].sid)
    assert exchanges and all(x.url.startswith(public) for x in exchanges)
    assert all(x.status_code == 200 for x in exchanges)


def test_application_seeing_another_host_rejects_a_request_signed_for_it(rig_factory, client):
    # The public-URL setting, not the Host header, decides what is checked.
    rig = rig_factory()
    attempt = _open_attempt(rig)
    path = f"/ivr/answer?attempt={attempt.id}&pos=0&try=0"
    form = {"CallSid": attempt.call_sid, "Digits": "1"}
    forged = sign("http://evil.example" + path, form)
    response = client.post(path, data=form, headers={"X-Twilio-Signature": forged},
                           base_url="http://evil.example")
    assert response.status_code == 403


def test_development_may_switch_signature_checks_off(rig_factory, app, client):
    app.extensions["minping.settings"] = settings_of(app).with_overrides(verify_signatures=False)
    rig = rig_factory()
    attempt = _open_attempt(rig)
    response = client.post(f"/ivr/answer?attempt={attempt.id}&pos=0&try=0",
                           data={"CallSid": attempt.call_sid, "Digits": "2"})
    assert response.status_code == 200
    assert rig.answers() == {0: "2"}


def test_bad_input_never_gives_a_server_error(rig_factory, client):
    rig = rig_factory()
    attempt = _open_attempt(rig)
    url = rig.public_url
    sid = attempt.call_sid

    def post(path, form, **kw):
        return signed_post(client, url, path, form, **kw)

    base = f"/ivr/answer?attempt={attempt.id}"
    assert post(base + "&pos=0", {"Digits": "1"}).status_code == 400  # no CallSid
    assert post(base, {"CallSid": sid, "Digits": "1"}).status_code == 400  # no pos
    assert post(base + "&pos=x", {"CallSid": sid}).status_code == 400
    assert post(base + "&pos=99999999999", {"CallSid": sid}).status_code == 400
    # an unknown attempt or a CallSid that is not the attempt's: hang up politely
    for path, form in (("/ivr/answer?attempt=999999&pos=0", {"CallSid": sid, "Digits": "1"}),
                       (base + "&pos=0", {"CallSid": "CA" + "f" * 32, "Digits": "1"})):
        r = post(path, form)
        assert r.status_code == 200 and "<Hangup" in r.get_data(as_text=True)
    # digits out of range: re-asked; a position the case does not have: carries on
    r = post(base + "&pos=0&try=0", {"CallSid": sid, "Digits": "99"})
    assert r.status_code == 200 and "<Gather" in r.get_data(as_text=True)
    r = post(base + "&pos=57&try=0", {"CallSid": sid, "Digits": "1"})
    assert r.status_code == 200 and "<Gather" in r.get_data(as_text=True)
    assert rig.answers() == {}
    # status callbacks: missing status, unknown call
    assert post(f"/ivr/status?attempt={attempt.id}", {"CallSid": sid}).status_code == 400
    assert post("/ivr/status", {"CallSid": "CA" + "e" * 32,
                                "CallStatus": "completed"}).status_code == 200
    assert post(f"/ivr/amd?attempt={attempt.id}", {"CallSid": sid}).status_code == 400
    # a JSON body is not what Twilio sends: the signature cannot match
    r = client.post(base + "&pos=0", json={"CallSid": sid, "Digits": "1"},
                    headers={"X-Twilio-Signature": sign(url + base + "&pos=0", {})})
    assert r.status_code in (400, 403)
    assert client.get(base + "&pos=0").status_code in (403, 405)
    assert rig.answers() == {}


def test_an_answer_delivered_twice_is_stored_once(rig_factory, client):
    rig = rig_factory()
    attempt = _open_attempt(rig)
    path = f"/ivr/answer?attempt={attempt.id}&pos=0&try=0"
    form = {"CallSid": attempt.call_sid, "Digits": "2"}
    first = signed_post(client, rig.public_url, path, form)
    second = signed_post(client, rig.public_url, path, form)
    assert first.get_data() == second.get_data()
    assert rig.answers() == {0: "2"}


def test_late_callbacks_do_not_move_the_state_back(rig_factory, client):
    rig = rig_factory()
    rig.sim.set_callback_faults(CallbackFaults(reorder=True, delay_seconds=30))
    rig.persona(keys=["1", "1", "2", "3"], record_seconds=0)
    rig.dial()
    (attempt,) = rig.attempts()
    assert (attempt.status, attempt.outcome, attempt.last_sequence) == ("completed", "1.1", 3)
    # a stray "ringing" with a new token after the end: stored, state unchanged
    form = {"CallSid": attempt.call_sid, "CallStatus": "ringing", "SequenceNumber": "1"}
    r = signed_post(client, rig.public_url, f"/ivr/status?attempt={attempt.id}", form,
                    headers={"I-Twilio-Idempotency-Token": "late-1"})
    assert r.status_code == 200
    (after,) = rig.attempts()
    assert (after.status, after.outcome, after.status_rank) == ("completed", "1.1", 4)


def test_a_transaction_cut_by_a_lost_database_connection_is_run_again(rig_factory, client,
                                                                     monkeypatch):
    """PostgreSQL restarting under a webhook: the answer is stored once, no 500."""
    from sqlalchemy.exc import OperationalError

    from ivr.webhooks import Step

    rig = rig_factory()
    attempt = _open_attempt(rig)
    real_commit = Step.commit
    failures = []

    def commit_once_lost(self):
        if not failures:  # the connection dies under the commit: nothing was stored
            failures.append(1)
            self.conn.invalidate()
            err = OperationalError("COMMIT", {}, Exception("server closed the connection"))
            err.connection_invalidated = True
            raise err
        return real_commit(self)

    monkeypatch.setattr(Step, "commit", commit_once_lost)
    path = f"/ivr/answer?attempt={attempt.id}&pos=0&try=0"
    r = signed_post(client, rig.public_url, path, {"CallSid": attempt.call_sid, "Digits": "2"})
    assert r.status_code == 200 and failures == [1]
    monkeypatch.setattr(Step, "commit", real_commit)
    assert list(rig.answers().values()) == ["2"]


def test_webhook_log_lines_carry_the_case_and_call_ids(rig_factory, client):
    import io
    import json
    import logging

    from minping.logs import JsonFormatter

    rig = rig_factory()
    attempt = _open_attempt(rig)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("minping.http")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        path = f"/ivr/answer?attempt={attempt.id}&pos=0&try=0"
        r = signed_post(client, rig.public_url, path,
                        {"CallSid": attempt.call_sid, "Digits": "1"})
        assert r.status_code == 200
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["msg"] == "POST /ivr/answer"
    assert line["case_id"] == attempt.case_id and line["attempt_id"] == attempt.id
    assert line["call_sid"] == attempt.call_sid and line["status"] == 200
    assert line["path"] == "/ivr/answer" and line["request_id"]
