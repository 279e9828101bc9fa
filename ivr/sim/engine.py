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

The engine is split along its seams: the event loop, the state and the REST
operations here; a call's course in :mod:`ivr.sim.calls`; the webhooks it sends
in :mod:`ivr.sim.callbacks`; TwiML verbs in :mod:`ivr.sim.twiml`; shared
constants and parsers in :mod:`ivr.sim.common`.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from twilio.request_validator import RequestValidator

from ivr.gateway import twilio_refusal
from ivr.sim.behaviour import BehaviourModel, Persona
from ivr.sim.callbacks import Callbacks
from ivr.sim.calls import CallLife
from ivr.sim.clock import Clock, VirtualClock
from ivr.sim.common import (  # noqa: F401  (API_VERSION, APPLICATION_ERROR_TEXT: the old import path)
    _E164,
    API_VERSION,
    APPLICATION_ERROR_TEXT,
    CALL_EVENTS,
    ApiError,
    _bool,
    _Event,
    _int,
    _last,
    _logger,
    valid_address,
)
from ivr.sim.records import (
    CallbackFaults,
    Exchange,
    Recording,
    SimCall,
    SimMessage,
    WebhookFault,
)
from ivr.sim.transport import (
    WebhookTransport,
)
from ivr.sim.twiml import TwimlPlayer


class Simulator(CallLife, Callbacks, TwimlPlayer):
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
    #: a +86 caller ID on calls (and ``<Dial><Number>``) to +86 numbers without
    #: ``Byoc``, SMS to +86 numbers without ``MessagingServiceSid``.  On, as at Twilio.
    china_rules: bool = True

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
