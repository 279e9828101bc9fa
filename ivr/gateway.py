"""The Twilio REST client: the real Twilio, or the local simulator.

``rest_client(settings)`` gives a ``twilio.rest.Client`` for the account in the
settings; when ``TWILIO_API_URL`` is set (a running ``python -m ivr.simulator``)
every call and message request goes there instead of ``api.twilio.com``.
``simulator_client(sim)`` serves the requests in-process from a
:class:`ivr.simulator.Simulator` (tests, ``minping simulate``, the demo).

:func:`twilio_refusal` is what Twilio refuses for mainland China (the same rule
for ``config check``, ``serve --check`` and the simulator);
:func:`deliverability_problems` applies it to a configuration and caller ID.

References
----------
.. [1] Twilio, Voice guidelines for China (CN): calls to China that present a
   Chinese (+86) caller ID are not delivered through Twilio's network,
   https://www.twilio.com/en-us/guidelines/cn/voice
.. [2] Twilio, SMS guidelines for China (CN): no two-way SMS; send from a sender
   on the account, https://www.twilio.com/en-us/guidelines/cn/sms
.. [3] Twilio, Bring Your Own Carrier (BYOC) trunks (``BY...``), and ``Byoc`` on
   Calls.create, https://www.twilio.com/docs/voice/bring-your-own-carrier-byoc
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


CHINA = "+86"


def twilio_refusal(*, kind: str, to: str, from_: str | None, byoc: str | None = None,
                   messaging_service: str | None = None) -> str | None:
    """Why Twilio refuses this call or message to mainland China, or ``None``.

    * a call to a +86 number presenting a +86 caller ID must go through a
      domestic carrier connection (a BYOC trunk);
    * an SMS to a +86 number goes out through a Messaging Service, not from the
      voice number.
    """
    if not (to or "").startswith(CHINA):
        return None
    if kind == "call" and (from_ or "").startswith(CHINA) and not byoc:
        return ("calls to China presenting a +86 caller ID need a BYOC trunk "
                "(domestic carrier connection)")
    if kind == "sms" and not messaging_service:
        return "SMS to China must be sent through a Messaging Service, not from the voice number"
    return None


def deliverability_problems(cfg, *, from_number: str | None) -> list[str]:
    """Combinations of settings Twilio refuses, each naming the setting to change."""
    ivr = cfg.ivr
    to = ivr.destination_country_code + "0"
    problems = []
    if from_number and twilio_refusal(kind="call", to=to, from_=from_number,
                                      byoc=ivr.byoc_trunk_sid):
        problems.append(f"[ivr] byoc_trunk_sid: TWILIO_FROM_NUMBER {from_number} is a +86 "
                        f"caller ID and the calls go to {ivr.destination_country_code}: Twilio "
                        "delivers them only through a BYOC trunk (set byoc_trunk_sid), or use "
                        "a caller ID Twilio may present in China")
    if ivr.sms_advance_notice and twilio_refusal(kind="sms", to=to, from_=from_number,
                                                 messaging_service=ivr.messaging_service_sid):
        problems.append("[ivr] messaging_service_sid: the SMS advance notice goes to "
                        f"{ivr.destination_country_code} numbers: Twilio sends it only through "
                        "a Messaging Service (set messaging_service_sid), or turn "
                        "sms_advance_notice off")
    return problems

