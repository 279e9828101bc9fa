"""The part of Twilio's REST API (2010-04-01) the dialer uses, over two transports.

:func:`handle_api` turns one request into ``(status, body, content type)``; the
threaded :class:`SimulatorServer` serves it on loopback and
:class:`SimulatorHttpClient` hands the real ``twilio`` client's requests to it
in-process.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
import threading
import wave
from collections.abc import Mapping
from datetime import datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from twilio.http import HttpClient
from twilio.http.response import Response

from ivr.sim.engine import API_VERSION, ApiError, Simulator
from ivr.sim.records import Recording, SimCall, SimMessage

_logger = logging.getLogger("ivr.simulator")
_ACCOUNT = rf"/{API_VERSION}/Accounts/(?P<account>AC[0-9a-fA-F]{{32}})"
_ROUTES = [
    (re.compile(_ACCOUNT + r"/Calls\.json$"), "calls"),
    (re.compile(_ACCOUNT + r"/Calls/(?P<sid>CA[0-9a-f]{32})\.json$"), "call"),
    (re.compile(_ACCOUNT + r"/Messages\.json$"), "messages"),
    (re.compile(_ACCOUNT + r"/Messages/(?P<sid>SM[0-9a-f]{32})\.json$"), "message"),
    (re.compile(_ACCOUNT + r"/Recordings/(?P<sid>RE[0-9a-f]{32})\.json$"), "recording"),
    (re.compile(_ACCOUNT + r"/Recordings/(?P<sid>RE[0-9a-f]{32})(\.wav|\.mp3)?$"), "audio"),
]
JSON = "application/json"


def _date(value: datetime | None) -> str | None:
    return None if value is None else format_datetime(value)


def call_resource(sim: Simulator, call: SimCall) -> dict[str, Any]:
    """A call as Twilio's JSON represents it."""
    uri = f"/{API_VERSION}/Accounts/{sim.account_sid}/Calls/{call.sid}"
    return {
        "account_sid": call.account_sid, "annotation": None, "answered_by": call.answered_by,
        "api_version": API_VERSION, "caller_name": None,
        "date_created": _date(call.date_created), "date_updated": _date(call.date_updated),
        "direction": call.direction,
        "duration": str(call.duration) if call.ended else None,
        "end_time": _date(call.end_time), "forwarded_from": None, "from": call.from_,
        "from_formatted": call.from_, "group_sid": None, "parent_call_sid": call.parent_call_sid,
        "phone_number_sid": None, "price": None, "price_unit": "USD", "queue_time": "0",
        "sid": call.sid, "start_time": _date(call.start_time), "status": call.status,
        "subresource_uris": {name: f"{uri}/{name.title().replace('_', '')}.json" for name in
                             ("notifications", "recordings", "payments", "events")},
        "to": call.to, "to_formatted": call.to, "trunk_sid": None, "uri": f"{uri}.json",
    }


def message_resource(sim: Simulator, message: SimMessage) -> dict[str, Any]:
    uri = f"/{API_VERSION}/Accounts/{sim.account_sid}/Messages/{message.sid}"
    return {
        "account_sid": message.account_sid, "api_version": API_VERSION, "body": message.body,
        "date_created": _date(message.date_created), "date_sent": _date(message.date_sent),
        "date_updated": _date(message.date_updated), "direction": "outbound-api",
        "error_code": None, "error_message": None, "from": message.from_,
        "messaging_service_sid": message.messaging_service_sid, "num_media": "0",
        "num_segments": "1", "price": None, "price_unit": "USD", "sid": message.sid,
        "status": message.status, "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": message.to, "uri": f"{uri}.json",
    }


def recording_resource(sim: Simulator, recording: Recording) -> dict[str, Any]:
    uri = f"/{API_VERSION}/Accounts/{sim.account_sid}/Recordings/{recording.sid}"
    return {
        "account_sid": recording.account_sid, "api_version": API_VERSION,
        "call_sid": recording.call_sid, "conference_sid": None, "channels": 1,
        "date_created": _date(recording.date_created), "date_updated": _date(recording.date_created),
        "start_time": _date(recording.date_created), "duration": str(recording.duration),
        "sid": recording.sid, "price": None, "price_unit": "USD", "status": "completed",
        "source": recording.source, "error_code": None, "encryption_details": None,
        "media_url": recording.url, "uri": f"{uri}.json",
        "subresource_uris": {"transcriptions": f"{uri}/Transcriptions.json"},
    }


