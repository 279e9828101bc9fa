"""What the simulator keeps for tests to inspect: calls, transcripts, exchanges."""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from twilio.request_validator import RequestValidator

from ivr.sim.behaviour import Persona
from ivr.sim.transport import query_url
from scoring.callstatus import FINAL_STATUSES as FINAL_STATUSES  # statuses that end a call


@dataclass(frozen=True)
class TranscriptEvent:
    """One thing that happened on a call.

    ``kind`` is one of ``status`` (text: the new CallStatus), ``fetch`` (url:
    a TwiML document requested), ``say`` (text; detail: voice/language),
    ``play`` (url), ``pause``, ``gather`` (a Gather started listening), ``keys``
    (digits: what the respondent pressed), ``digits`` (digits: what the Gather
    submitted, ``""`` for nothing), ``no-input`` (a Gather fell through),
    ``record`` (url, detail: duration), ``redirect`` (url), ``dial`` (text: the
    number; detail: DialCallStatus), ``amd`` (text: AnsweredBy), ``reject``,
    ``hangup`` (detail: who or why), ``error`` (text: Twilio error code; detail).
    """

    at: datetime
    kind: str
    text: str = ""
    url: str | None = None
    digits: str | None = None
    detail: str | None = None


class Transcript(list):
    """The list of :class:`TranscriptEvent` of one call, with helpers."""

    def of_kind(self, kind: str) -> list[TranscriptEvent]:
        return [e for e in self if e.kind == kind]

    def said(self) -> list[str]:
        """Texts of every ``<Say>`` played, in order."""
        return [e.text for e in self if e.kind == "say"]

    def pressed(self) -> list[str]:
        """Keys the respondent pressed, one string per ``<Gather>`` answered."""
        return [e.digits or "" for e in self if e.kind == "keys"]

    def submitted(self) -> list[str]:
        """``Digits`` each ``<Gather>`` ended with (``""`` when nothing was entered)."""
        return [e.digits or "" for e in self if e.kind == "digits"]

    def statuses(self) -> list[str]:
        return [e.text for e in self if e.kind == "status"]


@dataclass(frozen=True)
class Exchange:
    """One request the simulator sent to the application, and what came back.

    ``purpose``: ``voice`` (the call's Url), ``action`` (Gather/Record/Dial
    action), ``redirect``, ``fallback``, ``status-callback``, ``amd-callback``,
    ``recording-status``, ``message-status``.  ``outcome``: ``ok`` (2xx),
    ``http-error`` (any other status), ``timeout``, ``transport-error``,
    ``dropped`` (a fault withheld it: never sent).  ``fault`` names the injected
    fault, if any.  ``url`` is the public URL, the one signed.
    """

    at: datetime
    purpose: str
    call_sid: str | None
    method: str
    url: str
    params: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    status_code: int | None
    body: str
    outcome: str
    fault: str | None = None

    @property
    def form(self) -> dict[str, str]:
        return dict(self.params)

    @property
    def signature(self) -> str:
        return dict(self.headers)["X-Twilio-Signature"]

    @property
    def idempotency_token(self) -> str:
        return dict(self.headers)["I-Twilio-Idempotency-Token"]

    def signature_valid(self, auth_token: str) -> bool:
        """Check the signature the way an application does (POST: form; GET: URL)."""
        validator = RequestValidator(auth_token)
        if self.method == "GET":
            return validator.validate(self.signed_url, {}, self.signature)
        return validator.validate(self.url, self.form, self.signature)

    @property
    def signed_url(self) -> str:
        return query_url(self.url, self.params) if self.method == "GET" else self.url


