"""``minping serve``'s log-in gate: at most N log-ins hashed at once per process.

The others are answered at once with 503 and ``Retry-After``, so that a flood of
log-ins (each a scrypt hash) cannot take the threads the IVR webhooks need; the
hashes themselves run in a helper process at the lowest CPU priority.
"""

from __future__ import annotations

import json
import threading

import pytest

from minping.commands.serve import LOGIN_PATHS, LoginGate


def _call(app, method="POST", path="/cati/login", **environ):
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app({"REQUEST_METHOD": method, "PATH_INFO": path} | environ,
                        start_response))
    return seen["status"], seen["headers"], body


def _held_gate():
    """A gate of one slot, held by a log-in that waits until ``release`` is set."""
    inside, release = threading.Event(), threading.Event()

    def slow_login(environ, start_response):
        if environ["PATH_INFO"] in LOGIN_PATHS and environ["REQUEST_METHOD"] == "POST":
            inside.set()
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"logged in"]

    gate = LoginGate(slow_login, slots=1)
    first = {}
    t = threading.Thread(target=lambda: first.setdefault("r", _call(gate)))
    t.start()
    assert inside.wait(10)
    return gate, release, t, first


def test_a_log_in_beyond_the_slots_is_answered_503_at_once():
    gate, release, t, first = _held_gate()
    status, headers, _ = _call(gate)
    assert status.startswith("503") and headers["Retry-After"] == "1"
    # other paths and the log-in page itself are never held back
    assert _call(gate, path="/ivr/answer")[0] == "200 OK"
    assert _call(gate, method="GET")[0] == "200 OK"
    release.set()
    t.join(10)
    assert first["r"][0] == "200 OK" and first["r"][2] == b"logged in"
    assert _call(gate)[0] == "200 OK"  # the slot is free again
    assert gate.refused == 1


def test_a_refused_log_in_tells_the_interviewer_to_try_again():
    """The log-in form gets a page that says so (both languages) and brings the form
    back by itself; the case screen's password prompt (a fetch call) gets JSON whose
    ``error`` it shows."""
    gate, release, t, _ = _held_gate()
    try:
        status, headers, body = _call(gate, QUERY_STRING="next=/cati/work")
        page = body.decode()
        assert status.startswith("503") and headers["Retry-After"] == "1"
        assert headers["Content-Type"].startswith("text/html")
        assert "try again" in page and "请稍后重试" in page
        assert 'href="/cati/login?next=/cati/work"' in page
        assert 'http-equiv="refresh" content="2;url=/cati/login?next=/cati/work"' in page
        status, headers, body = _call(gate, path="/cati/reauth", HTTP_ACCEPT="application/json",
                                      CONTENT_TYPE="application/json", HTTP_X_CSRF_TOKEN="t")
        answer = json.loads(body)
        assert status.startswith("503") and headers["Retry-After"] == "1"
        assert answer["ok"] is False and "try again" in answer["error"]
    finally:
        release.set()
        t.join(10)
    assert gate.refused == 2


def test_the_gate_counts_the_log_ins_checked_and_those_waiting(monkeypatch):
    from minping.commands import serve

    monkeypatch.setenv("MINPING_LOGIN_SLOTS", "2")
    monkeypatch.setenv("MINPING_LOGIN_QUEUE", "0")
    assert (serve.login_slots(), serve.login_queue()) == (2, 0)
    monkeypatch.setenv("MINPING_LOGIN_QUEUE", "five")
    monkeypatch.delenv("MINPING_LOGIN_SLOTS")
    assert (serve.login_slots(), serve.login_queue()) == (1, serve.DEFAULT_LOGIN_QUEUE)


@pytest.fixture()
def low_priority_checks():
    from minping import users

    users.check_hashes_at_low_priority(1, "idle")
    yield users
    users.check_hashes_at_low_priority(1, "normal")


def test_passwords_are_checked_in_a_helper_process_at_idle_priority(low_priority_checks):
    import os
    import signal

    from werkzeug.security import generate_password_hash

    users = low_priority_checks
    stored = generate_password_hash("a long passphrase")
    assert users.check_hash(stored, "a long passphrase")
    assert not users.check_hash(stored, "another passphrase")
    checker = users._checker
    assert checker.submit(os.getpid).result() != os.getpid()
    if hasattr(os, "SCHED_IDLE"):
        assert checker.submit(os.sched_getscheduler, 0).result() == os.SCHED_IDLE
    # a checking process that dies is replaced: the next check still answers
    for pid in list(checker._processes):
        os.kill(pid, signal.SIGKILL)
    assert users.check_hash(stored, "a long passphrase")
    assert users._checker is not checker


