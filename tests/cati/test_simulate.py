"""The demo's CATI phase: simulated interviewers through the screen's service functions."""


from sqlalchemy import func, select

from cati.simulate import run_cati_phase
from minping.models import CallAttempt, SampleCase
from tests.builders import FIELD_START, build_field


def test_cati_phase_works_the_unfinished_cases_quickly(db):
    field = build_field(db, n_cases=300, units_per_case=4)
    with db.transaction() as s:  # some cases came back from the IVR
        for cid in field.case_ids[:30]:
            s.get(SampleCase, cid).state = "handoff_cati"
    summary = run_cati_phase(db, field.cfg, start=FIELD_START, interviewers=8, seed=3, days=2)
    assert summary["attempts"] > 300 and summary["cati_completes"] > 50
    with db.session() as s:
        assert s.scalar(select(func.count()).where(CallAttempt.outcome.is_(None))) == 0
        assert s.scalar(select(func.count()).where(SampleCase.lock_channel.is_not(None))) == 0
        # hand-overs were worked first: each has been tried
        tried = s.scalars(select(SampleCase.attempts).where(
            SampleCase.id.in_(field.case_ids[:30]))).all()
        assert min(tried) >= 1
    again = run_cati_phase(db, field.cfg, start=FIELD_START, interviewers=8, seed=3, days=0)
    assert again["attempts"] == 0