@dataclass(frozen=True)
class CallbackFaults:
    """Faults applied to the status callbacks of a call.

    Parameters
    ----------
    duplicate
        Events (``initiated``, ``ringing``, ``answered``, ``completed``) delivered
        twice, identical (same SequenceNumber and idempotency token).
    reorder
        Hold every status callback until the call has ended, then deliver them
        newest first (``completed`` before ``answered``).
    delay_seconds
        Hold every status callback until this long after the call ended.
    drop
        Events never delivered.
    completed_first
        When the respondent hangs up right after a key (``Persona.hangup_after_gathers``
        reached), deliver the ``completed`` callback before that key's ``<Gather>``
        action request.
    """

    duplicate: frozenset[str] = frozenset()
    reorder: bool = False
    delay_seconds: float = 0.0
    drop: frozenset[str] = frozenset()
    completed_first: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "duplicate", frozenset(self.duplicate))
        object.__setattr__(self, "drop", frozenset(self.drop))
        if self.delay_seconds < 0:
            raise ValueError(f"CallbackFaults.delay_seconds must be >= 0, got {self.delay_seconds!r}")

    @property
    def holds(self) -> bool:
        return self.reorder or self.delay_seconds > 0


@dataclass
class WebhookFault:
    """Make matching webhook requests fail.

    ``kind="timeout"``: the request is delivered (the application does its work)
    but the answer is treated as too late.  ``kind="error"``: the request is not
    delivered and counts as an HTTP ``status`` answer.  A request matches when its
    URL holds ``url_contains``, its purpose is in ``purposes`` and (if given) it
    belongs to ``call_sid``; the fault applies to ``times`` matching requests.
    """

    kind: str = "error"
    status: int = 500
    url_contains: str = ""
    purposes: tuple[str, ...] = ("voice", "action", "redirect")
    call_sid: str | None = None
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("timeout", "error"):
            raise ValueError(f"WebhookFault.kind must be 'timeout' or 'error', got {self.kind!r}")
        if self.times < 1:
            raise ValueError(f"WebhookFault.times must be >= 1, got {self.times!r}")

    def matches(self, purpose: str, url: str, call_sid: str | None) -> bool:
        return (self.times > 0 and purpose in self.purposes and self.url_contains in url
                and (self.call_sid is None or self.call_sid == call_sid))


@dataclass
class HeldCallback:
    event: str
    method: str
    url: str
    params: tuple[tuple[str, str], ...]
    token: str


@dataclass
class SimCall:
    """The simulator's state of one call (read it in tests; do not change it)."""

    sid: str
    account_sid: str
    to: str
    from_: str
    direction: str
    date_created: datetime
    persona: Persona
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset({"completed"})
    timeout: int = 60
    time_limit: int = 14400
    machine_detection: str | None = None
    async_amd: bool = False
    async_amd_callback: str | None = None
    async_amd_method: str = "POST"
    record: bool = False
    recording_status_callback: str | None = None
    parent_call_sid: str | None = None
    status: str = "queued"
    date_updated: datetime | None = None
    start_time: datetime | None = None
    answered_at: datetime | None = None
    end_time: datetime | None = None
    answered_by: str | None = None
    machine_detection_ms: int | None = None
    sip_response_code: int | None = None
    hangup_reason: str | None = None
    transcript: Transcript = field(default_factory=Transcript)
    callback_faults: CallbackFaults = field(default_factory=CallbackFaults)
    sequence: int = 0
    held: list[HeldCallback] = field(default_factory=list)
    gathers: int = 0
    answered_gathers: int = 0
    heard: list[str] = field(default_factory=list)
    documents: int = 0
    children: list[str] = field(default_factory=list)
    timers: list[Any] = field(default_factory=list)
    step_event: Any = None
    # control
    ended: bool = False
    end_requested: tuple[str, str] | None = None
    pending_redirect: tuple[str | None, str, str | None] | None = None
    coroutine: Generator[float, None, Any] | None = None
    generation: int = 0

    @property
    def duration(self) -> int:
        """Seconds from answer to hang-up, rounded up as Twilio bills (0 if unanswered)."""
        if self.answered_at is None:
            return 0
        end = self.end_time or self.date_updated or self.answered_at
        return max(0, math.ceil((end - self.answered_at).total_seconds()))

    @property
    def digits(self) -> list[str]:
        return self.transcript.submitted()


@dataclass
class SimMessage:
    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status: str
    status_callback: str | None
    date_created: datetime
    date_updated: datetime
    date_sent: datetime | None = None


@dataclass(frozen=True)
class Recording:
    sid: str
    account_sid: str
    call_sid: str
    duration: int
    date_created: datetime
    url: str
    source: str
