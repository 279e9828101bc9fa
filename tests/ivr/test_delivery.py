"""Calls as Twilio really delivers them: ordering, late machine verdicts, bad numbers.

These tests play Twilio's side by hand: every request is signed with the real
``twilio.request_validator.RequestValidator`` over the public URL and carries
Twilio's parameter names (``CallSid``, ``CallStatus``, ``SequenceNumber``,
``Digits``, ``AnsweredBy``, ``RecordingUrl``, ...).  The calls are placed by the
real dialer through the real ``twilio`` client on the simulator, which is never
run: the test decides in which order the call's requests arrive.

Twilio does not order a call's status callbacks, its AsyncAmd result and its
``<Gather>`` action requests; the only order that holds is that of the
``<Gather>`` chain itself (the next question is asked after the previous
answer's response) and that nothing arrives before it was sent.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from ivr.simulator import CallbackFaults, Persona
from minping.models import (
    Answer,
    AttemptEvent,
    AuditLog,
    CallAttempt,
    CaseUnit,
    DispositionEvent,
    Recording,
    SampleCase,
)
from minping.runtime import runtime_of
from tests.ivr.conftest import signed_post

UNITS = 4
FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
            HealthCheck.data_too_large]


def _fast_dialing(cfg):
    calling = dataclasses.replace(cfg.calling, calls_per_second=100000.0,
                                  max_concurrent_calls=500)
    return dataclasses.replace(cfg, calling=calling)


class TwilioSide:
    """One outbound call, its requests sent by the test in the order it chooses."""

    def __init__(self, rig, client):
        self.rig, self.client = rig, client
        with rig.db.transaction() as s:  # every other case waits
            s.execute(update(SampleCase).where(SampleCase.attempts == 0)
                      .values(next_attempt_at=rig.clock.now() + timedelta(days=365)))
        with rig.db.session() as s:
            case_id = s.scalar(select(SampleCase.id).where(SampleCase.attempts == 0)
                               .order_by(SampleCase.id))
        with rig.db.transaction() as s:
            s.execute(update(SampleCase).where(SampleCase.id == case_id)
                      .values(next_attempt_at=None))
        rig.clock.advance(0.00002)  # past the dialer's own pacing; no call event is due yet
        assert rig.dialer.step(max_calls=1).placed == 1
        with rig.db.session() as s:
            attempt = s.scalars(select(CallAttempt).where(CallAttempt.case_id == case_id)).one()
        self.case_id, self.attempt_id, self.sid = case_id, attempt.id, attempt.call_sid
        self.sequence = itertools.count()
        self.phone = rig.field.phones[case_id]

    # --- Twilio's requests -------------------------------------------------------------

    def _base(self, **extra) -> dict:
        return {"AccountSid": self.rig.sim.account_sid, "ApiVersion": "2010-04-01",
                "CallSid": self.sid, "From": "+8657100000000", "To": self.phone,
                "Called": self.phone, "Caller": "+8657100000000",
                "Direction": "outbound-api"} | extra

    def post(self, path: str, form: dict, token: str | None = None):
        headers = {"I-Twilio-Idempotency-Token": token} if token else {}
        response = signed_post(self.client, self.rig.public_url, path, form, headers=headers)
        assert response.status_code < 500, (path, form, response.get_data(as_text=True))
        return response

    def voice(self):
        return self.post(f"/ivr/voice?attempt={self.attempt_id}",
                         self._base(CallStatus="in-progress"))

    def gather(self, step: str, pos: int, digits: str):
        path = (f"/ivr/consent?attempt={self.attempt_id}&try=0" if step == "consent"
                else f"/ivr/answer?attempt={self.attempt_id}&pos={pos}&try=0")
        return self.post(path, self._base(CallStatus="in-progress", Digits=digits,
                                          FinishedOnKey="", msg="Gather End"))

    def status(self, event: str, seq: int, *, duration: int = 42):
        call_status = {"answered": "in-progress"}.get(event, event)
        form = self._base(CallStatus=call_status, SequenceNumber=str(seq),
                          Timestamp="Tue, 01 Dec 2026 08:00:00 +0000",
                          CallbackSource="call-progress-events")
        if event == "completed":
            form |= {"CallDuration": str(duration), "Duration": "1", "SipResponseCode": "200"}
        return self.post(f"/ivr/status?attempt={self.attempt_id}", form,
                         token=f"{self.sid}-{seq}")

    def amd(self, answered_by: str):
        return self.post(f"/ivr/amd?attempt={self.attempt_id}",
                         self._base(AnsweredBy=answered_by, MachineDetectionDuration="3400"),
                         token=f"{self.sid}-amd")

    def send(self, event: tuple):
        kind, *args = event
        return getattr(self, kind)(*args)

    # --- what the application kept -----------------------------------------------------

    def outcome(self) -> dict:
        with self.rig.db.session() as s:
            case = s.get(SampleCase, self.case_id)
            attempt = s.get(CallAttempt, self.attempt_id)
            answers = dict(s.execute(
                select(CaseUnit.position, Answer.rating)
                .join(Answer, (Answer.case_id == CaseUnit.case_id)
                      & (Answer.unit_id == CaseUnit.unit_id))
                .where(CaseUnit.case_id == self.case_id)).all())
            codes = s.scalars(select(DispositionEvent.code).where(
                DispositionEvent.case_id == self.case_id).order_by(DispositionEvent.id)).all()
            return {"answers": answers, "attempt": attempt.outcome, "state": case.state,
                    "current": case.current_disposition, "final": case.final_disposition,
                    "next_attempt_at": case.next_attempt_at, "codes": list(codes),
                    "held": case.lock_channel}

    def hung_up_by_rest(self) -> bool:
        return self.rig.sim.calls[self.sid].end_requested is not None


def chain(keys: list[str]) -> list[tuple]:
    """The ``<Gather>`` requests of a call where ``keys`` were pressed (consent first)."""
    out = [("voice",)]
    for i, key in enumerate(keys):
        out.append(("gather", "consent", 0, key) if i == 0 else ("gather", "answer", i - 1, key))
    return out


def clean_order(keys: list[str], amd: str | None = None) -> list[tuple]:
    """Twilio's requests in the order a well-behaved network delivers them."""
    events = [("status", "initiated", 0), ("status", "ringing", 1), ("status", "answered", 2)]
    gathers = chain(keys)
    events += gathers[:2]
    if amd:
        events.append(("amd", amd))
    return events + gathers[2:] + [("status", "completed", 3)]


