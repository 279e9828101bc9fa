"""Mainland-China deliverability: what Twilio refuses is refused before it is tried.

The rule (:func:`ivr.gateway.twilio_refusal`) is the same for ``config check``,
``serve --check`` and the simulator: a +86 caller ID on calls to +86 numbers
needs a BYOC trunk, and SMS to +86 numbers go through a Messaging Service.
"""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from ivr.gateway import deliverability_problems, twilio_refusal
from minping.cli import cli
from minping.config import ConfigError, load_config
from minping.runtime import runtime_of
from minping.settings import SIMULATOR_FROM_NUMBER

BYOC = "BY" + "ab" * 16
SERVICE = "MG" + "cd" * 16


def _quiet(**ivr):
    from tests.ivr.conftest import quiet_config

    return quiet_config(load_config(), **ivr)


def _cfg(**ivr):
    cfg = load_config()
    return dataclasses.replace(cfg, ivr=dataclasses.replace(cfg.ivr, **ivr))


@pytest.mark.parametrize(("from_number", "ivr", "named"), [
    ("+8657100000000", {"sms_advance_notice": False}, ["byoc_trunk_sid"]),
    ("+8657100000000", {"sms_advance_notice": True}, ["byoc_trunk_sid", "messaging_service_sid"]),
    ("+8657100000000", {"sms_advance_notice": True, "byoc_trunk_sid": BYOC,
                        "messaging_service_sid": SERVICE}, []),
    ("+85230000000", {"sms_advance_notice": False}, []),  # a caller ID Twilio may present
    ("+85230000000", {"sms_advance_notice": True}, ["messaging_service_sid"]),
    ("+8657100000000", {"sms_advance_notice": True, "destination_country_code": "+1"}, []),
])
def test_combinations_twilio_refuses_are_named_by_their_setting(from_number, ivr, named):
    problems = deliverability_problems(_cfg(**ivr), from_number=from_number)
    assert [p.split(":")[0] for p in problems] == [f"[ivr] {n}" for n in named]


def test_malformed_sids_are_refused_naming_the_key(tmp_path):
    text = load_config.__globals__["default_config_path"]().read_text(encoding="utf-8")
    bad = text.replace('byoc_trunk_sid = ""', 'byoc_trunk_sid = "TK123"').replace(
        'messaging_service_sid = ""', 'messaging_service_sid = "+8610086"')
    path = tmp_path / "survey.toml"
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    said = "\n".join(map(str, err.value.problems))
    assert "ivr.byoc_trunk_sid" in said and "ivr.messaging_service_sid" in said


def test_config_check_refuses_what_twilio_refuses_for_a_real_account():
    env = {"TWILIO_ACCOUNT_SID": "AC" + "1f" * 16, "TWILIO_FROM_NUMBER": "+8657100000000",
           "TWILIO_API_URL": ""}
    result = CliRunner().invoke(cli, ["config", "check"], env=env)
    assert result.exit_code == 1
    assert "[ivr] byoc_trunk_sid" in result.output and "[ivr] messaging_service_sid" in result.output
    # the local simulator is not Twilio: the shipped file checks OK against it
    result = CliRunner().invoke(cli, ["config", "check"], env={"TWILIO_ACCOUNT_SID": ""})
    assert result.exit_code == 0, result.output


MAINLAND_CALLER_ID = "+8657100000000"


def test_the_simulator_refuses_the_same_calls_and_messages_by_default(rig_factory):
    """As at Twilio, with no switch: the center's own +86 number needs the BYOC trunk."""
    assert twilio_refusal(kind="call", to="+8613800000000", from_=MAINLAND_CALLER_ID)
    assert not twilio_refusal(kind="call", to="+8613800000000", from_=SIMULATOR_FROM_NUMBER)
    rig = rig_factory(n_cases=2, cfg=_quiet(messaging_service_sid=""))
    assert rig.sim.china_rules  # the default
    rig.dialer.from_number = MAINLAND_CALLER_ID
    rig.persona(0, keys=["1", "1", "2", "3"], record_seconds=0)
    rig.persona(1, keys=["1", "1", "2", "3"], record_seconds=0)
    rig.dial()  # no BYOC trunk: Twilio (the simulator) refuses the call
    (attempt,) = rig.attempts(0)
    assert attempt.outcome == "3.16" and "21215" in (attempt.error or "")
    assert rig.calls_to(0) == []
    cfg = dataclasses.replace(rig.cfg, ivr=dataclasses.replace(
        rig.cfg.ivr, byoc_trunk_sid=BYOC, messaging_service_sid=SERVICE,
        sms_advance_notice=True))
    rig.dialer.cfg = cfg
    runtime_of(rig.app).use(survey_config=cfg)
    rig.later(days=1)
    rig.dial()  # the SMS through the Messaging Service; the call through the trunk
    (message,) = rig.sim.messages.values()
    assert message.messaging_service_sid == SERVICE and message.from_ is None
    rig.dial_when_due(1)
    assert rig.case(1).final_disposition == "1.1"


def test_the_hand_over_dial_to_a_mainland_phone_needs_the_trunk_too(rig_factory):
    """``<Dial><Number>`` from the center's +86 number: through the trunk, or refused."""
    from ivr.simulator import Persona
    from tests.cati.helpers import add_user

    phone = "+8613700000009"
    rig = rig_factory(n_cases=2, cfg=_quiet(byoc_trunk_sid=BYOC))
    runtime_of(rig.app).use(survey_config=rig.cfg)
    rig.dialer.from_number = MAINLAND_CALLER_ID
    add_user(rig.db, "li", phone=phone)
    rig.sim.set_persona(phone, Persona(answer_probability=1.0, ring_seconds=2))
    rig.persona(0, keys=["1", "8"], record_seconds=0)
    rig.dial()
    (call,) = rig.calls_to(0)
    assert [d.detail for d in call.transcript.of_kind("dial")] == ["completed"]
    (doc,) = [x.body for x in rig.sim.exchanges_for(call.sid) if "<Dial" in x.body]
    assert f'byoc="{BYOC}"' in doc
    # without the trunk, a caller's inbound call to the center's +86 number: the
    # <Dial> presents that number, Twilio refuses the leg, the call-back is offered
    cfg = _quiet(byoc_trunk_sid="")
    add_user(rig.db, "zhao", phone=phone[:-1] + "8")  # li holds the first case
    rig.cfg = rig.dialer.cfg = cfg
    runtime_of(rig.app).use(survey_config=cfg)
    rig.sim.set_persona(rig.phone(1), Persona(keys=["1", "8", "2"], record_seconds=0))
    sid = rig.sim.incoming_call(from_=rig.phone(1), to=MAINLAND_CALLER_ID,
                                url=rig.public_url + "/ivr/inbound",
                                status_callback=rig.public_url + "/ivr/status")
    rig.sim.run_until_idle()
    call = rig.sim.call(sid)
    assert [d.detail for d in call.transcript.of_kind("dial")] == ["failed"]
    assert [r.text for r in call.transcript.of_kind("reject")] == [phone[:-1] + "8"]
    assert call.transcript.said()[-1] == cfg.render_prompt("handoff_declined", "cmn-CN")
