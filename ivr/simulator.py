"""A local Twilio simulator for tests and the demo.

It speaks the part of Twilio's REST API (2010-04-01) the dialer uses, plays each
call against the application's webhooks as Twilio would (signed requests, TwiML,
status callbacks, answering-machine detection) and simulates respondents from a
seeded behaviour model.  It runs on a :class:`VirtualClock` (a field period of
several days in seconds) or on the :class:`RealClock`.

Pointing the real ``twilio`` client (twilio-python 9) at it
-----------------------------------------------------------
Over HTTP (``SimulatorServer``)::

    server = SimulatorServer(sim)
    base_url = server.start()               # http://127.0.0.1:PORT
    client = Client(account_sid, auth_token)
    client.api.base_url = base_url

This works because every REST call of ``client.calls`` / ``client.messages`` goes
through the ``Api`` domain (``twilio/rest/api/ApiBase.py`` builds it with
``https://api.twilio.com``) and ``twilio/base/domain.py`` builds each URL from
``self.base_url`` at request time, so overwriting that attribute redirects the
client.  (Other domains such as ``client.messaging`` keep their own base URL.)

In-process, without sockets: ``Client(account_sid, auth_token,
http_client=SimulatorHttpClient(sim))`` -- any host the client aims at is served
by the simulator.  :func:`twilio_client` builds either.

Webhooks go out through a :class:`WebhookTransport`: :class:`HttpWebhookTransport`
(real HTTP) or :class:`WsgiWebhookTransport` (a WSGI app called in-process).  The
URL signed is always the public URL the application gave; ``routes`` on either
transport send it elsewhere, as a reverse proxy would.

Example (in-process, virtual clock)::

    sim = Simulator(account_sid=SID, auth_token=TOKEN, rng=np.random.default_rng(7),
                    transport=WsgiWebhookTransport(app))
    client = twilio_client(sim)
    call = client.calls.create(to="+8613800000000", from_="+85230010000",
                               url="https://survey.example.org/ivr/voice")
    sim.run_until_idle()
    sim.call(call.sid).transcript.said()

Standalone, on the real clock, with real HTTP webhooks::

    python -m ivr.simulator --port 8765 --account-sid AC... --auth-token ...
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import numpy as np
from twilio.rest import Client

from ivr.sim.behaviour import DEFAULT_ANSWER_BY_HOUR, LINES, BehaviourModel, Persona
from ivr.sim.clock import Clock, RealClock, VirtualClock
from ivr.sim.engine import APPLICATION_ERROR_TEXT, ApiError, Simulator
from ivr.sim.records import (
    FINAL_STATUSES,
    CallbackFaults,
    Exchange,
    Recording,
    SimCall,
    SimMessage,
    Transcript,
    TranscriptEvent,
    WebhookFault,
)
from ivr.sim.rest import SimulatorHttpClient, SimulatorServer, handle_api
from ivr.sim.transport import (
    HttpWebhookTransport,
    WebhookRequest,
    WebhookResponse,
    WebhookTimeout,
    WebhookTransport,
    WebhookTransportError,
    WsgiWebhookTransport,
)

__all__ = [
    "APPLICATION_ERROR_TEXT", "DEFAULT_ANSWER_BY_HOUR", "FINAL_STATUSES", "LINES", "ApiError",
    "BehaviourModel", "CallbackFaults", "Clock", "Exchange", "HttpWebhookTransport", "Persona",
    "RealClock", "Recording", "SimCall", "SimMessage", "Simulator", "SimulatorHttpClient",
    "SimulatorServer", "Transcript", "TranscriptEvent", "VirtualClock", "WebhookFault",
    "WebhookRequest", "WebhookResponse", "WebhookTimeout", "WebhookTransport",
    "WebhookTransportError", "WsgiWebhookTransport", "handle_api", "main", "twilio_client",
]


def twilio_client(simulator: Simulator, *, base_url: str | None = None) -> Client:
    """A real ``twilio.rest.Client`` wired to ``simulator``.

    With ``base_url`` (a started :class:`SimulatorServer`) it talks HTTP;
    without, it uses :class:`SimulatorHttpClient` (in-process).
    """
    if base_url is None:
        return Client(simulator.account_sid, simulator.auth_token,
                      http_client=SimulatorHttpClient(simulator))
    client = Client(simulator.account_sid, simulator.auth_token)
    client.api.base_url = base_url.rstrip("/")
    return client


def _parse_routes(values: list[str]) -> dict[str, str]:
    routes = {}
    for value in values:
        public, sep, internal = value.partition("=")
        if not sep or not public or not internal:
            raise SystemExit(f"--route must be PUBLIC=INTERNAL, got {value!r}")
        routes[public] = internal
    return routes


def main(argv: list[str] | None = None) -> int:
    """Run the simulator's REST API over HTTP on the real clock until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m ivr.simulator", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--account-sid", default=os.environ.get("TWILIO_ACCOUNT_SID"))
    parser.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calls-per-second", type=float, default=None)
    parser.add_argument("--route", action="append", default=[], metavar="PUBLIC=INTERNAL",
                        help="send webhooks for the PUBLIC URL prefix to INTERNAL (repeatable)")
    args = parser.parse_args(argv)
    if not args.account_sid or not args.auth_token:
        parser.error("--account-sid and --auth-token are required "
                     "(or TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN)")
    transport = HttpWebhookTransport(routes=_parse_routes(args.route))
    try:
        sim = Simulator(account_sid=args.account_sid, auth_token=args.auth_token,
                        rng=np.random.default_rng(args.seed), transport=transport,
                        clock=RealClock(), calls_per_second=args.calls_per_second)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    server = SimulatorServer(sim, host=args.host, port=args.port)
    base_url = server.start()
    sim.start()
    print(f"Twilio simulator listening on {base_url} (account {args.account_sid}); "
          "Ctrl-C stops it", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        server.stop()
        transport.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
