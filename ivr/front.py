"""The WSGI front of the Twilio webhooks: ``/ivr/...`` answered before Flask.

:class:`IvrFront` answers every ``/ivr/`` request itself, before Flask: a webhook
is a small form in, a TwiML document out, and Flask's request and application
contexts, cookie session and form parser cost more CPU than the webhook's own
work.  Other paths go to the Flask app unchanged.

Every request must carry a valid ``X-Twilio-Signature`` computed over the
*public* URL -- ``MINPING_PUBLIC_URL`` plus the request's path and query -- and
the POSTed form, so the check holds behind a reverse proxy whatever host or
scheme the application sees.  In this order, so that a refused request costs no
more than an accepted one: a declared body over :data:`MAX_BODY` gets 413 and a
request without the header 403, both before a byte of the body is read; then the
form (at most :data:`MAX_BODY` bytes) is parsed, signed requests are checked with
one HMAC (the library's full check, with and without a port, only when that one
fails), and a control character or an over-long SID is a 400.  Development may
turn the check off (``MINPING_VERIFY_SIGNATURES=0``); production cannot.

The front parses and checks the request into a :class:`Call` and hands it to the
webhook's handler (:data:`ivr.webhooks.ROUTES`), then writes the TwiML, the
``Server-Timing`` header and the access-log line.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import time
from datetime import datetime
from http import HTTPStatus
from urllib.parse import unquote_plus

from twilio.request_validator import RequestValidator
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, NotFound

from ivr import live
from minping.db import database_of, settings_of
from minping.logs import REQUEST_CONTEXT
from minping.runtime import runtime_of

request_log = logging.getLogger("minping.http")

#: The largest request body a webhook accepts.  Twilio's requests are a few KB (a
#: status callback with every optional field is under 2 KB); a larger body is refused
#: with 413 before a byte of it is read.
MAX_BODY = 16 * 1024

PREFIX = "/ivr/"
_TWIML_TYPE = ("Content-Type", "text/xml; charset=utf-8")
_NOSNIFF = ("X-Content-Type-Options", "nosniff")


class Refused(Exception):
    """A client error: ``code`` and the text of the plain-text page."""

    def __init__(self, code: int, text: str, *, close: bool = False):
        super().__init__(text)
        self.code, self.text, self.close = code, text, close


_REASONS = {400: "Bad Request", 403: "Forbidden", 413: "Request Entity Too Large"}


def bad(code: int, description: str) -> Refused:
    """An error page as Flask's ``abort`` gave it: ``<code> <name>: <description>``."""
    return Refused(code, f"{code} {_REASONS[code]}: {description}\n")


def _refuse(code: int, description: str) -> Refused:
    """A refusal sent without reading the request's body (the connection is closed)."""
    return Refused(code, f"{code} {description}\n", close=True)


class Form(dict):
    """A parsed form: each name's first value; :meth:`getall` gives all of them (the
    signature covers every value, as Twilio's ``RequestValidator`` reads a MultiDict)."""

    __slots__ = ("_more",)

    def __init__(self, pairs):
        super().__init__()
        self._more = None
        for name, value in pairs:
            if name in self:
                if self._more is None:
                    self._more = {}
                self._more.setdefault(name, [self[name]]).append(value)
            else:
                self[name] = value

    def getall(self, name: str) -> list[str]:
        if self._more is not None and name in self._more:
            return self._more[name]
        return [self[name]]

    def items_all(self):
        for name, value in self.items():
            if self._more is not None and name in self._more:
                for each in self._more[name]:
                    yield name, each
            else:
                yield name, value


def _pairs(text: str) -> list[tuple[str, str]]:
    """``urllib.parse.parse_qsl(text, keep_blank_values=True, errors="replace")``, with
    the names and values that need no decoding (most of Twilio's) taken as they are."""
    pairs = []
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name, errors="replace")
        if "%" in value or "+" in value:
            value = unquote_plus(value, errors="replace")
        pairs.append((name, value))
    return pairs


#: Control characters (C0 but tab, line feed and carriage return; DEL): Twilio never
#: sends them, and the database refuses some (NUL).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Longest value kept of fields stored in columns of a fixed width.
_MAX_LENGTH = {"CallSid": 64, "RecordingSid": 64, "AccountSid": 64, "CallStatus": 24,
               "AnsweredBy": 32}


def _check_fields(fields: Form) -> None:
    """A request with a control character or an over-long SID is a 400, never a 500."""
    for name, value in fields.items_all():
        control = _CONTROL.search(name + value)
        if control is not None:
            raise bad(400, f"field {name!r} holds a control character "
                           f"(U+{ord(control.group()):04X})")
        limit = _MAX_LENGTH.get(name)
        if limit is not None and len(value) > limit:
            raise bad(400, f"field {name!r} is longer than {limit} characters")


