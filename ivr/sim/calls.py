"""The life of a simulated call: ringing, answering, machine detection, the end of the call."""

from __future__ import annotations

from typing import Any

from ivr.sim.common import (
    API_VERSION,
    Steps,
)
from ivr.sim.records import (
    Recording,
    SimCall,
    TranscriptEvent,
)


class CallLife:
    """Mixin of :class:`ivr.sim.engine.Simulator`: a call's course from dialing to hang-up."""

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
