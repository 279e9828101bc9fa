"""Webhooks the simulator sends: status callbacks (held, faulty or on time) and TwiML fetches."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Generator, Mapping
from email.utils import format_datetime

from ivr.sim.clock import VirtualClock
from ivr.sim.common import (
    API_VERSION,
)
from ivr.sim.records import (
    Exchange,
    HeldCallback,
    SimCall,
)
from ivr.sim.transport import (
    WebhookRequest,
    WebhookTimeout,
    WebhookTransportError,
    query_url,
)


class Callbacks:
    """Mixin of :class:`ivr.sim.engine.Simulator`: every request to the app goes through here."""

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
