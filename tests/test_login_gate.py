"""``minping serve``'s log-in gate: at most N log-ins hashed at once per process.

The others are answered at once with 503 and ``Retry-After``, so that a flood of
log-ins (each a scrypt hash) cannot take the threads the IVR webhooks need.
"""

from __future__ import annotations

import threading

import pytest

from minping.commands.serve import LoginGate


def _call(app, method="POST", path="/cati/login"):
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app({"REQUEST_METHOD": method, "PATH_INFO": path}, start_response))
    return seen["status"], seen["headers"], body


def test_a_log_in_beyond_the_slots_is_answered_503_at_once():
    inside, release = threading.Event(), threading.Event()

    def slow_login(environ, start_response):
        if environ["PATH_INFO"] == "/cati/login" and environ["REQUEST_METHOD"] == "POST":
            inside.set()
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"logged in"]

    gate = LoginGate(slow_login, slots=1)
    first = {}
    t = threading.Thread(target=lambda: first.setdefault("r", _call(gate)))
    t.start()
    assert inside.wait(10)
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


def test_the_slot_is_given_back_when_the_log_in_fails():
    def broken(environ, start_response):
        raise RuntimeError("database down")

    gate = LoginGate(broken, slots=1)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            _call(gate)
    assert gate.slots.acquire(blocking=False)
