"""A whole IVR field period against the local Twilio simulator, on a virtual clock.

:func:`run_ivr_field_period` wires the pieces the way production runs them --
the Flask app's webhooks (signed requests, checked), the dialer with its
pacing and calling rules, the real ``twilio`` REST client -- but the telephone
network is :class:`ivr.simulator.Simulator` in-process and time is a
:class:`~ivr.sim.clock.VirtualClock`, so days of fieldwork run in seconds.
``minping simulate`` and ``minping demo`` call it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import func, select

from ivr.dialer import REQUIRED_STATUS_EVENTS, Dialer, StepResult
from ivr.gateway import simulator_client
from ivr.handoff import handover_counts
from minping.cases import attempt_codes, case_code
from minping.errors import MinpingError
from minping.models import Answer, CallAttempt, DoNotCall, Recording, SampleCase
from minping.runtime import runtime_of
from minping.settings import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN, SIMULATOR_FROM_NUMBER
from scoring.aapor import counts_from_codes, outcome_rates

#: The public URL the simulated calls use (never resolved: webhooks run in-process).
SIMULATED_PUBLIC_URL = "https://minping-simulated.invalid"
_FINAL_STATUSES = ("completed", "busy", "no-answer", "canceled", "failed")
#: The call progress events a simulated field period subscribes to: only those the
#: application needs (``initiated`` and ``ringing`` would add about two requests per
#: call and change nothing but the attempts' event logs).
SIMULATION_STATUS_EVENTS = REQUIRED_STATUS_EVENTS


def behaviour_for(cfg, **changes):
    """The simulator's default respondent model with the survey's keypad keys.

    Consent is ``[ivr] start_key``; refusing at consent and opting out press
    ``opt_out_key``; asking for an interviewer presses ``handoff_key``.  Wrong
    keys never hit these, so opt-outs and hand-overs come only from their own
    probabilities.  ``changes`` override other fields of
    :class:`ivr.sim.behaviour.BehaviourModel`.
    """
    from ivr.simulator import BehaviourModel

    ivr = cfg.ivr
    return BehaviourModel(**({"consent_key": ivr.start_key, "refusal_key": ivr.opt_out_key,
                              "opt_out_key": ivr.opt_out_key, "handoff_key": ivr.handoff_key}
                             | changes))


def simulated_account(cfg):
    """The configuration as the simulated polling center runs it.

    The simulator refuses what Twilio refuses for mainland China by default: the
    simulated account's caller ID is not +86 (no BYOC trunk needed), and when the
    file names no Messaging Service the SMS notice goes through the simulated
    account's (:data:`~minping.settings.SIMULATOR_MESSAGING_SERVICE_SID`).
    """
    import dataclasses

    from minping.settings import SIMULATOR_MESSAGING_SERVICE_SID

    if not cfg.ivr.sms_advance_notice or cfg.ivr.messaging_service_sid:
        return cfg
    return dataclasses.replace(cfg, ivr=dataclasses.replace(
        cfg.ivr, messaging_service_sid=SIMULATOR_MESSAGING_SERVICE_SID))


def run_ivr_field_period(db, cfg, *, start: datetime, days: float, seed: int,
                         draw_id: int | None = None, behaviour=None,
                         public_url: str = SIMULATED_PUBLIC_URL,
                         status_events: tuple[str, ...] = SIMULATION_STATUS_EVENTS,
                         progress: Callable[[str], None] | None = None,
                         availability: bool = False) -> dict:
    """Dial every released case of the database for ``days`` from ``start``.

    Parameters
    ----------
    db : minping.db.Database
        A migrated database holding released cases with assigned units.
    cfg : minping.config.SurveyConfig
    start : datetime
        Aware start of the field period (the virtual clock starts there).
    days : float
        Length of the field period; calls in flight at its end are played out.
    seed : int
        Seeds the simulated respondents (same seed, same run).
    draw_id : int, optional
        Only this draw's cases.
    behaviour : ivr.simulator.BehaviourModel, optional
        The respondent model (default: :func:`behaviour_for` ``(cfg)``).
    status_events : tuple of str
        The call progress events the dialer subscribes to (default
        :data:`SIMULATION_STATUS_EVENTS`; :data:`ivr.dialer.STATUS_EVENTS` for all).
    progress : callable, optional
        Receives a progress line now and then.
    availability : bool
        Respondents answer by the hour profile of their group and town
        (:mod:`ivr.sim.availability`, the weekday of ``start``) instead of the
        model's one profile for all.

    Returns
    -------
    dict
        ``calls``, ``attempts``, ``answers``, ``interviews`` (1.1 and 1.2 attempt
        outcomes), ``cases_final``, ``cases_in_field``, ``final_dispositions``
        (code -> cases, with the period over: ``attempts_exhausted``),
        ``do_not_call``, ``handed_to_cati``, ``recordings``, ``sms_notices``,
        ``max_concurrent_calls`` and ``max_calls_in_one_second`` observed at the
        simulator, ``rates`` (AAPOR RR1..CON3 with e), ``virtual_start``,
        ``virtual_end``, ``wall_seconds``.
    """
    from ivr.simulator import Simulator, VirtualClock, WsgiWebhookTransport
    from minping import create_app

    if start.tzinfo is None:
        raise MinpingError(f"start must be a timezone-aware datetime, got {start.isoformat()}")
    if days <= 0:
        raise MinpingError(f"days must be > 0, got {days!r}")
    wall = time.monotonic()
    cfg = simulated_account(cfg)
    app = create_app({
        "ENVIRON": {"MINPING_ENV": "development", "MINPING_SECRET_KEY": "simulation"},
        "DATABASE_URL": db.url, "MINPING_PUBLIC_URL": public_url,
        "TWILIO_ACCOUNT_SID": SIMULATOR_ACCOUNT_SID, "TWILIO_AUTH_TOKEN": SIMULATOR_AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": SIMULATOR_FROM_NUMBER,
    })
    clock = VirtualClock(start)
    sim = Simulator(account_sid=SIMULATOR_ACCOUNT_SID, auth_token=SIMULATOR_AUTH_TOKEN,
                    rng=np.random.default_rng(seed), transport=WsgiWebhookTransport(app),
                    clock=clock, calls_per_second=cfg.calling.calls_per_second,
                    behaviour=behaviour if behaviour is not None else behaviour_for(cfg))
    _interviewer_phones(db, sim)
    client = simulator_client(sim)
    runtime_of(app).use(clock=clock.now, twilio_client=client, survey_config=cfg)
    dialer = Dialer(db, cfg, client, public_url=public_url, from_number=SIMULATOR_FROM_NUMBER,
                    now=clock.now, sleep=sim.advance, draw_id=draw_id,
                    status_events=status_events)
    end = start + timedelta(days=days)
    if availability:
        set_availability(db, sim, start.astimezone(cfg.calling.tz).weekday(), draw_id=draw_id)
    try:
        dialer.reconcile()
        drive(dialer, sim, end, progress=progress)
        sim.run_until_idle()  # calls in flight at the end of the period play out
        summary = _summary(db, draw_id, sim)
        with db.session() as s:
            summary["handovers"] = handover_counts(s, draw_id=draw_id)
    finally:
        app.extensions["minping.db"].dispose()
    summary.update(virtual_start=start.astimezone(UTC).isoformat(),
                   virtual_end=clock.now().isoformat(),
                   sms_notices=dialer.progress.notices, retried_429=dialer.progress.retried_429,
                   wall_seconds=round(time.monotonic() - wall, 2))
    return summary


def set_availability(db, sim, weekday: int, *, draw_id: int | None = None) -> int:
    """Give every released case's number a persona of its group and town; returns how many."""
    from ivr.sim.availability import persona_for
    from minping.models import FrameContact, RespondentGroup, Town

    q = (select(FrameContact.phone, RespondentGroup.code, Town.code)
         .join(SampleCase, SampleCase.contact_id == FrameContact.id)
         .join(RespondentGroup, RespondentGroup.id == FrameContact.group_id)
         .outerjoin(Town, Town.id == FrameContact.town_id)
         .where(SampleCase.release_state == "released").order_by(SampleCase.id))
    if draw_id is not None:
        q = q.where(SampleCase.draw_id == draw_id)
    with db.session() as s:
        rows = s.execute(q).all()
    for phone, group, town in rows:
        sim.set_persona(phone, persona_for(sim.behaviour, group, town, weekday, sim.rng))
    return len(rows)


