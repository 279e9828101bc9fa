"""Click-to-call through the telephony gateway, against the local Twilio simulator.

Twilio (the simulator, reached with the real ``twilio`` REST client) rings the
interviewer's own phone; when the interviewer answers, the inline TwiML
``<Dial>``s the respondent with the survey's caller id.  No recording starts
before consent.
"""

import numpy as np
from sqlalchemy import select

from ivr.simulator import Persona, Simulator, WsgiWebhookTransport, twilio_client
from minping.app import settings_of
from minping.models import AttemptEvent, CallAttempt
from minping.runtime import runtime_of
from tests.cati.helpers import add_user
from tests.cati.test_views import csrf, field_app, login  # noqa: F401  (fixture)

INTERVIEWER_PHONE = "+8613911112222"


def _interviewer_holding_a_case(app, db, field):
    """Lin, with a phone on file, logged in and holding the next case; the simulator
    (reached with the real REST client) answers both phones.  Returns what the test needs."""
    settings = settings_of(app)
    sim = Simulator(account_sid=settings.twilio_account_sid,
                    auth_token=settings.twilio_auth_token,
                    rng=np.random.default_rng(3), transport=WsgiWebhookTransport(app))
    sim.set_persona(INTERVIEWER_PHONE, Persona(line="human", ring_seconds=2))
    runtime_of(app).use(twilio_client=twilio_client(sim))
    add_user(db, "lin", phone=INTERVIEWER_PHONE)
    client = app.test_client()
    login(client, "lin")
    token = csrf(client, "/cati/work")
    r = client.post("/cati/next", data={"csrf_token": token})
    case_id = int(r.headers["Location"].rsplit("/", 1)[1])
    respondent = field.phones[case_id]
    sim.set_persona(respondent, Persona(line="human", ring_seconds=3))
    return sim, client, token, case_id, respondent


def test_click_to_call_rings_the_interviewer_then_dials_the_respondent(field_app):  # noqa: F811
    app, db, field, _clock = field_app
    sim, client, token, case_id, respondent = _interviewer_holding_a_case(app, db, field)

    r = client.post(f"/cati/case/{case_id}/dial?how=gateway", headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.json["ok"]
    call_sid = r.json["call_sid"]
    assert call_sid and call_sid.startswith("CA")
    sim.run_until_idle()

    leg = sim.call(call_sid)
    assert leg.to == INTERVIEWER_PHONE  # Twilio rang the interviewer first
    dials = [e for e in leg.transcript.of_kind("dial")]
    assert [e.text for e in dials] == [respondent]  # then bridged the respondent
    assert dials[0].detail == "completed"
    with db.session() as s:
        attempt = s.scalars(select(CallAttempt).where(CallAttempt.call_sid == call_sid)).one()
        assert attempt.case_id == case_id and attempt.channel == "cati"
        kinds = set(s.scalars(select(AttemptEvent.kind)
                              .where(AttemptEvent.attempt_id == attempt.id)).all())
        assert "recording" not in kinds  # nothing is recorded before consent


def test_click_to_call_from_a_mainland_caller_id_goes_through_the_trunk(field_app):  # noqa: F811
    """The center's own +86 number: both legs through the BYOC trunk, or Twilio refuses.

    Without ``[ivr] byoc_trunk_sid`` the simulator (like Twilio) refuses the call to the
    interviewer's +86 phone; the screen says so in the interviewer's language and no
    attempt is recorded.  With the trunk, the call and the bridged ``<Number>`` carry it.
    """
    import dataclasses

    app, db, field, _clock = field_app
    byoc = "BY" + "ab" * 16
    app.extensions["minping.settings"] = dataclasses.replace(
        settings_of(app), twilio_from_number="+8657100000000")
    runtime = runtime_of(app)
    cfg = runtime.survey_config()
    runtime.use(survey_config=dataclasses.replace(cfg, ivr=dataclasses.replace(
        cfg.ivr, byoc_trunk_sid="")))
    sim, client, token, case_id, respondent = _interviewer_holding_a_case(app, db, field)

    r = client.post(f"/cati/case/{case_id}/dial?how=gateway", headers={"X-CSRF-Token": token})
    assert r.status_code == 409 and not r.json["ok"]
    assert "Twilio 拒绝拨打您的电话" in r.json["error"] and "21215" in r.json["error"]
    with db.session() as s:
        assert s.scalars(select(CallAttempt).where(CallAttempt.case_id == case_id)).all() == []

    runtime.use(survey_config=dataclasses.replace(cfg, ivr=dataclasses.replace(
        cfg.ivr, byoc_trunk_sid=byoc)))
    r = client.post(f"/cati/case/{case_id}/dial?how=gateway", headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.json["ok"], r.json
    sim.run_until_idle()
    leg = sim.call(r.json["call_sid"])
    assert leg.to == INTERVIEWER_PHONE
    assert [(e.text, e.detail) for e in leg.transcript.of_kind("dial")] == [(respondent, "completed")]
    assert f'byoc="{byoc}"' in leg.twiml  # the inline TwiML Twilio was given