class Call:
    """One webhook request as the handlers see it: its query, its form, the app's
    runtime and the URLs of the next steps."""

    __slots__ = ("args", "form", "environ", "runtime", "urls", "context")

    def __init__(self, args: Form, form: Form, environ: dict, runtime, public_url: str,
                 context: dict):
        self.args, self.form, self.environ, self.runtime = args, form, environ, runtime
        self.urls = live.Urls(public_url)
        self.context = context

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.args.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise bad(400, f"query parameter {name!r} must be a whole number, "
                            f"got {value!r}") from None
        if number < 0 or number > 2**31 - 1:
            raise bad(400, f"query parameter {name!r} is out of range: {value!r}")
        return number

    def required_int(self, name: str) -> int:
        number = self.int_arg(name)
        if number is None:
            raise bad(400, f"query parameter {name!r} is missing")
        return number

    def call_sid(self) -> str:
        call_sid = self.form.get("CallSid", "").strip()
        if not call_sid:
            raise bad(400, "CallSid is missing")
        return call_sid

    def digits(self) -> str:
        digits = self.form.get("Digits", "").strip()
        return digits if len(digits) <= 32 else digits[:32]

    def token(self) -> str | None:
        token = self.environ.get("HTTP_I_TWILIO_IDEMPOTENCY_TOKEN", "").strip()
        return token[:200] or None

    def now(self) -> datetime:
        return self.runtime.now()

    def cfg(self):
        return self.runtime.survey_config()


# --- the front ------------------------------------------------------------------------------


class IvrFront:
    """WSGI middleware: ``/ivr/...`` answered here, everything else by ``wsgi_app``.

    ``app`` is the Flask app whose settings, database and runtime the webhooks use
    (looked up on every request: tests swap them); ``routes`` maps ``/ivr/<name>`` to
    its handler, called with the :class:`Call` and the app's database.
    """

    def __init__(self, app, wsgi_app, routes: dict):
        self.app = app
        self.wsgi_app = wsgi_app
        self.routes = routes
        self._validators: dict[str, RequestValidator] = {}

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        path = path.encode("latin-1").decode("utf-8", "replace")
        context = {"path": path,
                   "request_id": environ.get("HTTP_I_TWILIO_IDEMPOTENCY_TOKEN")
                   or environ.get("HTTP_X_REQUEST_ID") or os.urandom(8).hex()}
        reset = REQUEST_CONTEXT.set(context)
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            try:
                code, body, headers = 200, self._respond(environ, path, method, context), \
                    [_TWIML_TYPE]
            except Refused as refused:
                code, body = refused.code, refused.text
                headers = [("Content-Type", "text/plain; charset=utf-8")]
                if refused.close:
                    headers.append(("Connection", "close"))
            except HTTPException as exc:  # 404, 405: the pages Flask gives
                response = exc.get_response(environ)
                code, body = response.status_code, response.get_data(as_text=True)
                headers = list(response.headers.items())
                headers = [h for h in headers if h[0].lower() != "content-length"]
            except Exception:
                if self._propagate():
                    raise
                self.app.logger.error(f"Exception on {path} [{method}]", exc_info=True)
                response = InternalServerError().get_response(environ)
                code, body = 500, response.get_data(as_text=True)
                headers = [("Content-Type", response.headers["Content-Type"])]
            data = body.encode()
            headers += [("Content-Length", str(len(data))), _NOSNIFF,
                        ("Server-Timing",
                         f"app;dur={(time.perf_counter() - started) * 1000:.2f}")]
            context["status"] = code
            request_log.info("%s %s", method, path)
        finally:
            REQUEST_CONTEXT.reset(reset)
        start_response(f"{code} {_reason(code)}", headers)
        return [data]

    def _propagate(self) -> bool:
        value = self.app.config.get("PROPAGATE_EXCEPTIONS")
        return value if value is not None else (self.app.testing or self.app.debug)

    def _validator(self, token: str) -> RequestValidator:
        validator = self._validators.get(token)
        if validator is None:
            validator = self._validators[token] = RequestValidator(token)
        return validator

    def _respond(self, environ: dict, path: str, method: str, context: dict) -> str:
        handler = self.routes.get(path[len(PREFIX):])
        if handler is None:
            raise NotFound()
        if method != "POST":
            raise MethodNotAllowed(valid_methods=["POST"])
        app = self.app
        settings = settings_of(app)
        length = environ.get("CONTENT_LENGTH")
        length = int(length) if length and length.isdigit() else None
        if length is not None and length > MAX_BODY:
            raise _refuse(413, f"request body over {MAX_BODY} bytes")
        signature = environ.get("HTTP_X_TWILIO_SIGNATURE", "")
        if settings.verify_signatures and not signature:
            raise _refuse(403, "Forbidden: missing X-Twilio-Signature")
        form = Form(())
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            stream = environ["wsgi.input"]
            body = stream.read(length) if length is not None else stream.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:  # a body sent without a length is cut there
                raise _refuse(413, f"request body over {MAX_BODY} bytes")
            form = Form(_pairs(body.decode("utf-8", "replace")))
        query = environ.get("QUERY_STRING", "")
        if settings.verify_signatures:
            url = settings.public_url + path
            if query:
                url = f"{url}?{query}"
            validator = self._validator(settings.twilio_auth_token)
            # One HMAC for a good request: the signature of the URL as Twilio requested
            # it.  Anything else gets the library's full check (with and without a port).
            if not (hmac.compare_digest(validator.compute_signature(url, form), signature)
                    or validator.validate(url, form, signature)):
                raise bad(403, "invalid X-Twilio-Signature")
        args = Form(_pairs(query.encode("latin-1").decode("utf-8", "replace"))) \
            if query else Form(())
        _check_fields(args)
        _check_fields(form)
        call = Call(args, form, environ, runtime_of(app), settings.public_url, context)
        return handler(call, database_of(app))


_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def _reason(code: int) -> str:
    return _PHRASES.get(code, "Unknown")

