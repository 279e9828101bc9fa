"""Mode and interviewer effects from the database (``minping.score_effects``) against R.

``experiment_field`` is ``scored_field`` (two strata, 30 respondents, known
ratings) with the embedded mode experiment: every third case CATI-first, the
rest IVR-first; CATI-first cases answered an interviewer, IVR-first cases the
keypad except every fourth case (finished by CATI); three interviewers.

Reference numbers from ``data/reference_effects_db.R`` (R 4.2.2, survey
4.1.1): ``svyby`` + ``svycontrast`` of the respondents' mean points per track,
IVR − CATI, by arm (experimental) and by the mode used (observational), on
``data/effects_db.csv`` — the respondents of ``experiment_field``, which the
test checks row by row against the database before comparing.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select, update

from minping.models import Answer, CallAttempt, SampleCase, User
from minping.scores import run_scoring
from scoring.interviewers import interviewer_effects
from tests.scoring.test_db_scores import AT, scored_field

DATA = Path(__file__).parent / "data"
POINTS = {"1": 100.0, "2": 60.0, "3": 0.0}
TRACKS = {"overall": None, "departments": ("fgw", "jxj", "kjj"), "windows": ("win-tax", "win-scj")}
# reference_effects_db.R: track, by, mean ivr, mean cati, ivr - cati, SE, degf, confint
R_EFFECTS = {
    ("overall", "arm"): (61.1673799334284, 63.6509900990099, -2.48361016558147,
        8.54070715832404, 28, -19.9784557046742, 15.0112353735113),
    ("overall", "mode"): (61.8766149870801, 62.2495755517827, -0.372960564702588,
        7.41424017178756, 28, -15.5603430835774, 14.8144219541722),
    ("departments", "arm"): (64.9167855444603, 63.4405940594059, 1.47619148505436,
        10.7734752211329, 28, -20.5922720998684, 23.5446550699771),
    ("departments", "mode"): (64.5219638242894, 64.2501414827391, 0.271822341550305,
        9.53459099790198, 28, -19.2589019526488, 19.8025466357494),
    ("windows", "arm"): (55.8904109589041, 66.4594594594595, -10.5690485005553,
        11.8749381672924, 28, -34.893756650814, 13.7556596497033),
    ("windows", "mode"): (59.9749373433584, 60, -0.0250626566416017,
        11.9064421397747, 28, -24.414303769128, 24.3641784558448),
}


def experiment_field(db):
    field = scored_field(db)
    with db.transaction() as s:
        users = [User(username=f"iv{i}", display_name=f"访员{i}", password_hash="x",
                      role="interviewer") for i in range(3)]
        s.add_all(users)
        s.flush()
        cases = s.scalars(select(SampleCase).where(SampleCase.draw_id == field.draw_id)
                          .order_by(SampleCase.draw_order)).all()
        for idx, case in enumerate(cases):
            case.mode_arm = "cati_first" if idx % 3 == 0 else "ivr_first"
            cati = case.mode_arm == "cati_first" or idx % 4 == 1
            attempt = CallAttempt(case_id=case.id, channel="cati" if cati else "ivr",
                                  interviewer_id=users[idx % 3].id if cati else None,
                                  started_at=AT, status="completed")
            s.add(attempt)
            s.flush()
            s.execute(update(Answer).where(Answer.case_id == case.id)
                      .values(channel=attempt.channel, attempt_id=attempt.id))
    return field


def _respondent_rows(db, field):
    """Per respondent: stratum, N, arm, mode, and the mean points per track (None: no rating)."""
    with db.session() as s:
        info = {pid: (arm, channel, iv) for pid, arm, channel, iv in s.execute(
            select(SampleCase.pseudo_id, SampleCase.mode_arm, CallAttempt.channel, User.username)
            .join(CallAttempt, CallAttempt.case_id == SampleCase.id)
            .outerjoin(User, User.id == CallAttempt.interviewer_id)
            .where(SampleCase.draw_id == field.draw_id))}
        order = s.scalars(select(SampleCase.pseudo_id).where(SampleCase.draw_id == field.draw_id)
                          .order_by(SampleCase.draw_order)).all()
    points = defaultdict(list)
    strata = {}
    for pid, stratum, _, _ in field.assigned:
        strata[pid] = stratum
    for pid, _, unit, key in field.ratings:
        if key in POINTS:
            points[pid].append((unit, POINTS[key]))
    rows = []
    for k, pid in enumerate(p for p in order if p in strata):
        arm, channel, _ = info[pid]
        row = {"respondent": f"R{k:02d}", "stratum": strata[pid],
               "N": field.population[strata[pid]],
               "arm": "cati" if arm == "cati_first" else "ivr", "mode": channel}
        for track, units in TRACKS.items():
            mine = [p for u, p in points[pid] if units is None or u in units]
            row[track] = sum(mine) / len(mine) if mine else None
        rows.append(row)
    return rows, info


@pytest.fixture
def effects(db):
    field = experiment_field(db)
    results = run_scoring(db, field.cfg, min_raters=5)
    return field, results, results.as_dict()["effects"]


def test_the_fixture_is_the_databases(db, effects):
    field, _, _ = effects
    rows, _ = _respondent_rows(db, field)
    with open(DATA / "effects_db.csv", newline="") as f:
        fixture = list(csv.DictReader(f))
    assert len(fixture) == len(rows) == 30
    for got, want in zip(rows, fixture, strict=True):
        assert (got["stratum"], str(got["N"]), got["arm"], got["mode"]) == \
            (want["stratum"], want["N"], want["arm"], want["mode"])
        for track in TRACKS:
            assert got[track] == (pytest.approx(float(want[track]), abs=1e-9)
                                  if want[track] != "NA" else None)


@pytest.mark.parametrize("track, by", sorted(R_EFFECTS))
def test_mode_differences_match_svycontrast(effects, track, by):
    _, _, eff = effects
    got = eff["mode"][track]["experimental" if by == "arm" else "observational"]
    ivr, cati, diff, se, df, low, high = R_EFFECTS[(track, by)]
    assert got["mean_a"] == pytest.approx(ivr, rel=1e-10)
    assert got["mean_b"] == pytest.approx(cati, rel=1e-10)
    assert got["difference"] == pytest.approx(diff, rel=1e-9, abs=1e-9)
    assert got["se"] == pytest.approx(se, rel=1e-9)
    assert got["df"] == df
    assert got["ci_low"] == pytest.approx(low, rel=1e-9)
    assert got["ci_high"] == pytest.approx(high, rel=1e-9)


def test_the_experiments_arms_are_counted(effects):
    _, _, eff = effects
    exp = eff["experiment"]
    # 32 cases: 11 CATI-first (every third), 21 IVR-first; the two refusals are in neither
    # count of respondents
    assert exp["cati_first"]["released"] == 11 and exp["ivr_first"]["released"] == 21
    assert exp["cati_first"]["respondents"] + exp["ivr_first"]["respondents"] == 30
    assert exp["cati_first"]["answered_cati"] == exp["cati_first"]["respondents"]


def test_the_mode_adjusted_score_moves_cati_ratings_by_the_experimental_difference(db, effects):
    """Recomputed here from the ratings: the Hájek mean (weights N_h/n_hu) of the unit's
    ratings with every CATI rating moved by the track's experimental δ."""
    field, results, eff = effects
    _, info = _respondent_rows(db, field)
    n_hu = defaultdict(int)
    for _, stratum, unit, _ in field.assigned:
        n_hu[(stratum, unit)] += 1
    delta = {t: eff["mode"][t]["experimental"]["difference"] for t in ("departments", "windows")}
    adjusted = eff["mode_adjusted"]
    for unit, track in (("fgw", "departments"), ("win-tax", "windows")):
        num = den = cati_w = 0.0
        for pid, stratum, u, key in field.ratings:
            if u != unit or key not in POINTS:
                continue
            w = field.population[stratum] / n_hu[(stratum, u)]
            cati = info[pid][1] == "cati"
            num += w * (POINTS[key] + (delta[track] if cati else 0.0))
            den += w
            cati_w += w * cati
        a = adjusted[unit]
        assert a["track"] == track
        assert a["score"] == pytest.approx(results.phone[unit].score, rel=1e-12)
        assert a["adjusted"] == pytest.approx(num / den, rel=1e-10)
        assert a["cati_share"] == pytest.approx(cati_w / den, rel=1e-12)
        # the conservative bound: SE(score) + s·SE(δ)
        se_delta = eff["mode"][track]["experimental"]["se"]
        assert a["se_bound"] == pytest.approx(results.phone[unit].se + a["cati_share"] * se_delta)


def test_interviewer_effects_use_the_cati_ratings_by_interviewer(db, effects):
    field, _, eff = effects
    _, info = _respondent_rows(db, field)
    rows = [(info[pid][2], unit, POINTS[key]) for pid, _, unit, key in field.ratings
            if key in POINTS and info[pid][1] == "cati"]
    want = interviewer_effects([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    got = eff["interviewers"]["overall"]
    assert got["interviewers"] == 3 and got["n"] == len(rows)
    assert got["rho_raw"] == pytest.approx(want.rho_raw, rel=1e-12)
    assert got["deff"] == pytest.approx(want.deff, rel=1e-12)
    assert {r["interviewer"] for r in got["rows"]} == {"iv0", "iv1", "iv2"}
