"""Mode and interviewer effects from the database (for the report and ``score --json``).

The estimators are in ``scoring.modes`` and ``scoring.interviewers``; this
module gathers the respondents' answers, their channel and interviewer.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from minping.models import Answer, CallAttempt, CaseUnit, SampleCase, Unit, User
from scoring.interviewers import interviewer_effects
from scoring.modes import mode_difference

__all__ = ["mode_and_interviewer_effects"]


def _clean(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def mode_and_interviewer_effects(session: Session, cfg, data) -> dict:
    """Per track and overall: the observational IVR − CATI difference and interviewer effects.

    *Mode*: each respondent's score in a track is the mean points of the
    track's assigned units it answered; its mode is the channel of those
    answers (CATI when any was given to an interviewer).  The difference of the
    two domain means uses the stratified design (``scoring.modes``).  This is
    the observational difference: who answers by CATI differs from who answers
    by keypad.  The experimental difference needs the embedded mode
    experiment, which this campaign does not run (``experimental`` is null).

    *Interviewers*: the CATI ratings of the track's units by interviewer
    (``scoring.interviewers``: ρ_int, the interviewer design effect, outlying
    interviewers), when at least two interviewers gave ratings.
    """
    from minping.scores import RESPONDENT_CODES, rating_scale

    scale = rating_scale(cfg)
    by_case = {r.case_id: r for r in data.respondents}
    unit_code = dict(session.execute(select(Unit.id, Unit.code)
                                     .where(Unit.campaign_id == data.campaign_id)).all())
    assigned = set(session.execute(
        select(CaseUnit.case_id, CaseUnit.unit_id).join(SampleCase, SampleCase.id == CaseUnit.case_id)
        .where(SampleCase.draw_id == data.draw_id,
               SampleCase.final_disposition.in_(RESPONDENT_CODES))).all())
    rows = []
    for case_id, unit_id, rating, channel, interviewer in session.execute(
            select(Answer.case_id, Answer.unit_id, Answer.rating, Answer.channel, User.username)
            .join(SampleCase, SampleCase.id == Answer.case_id)
            .outerjoin(CallAttempt, CallAttempt.id == Answer.attempt_id)
            .outerjoin(User, User.id == CallAttempt.interviewer_id)
            .where(SampleCase.draw_id == data.draw_id,
                   SampleCase.final_disposition.in_(RESPONDENT_CODES))):
        if rating is None or (case_id, unit_id) not in assigned or case_id not in by_case:
            continue
        points = scale.points.get(str(rating).strip())
        if points is not None:
            rows.append((case_id, unit_code[unit_id], float(points), channel, interviewer))
    groups = [("overall", {u.id for u in cfg.units})] + [(t.id, {u.id for u in t.units})
                                                         for t in cfg.tracks]
    resp = list(data.respondents)
    out: dict = {"mode": {}, "interviewers": {}}
    for name, units in groups:
        mine = [r for r in rows if r[1] in units]
        total: dict[int, float] = defaultdict(float)
        count: Counter = Counter()
        cati: set[int] = set()
        for case_id, _, points, channel, _ in mine:
            total[case_id] += points
            count[case_id] += 1
            if channel == "cati":
                cati.add(case_id)
        y = [total[r.case_id] / count[r.case_id] if count[r.case_id] else 0.0 for r in resp]
        mode = ["" if not count[r.case_id] else "cati" if r.case_id in cati else "ivr"
                for r in resp]
        observational = None
        if mode.count("ivr") >= 2 and mode.count("cati") >= 2:
            try:
                d = mode_difference([r.stratum for r in resp], data.population, y, mode)
                observational = {k: _clean(v) for k, v in d.__dict__.items()}
            except ValueError:
                observational = None
        out["mode"][name] = {"observational": observational, "experimental": None}
        ratings = [(str(iv), u, p) for _, u, p, ch, iv in mine if ch == "cati" and iv is not None]
        effect = None
        if len({iv for iv, _, _ in ratings}) >= 2:
            effect = interviewer_effects([r[0] for r in ratings], [r[1] for r in ratings],
                                         [r[2] for r in ratings]).as_dict()
        out["interviewers"][name] = effect
    return out
