"""Twenty interviewers asking for the next case at once on PostgreSQL over 2,000 cases."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select, update

from cati import service
from minping import cases
from minping.db import Database
from minping.models import SampleCase, User
from tests.builders import FIELD_START, build_field
from tests.cati.helpers import add_user

pytestmark = pytest.mark.slow


@pytest.fixture
def pg(pg_database):
    from tests.conftest import _truncate_postgres

    _truncate_postgres(pg_database)
    db = Database(pg_database)
    yield db
    db.dispose()


def test_no_case_goes_to_two_interviewers_or_to_one_in_an_ivr_call(pg):
    field = build_field(pg, n_cases=2000, units_per_case=1)
    cfg = field.cfg
    users = [add_user(pg, f"int{i:02d}") for i in range(20)]
    # the dialer holds every 10th case (an IVR call in progress)
    ivr_held = set(field.case_ids[::10])
    with pg.transaction() as s:
        for cid in ivr_held:
            assert cases.try_hold(s, cid, channel="ivr", now=FIELD_START)
    # the best cases are the ones IVR holds: make them the top priority
    with pg.transaction() as s:
        s.execute(update(SampleCase).where(SampleCase.id.in_(ivr_held)).values(priority=9))

    given: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(users))
    lock = threading.Lock()

    def work(uid: int) -> None:
        try:
            barrier.wait()
            for _ in range(5):  # each takes a case, finishes it, asks again
                with pg.transaction() as s:
                    user = s.get(User, uid)
                    case = service.take_next(s, user, now=FIELD_START, cfg=cfg)
                    if case is None:
                        continue
                    with lock:
                        given.append((case.id, uid))
                    service.begin_attempt(s, case, user, now=FIELD_START)
                    service.close_attempt(s, case, user, code="3.13", now=FIELD_START, cfg=cfg)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(given) == 100
    counts = Counter(cid for cid, _ in given)
    assert max(counts.values()) == 1, [c for c, n in counts.items() if n > 1]
    assert not ivr_held & set(counts)
    with pg.session() as s:
        still = set(s.scalars(select(SampleCase.id).where(SampleCase.lock_channel == "ivr")))
        assert still == ivr_held
        attempted = s.scalars(select(SampleCase.attempts).where(SampleCase.id.in_(counts)))
        assert set(attempted) == {1}
