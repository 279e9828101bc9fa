"""Mode and interviewer effects from the database (report, ``score --json``, dashboard).

The estimators are in ``scoring.modes`` and ``scoring.interviewers``; this
module gathers the respondents' answers, their channel, their interviewer and
the arm of the embedded mode experiment (``minping.experiment``).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minping.experiment import ARMS, CATI_FIRST
from minping.models import Answer, CallAttempt, CaseUnit, SampleCase, SampleDraw, Unit, User
from scoring.interviewers import interviewer_effects
from scoring.modes import mode_adjusted, mode_difference

__all__ = ["effects_lines", "interviewer_effects_by_track", "mode_and_interviewer_effects"]


def _clean(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _plain(obj) -> dict:
    return {k: _clean(v) for k, v in obj.__dict__.items()}


def _ratings(session: Session, cfg, draw_id: int, campaign_id: int) -> list[tuple]:
    """(case_id, unit code, points, channel, interviewer username) per in-domain rating
    of an assigned unit by a respondent (final disposition 1.1 or 1.2)."""
    from minping.scores import RESPONDENT_CODES, rating_scale

    scale = rating_scale(cfg)
    unit_code = dict(session.execute(select(Unit.id, Unit.code)
                                     .where(Unit.campaign_id == campaign_id)).all())
    assigned = set(session.execute(
        select(CaseUnit.case_id, CaseUnit.unit_id).join(SampleCase, SampleCase.id == CaseUnit.case_id)
        .where(SampleCase.draw_id == draw_id,
               SampleCase.final_disposition.in_(RESPONDENT_CODES))).all())
    rows = []
    for case_id, unit_id, rating, channel, interviewer in session.execute(
            select(Answer.case_id, Answer.unit_id, Answer.rating, Answer.channel, User.username)
            .join(SampleCase, SampleCase.id == Answer.case_id)
            .outerjoin(CallAttempt, CallAttempt.id == Answer.attempt_id)
            .outerjoin(User, User.id == CallAttempt.interviewer_id)
            .where(SampleCase.draw_id == draw_id,
                   SampleCase.final_disposition.in_(RESPONDENT_CODES))):
        if rating is None or (case_id, unit_id) not in assigned:
            continue
        points = scale.points.get(str(rating).strip())
        if points is not None:
            rows.append((case_id, unit_code[unit_id], float(points), channel, interviewer))
    return rows


def _groups(cfg) -> list[tuple[str, set[str]]]:
    return [("overall", {u.id for u in cfg.units})] + [(t.id, {u.id for u in t.units})
                                                       for t in cfg.tracks]


def _interviewers(rows: list[tuple]) -> dict | None:
    """Interviewer effects of the CATI ratings among ``rows`` (two interviewers at least)."""
    ratings = [(str(iv), u, p) for _, u, p, ch, iv in rows if ch == "cati" and iv is not None]
    if len({iv for iv, _, _ in ratings}) < 2:
        return None
    return interviewer_effects([r[0] for r in ratings], [r[1] for r in ratings],
                               [r[2] for r in ratings]).as_dict()


def interviewer_effects_by_track(session: Session, cfg, *, draw_id: int | None = None) -> dict:
    """Per track and overall, the interviewer effects of the latest (or given) draw so far.

    For the supervisors' dashboard: ``{"draw_id", "tracks": {track: effects or None}}``
    (``scoring.interviewers``: ρ_int, the design effect, the outlying interviewers).
    """
    if draw_id is None:
        draw_id = session.scalar(select(func.max(SampleDraw.id)))
    if draw_id is None:
        return {"draw_id": None, "tracks": {}}
    sd = session.get(SampleDraw, draw_id)
    rows = _ratings(session, cfg, draw_id, sd.campaign_id)
    return {"draw_id": draw_id,
            "tracks": {name: _interviewers([r for r in rows if r[1] in units])
                       for name, units in _groups(cfg)}}


def _arms(session: Session, draw_id: int) -> dict[int, str]:
    return dict(session.execute(select(SampleCase.id, SampleCase.mode_arm).where(
        SampleCase.draw_id == draw_id, SampleCase.mode_arm.is_not(None))).all())


def _experiment_summary(arm: dict[int, str], respondents, answered_cati: set[int]) -> dict | None:
    """Per arm: released cases, respondents, and respondents who answered an interviewer."""
    if not arm:
        return None
    released = Counter(arm.values())
    resp = Counter(arm[r.case_id] for r in respondents if r.case_id in arm)
    cati = Counter(arm[r.case_id] for r in respondents
                   if r.case_id in arm and r.case_id in answered_cati)
    return {a: {"released": released[a], "respondents": resp[a],
                "respondent_share": resp[a] / released[a] if released[a] else None,
                "answered_cati": cati[a]} for a in ARMS}


def _difference(data, y, groups) -> dict | None:
    if groups.count("ivr") < 2 or groups.count("cati") < 2:
        return None
    try:
        d = mode_difference([r.stratum for r in data.respondents], data.population, y, groups)
    except ValueError:
        return None
    return _plain(d)


def _adjusted(cfg, data, phone, rows, experimental: dict) -> dict:
    """Per unit with an experimental δ for its track: the mode-adjusted score beside the score.

    The CATI share of a unit is weighted as its score is (N_h/n_hu).
    """
    from scoring.modes import ModeDifference

    stratum = {r.case_id: r.stratum for r in data.respondents}
    n_hu = data.n_hu
    num: dict[str, float] = defaultdict(float)
    den: dict[str, float] = defaultdict(float)
    for case_id, unit, _, channel, _ in rows:
        h = stratum.get(case_id)
        if h is None or (h, unit) not in n_hu:
            continue
        w = data.population[h] / n_hu[(h, unit)]
        den[unit] += w
        if channel == "cati":
            num[unit] += w
    out = {}
    for track in cfg.tracks:
        e = experimental.get(track.id)
        if not e:
            continue
        delta = ModeDifference(**{k: (np.nan if v is None else v) for k, v in e.items()})
        for u in track.units:
            if u.id not in phone.unit_ids or not den[u.id]:
                continue
            s = phone[u.id]
            if not np.isfinite(s.score):
                continue
            a = mode_adjusted(s.score, s.se, s.df, num[u.id] / den[u.id], delta,
                              level=phone.level)
            out[u.id] = {"track": track.id, **_plain(a)}
    return out


def mode_and_interviewer_effects(session: Session, cfg, data, phone=None) -> dict:
    """Per track and overall: the IVR − CATI differences and the interviewer effects.

    *Mode*: each respondent's score in a track is the mean points of the
    track's assigned units it answered.  ``observational`` compares the
    respondents by the channel they answered in (CATI when any answer was
    given to an interviewer): who answers by CATI differs from who answers by
    keypad, so it mixes selection with measurement.  ``experimental`` compares
    the arms of the embedded mode experiment (``minping.experiment``) as
    randomised, among their respondents (intention to treat; null without an
    experiment).  Both are design-based domain differences (``scoring.modes``).
    ``experiment`` gives per arm the released cases, the respondents and how
    many of them answered an interviewer; ``mode_adjusted`` (with ``phone``,
    the unit scores) gives per unit the score moved to the keypad level by its
    track's experimental δ, beside the unadjusted score.

    *Interviewers*: the CATI ratings of the track's units by interviewer
    (``scoring.interviewers``: ρ_int, the interviewer design effect, outlying
    interviewers), when at least two interviewers gave ratings.
    """
    by_case = {r.case_id for r in data.respondents}
    rows = [r for r in _ratings(session, cfg, data.draw_id, data.campaign_id) if r[0] in by_case]
    arm = _arms(session, data.draw_id)
    resp = list(data.respondents)
    out: dict = {"mode": {}, "interviewers": {}}
    for name, units in _groups(cfg):
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
        used = ["" if not count[r.case_id] else "cati" if r.case_id in cati else "ivr"
                for r in resp]
        # the experiment's arms as randomised: CATI-first → "cati", IVR-first → "ivr"
        assigned = ["" if not count[r.case_id] or r.case_id not in arm
                    else "cati" if arm[r.case_id] == CATI_FIRST else "ivr" for r in resp]
        out["mode"][name] = {"observational": _difference(data, y, used),
                             "experimental": _difference(data, y, assigned)}
        out["interviewers"][name] = _interviewers(mine)
    out["experiment"] = _experiment_summary(arm, resp, {r[0] for r in rows if r[3] == "cati"})
    experimental = {k: v["experimental"] for k, v in out["mode"].items()}
    out["mode_adjusted"] = (_adjusted(cfg, data, phone, rows, experimental)
                            if phone is not None and any(experimental.values()) else {})
    return out


def effects_lines(effects: dict | None) -> list[str]:
    """A few lines for the demo's output: the experiment's arms, the overall IVR − CATI
    differences (experimental beside observational), and ρ_int per track."""
    if not effects:
        return []

    def diff(d):
        if not d:
            return "—"
        return f"{d['difference']:+.1f} [{d['ci_low']:.1f}, {d['ci_high']:.1f}] (n {d['n_a']}/{d['n_b']})"

    out = []
    exp = effects.get("experiment")
    if exp:
        out.append("mode experiment: " + "; ".join(
            f"{arm} {a['released']} released, {a['respondents']} respondents "
            f"({a['answered_cati']} answered an interviewer)" for arm, a in exp.items()))
    for name, m in effects.get("mode", {}).items():
        out.append(f"IVR − CATI {name}: experimental {diff(m.get('experimental'))}; "
                   f"observational {diff(m.get('observational'))}")
    adjusted = effects.get("mode_adjusted") or {}
    if adjusted:
        shifts = [a["shift"] for a in adjusted.values()]
        out.append(f"mode-adjusted scores for {len(adjusted)} units (shift {min(shifts):+.1f} to "
                   f"{max(shifts):+.1f}; unadjusted scores kept for flags and ranks)")
    inter = [f"{name} ρ_int {e['rho']:.3f}, deff {e['deff']:.2f}, outlying "
             f"{sum(r['outlying'] for r in e['rows'])}"
             for name, e in effects.get("interviewers", {}).items() if e and e.get("rho") is not None]
    if inter:
        out.append("interviewer effects: " + "; ".join(inter))
    return out
