"""What /ivr refuses before any work: oversized bodies (413) and unsigned requests (403).

A refused request must cost no more than an accepted one: the declared length and
the signature header are checked before the form is parsed and before the
database is touched.  Runs on SQLite and PostgreSQL (``app`` fixture).
"""

from __future__ import annotations

from urllib.parse import urlencode

from ivr.front import MAX_BODY


class NotToBeRead:
    """A WSGI input that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = read

    def __iter__(self):
        raise AssertionError("the body was read")


def _environ(length: int, headers: dict | None = None) -> dict:
    return {"wsgi.input": NotToBeRead(), "CONTENT_LENGTH": str(length),
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()}}


def test_a_body_over_the_limit_is_refused_with_413_unread(client):
    big = 100 * MAX_BODY
    for headers in ({}, {"X-Twilio-Signature": "c2lnbmF0dXJl"}):
        response = client.post("/ivr/answer?attempt=1&pos=0&try=0",
                               environ_overrides=_environ(big, headers))
        assert response.status_code == 413
        assert response.headers["Connection"] == "close"


def test_an_unsigned_request_is_refused_with_403_unread(client):
    response = client.post("/ivr/status?attempt=1", environ_overrides=_environ(MAX_BODY))
    assert response.status_code == 403


def test_twilio_sized_bodies_pass_the_limit(client):
    # a status callback with every field Twilio sends is well under the limit
    form = {name: "x" * 64 for name in (
        "AccountSid", "ApiVersion", "CallSid", "CallStatus", "Called", "CalledCity",
        "CalledCountry", "CalledState", "CalledZip", "Caller", "CallerCity", "CallerCountry",
        "CallerState", "CallerZip", "Direction", "From", "FromCity", "FromCountry",
        "FromState", "FromZip", "To", "ToCity", "ToCountry", "ToState", "ToZip",
        "CallbackSource", "SequenceNumber", "Timestamp", "SipResponseCode", "CallDuration")}
    assert len(urlencode(form)) < MAX_BODY
    response = client.post("/ivr/status?attempt=1", data=form)
    assert response.status_code == 403  # unsigned: refused by the signature, not the size
