"""One release rule for the CLI and the supervisors' button: the reserve never goes out wholesale."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from cati import service
from minping import draws
from minping.draws.release import next_release, release_next
from minping.errors import MinpingError
from minping.frames import import_frame
from minping.models import AuditLog, SampleCase, User
from tests.minping.test_draw_pinned import SEED, frame_file  # noqa: F401  (fixture)

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def cfg():
    from minping.config import load_config

    return load_config()


def _counts(db, draw_id):
    with db.session() as s:
        return dict(s.execute(
            select(SampleCase.is_reserve, func.count()).where(
                SampleCase.draw_id == draw_id, SampleCase.release_state == "released")
            .group_by(SampleCase.is_reserve)).all())


@pytest.fixture
def drawn(db, cfg, frame_file):  # noqa: F811
    with db.transaction() as s:
        import_frame(s, cfg, frame_file)
    with db.transaction() as s:
        summary = draws.draw_sample(s, cfg, size=300, seed=SEED, replicates=2, reserve=3, now=NOW)
    with db.transaction() as s:
        sup = User(username="sue", display_name="Sue", role="supervisor", password_hash="x")
        s.add(sup)
        s.flush()
        sup_id = sup.id
    return db, summary, sup_id


def test_button_releases_replicates_then_says_nothing_is_left(drawn, cfg):
    db, summary, sup_id = drawn
    with db.session() as s:
        plan = next_release(s, summary.draw_id)
    assert plan.replicate == 1 and plan.cases == 150
    assert sum(plan.by_stratum.values()) == 150
    assert set(plan.by_stratum) <= {st["stratum"] for st in summary.strata}
    assert plan.held_replicates == (2,)
    released = []
    for _ in range(3):
        with db.transaction() as s:
            plan = service.release_next_replicate(s, summary.draw_id, s.get(User, sup_id), now=NOW)
            released.append((plan.replicate, plan.released))
    assert released == [(1, 150), (2, 150), (None, 0)]
    # the reserve is still held, every case of it
    assert _counts(db, summary.draw_id) == {False: 300}
    with db.session() as s:
        assert next_release(s, summary.draw_id).replicate is None
        logs = s.scalars(select(AuditLog).where(AuditLog.action == "sample.release")).all()
    assert [(log.user_id, log.new["replicate"]) for log in logs] == [(sup_id, 1), (sup_id, 2)]
    # the CLI's path agrees: nothing left, and the reserve is refused as a replicate
    with db.transaction() as s:
        with pytest.raises(MinpingError, match="nothing is left to release"):
            draws.release(s, cfg, next_=True, now=NOW)
        with pytest.raises(MinpingError, match="reserve"):
            draws.release(s, cfg, replicate=3, now=NOW)
    assert _counts(db, summary.draw_id) == {False: 300}


def test_cli_and_button_share_the_next_replicate(drawn, cfg):
    db, summary, sup_id = drawn
    with db.transaction() as s:
        out = draws.release(s, cfg, next_=True, now=NOW)
    assert out["replicate"] == 1 and out["released"] == 150 and out["held_replicates"] == [2]
    assert sum(out["by_stratum"].values()) == 150
    with db.transaction() as s:
        assert release_next(s, summary.draw_id, now=NOW).replicate == 2
    with db.transaction() as s:
        plan = service.release_next_replicate(s, summary.draw_id, s.get(User, sup_id), now=NOW)
        assert (plan.replicate, plan.released) == (None, 0)
    assert _counts(db, summary.draw_id) == {False: 300}


def test_a_second_confirmation_of_the_same_replicate_releases_nothing(drawn):
    """The confirmation names the replicate it showed: clicking it twice (or two
    supervisors at once) releases that replicate once, never the next one, never the
    reserve."""
    db, summary, sup_id = drawn
    with db.transaction() as s:
        first = service.release_next_replicate(s, summary.draw_id, s.get(User, sup_id),
                                               now=NOW, expected=1)
    with db.transaction() as s:
        second = service.release_next_replicate(s, summary.draw_id, s.get(User, sup_id),
                                                now=NOW, expected=1)
    assert (first.replicate, first.released) == (1, 150)
    assert (second.replicate, second.released) == (2, 0)  # replicate 2 is next, not confirmed
    with db.session() as s:
        assert next_release(s, summary.draw_id).replicate == 2
    assert _counts(db, summary.draw_id) == {False: 150}
