"""TwiML as the simulator plays it: ``<Say>``/``<Play>``, ``<Gather>``, ``<Record>``, ``<Dial>``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import urljoin

from ivr.gateway import twilio_refusal
from ivr.sim.behaviour import scripted_entry
from ivr.sim.common import (
    _END,
    APPLICATION_ERROR_TEXT,
    Steps,
    _bool,
    _Goto,
    _int,
)
from ivr.sim.records import (
    SimCall,
)


class TwimlPlayer:
    """Mixin of :class:`ivr.sim.engine.Simulator`: runs a TwiML document verb by verb."""

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
        nouns = [c for c in verb if c.tag in ("Number", "Client", "Sip")]
        target = (nouns[0].text or "").strip() if nouns else (verb.text or "").strip()
        byoc = nouns[0].get("byoc") if nouns and nouns[0].tag == "Number" else None
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
        refused = self.china_rules and twilio_refusal(kind="call", to=target, from_=child.from_,
                                                      byoc=byoc)
        if refused:  # Twilio does not place the leg (as Calls.create refuses it)
            self._note(call, "reject", text=target, detail=refused)
            outcome = "failed"
        else:
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