#: How a simulated interviewer's phone takes a hand-over: mostly answered within a
#: few rings, sometimes busy or not answered in ``[ivr] handoff_wait_seconds``.
INTERVIEWER_PHONE = {"line": "human", "answer_probability": 0.75, "busy_probability": 0.1}


def _interviewer_phones(db, sim) -> None:
    """Give the active interviewers' phones (the hand-over's ``<Dial>``) a persona."""
    from ivr.simulator import Persona
    from minping.models import User

    with db.session() as s:
        phones = s.scalars(select(User.phone).where(
            User.role == "interviewer", User.active.is_(True), User.phone.is_not(None))).all()
    for phone in phones:
        sim.set_persona(phone, Persona(**INTERVIEWER_PHONE))


def drive(dialer: Dialer, sim, end: datetime, *, progress: Callable[[str], None] | None = None
          ) -> None:
    """Run ``dialer`` against ``sim`` (on its virtual clock) until ``end`` or nothing is left.

    Between dialer steps the simulator's network runs: to the moment the
    dialer asked to be woken (rate limit, calling window, next due case), or
    until some call ends when the calls in flight are at their limit.  While
    idle (no case due), a wake-up with no webhook sent since the last step skips
    the database (:meth:`~ivr.dialer.Dialer.idle_again`): the step would find
    nothing again.  The dialer acts at the same virtual moments either way.
    """
    clock = sim.clock
    last_note = time.monotonic()
    idle: tuple[StepResult, int] | None = None  # the last idle step, webhooks sent by then
    while clock.now() < end:
        result = None
        if idle is not None and len(sim.exchanges) == idle[1]:
            # no webhook since the last idle step: the database is as it left it, so
            # the step would find nothing again (Dialer.idle_again says until when)
            result = dialer.idle_again(idle[0])
        if result is None:
            result = dialer.step()
        idle = (result, len(sim.exchanges)) if result.blocked == "idle" else None
        now = clock.now()
        if progress and time.monotonic() - last_note > 2.0:
            progress(f"{now:%Y-%m-%d %H:%M} UTC | " + dialer.refresh_progress().line())
            last_note = time.monotonic()
        if result.blocked == "done":
            return
        if result.blocked == "concurrency":
            # run the network until some call ends (a final status callback arrives)
            while clock.now() < end:
                seen = len(sim.exchanges)
                sim.advance(1.0)
                if any(x.purpose == "status-callback"
                       and dict(x.params).get("CallStatus") in _FINAL_STATUSES
                       for x in sim.exchanges[seen:]):
                    break
            continue
        target = result.wait_until
        if result.blocked == "idle":
            cap = now + timedelta(seconds=60)
            target = cap if target is None else min(max(target, now), cap)
        elif target is None:
            target = end
        seconds = (min(target, end) - now).total_seconds()
        sim.advance(max(seconds, 0.001))


