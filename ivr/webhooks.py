"""Twilio webhooks: a WSGI front for ``/ivr/...``, mounted around the Flask app.

=====================  =====================================================
``POST /ivr/voice``     an outbound call was answered (``?attempt=``)
``POST /ivr/inbound``   a call to the survey number (caller ID decides)
``POST /ivr/verify``    the SMS code an inbound caller entered (``?case=&try=``)
``POST /ivr/consent``   the key pressed at the consent question
``POST /ivr/answer``    the key pressed at a question (``?pos=&try=``)
``POST /ivr/comment``   the ``<Record>`` of a spoken comment finished
``POST /ivr/status``    call status callbacks (initiated ... completed)
``POST /ivr/amd``       AsyncAmd result (``AnsweredBy``)
``POST /ivr/handoff``   the ``<Dial>`` to an interviewer ended (``DialCallStatus``)
``POST /ivr/callback``  the key pressed at the call-back offer (``?try=``)
=====================  =====================================================

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

Each webhook reads its attempt on a connection taken from the app's pool for the
request and calls one service function (:mod:`ivr.interview`, :mod:`ivr.callstate`,
:mod:`ivr.inbound`, :mod:`ivr.handoff`) with a session bound to that connection;
the plain steps never start the session's machinery (:mod:`ivr.live`,
:mod:`ivr.fastsql`).  Twilio hears back only after the commit.  Every response
carries ``Server-Timing: app;dur=<ms>`` and is logged like the app's other
requests (``minping.http``, with the call's ids, :mod:`minping.logs`).

The app's clock, survey configuration and REST client come from its runtime
(:mod:`minping.runtime`) and can be injected: the field-period simulation runs the
webhooks on a virtual clock.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import time
from datetime import datetime
from http import HTTPStatus
from urllib.parse import unquote_plus

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, NotFound

from ivr import callstate, fastsql, flow, interview, live
from ivr import handoff as handoffs
from ivr import inbound as inbound_calls
from minping.db import database_of, settings_of
from minping.logs import REQUEST_CONTEXT
from minping.runtime import current_runtime, runtime_of

log = logging.getLogger(__name__)
request_log = logging.getLogger("minping.http")

#: The largest request body a webhook accepts.  Twilio's requests are a few KB (a
#: status callback with every optional field is under 2 KB); a larger body is refused
#: with 413 before a byte of it is read.
MAX_BODY = 16 * 1024

PREFIX = "/ivr/"
_TWIML_TYPE = ("Content-Type", "text/xml; charset=utf-8")
_NOSNIFF = ("X-Content-Type-Options", "nosniff")


def now() -> datetime:
    """The app's time (in a Flask request or application context)."""
    return current_runtime().now()


def survey_config():
    """The survey configuration (loaded once per app, :mod:`minping.runtime`)."""
    return current_runtime().survey_config()


def twilio_client():
    return current_runtime().twilio_client()


class Refused(Exception):
    """A client error: ``code`` and the text of the plain-text page."""

    def __init__(self, code: int, text: str, *, close: bool = False):
        super().__init__(text)
        self.code, self.text, self.close = code, text, close


_REASONS = {400: "Bad Request", 403: "Forbidden", 413: "Request Entity Too Large"}


def _bad(code: int, description: str) -> Refused:
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
        bad = _CONTROL.search(name + value)
        if bad is not None:
            raise _bad(400, f"field {name!r} holds a control character "
                            f"(U+{ord(bad.group()):04X})")
        limit = _MAX_LENGTH.get(name)
        if limit is not None and len(value) > limit:
            raise _bad(400, f"field {name!r} is longer than {limit} characters")


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
            raise _bad(400, f"query parameter {name!r} must be a whole number, "
                            f"got {value!r}") from None
        if number < 0 or number > 2**31 - 1:
            raise _bad(400, f"query parameter {name!r} is out of range: {value!r}")
        return number

    def required_int(self, name: str) -> int:
        number = self.int_arg(name)
        if number is None:
            raise _bad(400, f"query parameter {name!r} is missing")
        return number

    def call_sid(self) -> str:
        call_sid = self.form.get("CallSid", "").strip()
        if not call_sid:
            raise _bad(400, "CallSid is missing")
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


class LazySession:
    """The request's ORM session, made on its first use: most steps never need it
    (their statements run on :attr:`bind`, :func:`ivr.live.connection`).  Everything
    but ``bind`` is the real :class:`~sqlalchemy.orm.Session`'s."""

    __slots__ = ("bind", "made")

    def __init__(self, conn):
        self.bind = conn
        self.made: Session | None = None

    def __getattr__(self, name: str):
        session = self.made
        if session is None:
            session = self.made = Session(bind=self.bind, join_transaction_mode="control_fully",
                                          expire_on_commit=False)
        return getattr(session, name)