@pytest.fixture
def side(rig_factory, client):
    rig = rig_factory(n_cases=2 * (UNITS + 2) + 2, units_per_case=UNITS)
    rig.cfg = _fast_dialing(rig.cfg)
    rig.dialer.rules = rig.cfg.calling
    runtime_of(rig.app).use(survey_config=rig.cfg)
    return lambda: TwilioSide(rig, client)


@pytest.mark.parametrize("last", range(UNITS + 1))
def test_completed_before_the_last_key_keeps_the_answer_and_the_clean_disposition(side, last):
    """The ``completed`` callback first, then the last key's request, for every position
    of the last key (0: the consent key; ``UNITS``: the last question)."""
    keys = ["1"] + ["2", "3", "1", "0", "2", "3"][:last]
    clean, late = side(), side()
    for event in clean_order(keys):
        clean.send(event)
    events = clean_order(keys)
    events[-2], events[-1] = events[-1], events[-2]  # completed before the last key
    responses = [late.send(event) for event in events]
    assert "<Hangup" in responses[-1].get_data(as_text=True)  # the call is over: no question
    expected, got = clean.outcome(), late.outcome()
    assert got == expected
    assert got["answers"] == {i: k for i, k in enumerate(keys[1:])}
    if last == UNITS:
        assert got["attempt"] == "1.1" and got["final"] == "1.1" and got["state"] == "final"
        assert got["next_attempt_at"] is None  # not back in the field


