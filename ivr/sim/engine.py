"""The simulator's discrete-event engine: calls, TwiML, callbacks, respondents.

Every call lives in a generator that yields how many seconds pass before it
resumes (ringing, a ``<Say>``, waiting for keys).  The engine keeps a heap of due
events; with a :class:`~ivr.sim.clock.VirtualClock` it jumps from one to the next
(``run_until_idle``, ``advance``), with a :class:`~ivr.sim.clock.RealClock` a
background thread (``start``/``stop``) runs them as they come due.

Threads: REST requests (from the HTTP server or the in-process client, possibly
re-entrant from inside a webhook the engine is sending) only change call state
under ``_lock`` and schedule events; only the thread that processes events runs
call generators and sends webhooks, never while holding ``_lock``.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import logging
import math
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urljoin

import numpy as np
from twilio.request_validator import RequestValidator

from ivr.gateway import twilio_refusal
from ivr.sim.behaviour import BehaviourModel, Persona, scripted_entry
from ivr.sim.clock import Clock, VirtualClock
from ivr.sim.records import (
    CallbackFaults,
    Exchange,
    HeldCallback,
    Recording,
    SimCall,
    SimMessage,
    TranscriptEvent,
    WebhookFault,
)
from ivr.sim.transport import (
    WebhookRequest,
    WebhookTimeout,
    WebhookTransport,
    WebhookTransportError,
    query_url,
)

_logger = logging.getLogger("ivr.simulator")
API_VERSION = "2010-04-01"
APPLICATION_ERROR_TEXT = "We are sorry, an application error has occurred. Goodbye."
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_OTHER_ADDRESS = re.compile(r"^(client:|sip:)\S+$")

Steps = Generator[float, None, Any]


class ApiError(Exception):
    """A REST request Twilio would refuse; rendered as Twilio's JSON error."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
                "status": self.status}


class _Event:
    """A scheduled callable; a cancelled one is skipped without moving the clock."""

    __slots__ = ("fn", "cancelled")

    def __init__(self, fn: Callable[[], None]):
        self.fn = fn
        self.cancelled = False


class _Goto:
    """A verb's outcome: request this URL and play what it returns."""

    def __init__(self, url: str, method: str, params: Mapping[str, str], purpose: str):
        self.url, self.method, self.params, self.purpose = url, method, dict(params), purpose


_END = object()  # a verb's outcome: the call is over


def valid_address(number: str) -> bool:
    """E.164 phone number, or a ``client:``/``sip:`` address."""
    return bool(_E164.match(number) or _OTHER_ADDRESS.match(number))


def _last(form: Mapping[str, list[str]], name: str) -> str | None:
    """The last value of a form field (Twilio takes the last of repeated ones)."""
    values = form.get(name)
    return values[-1] if values else None


def _bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() == "true"