class Step:
    """The database side of one try of a webhook: a connection from the app's pool,
    lazy on PostgreSQL (:func:`ivr.fastsql.begin_lazily`), and a session bound to it
    for the steps that change the case through the ORM."""

    __slots__ = ("conn", "session", "attempt")

    def __init__(self, database):
        self.conn = database.engine.connect()
        fastsql.begin_lazily(self.conn)
        self.session = LazySession(self.conn)
        self.attempt: live.Live | None = None

    def find(self, call: Call, *, with_units: bool = False) -> live.Live | None:
        """The request's attempt (``?attempt=`` and ``CallSid``), read in one statement."""
        call_sid = call.call_sid()
        attempt_id = call.int_arg("attempt")
        attempt = live.find_attempt(self.session, attempt_id=attempt_id, call_sid=call_sid,
                                    with_units=with_units)
        call.context["call_sid"] = call_sid
        if attempt is not None:
            call.context.update(attempt_id=attempt.id, case_id=attempt.case_id)
        self.attempt = attempt
        return attempt

    def commit(self) -> None:
        """Write the attempt's changed fields, then commit (Twilio hears back after this).

        On PostgreSQL, when the step wrote nothing else, the write runs alone: one
        statement that commits by itself before it answers (:mod:`ivr.fastsql`).
        """
        attempt, self.attempt = self.attempt, None
        if attempt is not None:
            fastsql.run_alone(self.conn, attempt.save, self.session)
        session = self.session.made
        if session is not None and session.in_transaction():
            session.commit()
        fastsql.end(self.conn, commit=True)

    def rollback(self) -> None:
        self.attempt = None
        if self.session.made is not None:
            self.session.made.rollback()
        if not self.conn.invalidated:
            fastsql.end(self.conn, commit=False)

    def close(self) -> None:
        try:
            if self.session.made is not None:
                self.session.made.close()
        finally:
            self.conn.close()


def _again_if_connection_lost(database, run):
    """``run(step)`` on a fresh :class:`Step`, once more if the database connection was lost.

    A transaction cut by a lost connection (PostgreSQL restarted, a fail-over, a
    pooled connection that died while idle: the pool does not ping connections in
    use a moment ago, :mod:`minping.db`) is run again: nothing of it was committed,
    or -- the ``COMMIT`` itself cut -- it was, and the webhooks' work is idempotent.
    """
    for tries in (1, 2):
        step = Step(database)
        try:
            return run(step)
        except DBAPIError as exc:
            if isinstance(exc, IntegrityError) or not exc.connection_invalidated or tries == 2:
                raise
            log.warning("database connection lost; running the webhook's transaction again")
            with contextlib.suppress(DBAPIError):
                step.rollback()
        finally:
            step.close()
    raise AssertionError("unreachable")


def _transact(database, work) -> str:
    """Run ``work(step)`` (reads the attempt, returns TwiML) and commit; a clash is retried once.

    Two deliveries of the same request at the same moment (Twilio retrying a slow
    webhook) can both try to insert the same answer: the loser's transaction is
    rolled back and run again -- reading the attempt again -- and then finds the
    answer already stored.  A lost database connection: :func:`_again_if_connection_lost`.
    """
    def run(step: Step) -> str:
        for tries in (1, 2):
            try:
                body = work(step)
                step.commit()
                return body
            except IntegrityError:
                step.rollback()
                if tries == 2:
                    raise
        raise AssertionError("unreachable")

    return _again_if_connection_lost(database, run)


# --- the webhooks -------------------------------------------------------------------------


def voice(call: Call, database) -> str:
    def work(step: Step) -> str:
        attempt = step.find(call)
        if attempt is None:
            return flow.hangup()
        return interview.start_call(step.session, call.cfg(), attempt, urls=call.urls,
                                    now=call.now(), answered_by=call.form.get("AnsweredBy"),
                                    save=False)  # saved by Step.commit
    return _transact(database, work)


def inbound(call: Call, database) -> str:
    call_sid = call.call_sid()
    caller = call.form.get("From", "").strip()
    return _transact(database, lambda step: inbound_calls.inbound(
        step.session, call.cfg(), caller=caller, call_sid=call_sid, urls=call.urls,
        now=call.now()))


def verify(call: Call, database) -> str:
    """The code an inbound caller entered (``?case=&try=``)."""
    call_sid = call.call_sid()
    case_id = call.required_int("case")
    tries = call.int_arg("try", 0)
    return _transact(database, lambda step: inbound_calls.verify_code(
        step.session, call.cfg(), case_id=case_id, caller=call.form.get("From", "").strip(),
        call_sid=call_sid, digits=call.digits(), tries=tries, urls=call.urls, now=call.now()))