def test_eight_keys_with_completed_first_store_eight_and_close_as_complete(side):
    """The issue's case: every unit answered, ``completed`` delivered before the last key."""
    call = side()
    keys = ["1", "2", "2", "3", "1"][: UNITS + 1]
    events = clean_order(keys)
    events[-2], events[-1] = events[-1], events[-2]
    for event in events:
        call.send(event)
    got = call.outcome()
    assert len(got["answers"]) == UNITS
    assert got["attempt"] == "1.1" and got["final"] == "1.1" and got["state"] == "final"
    assert got["codes"] == ["1.1"]
    # the late key is on record, and the audit log says the code changed
    with call.rig.db.session() as s:
        changes = s.scalars(select(AuditLog).where(AuditLog.action == "attempt.late_key")).all()
    assert [(c.old, c.new) for c in changes] == [({"code": "1.2"}, {"code": "1.1"})]


@pytest.mark.parametrize("verdict", ["machine_start", "machine_end_beep", "fax"])
def test_a_late_machine_verdict_after_keys_keeps_the_interview(side, verdict):
    call = side()
    keys = ["1", "2", "3", "1", "2"][: UNITS + 1]
    events = clean_order(keys)
    events.insert(events.index(("gather", "answer", 0, keys[1])) + 1, ("amd", verdict))
    responses = {}
    for event in events:
        responses[event] = call.send(event)
    assert not call.hung_up_by_rest()  # no REST hang-up on a person
    after_amd = events[events.index(("amd", verdict)) + 1]
    assert "<Gather" in responses[after_amd].get_data(as_text=True)  # the interview goes on
    got = call.outcome()
    assert got["attempt"] == "1.1" and got["final"] == "1.1"
    with call.rig.db.session() as s:
        assert s.get(CallAttempt, call.attempt_id).answered_by == "human"


def test_a_machine_verdict_before_any_key_still_ends_the_call(side):
    call = side()
    for event in [("status", "initiated", 0), ("status", "ringing", 1),
                  ("status", "answered", 2), ("voice",), ("amd", "machine_end_beep")]:
        call.send(event)
    assert call.hung_up_by_rest()


# --- every interleaving ---------------------------------------------------------------------


@st.composite
def deliveries(draw):
    """Keys pressed, an AMD verdict, and an order Twilio may deliver the requests in.

    The ``<Gather>`` chain keeps its order; each status callback and the AMD result
    arrive at or after the moment they were sent (``initiated``, ``ringing`` and
    ``answered`` before the call's first document; the AMD verdict after the consent
    key -- an earlier machine verdict ends the call; ``completed`` with or after the
    last key), in any order among themselves, some of them twice.
    """
    n_answers = draw(st.integers(0, UNITS))
    keys = ["1"] + draw(st.lists(st.sampled_from(["0", "1", "2", "3"]), min_size=n_answers,
                                 max_size=n_answers))
    amd = draw(st.sampled_from([None, "human", "unknown", "machine_start",
                                "machine_end_silence", "fax"]))
    gathers = chain(keys)
    last = len(gathers) - 1
    asynchronous = [(("status", "initiated", 0), 0), (("status", "ringing", 1), 0),
                    (("status", "answered", 2), 0), (("status", "completed", 3), last)]
    if amd:
        asynchronous.append((("amd", amd), 2))
    slots: dict[int, list] = {}
    for event, sent in asynchronous:
        at = draw(st.integers(sent, last + 1), label=str(event))
        slots.setdefault(at, []).append(event)
        if event[0] == "status" and draw(st.booleans(), label=f"twice {event}"):
            again = draw(st.integers(at, last + 1))
            slots.setdefault(again, []).append(event)
    order = []
    for i in range(last + 2):
        order += draw(st.permutations(slots.get(i, [])))
        if i <= last:
            order.append(gathers[i])
    return keys, amd, order