def _int(value: str | None, default: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        return int(float(value))
    except ValueError:
        return default


class Simulator:
    """A local stand-in for Twilio Programmable Voice and SMS.

    Parameters
    ----------
    account_sid, auth_token
        The credentials the REST API accepts; ``auth_token`` signs webhooks.
    rng
        Source of every random choice (personas, ring times, keys).
    transport
        How webhooks reach the application (:mod:`ivr.sim.transport`).
    clock
        :class:`~ivr.sim.clock.VirtualClock` (default) or ``RealClock``.
    behaviour
        The respondent model.
    calls_per_second, rate_burst
        If given, creating calls faster than this (token bucket of ``rate_burst``
        calls, refilled on ``clock``) answers HTTP 429, Twilio error 20429.
    api_base_url
        The public address of the simulated REST API, used in resource URIs and
        recording URLs (the HTTP server sets it when started).
    webhook_timeout
        Seconds Twilio waits for a webhook (15).
    max_documents_per_call
        A call that fetches more TwiML documents than this ends with an
        application error (guards against redirect loops).
    """

    #: Refuse what Twilio refuses for mainland China (:func:`ivr.gateway.twilio_refusal`):
    #: a +86 caller ID on calls to +86 numbers without ``Byoc``, SMS to +86 numbers
    #: without ``MessagingServiceSid``.  Off by default (the simulator's number is +86).
    china_rules: bool = False

    def __init__(self, *, account_sid: str, auth_token: str, rng: np.random.Generator,
                 transport: WebhookTransport, clock: Clock | None = None,
                 behaviour: BehaviourModel | None = None,
                 calls_per_second: float | None = None, rate_burst: int = 1,
                 api_base_url: str = "https://api.twilio.com", webhook_timeout: float = 15.0,
                 max_documents_per_call: int = 200):
        if not re.fullmatch(r"AC[0-9a-fA-F]{32}", account_sid):
            raise ValueError(f"account_sid must be 'AC' and 32 hex digits, got {account_sid!r}")
        if not auth_token:
            raise ValueError("auth_token is empty")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if calls_per_second is not None and calls_per_second <= 0:
            raise ValueError(f"calls_per_second must be > 0, got {calls_per_second!r}")
        if rate_burst < 1:
            raise ValueError(f"rate_burst must be >= 1, got {rate_burst!r}")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.rng = rng
        self.transport = transport
        self.clock: Clock = clock if clock is not None else VirtualClock()
        self.behaviour = behaviour or BehaviourModel()
        self.calls_per_second = calls_per_second
        self.rate_burst = rate_burst
        self.api_base_url = api_base_url.rstrip("/")
        self.webhook_timeout = webhook_timeout
        self.max_documents_per_call = max_documents_per_call

        self.calls: dict[str, SimCall] = {}
        self.messages: dict[str, SimMessage] = {}
        self.recordings: dict[str, Recording] = {}
        self.exchanges: list[Exchange] = []
        self.api_requests: list[tuple[datetime, str, str, int]] = []
        self.webhook_faults: list[WebhookFault] = []
        self.errors: list[BaseException] = []
        self._personas: dict[str, Persona] = {}
        self._callback_faults: dict[str | None, CallbackFaults] = {}
        self._validator = RequestValidator(auth_token)
        self._sid_counter = itertools.count(1)
        self._event_counter = itertools.count()
        self._heap: list[tuple[datetime, int, _Event]] = []
        self._lock = threading.RLock()
        self._wakeup = threading.Condition(self._lock)
        self._run_lock = threading.RLock()
        self._bucket = float(rate_burst)
        self._bucket_time: datetime | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # --- configuration -------------------------------------------------------------

    def set_persona(self, number: str, persona: Persona) -> None:
        """Fix how ``number`` behaves (instead of drawing a persona for it)."""
        with self._lock:
            self._personas[number] = persona

    def persona(self, number: str) -> Persona:
        """The persona of ``number`` (drawn from the model on first use)."""
        with self._lock:
            if number not in self._personas:
                self._personas[number] = self.behaviour.draw_persona(self.rng)
            return self._personas[number]

    def set_callback_faults(self, faults: CallbackFaults, *, to: str | None = None) -> None:
        """Apply ``faults`` to calls created from now on to ``to`` (or to every number)."""
        with self._lock:
            self._callback_faults[to] = faults

    def _faults_for(self, number: str) -> CallbackFaults:
        return self._callback_faults.get(number, self._callback_faults.get(None, CallbackFaults()))

    def add_webhook_fault(self, fault: WebhookFault) -> None:
        with self._lock:
            self.webhook_faults.append(fault)

    # --- inspection ----------------------------------------------------------------

    def call(self, sid: str) -> SimCall:
        return self.calls[sid]

    def exchanges_for(self, call_sid: str, purpose: str | None = None) -> list[Exchange]:
        return [x for x in list(self.exchanges)
                if x.call_sid == call_sid and (purpose is None or x.purpose == purpose)]

    @property
    def pending_events(self) -> int:
        with self._lock:
            return sum(not event.cancelled for _, _, event in self._heap)

    # --- running -------------------------------------------------------------------

    def _schedule(self, delay: float, fn: Callable[[], None]) -> _Event:
        event = _Event(fn)
        with self._lock:
            due = self.clock.now() + timedelta(seconds=max(0.0, delay))
            heapq.heappush(self._heap, (due, next(self._event_counter), event))
            self._wakeup.notify_all()
        return event

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)

    def _run_next(self, until: datetime | None = None, *, wait: bool = True) -> bool:
        with self._run_lock:
            with self._lock:
                self._drop_cancelled()
                if not self._heap:
                    return False
                due = self._heap[0][0]
                if until is not None and due > until:
                    return False
                if not wait and due > self.clock.now():
                    return False
                _, _, event = heapq.heappop(self._heap)
            if isinstance(self.clock, VirtualClock):
                self.clock.advance_to(due)
            else:
                pause = (due - self.clock.now()).total_seconds()
                if pause > 0:
                    time.sleep(pause)
            event.fn()
            return True

    def run_until_idle(self, *, max_events: int = 1_000_000) -> int:
        """Process events until none are left; returns how many ran.

        With a virtual clock the clock jumps to each event; with a real clock
        this sleeps until each is due.
        """
        if self._thread is not None:
            raise RuntimeError("the background thread is running; use wait_until_idle()")
        count = 0
        while self._run_next():
            count += 1
            if count >= max_events:
                raise RuntimeError(f"still busy after {max_events} events (a loop?)")
        return count

    def advance(self, seconds: float) -> int:
        """Run every event due within ``seconds`` and move a virtual clock that far."""
        if not isinstance(self.clock, VirtualClock):
            raise TypeError("advance() needs a VirtualClock")
        target = self.clock.now() + timedelta(seconds=seconds)
        count = 0
        while self._run_next(until=target):
            count += 1
        self.clock.advance_to(target)
        return count

    def start(self) -> None:
        """Process events in a background thread as they come due (real clock)."""
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="twilio-simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        with self._lock:
            self._stopping = True
            self._wakeup.notify_all()
        thread.join(timeout=30)
        self._thread = None

    def wait_until_idle(self, timeout: float = 30.0) -> None:
        """With the background thread: block until no event is left (or fail)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._run_lock, self._lock:
                if self.errors:
                    raise RuntimeError("a simulator event failed") from self.errors[0]
                self._drop_cancelled()
                if not self._heap:
                    return
            time.sleep(0.01)
        raise TimeoutError(f"simulator still busy after {timeout} s")

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._drop_cancelled()
                if not self._heap:
                    self._wakeup.wait(0.5)
                    continue
                pause = (self._heap[0][0] - self.clock.now()).total_seconds()
                if pause > 0:
                    self._wakeup.wait(min(pause, 0.5))
                    continue
            try:
                self._run_next(wait=False)
            except Exception as exc:  # keep serving other calls; wait_until_idle re-raises
                _logger.exception("simulator event failed")
                with self._lock:
                    self.errors.append(exc)

    # --- ids -------------------------------------------------------------------------

    def _sid(self, prefix: str) -> str:
        digest = hashlib.sha256(f"{self.account_sid}:{prefix}:{next(self._sid_counter)}".encode())
        return prefix + digest.hexdigest()[:32]

    def _token(self) -> str:
        return f"{self.account_sid}-{hashlib.sha256(self._sid('IT').encode()).hexdigest()[:32]}"

    # --- REST-facing services ----------------------------------------------------------

    def _take_rate_token(self) -> None:
        if self.calls_per_second is None:
            return
        now = self.clock.now()
        if self._bucket_time is not None:
            elapsed = (now - self._bucket_time).total_seconds()
            self._bucket = min(float(self.rate_burst), self._bucket + elapsed * self.calls_per_second)
        self._bucket_time = now
        if self._bucket < 1.0:
            raise ApiError(429, 20429, "Too Many Requests")
        self._bucket -= 1.0

    def create_call(self, form: Mapping[str, list[str]]) -> SimCall:
        """``POST /Accounts/{sid}/Calls.json`` (form values are lists, as repeated)."""
        one = functools.partial(_last, form)
        to, from_ = one("To"), one("From")
        if not to:
            raise ApiError(400, 21201, "No 'To' number is specified")
        if not valid_address(to):
            raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not from_:
            raise ApiError(400, 21213, "No 'From' number is specified")
        if not valid_address(from_):
            raise ApiError(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        refused = self.china_rules and twilio_refusal(kind="call", to=to, from_=from_,
                                                      byoc=one("Byoc"))
        if refused:
            raise ApiError(400, 21215, f"Call to {to} not allowed: {refused}")
        url, twiml = one("Url"), one("Twiml")
        if not url and not twiml:
            raise ApiError(400, 21205, "Url parameter is required.")
        if url and not re.match(r"^https?://", url):
            raise ApiError(400, 21205, f"Url is not a valid URL: {url}")
        events = frozenset(e.strip().lower() for v in form.get("StatusCallbackEvent", [])
                           for e in v.split(" ") if e.strip())
        unknown = events - set(CALL_EVENTS)
        if unknown:
            raise ApiError(400, 21626, f"Invalid StatusCallbackEvent: {sorted(unknown)[0]}")
        timeout = _int(one("Timeout"), 60)
        timeout = min(600, max(5, timeout))
        time_limit = _int(one("TimeLimit"), 14400)
        if time_limit < 1:
            raise ApiError(400, 21218, f"Invalid TimeLimit: {one('TimeLimit')}")
        machine_detection = one("MachineDetection")
        if machine_detection and machine_detection.lower() not in ("enable", "detectmessageend"):
            raise ApiError(400, 21624, f"Invalid MachineDetection: {machine_detection}")
        with self._lock:
            self._take_rate_token()
            now = self.clock.now()
            call = SimCall(
                sid=self._sid("CA"), account_sid=self.account_sid, to=to, from_=from_,
                direction="outbound-api", url=url, method=(one("Method") or "POST").upper(),
                twiml=twiml, fallback_url=one("FallbackUrl"),
                fallback_method=(one("FallbackMethod") or "POST").upper(),
                status_callback=one("StatusCallback"),
                status_callback_method=(one("StatusCallbackMethod") or "POST").upper(),
                status_callback_events=events or frozenset({"completed"}),
                timeout=timeout, time_limit=time_limit, machine_detection=machine_detection,
                async_amd=_bool(one("AsyncAmd"), False),
                async_amd_callback=one("AsyncAmdStatusCallback"),
                async_amd_method=(one("AsyncAmdStatusCallbackMethod") or "POST").upper(),
                record=_bool(one("Record"), False),
                recording_status_callback=one("RecordingStatusCallback"),
                date_created=now, date_updated=now, persona=self.persona(to),
                callback_faults=self._faults_for(to),
            )
            self.calls[call.sid] = call
            self._note(call, "status", text="queued")
            self._start(call, self._outbound_life(call))
            return call

    def update_call(self, sid: str, form: Mapping[str, list[str]]) -> SimCall:
        """``POST /Calls/{sid}.json``: ``Status=completed|canceled`` or ``Url``/``Twiml``."""
        call = self.get_call(sid)
        one = functools.partial(_last, form)
        status, url, twiml = one("Status"), one("Url"), one("Twiml")
        with self._lock:
            if one("StatusCallback"):
                call.status_callback = one("StatusCallback")
                call.status_callback_method = (one("StatusCallbackMethod") or "POST").upper()
            if status is not None:
                if status not in ("completed", "canceled"):
                    raise ApiError(400, 21218, f"Invalid Status: {status}")
                if call.ended or call.end_requested:
                    return call
                if call.status in ("queued", "initiated", "ringing"):
                    self._request_end(call, "canceled", "canceled by the REST API")
                elif call.status == "in-progress" and status == "completed":
                    self._request_end(call, "completed", "hung up by the REST API")
                return call
            if url or twiml:
                if call.ended or call.end_requested:
                    raise ApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
                if url and not re.match(r"^https?://", url):
                    raise ApiError(400, 21205, f"Url is not a valid URL: {url}")
                method = (one("Method") or "POST").upper()
                if call.status == "in-progress":
                    call.pending_redirect = (url, method, twiml)
                    self._schedule(0, lambda: self._apply_api(call))
                else:
                    call.url, call.method, call.twiml = url, method, twiml
            return call

    def list_calls(self, *, status: str | None = None, to: str | None = None,
                   from_: str | None = None, parent_call_sid: str | None = None) -> list[SimCall]:
        with self._lock:
            calls = [c for c in self.calls.values()
                     if (status is None or c.status == status) and (to is None or c.to == to)
                     and (from_ is None or c.from_ == from_)
                     and (parent_call_sid is None or c.parent_call_sid == parent_call_sid)]
        return sorted(calls, key=lambda c: c.date_created, reverse=True)

    def _lookup(self, store: Mapping[str, Any], collection: str, sid: str) -> Any:
        with self._lock:
            item = store.get(sid)
        if item is None:
            raise ApiError(404, 20404, f"The requested resource /{API_VERSION}/Accounts/"
                                       f"{self.account_sid}/{collection}/{sid}.json was not found")
        return item

    def get_call(self, sid: str) -> SimCall:
        return self._lookup(self.calls, "Calls", sid)

    def create_message(self, form: Mapping[str, list[str]]) -> SimMessage:
        """``POST /Accounts/{sid}/Messages.json``: stored; status callbacks sent, delivered."""
        one = functools.partial(_last, form)
        to, from_, service = one("To"), one("From"), one("MessagingServiceSid")
        body = one("Body")
        if not to:
            raise ApiError(400, 21604, "A 'To' phone number is required.")
        if not _E164.match(to):
            raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not from_ and not service:
            raise ApiError(400, 21603, "A 'From' phone number is required.")
        refused = self.china_rules and twilio_refusal(kind="sms", to=to, from_=from_,
                                                      messaging_service=service)
        if refused:
            raise ApiError(400, 21612, f"Message to {to} not sent: {refused}")
        if not body and not form.get("MediaUrl"):
            raise ApiError(400, 21602, "Message body is required.")
        with self._lock:
            now = self.clock.now()
            message = SimMessage(sid=self._sid("SM"), account_sid=self.account_sid, to=to,
                                 from_=from_, messaging_service_sid=service, body=body or "",
                                 status="queued", status_callback=one("StatusCallback"),
                                 date_created=now, date_updated=now)
            self.messages[message.sid] = message
        self._schedule(1.0, lambda: self._message_status(message, "sent"))
        self._schedule(3.0, lambda: self._message_status(message, "delivered"))
        return message

    def list_messages(self, *, to: str | None = None) -> list[SimMessage]:
        with self._lock:
            messages = [m for m in self.messages.values() if to is None or m.to == to]
        return sorted(messages, key=lambda m: m.date_created, reverse=True)

    def record_api_request(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.api_requests.append((self.clock.now(), method, path, status))

    def get_message(self, sid: str) -> SimMessage:
        return self._lookup(self.messages, "Messages", sid)

    def get_recording(self, sid: str) -> Recording:
        return self._lookup(self.recordings, "Recordings", sid)

    def _message_status(self, message: SimMessage, status: str) -> None:
        with self._lock:
            message.status = status
            message.date_updated = self.clock.now()
            if status == "sent":
                message.date_sent = message.date_updated
        if message.status_callback:
            params = {"MessageSid": message.sid, "SmsSid": message.sid,
                      "AccountSid": self.account_sid, "From": message.from_ or "",
                      "To": message.to, "MessageStatus": status, "SmsStatus": status,
                      "ApiVersion": API_VERSION}
            self._deliver("message-status", None, "POST", message.status_callback, params)

    def incoming_call(self, *, from_: str, to: str, url: str, method: str = "POST",
                      status_callback: str | None = None,
                      status_callback_events: Iterable[str] = ("completed",),
                      status_callback_method: str = "POST",
                      fallback_url: str | None = None, time_limit: int = 14400) -> str:
        """A respondent calls ``to`` (the survey number); returns the CallSid.

        The caller behaves as the persona of ``from_``.  As at Twilio, the first
        webhook has ``CallStatus=ringing`` and ``Direction=inbound``; a leading
        ``<Reject>`` leaves the call unanswered.
        """
        if not valid_address(from_) or not valid_address(to):
            raise ValueError(f"incoming_call needs E.164 numbers, got from_={from_!r} to={to!r}")
        events = frozenset(status_callback_events)
        if events - set(CALL_EVENTS):
            raise ValueError(f"unknown status callback events: {sorted(events - set(CALL_EVENTS))}")
        with self._lock:
            now = self.clock.now()
            call = SimCall(
                sid=self._sid("CA"), account_sid=self.account_sid, to=to, from_=from_,
                direction="inbound", url=url, method=method.upper(),
                fallback_url=fallback_url, status_callback=status_callback,
                status_callback_method=status_callback_method.upper(),
                status_callback_events=events, time_limit=time_limit,
                date_created=now, date_updated=now, persona=self.persona(from_),
                callback_faults=self._faults_for(from_),
            )
            self.calls[call.sid] = call
            self._start(call, self._inbound_life(call))
            return call.sid

    # --- call control -------------------------------------------------------------------

    def _start(self, call: SimCall, coroutine: Steps) -> None:
        with self._lock:
            call.generation += 1
            call.coroutine = coroutine
            generation = call.generation
        call.step_event = self._schedule(0, lambda: self._step(call, generation))

    def _step(self, call: SimCall, generation: int) -> None:
        if call.ended or call.generation != generation or call.coroutine is None:
            return
        try:
            delay = next(call.coroutine)
        except StopIteration:
            return
        if not call.ended and call.generation == generation:
            call.step_event = self._schedule(delay, lambda: self._step(call, generation))

    def _request_end(self, call: SimCall, status: str, reason: str) -> None:
        with self._lock:
            if call.ended or call.end_requested:
                return
            call.end_requested = (status, reason)
            call.status = status
            call.date_updated = self.clock.now()
        self._schedule(0, lambda: self._apply_api(call))

    def _end_later(self, call: SimCall, seconds: float, status: str, reason: str) -> None:
        def fire() -> None:
            if not call.ended and call.status == "in-progress":
                call.end_requested = (status, reason)
                self._apply_api(call)

        call.timers.append(self._schedule(seconds, fire))

    def _apply_api(self, call: SimCall) -> None:
        """Carry out a hang-up or redirect asked for outside the call's generator."""
        if call.ended:
            return
        if call.end_requested:
            status, reason = call.end_requested
            self._close(call)
            self._finish(call, status, reason)
        elif call.pending_redirect:
            url, method, twiml = call.pending_redirect
            call.pending_redirect = None
            self._close(call)
            self._note(call, "redirect", url=url, detail="REST API")
            self._start(call, self._play(call, url, method, twiml=twiml, purpose="redirect"))

    def _close(self, call: SimCall) -> None:
        with self._lock:
            coroutine, call.coroutine = call.coroutine, None
            call.generation += 1
            if call.step_event is not None:
                call.step_event.cancelled = True
                call.step_event = None
        if coroutine is not None:
            coroutine.close()

    def _interrupted(self, call: SimCall) -> bool:
        return call.ended or call.end_requested is not None or call.pending_redirect is not None

    def _note(self, call: SimCall, kind: str, **fields: Any) -> None:
        call.transcript.append(TranscriptEvent(at=self.clock.now(), kind=kind, **fields))

    def _set_status(self, call: SimCall, status: str) -> None:
        with self._lock:
            call.status = status
            call.date_updated = self.clock.now()
        self._note(call, "status", text=status)

    # --- life of a call ----------------------------------------------------------------

    def _outbound_life(self, call: SimCall) -> Steps:
        model, persona = self.behaviour, call.persona
        yield 0.2
        self._set_status(call, "initiated")
        self._status_callback(call, "initiated")
        outcome = model.attempt_outcome(persona, self.clock.now(), self.rng)
        if outcome == "failed":
            yield 1.5
            call.sip_response_code = 404
            self._finish(call, "failed", "number not in service")
            return
        if outcome == "busy":
            yield 2.0
            call.sip_response_code = 486
            self._finish(call, "busy", "line busy")
            return
        yield 0.3
        self._set_status(call, "ringing")
        self._status_callback(call, "ringing")
        ring = model.ring_time(persona, self.rng)
        if outcome == "no-answer" or ring >= call.timeout:
            yield float(call.timeout)
            call.sip_response_code = 487
            self._finish(call, "no-answer", "nobody answered")
            return
        yield ring
        self._answer(call)
        extra: dict[str, str] = {}
        if call.machine_detection:
            answered_by, seconds = self._amd_result(call)
            if call.async_amd:
                call.timers.append(self._schedule(
                    seconds, lambda: self._amd_callback(call, answered_by, seconds)))
            else:
                yield seconds
                self._amd_done(call, answered_by, seconds)
                extra = {"AnsweredBy": answered_by,
                         "MachineDetectionDuration": str(call.machine_detection_ms)}
        yield from self._play(call, call.url, call.method, twiml=call.twiml, params=extra,
                              purpose="voice")

    def _inbound_life(self, call: SimCall) -> Steps:
        self._set_status(call, "ringing")
        self._status_callback(call, "initiated")
        self._status_callback(call, "ringing")
        yield 0.5
        doc, doc_url = yield from self._fetch_document(call, call.url, call.method, {}, "voice")
        if self._interrupted(call) or doc is None:
            return
        children = list(doc)
        if children and children[0].tag == "Reject":
            reason = children[0].get("reason", "rejected")
            self._note(call, "reject", detail=reason)
            self._finish(call, "busy" if reason == "busy" else "no-answer", "rejected")
            return
        self._answer(call)
        yield from self._play(call, doc_url, call.method, doc=doc)

    def _answer(self, call: SimCall) -> None:
        self._set_status(call, "in-progress")
        now = self.clock.now()
        call.answered_at = call.start_time = now
        self._status_callback(call, "answered")
        self._end_later(call, call.time_limit, "completed", "time limit")
        persona = call.persona
        if persona.max_call_seconds is not None:
            self._end_later(call, persona.max_call_seconds, "completed", "respondent hung up")
        elif persona.line == "machine":
            self._end_later(call, self.behaviour.machine_seconds, "completed", "machine hung up")
        elif persona.line == "fax":
            self._end_later(call, self.behaviour.fax_seconds, "completed", "fax hung up")

    def _amd_result(self, call: SimCall) -> tuple[str, float]:
        line = call.persona.line
        end_detection = (call.machine_detection or "").lower() == "detectmessageend"
        if line == "machine":
            answered_by = call.persona.answered_by or (
                "machine_end_beep" if end_detection else "machine_start")
            low, high = (8.0, 20.0) if answered_by.startswith("machine_end") else (3.0, 5.0)
        elif line == "fax":
            answered_by, (low, high) = "fax", (2.0, 4.0)
        else:
            answered_by, (low, high) = call.persona.answered_by or "human", (1.5, 3.5)
        return answered_by, float(self.rng.uniform(low, high))

    def _amd_done(self, call: SimCall, answered_by: str, seconds: float) -> None:
        call.answered_by = answered_by
        call.machine_detection_ms = int(round(seconds * 1000))
        self._note(call, "amd", text=answered_by)

    def _amd_callback(self, call: SimCall, answered_by: str, seconds: float) -> None:
        if call.ended or call.status != "in-progress":
            return
        self._amd_done(call, answered_by, seconds)
        if call.async_amd_callback:
            params = {"CallSid": call.sid, "AccountSid": self.account_sid,
                      "AnsweredBy": answered_by,
                      "MachineDetectionDuration": str(call.machine_detection_ms)}
            self._deliver("amd-callback", call.sid, call.async_amd_method,
                          call.async_amd_callback, params)

    def _finish(self, call: SimCall, status: str, reason: str) -> None:
        """End the call (once): final status, recording, the completed callback."""
        with self._lock:
            if call.ended:
                return
            call.ended = True
            call.end_requested = None
            call.pending_redirect = None
            now = self.clock.now()
            call.status = status
            call.end_time = call.date_updated = now
            call.hangup_reason = reason
        for timer in call.timers:
            timer.cancelled = True
        call.timers.clear()
        self._note(call, "hangup", detail=reason)
        self._note(call, "status", text=status)
        for child_sid in call.children:
            child = self.calls[child_sid]
            if not child.ended:
                self._finish(child, "completed", "parent call ended")
        if call.record and call.answered_at is not None:
            recording = self._make_recording(call, call.duration, "OutboundAPI")
            if call.recording_status_callback:
                self._deliver("recording-status", call.sid, "POST",
                              call.recording_status_callback,
                              {"AccountSid": self.account_sid, "CallSid": call.sid,
                               "RecordingSid": recording.sid, "RecordingUrl": recording.url,
                               "RecordingStatus": "completed",
                               "RecordingDuration": str(recording.duration),
                               "RecordingChannels": "1", "RecordingSource": "OutboundAPI"})
        self._status_callback(call, "completed")
        self._release_held(call)

    def _make_recording(self, call: SimCall, duration: int, source: str) -> Recording:
        sid = self._sid("RE")
        url = f"{self.api_base_url}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{sid}"
        recording = Recording(sid=sid, account_sid=self.account_sid, call_sid=call.sid,
                              duration=duration, date_created=self.clock.now(), url=url,
                              source=source)
        with self._lock:
            self.recordings[sid] = recording
        return recording

    # --- requests to the application -----------------------------------------------------

    def _call_params(self, call: SimCall) -> dict[str, str]:
        params = {"CallSid": call.sid, "AccountSid": self.account_sid, "From": call.from_,
                  "To": call.to, "Caller": call.from_, "Called": call.to,
                  "CallStatus": call.status, "ApiVersion": API_VERSION,
                  "Direction": call.direction}
        if call.parent_call_sid:
            params["ParentCallSid"] = call.parent_call_sid
        if call.answered_by:
            params["AnsweredBy"] = call.answered_by
        return params

    def _status_callback(self, call: SimCall, event: str) -> None:
        if not call.status_callback or event not in call.status_callback_events:
            return
        params = self._call_params(call)
        params["CallbackSource"] = "call-progress-events"
        params["SequenceNumber"] = str(call.sequence)
        params["Timestamp"] = format_datetime(self.clock.now())
        call.sequence += 1
        if event == "completed":
            params["CallDuration"] = str(call.duration)
            params["Duration"] = str(math.ceil(call.duration / 60))
        if call.sip_response_code is not None and call.status in ("failed", "busy", "no-answer"):
            params["SipResponseCode"] = str(call.sip_response_code)
        if call.machine_detection_ms is not None:
            params["MachineDetectionDuration"] = str(call.machine_detection_ms)
        held = HeldCallback(event, call.status_callback_method, call.status_callback,
                            tuple(params.items()), self._token())
        faults = call.callback_faults
        if event in faults.drop:
            self._record(Exchange(self.clock.now(), "status-callback", call.sid, held.method,
                                  held.url, held.params, (), None, "", "dropped", "drop"))
            return
        if faults.holds:
            call.held.append(held)
            return
        self._send_held(call, held)

    def _send_held(self, call: SimCall, held: HeldCallback) -> None:
        copies = 2 if held.event in call.callback_faults.duplicate else 1
        for i in range(copies):
            self._deliver("status-callback", call.sid, held.method, held.url, dict(held.params),
                          token=held.token, fault="duplicate" if i else None)

    def _release_held(self, call: SimCall) -> None:
        faults = call.callback_faults
        held, call.held = call.held, []
        if not held:
            return
        if faults.reorder:
            held.reverse()

        def release() -> None:
            for item in held:
                self._send_held(call, item)

        self._schedule(faults.delay_seconds, release)

    def _deliver(self, purpose: str, call_sid: str | None, method: str, url: str,
                 params: Mapping[str, str], *, token: str | None = None,
                 fault: str | None = None) -> tuple[Exchange, bool]:
        """Sign and send one request; returns the exchange and whether it timed out."""
        method = method.upper()
        items = tuple((k, str(v)) for k, v in params.items())
        if method == "GET":
            signature = self._validator.compute_signature(query_url(url, items), {})
        else:
            signature = self._validator.compute_signature(url, dict(items))
        headers = (("X-Twilio-Signature", signature),
                   ("I-Twilio-Idempotency-Token", token or self._token()),
                   ("User-Agent", "TwilioProxy/1.1"), ("Accept", "*/*"))
        injected = None
        with self._lock:
            for candidate in self.webhook_faults:
                if candidate.matches(purpose, url, call_sid):
                    candidate.times -= 1
                    injected = candidate
                    break
        at = self.clock.now()
        if injected is not None and injected.kind == "error":
            exchange = Exchange(at, purpose, call_sid, method, url, items, headers,
                                injected.status, "", "http-error", "error")
            self._record(exchange)
            return exchange, False
        request = WebhookRequest(method, url, items, headers, self.webhook_timeout)
        try:
            response = self.transport.send(request)
        except WebhookTimeout as exc:
            exchange = Exchange(at, purpose, call_sid, method, url, items, headers, None,
                                str(exc), "timeout", fault)
            self._record(exchange)
            return exchange, True
        except WebhookTransportError as exc:
            exchange = Exchange(at, purpose, call_sid, method, url, items, headers, None,
                                str(exc), "transport-error", fault)
            self._record(exchange)
            return exchange, False
        if injected is not None:
            exchange = Exchange(at, purpose, call_sid, method, url, items, headers,
                                response.status_code, response.body, "timeout", "timeout")
            self._record(exchange)
            return exchange, True
        outcome = "ok" if 200 <= response.status_code < 300 else "http-error"
        exchange = Exchange(at, purpose, call_sid, method, url, items, headers,
                            response.status_code, response.body, outcome, fault)
        self._record(exchange)
        return exchange, False

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    # --- TwiML -----------------------------------------------------------------------

    def _fetch_document(self, call: SimCall, url: str, method: str, extra: Mapping[str, str],
                        purpose: str) -> Generator[float, None, tuple[ET.Element | None, str]]:
        """Request TwiML; on failure try the fallback URL, else play Twilio's error.

        Returns ``(document, url)``; ``document`` is None when the call ended.
        """
        call.documents += 1
        if call.documents > self.max_documents_per_call:
            yield from self._application_error(call, "12400", "too many TwiML documents")
            return None, url
        self._note(call, "fetch", url=url, detail=purpose)
        params = self._call_params(call) | dict(extra)
        exchange, timed_out = self._deliver(purpose, call.sid, method, url, params)
        if timed_out:
            yield self.webhook_timeout if isinstance(self.clock, VirtualClock) else 0.0
        if self._interrupted(call):
            return None, url
        code, why = None, ""
        if exchange.outcome != "ok":
            code, why = "11200", f"HTTP retrieval failure ({exchange.outcome}: " \
                                 f"{exchange.status_code})"
        else:
            try:
                doc = ET.fromstring(exchange.body)
            except ET.ParseError as exc:
                doc, code, why = None, "12100", f"document parse failure: {exc}"
            if doc is not None and doc.tag != "Response":
                code, why = "12100", f"document root is <{doc.tag}>, not <Response>"
            if code is None:
                return doc, url
        self._note(call, "error", text=code, url=url, detail=why)
        if call.fallback_url and purpose != "fallback":
            fallback = {"ErrorCode": code, "ErrorUrl": url}
            return (yield from self._fetch_document(call, call.fallback_url, call.fallback_method,
                                                    fallback, "fallback"))
        yield from self._application_error(call, code, why)
        return None, url

    def _application_error(self, call: SimCall, code: str, why: str) -> Steps:
        self._note(call, "say", text=APPLICATION_ERROR_TEXT, detail="Twilio application error")
        yield self.behaviour.say_seconds(APPLICATION_ERROR_TEXT)
        if not self._interrupted(call):
            self._finish(call, "completed" if call.answered_at else "failed",
                         f"application error {code}: {why}")

    def _play(self, call: SimCall, url: str | None, method: str, *, twiml: str | None = None,
              doc: ET.Element | None = None, params: Mapping[str, str] | None = None,
              purpose: str = "voice") -> Steps:
        """Fetch and play TwiML documents until the call ends."""
        doc_url = url or ""
        if doc is None and twiml is not None:
            try:
                doc = ET.fromstring(twiml)
            except ET.ParseError as exc:
                self._note(call, "error", text="12100", detail=f"Twiml parameter: {exc}")
                yield from self._application_error(call, "12100", "Twiml parameter")
                return
        if doc is None:
            doc, doc_url = yield from self._fetch_document(call, doc_url, method, params or {},
                                                           purpose)
        while doc is not None:
            goto = None
            for verb in doc:
                outcome = yield from self._verb(call, verb, doc_url)
                if self._interrupted(call) or outcome is _END:
                    return
                if isinstance(outcome, _Goto):
                    goto = outcome
                    break
            if goto is None:
                self._finish(call, "completed", "end of TwiML document")
                return
            doc, doc_url = yield from self._fetch_document(call, goto.url, goto.method,
                                                           goto.params, goto.purpose)
            if self._interrupted(call):
                return

    def _verb(self, call: SimCall, verb: ET.Element, doc_url: str) -> Generator[float, None, Any]:
        tag = verb.tag
        if tag in ("Say", "Play", "Pause"):
            yield from self._prompt(call, verb)
            return None
        if tag == "Gather":
            return (yield from self._gather(call, verb, doc_url))
        if tag == "Record":
            return (yield from self._record_verb(call, verb, doc_url))
        if tag == "Redirect":
            target = urljoin(doc_url, (verb.text or "").strip())
            self._note(call, "redirect", url=target)
            return _Goto(target, verb.get("method", "POST").upper(), {}, "redirect")
        if tag == "Hangup":
            self._finish(call, "completed", "TwiML <Hangup>")
            return _END
        if tag == "Reject":
            self._note(call, "reject", detail=verb.get("reason", "rejected"))
            self._finish(call, "completed", "TwiML <Reject>")
            return _END
        if tag == "Dial":
            return (yield from self._dial(call, verb, doc_url))
        self._note(call, "error", text="12200", detail=f"unsupported verb <{tag}>")
        yield from self._application_error(call, "12200", f"unsupported verb <{tag}>")
        return _END

    def _prompt(self, call: SimCall, verb: ET.Element) -> Steps:
        loops = _int(verb.get("loop"), 1)
        loops = 10 if loops <= 0 else loops
        if verb.tag == "Say":
            text = " ".join((verb.text or "").split())
            detail = "/".join(v for v in (verb.get("voice"), verb.get("language")) if v) or None
            self._note(call, "say", text=text, detail=detail)
            call.heard.append(text)
            yield self.behaviour.say_seconds(text) * loops
        elif verb.tag == "Play":
            self._note(call, "play", url=(verb.text or "").strip() or None,
                       detail=verb.get("digits"))
            yield self.behaviour.play_seconds * loops
        else:
            length = _int(verb.get("length"), 1)
            self._note(call, "pause", detail=str(length))
            yield float(length)

    def _respondent_keys(self, call: SimCall, heard: str, index: int) -> tuple[str | None, bool]:
        """Keys pressed at the ``index``-th Gather, and whether the respondent hangs up."""
        persona, model = call.persona, self.behaviour
        if persona.line != "human":
            return None, False
        if (persona.hangup_after_gathers is not None
                and call.answered_gathers >= persona.hangup_after_gathers):
            return None, True
        scripted, keys = scripted_entry(persona, index)
        if scripted:
            return keys, False
        if persona.refuses == "hangup" and model.is_consent(heard, index):
            return None, True
        return model.choose_keys(persona, heard=heard, gather_index=index, rng=self.rng), False

    @staticmethod
    def _hangs_up_next(call: SimCall) -> bool:
        after = call.persona.hangup_after_gathers
        return after is not None and call.answered_gathers >= after

    def _gather(self, call: SimCall, verb: ET.Element, doc_url: str) -> Generator[float, None, Any]:
        num_digits = _int(verb.get("numDigits"), 0) or None
        timeout = float(_int(verb.get("timeout"), 5))
        finish_on_key = verb.get("finishOnKey", "#")
        action = urljoin(doc_url, verb.get("action")) if verb.get("action") else doc_url
        method = verb.get("method", "POST").upper()
        on_empty = _bool(verb.get("actionOnEmptyResult"), False)
        for child in verb:
            if child.tag in ("Say", "Play", "Pause"):
                yield from self._prompt(call, child)
                if self._interrupted(call):
                    return _END
        self._note(call, "gather", detail=f"numDigits={num_digits} timeout={timeout:g}")
        heard = " ".join(call.heard)
        call.heard.clear()
        index = call.gathers
        call.gathers += 1
        keys, hangs_up = self._respondent_keys(call, heard, index)
        if hangs_up:
            yield 1.0
            self._finish(call, "completed", "respondent hung up")
            return _END
        digits, finished_on = "", ""
        if keys:
            yield min(self.behaviour.answer_delay(self.rng), timeout * 0.8)
            pressed = ""
            complete = False
            for i, key in enumerate(keys):
                if i:
                    yield self.behaviour.key_interval_seconds
                pressed += key
                if finish_on_key and key == finish_on_key:
                    finished_on, complete = key, True
                    break
                digits += key
                if num_digits is not None and len(digits) >= num_digits:
                    complete = True
                    break
            self._note(call, "keys", digits=pressed)
            if not complete:
                yield timeout
            call.answered_gathers += 1
        else:
            yield timeout
        self._note(call, "digits", digits=digits)
        if digits and call.callback_faults.completed_first and self._hangs_up_next(call):
            # the respondent hangs up on the key: the completed callback goes first,
            # then the key's action request (Twilio does not order the two)
            self._finish(call, "completed", "respondent hung up after the key")
            self._deliver("action", call.sid, method, action, self._call_params(call)
                          | {"Digits": digits, "FinishedOnKey": finished_on})
            return _END
        if digits or on_empty:
            return _Goto(action, method, {"Digits": digits, "FinishedOnKey": finished_on},
                         "action")
        self._note(call, "no-input")
        return None

    def _record_verb(self, call: SimCall, verb: ET.Element,
                     doc_url: str) -> Generator[float, None, Any]:
        max_length = _int(verb.get("maxLength"), 3600) or 3600
        timeout = float(_int(verb.get("timeout"), 5))
        action = urljoin(doc_url, verb.get("action")) if verb.get("action") else doc_url
        method = verb.get("method", "POST").upper()
        if _bool(verb.get("playBeep"), True):
            yield 0.5
        call.heard.clear()
        seconds = min(float(max_length), self.behaviour.record_time(call.persona, self.rng))
        if seconds <= 0:
            yield timeout
            self._note(call, "record", detail="0")
            return None
        yield seconds
        if seconds < max_length:
            yield timeout
        duration = max(1, int(round(seconds)))
        recording = self._make_recording(call, duration, "RecordVerb")
        self._note(call, "record", url=recording.url, detail=str(duration))
        params = {"RecordingUrl": recording.url, "RecordingSid": recording.sid,
                  "RecordingDuration": str(duration), "Digits": ""}
        callback = verb.get("recordingStatusCallback")
        if callback:
            self._deliver("recording-status", call.sid,
                          verb.get("recordingStatusCallbackMethod", "POST"),
                          urljoin(doc_url, callback),
                          {"AccountSid": self.account_sid, "CallSid": call.sid,
                           "RecordingSid": recording.sid, "RecordingUrl": recording.url,
                           "RecordingStatus": "completed", "RecordingDuration": str(duration),
                           "RecordingChannels": "1", "RecordingSource": "RecordVerb"})
        return _Goto(action, method, params, "action")

    def _dial(self, call: SimCall, verb: ET.Element, doc_url: str) -> Generator[float, None, Any]:
        """Bridge a second leg (minimal: the first ``<Number>``/``<Client>``/``<Sip>``)."""
        targets = [(c.text or "").strip() for c in verb if c.tag in ("Number", "Client", "Sip")]
        target = targets[0] if targets else (verb.text or "").strip()
        timeout = float(_int(verb.get("timeout"), 30))
        record = verb.get("record", "do-not-record")
        action = urljoin(doc_url, verb.get("action")) if verb.get("action") else None
        method = verb.get("method", "POST").upper()
        persona = self.persona(target)
        now = self.clock.now()
        with self._lock:
            child = SimCall(
                sid=self._sid("CA"), account_sid=self.account_sid, to=target,
                from_=verb.get("callerId", call.to if call.direction == "inbound" else call.from_),
                direction="outbound-dial", timeout=int(timeout),
                time_limit=_int(verb.get("timeLimit"), 14400), status_callback_events=frozenset(),
                date_created=now, date_updated=now, persona=persona, parent_call_sid=call.sid)
            self.calls[child.sid] = child
            call.children.append(child.sid)
        self._set_status(child, "ringing")
        outcome = self.behaviour.attempt_outcome(persona, now, self.rng)
        ring = self.behaviour.ring_time(persona, self.rng)
        if outcome in ("failed", "busy"):
            yield 2.0
            self._finish(child, outcome, "dialed leg")
        elif outcome == "no-answer" or ring >= timeout:
            yield timeout
            self._finish(child, "no-answer", "dialed leg")
        else:
            yield ring
            self._set_status(child, "in-progress")
            child.answered_at = child.start_time = self.clock.now()
            yield float(self.rng.uniform(*self.behaviour.dial_talk_seconds))
            if self._interrupted(call):
                return _END
            self._finish(child, "completed", "bridged call ended")
        dial_status = child.status
        self._note(call, "dial", text=target, detail=dial_status)
        params = {"DialCallStatus": dial_status, "DialCallSid": child.sid,
                  "DialCallDuration": str(child.duration)}
        if record.startswith("record-from") and child.answered_at is not None:
            recording = self._make_recording(call, child.duration, "DialVerb")
            params |= {"RecordingUrl": recording.url, "RecordingSid": recording.sid,
                       "RecordingDuration": str(recording.duration)}
        if action:
            return _Goto(action, method, params, "action")
        return None