def consent(call: Call, database) -> str:
    def work(step: Step) -> str:
        attempt = step.find(call, with_units=True)
        if attempt is None:
            return flow.hangup()
        return interview.consent(step.session, call.cfg(), attempt, digits=call.digits(),
                                 tries=call.int_arg("try", 0), urls=call.urls, now=call.now())
    return _transact(database, work)


def answer(call: Call, database) -> str:
    def work(step: Step) -> str:
        attempt = step.find(call, with_units=True)
        if attempt is None:
            return flow.hangup()
        pos = call.required_int("pos")
        return interview.answer(step.session, call.cfg(), attempt, pos=pos,
                                digits=call.digits(), tries=call.int_arg("try", 0),
                                urls=call.urls, now=call.now())
    return _transact(database, work)


def comment(call: Call, database) -> str:
    duration = live.bounded_int(call.form.get("RecordingDuration"))

    def work(step: Step) -> str:
        attempt = step.find(call)
        if attempt is None:
            return flow.hangup()
        return interview.save_comment(
            step.session, attempt, recording_url=call.form.get("RecordingUrl") or None,
            recording_sid=call.form.get("RecordingSid") or None, duration=duration,
            now=call.now())
    return _transact(database, work)


def handoff(call: Call, database) -> str:
    """The ``<Dial>`` to an interviewer ended (``DialCallStatus``)."""
    def work(step: Step) -> str:
        attempt = step.find(call)
        if attempt is None:
            return flow.hangup()
        interviewer = call.required_int("interviewer")
        return handoffs.hand_over_result(
            step.session, call.cfg(), attempt, interviewer_id=interviewer,
            dial_status=call.form.get("DialCallStatus", "").strip(), now=call.now(),
            urls=call.urls)
    return _transact(database, work)


def callback(call: Call, database) -> str:
    """The key pressed at the call-back offer after a hand-over nobody took."""
    def work(step: Step) -> str:
        attempt = step.find(call)
        if attempt is None:
            return flow.hangup()
        return handoffs.callback_choice(step.session, call.cfg(), attempt,
                                        digits=call.digits(), tries=call.int_arg("try", 0),
                                        urls=call.urls, now=call.now())
    return _transact(database, work)


def status(call: Call, database) -> str:
    def run(step: Step) -> str:
        attempt = step.find(call)
        if attempt is None:  # an unknown call (an unknown caller's inbound call, say)
            step.commit()
            return flow.empty()
        if not call.form.get("CallStatus"):
            raise _bad(400, "CallStatus is missing")
        try:
            callstate.record_status(step.session, call.cfg(), attempt, call.form,
                                    token=call.token(), now=call.now())
            step.commit()
        except IntegrityError:  # the same callback, delivered twice at the same moment
            step.rollback()
        return flow.empty()
    return _again_if_connection_lost(database, run)


def amd(call: Call, database) -> str:
    def run(step: Step) -> str | None:
        attempt = step.find(call)
        if attempt is None:
            step.commit()
            return None
        answered_by = call.form.get("AnsweredBy", "").strip()
        if not answered_by:
            raise _bad(400, "AnsweredBy is missing")
        try:
            machine = callstate.record_amd(step.session, attempt, answered_by=answered_by,
                                           token=call.token(), now=call.now())
            step.commit()
        except IntegrityError:
            step.rollback()
            return None
        return attempt.call_sid if machine else None

    machine_call = _again_if_connection_lost(database, run)
    if machine_call:
        # no questions for a machine: end the call now (no message is left)
        from twilio.base.exceptions import TwilioException

        try:
            call.runtime.twilio_client().calls(machine_call).update(status="completed")
        except TwilioException as exc:
            log.warning("could not hang up %s: %s", machine_call, exc)
    return flow.empty()


#: ``/ivr/<name>`` -> its handler.
ROUTES = {"voice": voice, "inbound": inbound, "verify": verify, "consent": consent,
          "answer": answer, "comment": comment, "handoff": handoff, "callback": callback,
          "status": status, "amd": amd}


# --- the front ------------------------------------------------------------------------------


class IvrFront:
    """WSGI middleware: ``/ivr/...`` answered here, everything else by ``wsgi_app``.

    ``app`` is the Flask app whose settings, database and runtime the webhooks use
    (looked up on every request: tests swap them).
    """

    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
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
        handler = ROUTES.get(path[len(PREFIX):])
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
                raise _bad(403, "invalid X-Twilio-Signature")
        args = Form(_pairs(query.encode("latin-1").decode("utf-8", "replace"))) \
            if query else Form(())
        _check_fields(args)
        _check_fields(form)
        call = Call(args, form, environ, runtime_of(app), settings.public_url, context)
        return handler(call, database_of(app))


_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def _reason(code: int) -> str:
    return _PHRASES.get(code, "Unknown")


def mount(app) -> None:
    """Put the front before ``app``'s WSGI callable (:func:`minping.app.create_app`)."""
    app.wsgi_app = IvrFront(app, app.wsgi_app)