def test_any_interleaving_stores_the_keys_pressed_and_gives_the_clean_disposition(
        rig_factory, client):
    rig = rig_factory(n_cases=2 * 40, units_per_case=UNITS)
    rig.cfg = _fast_dialing(rig.cfg)
    rig.dialer.rules = rig.cfg.calling
    runtime_of(rig.app).use(survey_config=rig.cfg)

    @settings(max_examples=35, deadline=None, suppress_health_check=FIXTURES)
    @given(deliveries())
    def check(delivery):
        keys, amd, order = delivery
        clean, shuffled = TwilioSide(rig, client), TwilioSide(rig, client)
        for event in clean_order(keys, amd):
            clean.send(event)
        for event in order:
            shuffled.send(event)
        expected, got = clean.outcome(), shuffled.outcome()
        assert got["answers"] == {i: k for i, k in enumerate(keys[1:])}
        assert got == expected, order
        assert not shuffled.hung_up_by_rest()  # keys came first: a person

    check()


# --- numbers and characters a signed request may carry ------------------------------------


def test_out_of_range_numbers_and_control_characters_never_give_a_500(side):
    call = side()
    for event in clean_order(["1", "2"])[:-1]:
        call.send(event)
    status = f"/ivr/status?attempt={call.attempt_id}"
    for seq in ("1e20", "100000000000000000000", "-5", "9" * 400, "NaN"):
        r = call.post(status, call._base(CallStatus="ringing", SequenceNumber=seq),
                      token=f"seq-{seq[:30]}")
        assert r.status_code == 200, seq
    r = call.post(status, call._base(CallStatus="completed", SequenceNumber="4",
                                     CallDuration="100000000000000000000",
                                     SipResponseCode="1e20"), token="done")
    assert r.status_code == 200
    comment = f"/ivr/comment?attempt={call.attempt_id}"
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
    for duration in ("1e20", "100000000000000000000", "-1", "abc"):
        r = call.post(comment, call._base(RecordingUrl=url, RecordingSid=f"RE{duration[:8]}",
                                          RecordingDuration=duration))
        assert r.status_code == 200 and "<Hangup" in r.get_data(as_text=True), duration
    for field, value in (("RecordingUrl", url + "\x00"), ("RecordingSid", "RE\x01"),
                         ("Digits", "1\x00"), ("CallStatus", "completed\x00")):
        r = call.post(comment, call._base(RecordingUrl=url, RecordingSid="RE2") | {field: value})
        assert r.status_code == 400 and field in r.get_data(as_text=True), field
    r = call.post(comment, call._base(RecordingUrl=url, RecordingSid="RE" + "9" * 70))
    assert r.status_code == 400
    with call.rig.db.session() as s:
        durations = s.scalars(select(Recording.duration_seconds)).all()
        seqs = s.scalars(select(AttemptEvent.sequence_number).where(
            AttemptEvent.attempt_id == call.attempt_id)).all()
    assert all(d is None for d in durations) and len(durations) == 4
    assert all(q is None or 0 <= q < 2**31 for q in seqs)
    got = call.outcome()
    assert got["answers"] == {0: "2"}


# --- the simulator delivers the same orderings ------------------------------------------------


@pytest.mark.parametrize("answered", range(UNITS + 1))
def test_simulator_delivering_completed_before_the_last_key_gives_the_clean_result(
        rig_factory, answered):
    """A respondent who hangs up on the key after ``answered`` questions, played by the
    simulator once in the clean order and once with ``completed`` first."""
    rig = rig_factory(n_cases=2, units_per_case=UNITS)
    keys = ["1", "2", "3", "1", "2"][: answered + 1]
    rig.sim.set_callback_faults(CallbackFaults(completed_first=True), to=rig.phone(1))
    for i in (0, 1):
        rig.persona(i, keys=keys, hangup_after_gathers=len(keys), record_seconds=0)
    assert rig.dial().placed + rig.dial().placed == 2
    results = []
    for i in (0, 1):
        case = rig.case(i)
        results.append((rig.answers(i), [a.outcome for a in rig.attempts(i)], case.state,
                        case.current_disposition, case.final_disposition))
    assert results[0] == results[1]
    assert results[1][0] == {p: k for p, k in enumerate(keys[1:])}
    (call,) = rig.calls_to(1)
    order = [x.purpose for x in rig.sim.exchanges_for(call.sid)
             if x.purpose in ("status-callback", "action")]
    assert order[-2:] == ["status-callback", "action"]  # completed, then the last key
    if answered == UNITS:
        assert results[1][4] == "1.1"


