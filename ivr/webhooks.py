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

The front that parses, checks and answers every ``/ivr/`` request before Flask is
:mod:`ivr.front`; this module holds the handlers it calls and their transactions.

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
import logging
from datetime import datetime

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from ivr import callstate, fastsql, flow, interview, live
from ivr import handoff as handoffs
from ivr import inbound as inbound_calls
from ivr.front import Call, IvrFront, bad
from minping.runtime import current_runtime

log = logging.getLogger(__name__)


def now() -> datetime:
    """The app's time (in a Flask request or application context)."""
    return current_runtime().now()


def survey_config():
    """The survey configuration (loaded once per app, :mod:`minping.runtime`)."""
    return current_runtime().survey_config()


def twilio_client():
    return current_runtime().twilio_client()


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
            raise bad(400, "CallStatus is missing")
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
            raise bad(400, "AnsweredBy is missing")
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


def mount(app) -> None:
    """Put the front before ``app``'s WSGI callable (:func:`minping.app.create_app`)."""
    app.wsgi_app = IvrFront(app, app.wsgi_app, ROUTES)