def test_a_check_that_finds_no_idle_cpu_is_made_in_the_request_thread(low_priority_checks,
                                                                       monkeypatch):
    """A machine with no idle CPU delays a log-in by at most ``IDLE_WAIT_SECONDS``."""
    from werkzeug.security import generate_password_hash

    users = low_priority_checks
    stored = generate_password_hash("a long passphrase")
    monkeypatch.setattr(users, "IDLE_WAIT_SECONDS", 0.0)
    made_here = []
    original = users.check_password_hash
    monkeypatch.setattr(users, "check_password_hash",
                        lambda h, p: made_here.append(1) or original(h, p))
    assert users.check_hash(stored, "a long passphrase")
    assert not users.check_hash(stored, "another passphrase")
    assert made_here == [1, 1]


def test_a_log_in_works_with_the_checks_at_idle_priority(app, db, low_priority_checks):
    from tests.cati.helpers import add_user
    from tests.reliability.test_security import _login, _post_login

    add_user(db, "ann")
    _login(app, "ann")
    assert _post_login(app.test_client(), "ann", "wrong-password").status_code == 401
    assert _post_login(app.test_client(), "nobody", "wrong-password").status_code == 401


def test_the_slot_is_given_back_when_the_log_in_fails():
    def broken(environ, start_response):
        raise RuntimeError("database down")

    gate = LoginGate(broken, slots=1)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            _call(gate)
    assert gate.slots.acquire(blocking=False)


def test_the_ivr_pool_answers_the_webhooks_only():
    from minping.commands.serve import IvrOnly

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app"]

    pool = IvrOnly(app)
    assert _call(pool, path="/ivr/answer")[0] == "200 OK"
    assert _call(pool, method="GET", path="/healthz")[0] == "200 OK"
    status, _, body = _call(pool, path="/cati/login")
    assert status.startswith("404") and b"/ivr/" in body
    assert _call(pool, method="GET", path="/cati/")[0].startswith("404")


def _get(url: str):
    import requests

    try:
        return requests.get(url, timeout=10, allow_redirects=False)
    except requests.RequestException:
        return None


def test_serve_with_ivr_bind_runs_the_webhooks_on_a_pool_of_their_own(pg_database, tmp_path):
    """``minping serve --ivr-bind``: the webhooks on one address, the CATI screens on the
    other, each gunicorn with its own workers; both stop with the command."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    web, ivr = (f"127.0.0.1:{p}" for p in ports)
    env = os.environ | {"DATABASE_URL": pg_database, "MINPING_ENV": "development",
                        "MINPING_SECRET_KEY": "x" * 40,
                        "MINPING_PUBLIC_URL": "https://survey.test.invalid",
                        "TWILIO_AUTH_TOKEN": "t", "MINPING_INSTANCE_PATH": str(tmp_path)}
    minping = Path(sys.executable).with_name("minping")
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([str(minping), "serve", "--bind", web, "--workers", "1",
                             "--ivr-bind", ivr, "--ivr-workers", "1"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            a, b = _get(f"http://{web}/healthz"), _get(f"http://{ivr}/healthz")
            if a is not None and b is not None and a.ok and b.ok:
                break
            time.sleep(0.5)
        else:
            raise AssertionError((tmp_path / "serve.log").read_text()[-3000:])
        assert _get(f"http://{web}/cati/login").status_code == 200
        assert _get(f"http://{ivr}/cati/login").status_code == 404
        import requests

        # the IVR pool runs the webhooks: an unsigned request is refused there, not 404
        r = requests.post(f"http://{ivr}/ivr/answer?attempt=1&pos=0", data={"CallSid": "CA1"},
                          timeout=10)
        assert r.status_code == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _get(f"http://{ivr}/healthz") is not None:
        time.sleep(0.5)
    assert _get(f"http://{ivr}/healthz") is None  # the IVR pool stopped with the command
