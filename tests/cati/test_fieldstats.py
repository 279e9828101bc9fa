"""Field statistics: AAPOR rates from the database equal hand-computed values."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cati import service
from minping import fieldstats
from minping.models import SampleCase, User
from tests.builders import FIELD_START, build_field
from tests.cati.helpers import add_user, answer_for

# Twenty cases closed by two interviewers with known codes.
#   ann: 1.1 x4, 1.2 (then attempts run out) x1, 2.112 x2, 4.31 x2, 3.13 (cap) x1
#   bob: 1.1 x2, 2.31 x1, 4.20 x1, 3.12 (cap) x2, 2.1121 (cap -> 2.112) x1
#   never attempted: 3 cases (3.11, UH)
# Final aggregates: I=6, P=1, R=3, NC=0, O=1, UH=3+3=6, UO=0, NE=3.
PLAN = (
    [("ann", ["1.1"])] * 4 + [("ann", ["1.2"] * 2)] + [("ann", ["2.112"])] * 2
    + [("ann", ["4.31"])] * 2 + [("ann", ["3.13"] * 2)]
    + [("bob", ["1.1"])] * 2 + [("bob", ["2.31"]), ("bob", ["4.20"])]
    + [("bob", ["3.12"] * 2)] * 2 + [("bob", ["2.1121", "2.1121"])]
)


def hand_rates():
    # By hand from the AAPOR formulas (Standard Definitions, 10th ed.):
    i, p, r, nc, o, uh, uo, ne = 6, 1, 3, 0, 1, 6, 0, 3
    e = (i + p + r + nc + o) / (i + p + r + nc + o + ne)  # 11/14, calculator default
    d = i + p + r + nc + o + uh + uo  # 17
    de = i + p + r + nc + o + e * (uh + uo)  # 11 + 66/14
    known = i + p + r + nc + o  # 11
    return {
        "RR1": i / d, "RR2": (i + p) / d, "RR3": i / de, "RR4": (i + p) / de,
        "RR5": i / known, "RR6": (i + p) / known,
        "COOP1": i / (i + p + r + o), "COOP2": (i + p) / (i + p + r + o),
        "COOP3": i / (i + p + r), "COOP4": (i + p) / (i + p + r),
        "REF1": r / d, "REF2": r / de, "REF3": r / known,
        "CON1": (i + p + r + o) / d, "CON2": (i + p + r + o) / de, "CON3": (i + p + r + o) / known,
        "e": e,
    }


def run_plan(db, field):
    cfg = field.cfg
    ids = {name: add_user(db, name) for name in ("ann", "bob")}
    now = FIELD_START
    for case_id, (who, codes) in zip(field.case_ids, PLAN, strict=False):
        for n, code in enumerate(codes):
            t = now + timedelta(minutes=5 * n)
            with db.transaction() as s:
                user = s.get(User, ids[who])
                case = s.get(SampleCase, case_id)
                case.next_attempt_at = None
                assert service.cases.try_hold(s, case_id, channel="cati", now=t, user_id=user.id)
                service.begin_attempt(s, case, user, now=t)
                answer_for(s, case, user, code, now=t, cfg=cfg)
                service.close_attempt(s, case, user, code=code, now=t + timedelta(minutes=3),
                                      cfg=cfg)
    return ids


@pytest.fixture
def closed(db):
    field = build_field(db, n_cases=20, units_per_case=2)
    # a cap of two attempts, so the temporary codes above end their cases
    calling = field.cfg.calling
    from dataclasses import replace

    cfg = replace(field.cfg, calling=replace(calling, max_attempts=2))
    field.cfg = cfg
    return field, run_plan(db, field)


def test_rates_equal_hand_computed_values(db, closed):
    field, _ = closed
    with db.session() as s:
        data = fieldstats.dashboard(s, now=FIELD_START + timedelta(hours=1))
    overall = data["rates"]["overall"]
    assert overall["counts"] == {"I": 6, "P": 1, "R": 3, "NC": 0, "O": 1, "UH": 6, "UO": 0,
                                 "NE": 3}
    for name, value in hand_rates().items():
        assert overall[name] == pytest.approx(value, rel=1e-12), name
    assert overall["e_basis"] == "default"
    # per interviewer: ann I=4 P=1 R=2 NE=2 UH=1 -> RR1 = 4/8; bob I=2 R=1 O=1 NE=1 UH=2 -> 2/6
    assert data["rates"]["interviewer"]["ann"]["RR1"] == pytest.approx(4 / 8)
    assert data["rates"]["interviewer"]["bob"]["RR1"] == pytest.approx(2 / 6)
    assert data["rates"]["mode"]["cati"]["cases"] == 17
    assert "ivr" not in data["rates"]["mode"]
    assert data["totals"] == {"released": 20, "final": 17, "completed": 6}
    stratum = data["strata"][0]
    assert (stratum["target"], stratum["completed"], stratum["in_progress"]) == (20, 6, 3)
    prod = {p["interviewer"]: p for p in data["productivity"]}
    assert prod["ann"]["attempts"] == 4 + 2 + 2 + 2 + 2 and prod["ann"]["completes"] == 4
    assert prod["ann"]["avg_interview_seconds"] == 180.0


def test_given_e_is_used_and_stated(db, closed):
    with db.session() as s:
        outcomes = fieldstats.case_outcomes(s)
    rates = fieldstats.rates_by(outcomes, lambda o: "all", e=0.5)["all"]
    # RR3 = I / (11 + 0.5 * 6) = 6 / 14
    assert rates["RR3"] == pytest.approx(6 / 14)
    assert rates["e"] == 0.5 and rates["e_basis"] == "given"
    codes = {row["code"]: row["cases"] for row in fieldstats.disposition_counts(outcomes)}
    assert codes["1.1"] == 6 and codes["2.112"] == 3 and codes["3.11"] == 3


def test_interview_length_and_calls_in_progress(db):
    field = build_field(db, n_cases=2, units_per_case=1)
    ann = add_user(db, "ann")
    with db.transaction() as s:
        user = s.get(User, ann)
        case = service.take_next(s, user, now=FIELD_START, cfg=field.cfg)
        service.begin_attempt(s, case, user, now=FIELD_START)
    with db.session() as s:
        live = fieldstats.calls_in_progress(s, now=FIELD_START + timedelta(seconds=42))
    assert live["by_channel"] == {"cati": 1} and live["calls"][0]["seconds"] == 42
    assert live["holds"] == {"cati": 1}
