"""A rig for IVR tests: the app's webhooks, the simulator (in-process, virtual clock),
the real twilio client and the dialer, over a field built with ``build_field``."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from ivr.dialer import Dialer
from ivr.gateway import simulator_client
from ivr.simulator import Persona, Simulator, VirtualClock, WsgiWebhookTransport
from minping.app import settings_of
from minping.models import Answer, CallAttempt, CaseUnit, SampleCase
from minping.runtime import runtime_of
from minping.settings import (
    SIMULATOR_ACCOUNT_SID,
    SIMULATOR_AUTH_TOKEN,
    SIMULATOR_FROM_NUMBER,
    SIMULATOR_MESSAGING_SERVICE_SID,
)
from tests.builders import FIELD_START, build_field


def quiet_config(cfg, **ivr_changes):
    """The configuration without the SMS notice (the first call comes at once).

    The SMS, when a test turns it on, goes through the simulated account's
    Messaging Service, as a mainland polling center's does (the simulator
    refuses SMS to +86 numbers sent from a number, as Twilio does).
    """
    changes = {"sms_advance_notice": False,
               "messaging_service_sid": SIMULATOR_MESSAGING_SERVICE_SID} | ivr_changes
    return dataclasses.replace(cfg, ivr=dataclasses.replace(cfg.ivr, **changes))


class Rig:
    def __init__(self, app, db, *, n_cases=1, units_per_case=3, cfg=None, routes=None,
                 sim_kwargs=None, **dialer_kwargs):
        self.app, self.db = app, db
        self.field = build_field(db, n_cases=n_cases, units_per_case=units_per_case)
        self.cfg = cfg if cfg is not None else quiet_config(self.field.cfg)
        self.clock = VirtualClock(FIELD_START)
        self.sim = Simulator(account_sid=SIMULATOR_ACCOUNT_SID, auth_token=SIMULATOR_AUTH_TOKEN,
                             rng=np.random.default_rng(11),
                             transport=WsgiWebhookTransport(app, routes=routes),
                             clock=self.clock, **(sim_kwargs or {}))
        self.client = simulator_client(self.sim)
        runtime_of(app).use(clock=self.clock.now, twilio_client=self.client,
                            survey_config=self.cfg)
        self.public_url = settings_of(app).public_url
        self.dialer = Dialer(db, self.cfg, self.client, public_url=self.public_url,
                             from_number=SIMULATOR_FROM_NUMBER, now=self.clock.now,
                             sleep=self.sim.advance, **dialer_kwargs)

    def case_id(self, i=0):
        return self.field.case_ids[i]

    def phone(self, i=0):
        return self.field.phones[self.case_id(i)]

    def persona(self, i=0, **kwargs):
        self.sim.set_persona(self.phone(i), Persona(**kwargs))

    def dial(self):
        """One dialer step, then the network runs until every call is over."""
        result = self.dialer.step()
        self.sim.run_until_idle()
        return result

    def dial_when_due(self, i=0):
        case = self.case(i)
        if case.next_attempt_at is not None:
            self.clock.advance_to(case.next_attempt_at)
        return self.dial()

    def case(self, i=0) -> SampleCase:
        with self.db.session() as s:
            return s.get(SampleCase, self.case_id(i))

    def answers(self, i=0) -> dict[int, str | None]:
        with self.db.session() as s:
            rows = s.execute(select(CaseUnit.position, Answer.rating)
                             .join(Answer, (Answer.case_id == CaseUnit.case_id)
                                   & (Answer.unit_id == CaseUnit.unit_id))
                             .where(CaseUnit.case_id == self.case_id(i))).all()
        return dict(rows)

    def attempts(self, i=0) -> list[CallAttempt]:
        with self.db.session() as s:
            return list(s.scalars(select(CallAttempt).where(CallAttempt.case_id == self.case_id(i))
                                  .order_by(CallAttempt.id)).all())

    def calls_to(self, i=0):
        return [c for c in self.sim.calls.values() if c.to == self.phone(i)]

    def unit_names(self, i=0) -> list[str]:
        with self.db.session() as s:
            from minping.models import Unit

            return list(s.scalars(select(Unit.name).join(CaseUnit, CaseUnit.unit_id == Unit.id)
                                  .where(CaseUnit.case_id == self.case_id(i))
                                  .order_by(CaseUnit.position)).all())

    def later(self, **kwargs):
        self.clock.advance(timedelta(**kwargs).total_seconds())


@pytest.fixture
def rig_factory(app, db):
    def make(**kwargs):
        return Rig(app, db, **kwargs)

    return make


def sign(url: str, form: dict, token: str = SIMULATOR_AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, form)


def signed_post(client, public_url: str, path: str, form: dict, **kwargs):
    """POST ``form`` to ``path`` with the signature Twilio would send."""
    headers = {"X-Twilio-Signature": sign(public_url + path, form)} | kwargs.pop("headers", {})
    return client.post(path, data=form, headers=headers, **kwargs)


# the simulator tests' fixtures (tests/ivr/test_simulator*.py)
from tests.ivr.simulator_harness import harness_factory, inproc  # noqa: E402,F401
