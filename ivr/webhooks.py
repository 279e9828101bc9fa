"""Twilio webhooks (blueprint ``ivr``, mounted at ``/ivr``).

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

Every request must carry a valid ``X-Twilio-Signature`` computed over the
*public* URL -- ``MINPING_PUBLIC_URL`` plus the request's path and query -- and
the POSTed form, so the check holds behind a reverse proxy whatever host or
scheme the application sees.  Unsigned or mis-signed requests get 403 before
anything is read or written.  Development may turn the check off
(``MINPING_VERIFY_SIGNATURES=0``); production cannot.

The app's clock and REST client come from its runtime (:mod:`minping.runtime`)
and can be injected: the field-period simulation runs the webhooks on a virtual clock.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from datetime import datetime

from flask import Blueprint, Response, abort, current_app, g, request
from sqlalchemy.exc import DBAPIError, IntegrityError
from twilio.request_validator import RequestValidator

from ivr import callstate, fastsql, flow, interview, live
from ivr import handoff as handoffs
from ivr import inbound as inbound_calls
from minping.db import db_session, settings_of
from minping.runtime import current_runtime

log = logging.getLogger(__name__)

bp = Blueprint("ivr", __name__, url_prefix="/ivr")

TWIML = "text/xml"


def _twiml(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype=TWIML)


def now() -> datetime:
    return current_runtime().now()


def survey_config():
    """The survey configuration (loaded once per app, :mod:`minping.runtime`)."""
    return current_runtime().survey_config()


def twilio_client():
    return current_runtime().twilio_client()


def public_request_url() -> str:
    """The URL Twilio requested: the public URL, the path and the query as sent."""
    url = settings_of(current_app).public_url + request.path
    query = request.query_string.decode("latin-1")
    return f"{url}?{query}" if query else url


#: The largest request body a webhook accepts.  Twilio's requests are a few KB (a
#: status callback with every optional field is under 2 KB); a larger body is refused
#: with 413 before a byte of it is read.
MAX_BODY = 16 * 1024


def _refuse(code: int, description: str) -> Response:
    """A refusal sent without reading the request's body (the connection is closed)."""
    response = Response(f"{code} {description}\n", status=code, mimetype="text/plain")
    response.headers["Connection"] = "close"
    return response


def _validator(token: str) -> RequestValidator:
    validators = current_app.extensions.setdefault("ivr.validators", {})
    validator = validators.get(token)
    if validator is None:
        validator = validators[token] = RequestValidator(token)
    return validator


@bp.before_request
def _start_clock():
    g.ivr_started = time.perf_counter()


@bp.after_request
def _server_timing(response: Response) -> Response:
    """``Server-Timing: app;dur=<ms>``: the time this process spent on the request,
    from the blueprint's first step to the response (benchmarks read it beside the
    latency their clients see; gunicorn's queue is not in it)."""
    started = g.get("ivr_started")
    if started is not None:
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
    return response


@bp.before_request
def verify_signature():
    """Refuse oversized and unsigned requests first: before parsing, before the database.

    The order makes a refused request cost no more than an accepted one: the
    declared length is checked, then the presence of the signature header, and
    only then is the form (at most :data:`MAX_BODY` bytes) parsed for the HMAC.
    """
    length = request.content_length
    if length is not None and length > MAX_BODY:
        return _refuse(413, f"request body over {MAX_BODY} bytes")
    request.max_content_length = MAX_BODY  # a body sent without a length is cut there
    settings = settings_of(current_app)
    if not settings.verify_signatures:
        return None
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return _refuse(403, "Forbidden: missing X-Twilio-Signature")
    form = request.form if request.method == "POST" else {}
    validator = _validator(settings.twilio_auth_token)
    url = public_request_url()
    # One HMAC for a good request: the signature of the URL as Twilio requested it.
    # Anything else gets the library's full check (the URL with and without a port).
    if hmac.compare_digest(validator.compute_signature(url, form), signature):
        return None
    if not validator.validate(url, form, signature):
        abort(403, description="invalid X-Twilio-Signature")
    return None


#: Control characters (C0 but tab, line feed and carriage return; DEL): Twilio never
#: sends them, and the database refuses some (NUL).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Longest value kept of fields stored in columns of a fixed width.
_MAX_LENGTH = {"CallSid": 64, "RecordingSid": 64, "AccountSid": 64, "CallStatus": 24,
               "AnsweredBy": 32}


