"""The embedded mode experiment: which released cases go CATI-first (方式实验).

The campaign's ``[experiment] mode_cati_first_fraction`` f (0 = off) routes a
random share f of the released cases to an interviewer first instead of the
keypad.  This module is the one home of that rule:

* **Assignment** (:func:`arm_of`): case c is CATI-first when
  u(c) < f with u(c) = the first 64 bits of SHA-256(``"{seed}|mode-experiment|{pseudo_id}"``)
  / 2⁶⁴, a uniform number fixed by the seed and the case's pseudonymous id:
  independent Bernoulli(f) trials, the same whatever order or batch the cases
  are released in.  ``seed`` is ``[experiment] seed`` or, by default, the
  draw's seed.
* **When**: at release (:func:`assign_released`, called by every release in
  :mod:`minping.draws.release`); a case keeps its arm for good.  Each release
  writes one audit entry (action ``experiment.assign``) with f, the seed, the
  rule and the pseudonymous ids of both arms, so anyone can re-derive the
  assignment (:func:`verify_arms`).  Cases released while the experiment is
  off have no arm and are outside the experiment.
* **Routing** (:func:`ivr_may_dial`): the IVR dialer does not dial a
  CATI-first case before an interviewer has attempted it (after that, the
  usual rules apply to both channels).  IVR-first cases are routed as always.

The analysis (``minping.score_effects``, ``scoring.modes``) compares the arms
as randomised among their respondents.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session

from minping.models import AuditLog, CallAttempt, SampleCase, SampleDraw

__all__ = ["ARMS", "CATI_FIRST", "IVR_FIRST", "arm_of", "assign_released", "ivr_may_dial",
           "uniform", "verify_arms"]

IVR_FIRST = "ivr_first"
CATI_FIRST = "cati_first"
ARMS = (IVR_FIRST, CATI_FIRST)
RULE = "sha256(seed|mode-experiment|pseudo_id)[:64 bits] / 2^64 < fraction"


def uniform(seed: str, pseudo_id: str) -> float:
    """The case's uniform number in [0, 1) (see the module notes)."""
    digest = hashlib.sha256(f"{seed}|mode-experiment|{pseudo_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def arm_of(seed: str, pseudo_id: str, fraction: float) -> str:
    """``"cati_first"`` when the case's uniform number is under ``fraction``, else ``"ivr_first"``."""
    return CATI_FIRST if uniform(seed, pseudo_id) < fraction else IVR_FIRST


def _seed(session: Session, draw_id: int, experiment) -> str:
    if experiment.seed:
        return experiment.seed
    sd = session.get(SampleDraw, draw_id)
    return "" if sd is None else str(sd.seed)


def assign_released(session: Session, draw_id: int, experiment, *, now: datetime,
                    actor: str = "minping", user_id: int | None = None) -> dict | None:
    """Give an arm to the cases of ``draw_id`` released at ``now`` that have none; audit it.

    ``experiment`` is the campaign's :class:`minping.config.Experiment` (or
    ``None``).  Does nothing (returns ``None``) when the fraction is 0.
    Returns the audit entry's ``new`` value.
    """
    fraction = 0.0 if experiment is None else float(experiment.mode_cati_first_fraction)
    if fraction <= 0.0:
        return None
    seed = _seed(session, draw_id, experiment)
    rows = session.execute(
        select(SampleCase.id, SampleCase.pseudo_id).where(
            SampleCase.draw_id == draw_id, SampleCase.release_state == "released",
            SampleCase.released_at == now, SampleCase.mode_arm.is_(None))
        .order_by(SampleCase.id)).all()
    arms: dict[str, list] = {IVR_FIRST: [], CATI_FIRST: []}
    for case_id, pseudo_id in rows:
        arms[arm_of(seed, pseudo_id, fraction)].append((case_id, pseudo_id))
    for arm, cases in arms.items():
        if cases:
            session.execute(update(SampleCase).where(SampleCase.id.in_([c for c, _ in cases]))
                            .values(mode_arm=arm).execution_options(synchronize_session=False))
    new = {"fraction": fraction, "seed": seed, "rule": RULE,
           **{arm: sorted(p for _, p in cases) for arm, cases in arms.items()}}
    session.add(AuditLog(at=now, user_id=user_id, actor=actor, action="experiment.assign",
                         entity="sample_draw", entity_id=str(draw_id), new=new,
                         detail=f"mode experiment: {len(arms[CATI_FIRST])} of {len(rows)} "
                                "released cases CATI-first"))
    return new


def ivr_may_dial():
    """The SQL condition the IVR dialer adds: not a CATI-first case no interviewer has tried."""
    return or_(
        SampleCase.mode_arm.is_(None),
        SampleCase.mode_arm != CATI_FIRST,
        exists().where(CallAttempt.case_id == SampleCase.id, CallAttempt.channel == "cati"),
    )


def verify_arms(session: Session, draw_id: int) -> dict:
    """Re-derive every audited assignment of ``draw_id`` and compare with the cases' arms.

    Returns ``{"matches", "cases", "cati_first", "problems"}``; a problem names
    the case (pseudonymous id), the arm re-derived from the audit and the arm stored.
    """
    stored = dict(session.execute(select(SampleCase.pseudo_id, SampleCase.mode_arm)
                                  .where(SampleCase.draw_id == draw_id)).all())
    problems, n, cati = [], 0, 0
    for (new,) in session.execute(
            select(AuditLog.new).where(AuditLog.action == "experiment.assign",
                                       AuditLog.entity == "sample_draw",
                                       AuditLog.entity_id == str(draw_id))
            .order_by(AuditLog.id)):
        for logged in ARMS:
            for pid in new.get(logged, []):
                n += 1
                derived = arm_of(new["seed"], pid, float(new["fraction"]))
                cati += derived == CATI_FIRST
                if derived != logged or stored.get(pid) != derived:
                    problems.append({"case": pid, "derived": derived, "logged": logged,
                                     "stored": stored.get(pid)})
    in_arms = sum(1 for a in stored.values() if a is not None)
    if in_arms != n:
        problems.append({"case": None, "detail": f"{in_arms} cases have an arm, the audit "
                                                 f"lists {n}"})
    return {"matches": not problems, "cases": n, "cati_first": cati, "problems": problems}
