"""Simulated interviewers for the demo: the CATI phase after the IVR phase.

:func:`run_cati_phase` works the cases the IVR did not finish (hand-overs,
break-offs, no answers ...) with ``interviewers`` simulated interviewers on a
virtual clock, through the same service functions the screen uses
(:func:`cati.service.take_next`, ``begin_attempt``, ``save_answer``,
``close_attempt``), so the scheduler's order, the holds, the appointments and the
refusal-conversion queue are exercised exactly as in the field.

The respondents' behaviour is a small seeded model (pick-up, refusal,
appointment and break-off probabilities); it is for demonstration, not a
calibrated model of a real field.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select

from cati import service
from minping import calling
from minping import dispositions as rule
from minping.cases import IN_FIELD_STATES
from minping.models import AuditLog, SampleCase, User
from minping.scheduler import field_progress
from minping.users import create_user


@dataclass(frozen=True)
class Behaviour:
    """Probabilities of what happens on one CATI call."""

    pick_up: float = 0.55
    busy: float = 0.10  # of the calls not picked up
    machine: float = 0.20  # of the calls not picked up
    not_working: float = 0.02  # of all calls
    hard_refusal: float = 0.06  # of the calls picked up
    soft_refusal: float = 0.10
    appointment: float = 0.12
    break_off: float = 0.05
    convert: float = 0.35  # a refusal-conversion call that ends in an interview
    dont_know: float = 0.12  # share of "don't know" ratings


def interviewer_phone(i: int) -> str:
    """The synthetic phone of simulated interviewer ``i`` (rung by the IVR hand-over)."""
    return f"+86139000{i:05d}"


def simulated_interviewers(session, n: int, *, experienced_every: int = 4) -> list[User]:
    """``n`` interviewer accounts ``sim-cati-01`` ...; created when missing (a random password).

    Each has a synthetic phone (:func:`interviewer_phone`), so that the IVR's
    hand-over key can put a caller through to them during the IVR phase.
    """
    users = []
    password_hash = None
    for i in range(1, n + 1):
        name = f"sim-cati-{i:02d}"
        user = session.scalar(select(User).where(User.username == name))
        if user is None and password_hash is None:
            user = create_user(session, username=name, password=secrets.token_urlsafe(16),
                               role="interviewer", display_name=f"模拟访员{i:02d}",
                               experienced=(i % experienced_every == 0), actor="simulation",
                               phone=interviewer_phone(i))
            password_hash = user.password_hash
        elif user is None:
            # the others share the first one's hash (of a random password nobody knows):
            # a password hash costs a key derivation (scrypt, 0.1-0.5 s of CPU) and these
            # accounts never log in; otherwise created as create_user creates them
            user = User(username=name, display_name=f"模拟访员{i:02d}",
                        password_hash=password_hash, role="interviewer", language="zh",
                        phone=interviewer_phone(i), experienced=(i % experienced_every == 0))
            session.add(user)
            session.flush()
            session.add(AuditLog(user_id=None, actor="simulation", action="user.create",
                                 entity="user", entity_id=str(user.id),
                                 new={"username": name, "role": "interviewer"}))
        elif not user.phone:
            user.phone = interviewer_phone(i)
        users.append(user)
    return users


def _ratings(cfg, rng, n: int, dont_know: float) -> list[str]:
    scored = [o.key for o in cfg.scale.options if o.points is not None]
    outside = [o.key for o in cfg.scale.options if o.points is None]
    keys = []
    for _ in range(n):
        if outside and rng.random() < dont_know:
            keys.append(outside[0])
        else:
            keys.append(scored[int(rng.choice(len(scored), p=_weights(len(scored))))])
    return keys


def _weights(n: int) -> list[float]:
    w = np.linspace(2.0, 1.0, n) ** 2
    return list(w / w.sum())


def _one_call(session, cfg, user, case, *, now, rng, b: Behaviour) -> tuple[str, timedelta]:
    """Play one call; returns (code, how long the interviewer was busy)."""
    service.begin_attempt(session, case, user, now=now)
    r = rng.random()
    if r < b.not_working:
        return _close(session, cfg, user, case, "4.31", now, timedelta(seconds=40))
    if rng.random() >= b.pick_up:
        u = rng.random()
        code = "3.12" if u < b.busy else "3.14" if u < b.busy + b.machine else "3.13"
        return _close(session, cfg, user, case, code, now, timedelta(seconds=50))
    attempt = service.open_attempt(session, case, user)
    service.mark_answered(session, attempt, now=now + timedelta(seconds=15))
    u = rng.random()
    if case.refusal_conversion and rng.random() > b.convert:
        return _close(session, cfg, user, case, "2.112", now, timedelta(minutes=2))
    if u < b.hard_refusal:
        return _close(session, cfg, user, case, "2.112", now, timedelta(minutes=1))
    u -= b.hard_refusal
    if u < b.soft_refusal:
        return _close(session, cfg, user, case, "2.1121", now, timedelta(minutes=1),
                      conversion=True)
    u -= b.soft_refusal
    if u < b.appointment:
        local = (now + timedelta(days=1)).astimezone(cfg.calling.tz)
        slot = calling.next_allowed(cfg.calling, local.replace(hour=int(rng.integers(9, 19)),
                                                       minute=0, second=0, microsecond=0))
        if slot is not None:
            slot = slot.astimezone(cfg.calling.tz)
            req = service.AppointmentRequest(day=slot.date(), at=slot.time().replace(tzinfo=None),
                                             kind="soft")
            return _close(session, cfg, user, case, "2.211", now, timedelta(minutes=1),
                          appointment=req)
    # the units not answered yet, in their order (at most 51): one query for the case
    left = [state.unit_id for state in service.cases.case_units(session, case.id)
            if not state.answered][:51]
    service.mark_answered(session, attempt, now=now + timedelta(seconds=40), consent=True)
    keys = _ratings(cfg, rng, len(left), b.dont_know)
    seconds = 60
    broke = rng.random() < b.break_off
    stop = int(rng.integers(0, len(left))) if broke and left else len(left)
    for unit_id, key in zip(left[:stop], keys[:stop], strict=True):
        seconds += int(rng.integers(12, 30))
        service.save_answer(session, case, user, unit_id, key,
                            now=now + timedelta(seconds=seconds), cfg=cfg)
    code = rule.state_of(session, case, attempt).earned  # 1.1, or 1.2 / 2.12 after a break-off
    return _close(session, cfg, user, case, code, now, timedelta(seconds=seconds + 20))


def _close(session, cfg, user, case, code, now, busy, *, appointment=None, conversion=False):
    service.close_attempt(session, case, user, code=code, now=now + busy, cfg=cfg,
                          appointment=appointment, refusal_conversion=conversion)
    return code, busy + timedelta(seconds=30)  # wrap-up


def run_cati_phase(db, cfg, *, start: datetime, interviewers: int, seed: int,
                   days: float = 3.0, behaviour: Behaviour | None = None,
                   draw_id: int | None = None) -> dict:
    """Work the unfinished cases with simulated interviewers from ``start`` for ``days``.

    Returns a JSON-ready summary: attempts, codes, completes, cases still open,
    the simulated span and the wall-clock seconds.
    """
    if interviewers < 1:
        raise ValueError(f"interviewers must be at least 1, not {interviewers!r}")
    rng = np.random.default_rng(seed)
    b = behaviour or Behaviour()
    wall = time.perf_counter()
    with db.transaction() as s:
        users = [u.id for u in simulated_interviewers(s, interviewers)]
    end = start + timedelta(days=days)
    free_at = {uid: start for uid in users}
    codes: Counter[str] = Counter()
    attempts = 0
    progress = None
    picks = 0
    while True:
        uid = min(free_at, key=lambda k: (free_at[k], k))
        now = free_at[uid]
        if now >= end:
            break
        if not calling.is_allowed(cfg.calling, now):
            nxt = calling.next_allowed(cfg.calling, now)
            if nxt is None:
                break
            free_at[uid] = nxt
            continue
        with db.transaction() as s:
            if progress is None or picks % 20 == 0:
                progress = field_progress(s, draw_id=draw_id)
            user = s.get(User, uid)
            case = service.take_next(s, user, now=now, cfg=cfg, progress=progress,
                                     draw_id=draw_id)
            picks += 1
            if case is None:
                due = s.scalar(select(func.min(SampleCase.next_attempt_at)).where(
                    SampleCase.release_state == "released",
                    SampleCase.state.in_(IN_FIELD_STATES),
                    SampleCase.next_attempt_at > now,
                    SampleCase.attempts < cfg.calling.max_attempts))
                free_at[uid] = max(due, now + timedelta(minutes=1)) if due else end
                continue
            code, busy = _one_call(s, cfg, user, case, now=now, rng=rng, b=b)
        codes[code] += 1
        attempts += 1
        free_at[uid] = now + busy
    with db.session() as s:
        remaining = s.scalar(select(func.count()).where(
            SampleCase.release_state == "released", SampleCase.state.in_(IN_FIELD_STATES))) or 0
        completes = s.scalar(select(func.count()).where(
            SampleCase.final_disposition == "1.1")) or 0
    return {
        "interviewers": interviewers,
        "attempts": attempts,
        "codes": dict(sorted(codes.items())),
        "cati_completes": codes.get("1.1", 0),
        "completes_total": completes,
        "cases_still_in_field": remaining,
        "simulated_until": min(max(free_at.values()), end).isoformat(),
        "seconds": round(time.perf_counter() - wall, 2),
    }