def silent_wav(seconds: int) -> bytes:
    """8 kHz 8-bit mono silence (at most 60 s), standing in for a recording."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(b"\x80" * (8000 * max(1, min(seconds, 60))))
    return buffer.getvalue()


def _page(sim: Simulator, path: str, key: str, items: list[dict[str, Any]],
          query: Mapping[str, list[str]]) -> dict[str, Any]:
    def one(name: str, default: int) -> int:
        try:
            return int(query.get(name, [str(default)])[-1])
        except ValueError as exc:
            raise ApiError(400, 20001, f"Invalid {name}: {query[name][-1]}") from exc

    size = max(1, min(1000, one("PageSize", 50)))
    page = max(0, one("Page", 0))
    start = page * size
    chunk = items[start:start + size]
    filters = [(k, v) for k, values in query.items() if k not in ("Page", "PageSize", "PageToken")
               for v in values]

    def uri(p: int) -> str:
        return f"{path}?{urlencode(filters + [('PageSize', size), ('Page', p)])}"

    return {key: chunk, "start": start, "end": start + max(0, len(chunk) - 1), "page": page,
            "page_size": size, "uri": uri(page), "first_page_uri": uri(0),
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "next_page_uri": uri(page + 1) if start + size < len(items) else None}


def _credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def handle_api(sim: Simulator, method: str, path: str, query: Mapping[str, list[str]],
               form: Mapping[str, list[str]], authorization: str | None) -> tuple[int, bytes, str]:
    """Serve one REST request; returns ``(status, body, content type)``."""
    try:
        status, body, content_type = _dispatch(sim, method.upper(), path, query, form,
                                               authorization)
    except ApiError as exc:
        status, body, content_type = exc.status, json.dumps(exc.as_dict()).encode(), JSON
    sim.record_api_request(method.upper(), path, status)
    return status, body, content_type


def _dispatch(sim: Simulator, method: str, path: str, query: Mapping[str, list[str]],
              form: Mapping[str, list[str]], authorization: str | None) -> tuple[int, bytes, str]:
    name, match = next(((n, m) for n, m in ((n, p.match(path)) for p, n in _ROUTES) if m),
                       (None, None))
    if match is None:
        raise ApiError(404, 20404, f"The requested resource {path} was not found")
    if name == "audio" and method == "GET":
        return 200, silent_wav(sim.get_recording(match["sid"]).duration), "audio/x-wav"
    if _credentials(authorization) != (sim.account_sid, sim.auth_token):
        raise ApiError(401, 20003, "Authenticate")
    if match["account"] != sim.account_sid:
        raise ApiError(404, 20404, f"The requested resource {path} was not found")
    allowed = {"calls": ("GET", "POST"), "call": ("GET", "POST"), "messages": ("GET", "POST"),
               "message": ("GET",), "recording": ("GET",), "audio": ("GET",)}[name]
    if method not in allowed:
        raise ApiError(405, 20004, f"Method not allowed: {method}")
    base = f"/{API_VERSION}/Accounts/{sim.account_sid}"

    def ok(status: int, payload: dict[str, Any]) -> tuple[int, bytes, str]:
        return status, json.dumps(payload).encode(), JSON

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    if name == "calls" and method == "POST":
        return ok(201, call_resource(sim, sim.create_call(form)))
    if name == "calls":
        calls = sim.list_calls(status=one("Status"), to=one("To"), from_=one("From"),
                               parent_call_sid=one("ParentCallSid"))
        return ok(200, _page(sim, f"{base}/Calls.json", "calls",
                             [call_resource(sim, c) for c in calls], query))
    if name == "call" and method == "POST":
        return ok(200, call_resource(sim, sim.update_call(match["sid"], form)))
    if name == "call":
        return ok(200, call_resource(sim, sim.get_call(match["sid"])))
    if name == "messages" and method == "POST":
        return ok(201, message_resource(sim, sim.create_message(form)))
    if name == "messages":
        messages = sim.list_messages(to=one("To"))
        return ok(200, _page(sim, f"{base}/Messages.json", "messages",
                             [message_resource(sim, m) for m in messages], query))
    if name == "message":
        return ok(200, message_resource(sim, sim.get_message(match["sid"])))
    return ok(200, recording_resource(sim, sim.get_recording(match["sid"])))


def _as_lists(values: Mapping[str, Any] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in (values or {}).items():
        items = value if isinstance(value, list | tuple) else [value]
        out[key] = [str(v) for v in items if v is not None]
    return out


class SimulatorHttpClient(HttpClient):
    """A ``twilio.http.HttpClient`` that serves the real client's requests in-process.

    ``Client(sid, token, http_client=SimulatorHttpClient(sim))``: whatever host
    the client aims at, the request goes to the simulator; no sockets.
    """

    def __init__(self, simulator: Simulator, *, logger: logging.Logger = _logger,
                 timeout: float | None = None):
        super().__init__(logger, False, timeout)
        self.simulator = simulator

    def request(self, method: str, uri: str, params: dict[str, object] | None = None,
                data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None, timeout: float | None = None,
                allow_redirects: bool = False) -> Response:
        parts = urlsplit(uri)
        query = parse_qs(parts.query, keep_blank_values=True)
        for key, values in _as_lists(params).items():
            query.setdefault(key, []).extend(values)
        headers = dict(headers or {})
        authorization = headers.get("Authorization")
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            authorization = f"Basic {token}"
        status, body, content_type = handle_api(self.simulator, method, parts.path, query,
                                                _as_lists(data), authorization)
        text = body.decode("utf-8", "replace") if content_type == JSON else body.decode("latin-1")
        self._test_only_last_response = Response(status, text, {"Content-Type": content_type})
        return self._test_only_last_response


class _Handler(BaseHTTPRequestHandler):
    simulator: Simulator
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        form: dict[str, list[str]] = {}
        if raw and "application/x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        query = parse_qs(parts.query, keep_blank_values=True)
        status, body, content_type = handle_api(self.simulator, self.command, parts.path, query,
                                                form, self.headers.get("Authorization"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler API)
        _logger.debug("%s " + format, self.address_string(), *args)


class SimulatorServer:
    """The REST API on a real threaded HTTP server (loopback by default).

    ``start()`` returns the base URL (``http://127.0.0.1:PORT``) and makes it the
    simulator's ``api_base_url`` (unless ``public_url`` is given), so recording
    URLs point at this server.
    """

    def __init__(self, simulator: Simulator, *, host: str = "127.0.0.1", port: int = 0,
                 public_url: str | None = None):
        self.simulator = simulator
        self.host, self.port, self.public_url = host, port, public_url
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        if self._server is None:
            handler = type("SimulatorHandler", (_Handler,), {"simulator": self.simulator})
            self._server = ThreadingHTTPServer((self.host, self.port), handler)
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                            name="twilio-simulator-http", daemon=True)
            self._thread.start()
            self.simulator.api_base_url = (self.public_url or self.base_url).rstrip("/")
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = self._thread = None

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
