"""The Twilio REST client: the real Twilio, or the local simulator.

``rest_client(settings)`` gives a ``twilio.rest.Client`` for the account in the
settings; when ``TWILIO_API_URL`` is set (a running ``python -m ivr.simulator``)
every call and message request goes there instead of ``api.twilio.com``.
``simulator_client(sim)`` serves the requests in-process from a
:class:`ivr.simulator.Simulator` (tests, ``minping simulate``, the demo).
"""

from __future__ import annotations

from twilio.rest import Client


def rest_client(settings) -> Client:
    """A REST client for ``settings`` (real Twilio, or ``settings.twilio_api_url``)."""
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token)
    if settings.twilio_api_url:
        client.api.base_url = settings.twilio_api_url.rstrip("/")
    return client


def simulator_client(simulator, *, base_url: str | None = None) -> Client:
    """A real ``twilio.rest.Client`` wired to a simulator (in-process, or over HTTP)."""
    from ivr.simulator import twilio_client

    return twilio_client(simulator, base_url=base_url)
