"""The simulated field period (ivr.fieldwork) and its respondent model's keys."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sqlalchemy import select

from ivr.dialer import REQUIRED_STATUS_EVENTS, STATUS_EVENTS, Dialer
from ivr.fieldwork import SIMULATION_STATUS_EVENTS, behaviour_for, run_ivr_field_period
from ivr.simulator import BehaviourModel, Persona
from minping.models import AttemptEvent, CallAttempt
from minping.settings import SIMULATOR_FROM_NUMBER
from tests.builders import FIELD_START, build_field


def test_field_period_subscribes_only_to_the_events_the_app_needs(db):
    field = build_field(db, n_cases=12, units_per_case=3)
    summary = run_ivr_field_period(db, field.cfg, start=FIELD_START, days=1, seed=5)
    assert SIMULATION_STATUS_EVENTS == REQUIRED_STATUS_EVENTS == ("answered", "completed")
    assert summary["calls"] >= 12 and summary["calls"] == summary["attempts"]
    with db.session() as s:
        attempts = s.scalars(select(CallAttempt)).all()
        statuses = Counter(e.payload["CallStatus"] for e in s.scalars(
            select(AttemptEvent).where(AttemptEvent.kind == "status")))
    assert not {"initiated", "ringing"} & set(statuses)
    # every attempt was closed by its final status, and answered calls carry their time
    assert all(a.outcome is not None and a.status_rank == 4 for a in attempts)
    assert statuses["in-progress"] == sum(a.answered_at is not None for a in attempts) > 0
    assert summary["max_concurrent_calls"] <= field.cfg.calling.max_concurrent_calls


def test_dialer_refuses_status_events_without_the_final_status(rig_factory):
    rig = rig_factory()

    def dialer(events):
        return Dialer(rig.db, rig.cfg, rig.client, public_url=rig.public_url,
                      from_number=SIMULATOR_FROM_NUMBER, now=rig.clock.now, status_events=events)

    assert dialer(STATUS_EVENTS).status_events == list(STATUS_EVENTS)
    assert rig.dialer.status_events == list(STATUS_EVENTS)  # the default: every event
    with pytest.raises(ValueError, match="'completed'"):
        dialer(("initiated", "answered"))
    with pytest.raises(ValueError, match="'answered'"):
        dialer(("completed",))
    with pytest.raises(ValueError, match="'hung-up'"):
        dialer(("answered", "completed", "hung-up"))


def _keys(model: BehaviourModel, persona: Persona, n: int = 3000) -> Counter:
    rng = np.random.default_rng(3)
    return Counter(model.choose_keys(persona, heard="question", gather_index=1, rng=rng)
                   for _ in range(n))


def test_wrong_keys_never_press_the_special_keys():
    model = BehaviourModel(handoff_key="7", opt_out_key="6", refusal_key="6")
    keys = _keys(model, Persona(wrong_key_rate=1.0))
    # the default rating scale is 0-3: wrong keys are the digits left, 6 and 7 excepted
    assert set(keys) == {"4", "5", "8", "9"}
    assert model.special_keys == {"6", "7"}


def test_opt_out_and_hand_over_come_from_their_own_probabilities():
    model = BehaviourModel()
    assert _keys(model, Persona(opt_out_rate=1.0)) == Counter({"9": 3000})
    assert _keys(model, Persona(handoff_rate=1.0)) == Counter({"8": 3000})
    keys = _keys(model, Persona(opt_out_rate=0.1, handoff_rate=0.2), n=20000)
    # binomial(20000, p): 5 standard deviations either side
    assert abs(keys["9"] - 2000) < 5 * (20000 * 0.1 * 0.9) ** 0.5
    assert abs(keys["8"] - 4000) < 5 * (20000 * 0.2 * 0.8) ** 0.5
    persona = model.draw_persona(np.random.default_rng(1))
    assert (persona.opt_out_rate, persona.handoff_rate) == (model.p_opt_out_key,
                                                            model.p_handoff_key)


def test_behaviour_for_takes_the_survey_keys(db):
    cfg = build_field(db, n_cases=1).cfg
    model = behaviour_for(cfg, p_star=0.0)
    assert (model.consent_key, model.opt_out_key, model.refusal_key, model.handoff_key) == (
        cfg.ivr.start_key, cfg.ivr.opt_out_key, cfg.ivr.opt_out_key, cfg.ivr.handoff_key)
    assert model.p_star == 0.0


@pytest.mark.parametrize("changes, message", [
    ({"p_wrong_key": 0.5, "p_silence": 0.3, "p_handoff_key": 0.3}, r"> 1"),
    ({"handoff_key": "9"}, "both '9'"),
    ({"opt_out_key": "99"}, "opt_out_key must be one keypad key"),
    ({"p_opt_out_key": 1.5}, r"p_opt_out_key must be a probability"),
])
def test_behaviour_model_rejects_bad_keys_and_probabilities(changes, message):
    with pytest.raises(ValueError, match=message):
        BehaviourModel(**changes)