def _summary(db, draw_id: int | None, sim) -> dict:
    with db.session() as s:
        case_filter = [] if draw_id is None else [SampleCase.draw_id == draw_id]
        states = Counter(dict(s.execute(select(SampleCase.state, func.count())
                                        .where(SampleCase.release_state == "released",
                                               *case_filter)
                                        .group_by(SampleCase.state)).all()))
        attempt_q = select(CallAttempt.outcome, func.count()).where(CallAttempt.channel == "ivr")
        if draw_id is not None:
            attempt_q = attempt_q.join(SampleCase, SampleCase.id == CallAttempt.case_id).where(
                SampleCase.draw_id == draw_id)
        outcomes = Counter(dict(s.execute(attempt_q.group_by(CallAttempt.outcome)).all()))
        released = s.execute(select(SampleCase.id, SampleCase.final_disposition).where(
            SampleCase.release_state == "released", *case_filter)).all()
        codes = attempt_codes(s, draw_id=draw_id)
        finals = Counter(case_code(final, codes.get(cid, [])) for cid, final in released)
        answers = s.scalar(select(func.count()).select_from(Answer)
                           .where(Answer.rating.is_not(None))) or 0
        dnc = s.scalar(select(func.count()).select_from(DoNotCall)) or 0
        recordings = s.scalar(select(func.count()).select_from(Recording)) or 0
    intervals = sorted((c.date_created, c.end_time or c.date_updated)
                       for c in sim.calls.values() if c.direction == "outbound-api")
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals],
                    key=lambda e: (e[0], e[1]))
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    per_second = Counter(a.replace(microsecond=0) for a, _ in intervals)
    rates = outcome_rates(counts_from_codes(list(finals.elements()))) if released else None
    return {
        "cases": len(released),
        "calls": len(intervals),
        "attempts": sum(outcomes.values()),
        "attempt_outcomes": {k or "open": v for k, v in sorted(outcomes.items(),
                                                              key=lambda kv: kv[0] or "")},
        "interviews": outcomes.get("1.1", 0) + outcomes.get("1.2", 0),
        "answers": answers,
        "cases_final": states.get("final", 0),
        "cases_in_field": states.get("pending", 0) + states.get("in_field", 0),
        "handed_to_cati": states.get("handoff_cati", 0),
        "final_dispositions": dict(sorted(finals.items())),
        "do_not_call": dnc,
        "recordings": recordings,
        "max_concurrent_calls": peak,
        "max_calls_in_one_second": max(per_second.values(), default=0),
        "rates": rates.as_dict() if rates else None,
    }