# --- a sampled respondent calling back while the case is busy ------------------------------


@pytest.mark.parametrize("busy", ["dialling", "interviewer", "handoff"])
def test_a_sampled_caller_whose_case_is_busy_is_told_truthfully_they_will_be_called(
        rig_factory, busy):
    from minping import cases
    from minping.settings import SIMULATOR_FROM_NUMBER

    rig = rig_factory()
    rig.persona(keys=["1", "1", "2", "3"], ring_seconds=20, record_seconds=0)
    if busy == "dialling":
        assert rig.dialer.step().placed == 1  # the outbound call rings for 20 s
    else:
        with rig.db.transaction() as s:
            if busy == "interviewer":
                assert cases.try_hold(s, rig.case_id(), channel="cati", now=rig.clock.now())
            else:
                case = s.get(SampleCase, rig.case_id())
                cases.hand_to_cati(s, case, now=rig.clock.now(), actor="test", reason="key 8")
    sid = rig.sim.incoming_call(from_=rig.phone(), to=SIMULATOR_FROM_NUMBER,
                                url=rig.public_url + "/ivr/inbound",
                                status_callback=rig.public_url + "/ivr/status")
    rig.sim.run_until_idle()
    said = rig.sim.call(sid).transcript.said()
    assert said == [rig.cfg.render_prompt("callback_pending", "cmn-CN")]
    assert rig.cfg.render_prompt("unknown_caller", "cmn-CN") not in said
    with rig.db.session() as s:
        logged = s.scalars(select(AuditLog.entity_id).where(
            AuditLog.action == "case.inbound_while_busy")).all()
    assert logged == [str(rig.case_id())]
    if busy == "dialling":  # ... and the call that was ringing interviews them
        assert rig.case().final_disposition == "1.1"


# --- the SMS code of an inbound caller ----------------------------------------------------------


@pytest.mark.parametrize("entered", ["right", "wrong", "no-sms"])
def test_an_inbound_caller_who_was_sent_the_sms_confirms_with_its_code(rig_factory, entered):
    import re

    from minping.settings import SIMULATOR_FROM_NUMBER
    from tests.ivr.conftest import quiet_config

    rig = rig_factory()
    cfg = quiet_config(rig.cfg, sms_advance_notice=entered != "no-sms", inbound_code_digits=4)
    rig.cfg = rig.dialer.cfg = cfg
    runtime_of(rig.app).use(survey_config=cfg)
    code = None
    if entered != "no-sms":
        assert rig.dial().placed == 0  # the SMS goes first
        (message,) = rig.sim.messages.values()
        code = re.search(r"验证码(\d{4})", message.body).group(1)
        assert rig.case().sms_code == code
    first = {"right": code, "wrong": "0000" if code != "0000" else "1111", "no-sms": None}
    keys = ([first[entered]] * (1 if entered == "right" else 3) if code else []) + \
        ["1", "1", "2", "3"]
    rig.sim.set_persona(rig.phone(), Persona(keys=keys, record_seconds=0))
    sid = rig.sim.incoming_call(from_=rig.phone(), to=SIMULATOR_FROM_NUMBER,
                                url=rig.public_url + "/ivr/inbound",
                                status_callback=rig.public_url + "/ivr/status")
    rig.sim.run_until_idle()
    said = rig.sim.call(sid).transcript.said()
    ask = rig.cfg.render_prompt("verify_code", "cmn-CN", digits=4)
    if entered == "wrong":
        assert said.count(ask) == 1 + cfg.ivr.max_reasks
        assert said[-1] == rig.cfg.render_prompt("code_mismatch", "cmn-CN")
        assert rig.answers() == {} and rig.attempts() == []  # nothing stored, no attempt
    else:
        assert (ask in said) == (entered == "right")
        assert rig.answers() == {0: "1", 1: "2", 2: "3"}
        assert rig.case().final_disposition == "1.1"
