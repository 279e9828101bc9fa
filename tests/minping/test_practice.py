"""Practice mode: practice cases never count and never dial a real number, at any hour.

The field's statistics (dashboard, unit progress, productivity, balance and the current
draw) are the same before and after an interviewer works a practice case through the CATI
screens; the dialer's gateway refuses a practice case; the IVR and CATI queues never give
one; the interviewer can practise outside the calling windows.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from cati import service
from minping import fieldstats
from minping.cases import CaseError
from minping.config import load_config
from minping.draws.draw import current_draw
from minping.models import Answer, SampleCase, SampleDraw, User
from minping.practice import PRACTICE, create_practice
from minping.runtime import runtime_of
from tests.builders import FIELD_START, build_field
from tests.cati.helpers import Clock, add_user
from tests.cati.test_views import csrf, login

NIGHT = FIELD_START + timedelta(hours=13)  # 23:00 in Asia/Shanghai: outside every window


def _stats(db):
    with db.session() as s:
        d = fieldstats.dashboard(s, now=NIGHT)
    d.pop("now")
    d.pop("in_progress")
    return d


def test_practice_cases_never_count_and_work_at_night(app, db, runner):
    field = build_field(db, n_cases=4, units_per_case=3)
    ann = add_user(db, "ann")
    before = _stats(db)
    out = runner.invoke(["practice", "create", "--size", "6", "--json"])
    assert out.exit_code == 0, out.output
    with db.session() as s:
        cases = s.scalars(select(SampleCase).where(SampleCase.release_state == PRACTICE)).all()
        assert len(cases) == 6 and all(c.units for c in cases)
        assert current_draw(s, load_config()).id == field.draw_id  # never the practice draw
    assert _stats(db) == before
    # the CATI queue never gives a practice case; the practice page does, at 23:00
    with db.transaction() as s:
        given = service.take_next(s, s.get(User, ann), now=FIELD_START, cfg=field.cfg)
        assert given.release_state == "released"
        for c in s.scalars(select(SampleCase).where(SampleCase.release_state == "released")):
            c.lock_channel = c.lock_expires_at = None
    runtime_of(app).use(clock=Clock(NIGHT))
    client = app.test_client()
    login(client, "ann")
    token = csrf(client, "/cati/practice")
    r = client.post("/cati/practice/next", data={"csrf_token": token})
    case_id = int(r.headers["Location"].rsplit("/", 1)[1])
    page = client.get(f"/cati/case/{case_id}").get_data(as_text=True)
    assert "+860000" not in page
    headers = {"X-CSRF-Token": token}
    assert client.post(f"/cati/case/{case_id}/dial", headers=headers).json["ok"]
    client.post(f"/cati/case/{case_id}/consent", headers=headers)
    with db.session() as s:
        units = [u.unit_id for u in s.get(SampleCase, case_id).units]
    for unit in units:
        assert client.post(f"/cati/case/{case_id}/answer", json={"unit_id": unit, "key": "1"},
                           headers=headers).json["ok"]
    client.post(f"/cati/case/{case_id}/close", data={"csrf_token": token, "code": "1.1"})
    with db.session() as s:
        case = s.get(SampleCase, case_id)
        assert case.final_disposition == "1.1" and case.release_state == PRACTICE
        assert len(s.scalars(select(Answer).where(Answer.case_id == case_id)).all()) == len(units)
        assert s.get(SampleDraw, case.draw_id).practice
    assert _stats(db) == before  # the practice complete counts nowhere


def test_the_gateway_refuses_a_practice_case(db):
    cfg = load_config()
    build_field(db, n_cases=1)
    ann = add_user(db, "ann")
    with db.transaction() as s:
        create_practice(s, cfg, size=1, now=FIELD_START)
    with db.transaction() as s:
        case = s.scalar(select(SampleCase).where(SampleCase.release_state == PRACTICE))
        with pytest.raises(CaseError, match="simulated call only"):
            service.dial_through_gateway(s, case, s.get(User, ann), now=FIELD_START,
                                         client=object(), from_number="+10000000000", cfg=cfg)