@bp.before_request
def refuse_malformed():
    """A request with a control character or an over-long SID is a 400, never a 500."""
    fields = list(request.args.items(multi=True))
    if request.method == "POST":
        fields += list(request.form.items(multi=True))
    for name, value in fields:
        bad = _CONTROL.search(str(name) + value)
        if bad is not None:
            abort(400, description=f"field {name!r} holds a control character "
                                   f"(U+{ord(bad.group()):04X})")
        limit = _MAX_LENGTH.get(name)
        if limit is not None and len(value) > limit:
            abort(400, description=f"field {name!r} is longer than {limit} characters")
    return None


def _urls() -> live.Urls:
    return live.Urls(settings_of(current_app).public_url)


def _int_arg(name: str, default: int | None = None) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        abort(400, description=f"query parameter {name!r} must be a whole number, got {value!r}")
    if number < 0 or number > 2**31 - 1:
        abort(400, description=f"query parameter {name!r} is out of range: {value!r}")
    return number


def _digits() -> str:
    digits = request.form.get("Digits", "").strip()
    return digits if len(digits) <= 32 else digits[:32]


def _attempt(*, with_units: bool = False) -> live.Live | None:
    """The request's attempt (``?attempt=`` and ``CallSid``), read in one statement."""
    call_sid = request.form.get("CallSid", "").strip()
    if not call_sid:
        abort(400, description="CallSid is missing")
    attempt_id = _int_arg("attempt")
    session = db_session()
    fastsql.begin_lazily(session.connection())  # PostgreSQL: BEGIN only when needed
    attempt = live.find_attempt(session, attempt_id=attempt_id, call_sid=call_sid,
                                with_units=with_units)
    context = g.setdefault("log_context", {})
    context["call_sid"] = call_sid
    if attempt is not None:
        context.update(attempt_id=attempt.id, case_id=attempt.case_id)
    g.ivr_attempt = attempt
    return attempt


def _commit(session) -> None:
    """Write the attempt's changed fields, then commit (Twilio hears back after this).

    On PostgreSQL, when the step wrote nothing else, the write runs alone: one
    statement that commits by itself before it answers (:mod:`ivr.fastsql`), and the
    ``COMMIT`` costs no round trip.
    """
    attempt = g.pop("ivr_attempt", None)
    if attempt is not None:
        fastsql.run_alone(session.connection(), attempt.save, session)
    session.commit()


def _transact(work) -> Response:
    """Run ``work()`` (reads the attempt, returns TwiML) and commit; a clash is retried once.

    Two deliveries of the same request at the same moment (Twilio retrying a slow
    webhook) can both try to insert the same answer: the loser's transaction is
    rolled back and run again -- reading the attempt again -- and then finds the
    answer already stored.  A lost database connection: :func:`_again_if_connection_lost`.
    """
    session = db_session()

    def run() -> Response:
        for tries in (1, 2):
            try:
                body = work()
                _commit(session)
                return _twiml(body)
            except IntegrityError:
                session.rollback()
                g.pop("ivr_attempt", None)
                if tries == 2:
                    raise
        raise AssertionError("unreachable")

    return _again_if_connection_lost(run)


def _again_if_connection_lost(run):
    """``run()``, and once more on a fresh connection if the database connection was lost.

    A transaction cut by a lost connection (PostgreSQL restarted, a fail-over, a
    pooled connection that died while idle: the pool does not ping connections in
    use a moment ago, :mod:`minping.db`) is run again: nothing of it was committed,
    or -- the ``COMMIT`` itself cut -- it was, and the webhooks' work is idempotent.
    """
    session = db_session()
    for tries in (1, 2):
        try:
            return run()
        except DBAPIError as exc:
            if isinstance(exc, IntegrityError) or not exc.connection_invalidated or tries == 2:
                raise
            log.warning("database connection lost; running the webhook's transaction again")
            session.rollback()
            g.pop("ivr_attempt", None)
    raise AssertionError("unreachable")


@bp.post("/voice")
def voice():
    def work():
        attempt = _attempt()
        if attempt is None:
            return flow.hangup()
        return interview.start_call(db_session(), survey_config(), attempt, urls=_urls(),
                                    now=now(), answered_by=request.form.get("AnsweredBy"),
                                    save=False)  # saved by _commit
    return _transact(work)


@bp.post("/inbound")
def inbound():
    call_sid = request.form.get("CallSid", "").strip()
    if not call_sid:
        abort(400, description="CallSid is missing")
    return _transact(lambda: inbound_calls.inbound(db_session(), survey_config(),
                                             caller=request.form.get("From", "").strip(),
                                             call_sid=call_sid, urls=_urls(), now=now()))


@bp.post("/verify")
def verify():
    """The code an inbound caller entered (``?case=&try=``)."""
    call_sid = request.form.get("CallSid", "").strip()
    if not call_sid:
        abort(400, description="CallSid is missing")
    case_id = _int_arg("case")
    if case_id is None:
        abort(400, description="query parameter 'case' is missing")
    return _transact(lambda: inbound_calls.verify_code(
        db_session(), survey_config(), case_id=case_id,
        caller=request.form.get("From", "").strip(), call_sid=call_sid, digits=_digits(),
        tries=_int_arg("try", 0), urls=_urls(), now=now()))


@bp.post("/consent")
def consent():
    def work():
        attempt = _attempt(with_units=True)
        if attempt is None:
            return flow.hangup()
        return interview.consent(db_session(), survey_config(), attempt, digits=_digits(),
                               tries=_int_arg("try", 0), urls=_urls(), now=now())
    return _transact(work)


@bp.post("/answer")
def answer():
    def work():
        attempt = _attempt(with_units=True)
        if attempt is None:
            return flow.hangup()
        pos = _int_arg("pos")
        if pos is None:
            abort(400, description="query parameter 'pos' is missing")
        return interview.answer(db_session(), survey_config(), attempt, pos=pos,
                              digits=_digits(), tries=_int_arg("try", 0), urls=_urls(),
                              now=now())
    return _transact(work)


@bp.post("/comment")
def comment():
    duration = live.bounded_int(request.form.get("RecordingDuration"))

    def work():
        attempt = _attempt()
        if attempt is None:
            return flow.hangup()
        return interview.save_comment(
            db_session(), attempt, recording_url=request.form.get("RecordingUrl") or None,
            recording_sid=request.form.get("RecordingSid") or None, duration=duration,
            now=now())
    return _transact(work)


@bp.post("/handoff")
def handoff():
    """The ``<Dial>`` to an interviewer ended (``DialCallStatus``)."""
    def work():
        attempt = _attempt()
        if attempt is None:
            return flow.hangup()
        interviewer = _int_arg("interviewer")
        if interviewer is None:
            abort(400, description="query parameter 'interviewer' is missing")
        return handoffs.hand_over_result(
            db_session(), survey_config(), attempt, interviewer_id=interviewer,
            dial_status=request.form.get("DialCallStatus", "").strip(), now=now(), urls=_urls())
    return _transact(work)


@bp.post("/callback")
def callback():
    """The key pressed at the call-back offer after a hand-over nobody took."""
    def work():
        attempt = _attempt()
        if attempt is None:
            return flow.hangup()
        return handoffs.callback_choice(db_session(), survey_config(), attempt,
                                        digits=_digits(), tries=_int_arg("try", 0),
                                        urls=_urls(), now=now())
    return _transact(work)


def _token() -> str | None:
    token = request.headers.get("I-Twilio-Idempotency-Token", "").strip()
    return token[:200] or None


@bp.post("/status")
def status():
    session = db_session()

    def run() -> Response:
        attempt = _attempt()
        if attempt is None:  # an unknown call (an unknown caller's inbound call, say)
            _commit(session)
            return _twiml(flow.empty())
        if not request.form.get("CallStatus"):
            abort(400, description="CallStatus is missing")
        try:
            callstate.record_status(session, survey_config(), attempt, request.form,
                                    token=_token(), now=now())
            _commit(session)
        except IntegrityError:  # the same callback, delivered twice at the same moment
            session.rollback()
        return _twiml(flow.empty())
    return _again_if_connection_lost(run)


@bp.post("/amd")
def amd():
    session = db_session()

    def run():
        attempt = _attempt()
        if attempt is None:
            _commit(session)
            return None
        answered_by = request.form.get("AnsweredBy", "").strip()
        if not answered_by:
            abort(400, description="AnsweredBy is missing")
        try:
            machine = callstate.record_amd(session, attempt, answered_by=answered_by,
                                           token=_token(), now=now())
            _commit(session)
        except IntegrityError:
            session.rollback()
            return None
        return attempt.call_sid if machine else None

    machine_call = _again_if_connection_lost(run)
    if machine_call:
        # no questions for a machine: end the call now (no message is left)
        from twilio.base.exceptions import TwilioException

        try:
            twilio_client().calls(machine_call).update(status="completed")
        except TwilioException as exc:
            current_app.logger.warning("could not hang up %s: %s", machine_call, exc)
    return _twiml(flow.empty())


@bp.errorhandler(400)
@bp.errorhandler(403)
@bp.errorhandler(413)
def _client_error(exc):
    return Response(f"{exc.code} {exc.name}: {exc.description}\n", status=exc.code,
                    mimetype="text/plain")
