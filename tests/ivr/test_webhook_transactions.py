"""The webhooks' transactions (``ivr.fastsql``): a plain step's lone write commits by
itself, a step with more statements stays all-or-nothing, and the pooled connection
goes back to the pool as it came (autocommit off, no flag left)."""

from __future__ import annotations

from sqlalchemy import select

from minping.app import database_of
from minping.models import Answer, AttemptEvent, CallAttempt
from tests.ivr.conftest import signed_post


def _open_attempt(rig):
    rig.persona(keys=["1", "1", "1", "1"], ring_seconds=5)
    rig.dialer.step()
    with rig.db.session() as s:
        return s.scalars(select(CallAttempt)).one()


def _pool_is_clean(app) -> None:
    engine = database_of(app).engine
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:  # the connection the webhooks used, back from the pool
        assert not conn.connection.driver_connection.autocommit
        assert "ivr.lazy" not in conn.info and "ivr.alone" not in conn.info


def test_steps_commit_their_writes_and_leave_the_pool_clean(rig_factory, client, app):
    rig = rig_factory()
    attempt = _open_attempt(rig)
    form = {"CallSid": attempt.call_sid, "AccountSid": rig.sim.account_sid}
    voice = signed_post(client, rig.public_url, f"/ivr/voice?attempt={attempt.id}",
                        form | {"AnsweredBy": "human"})
    assert voice.status_code == 200 and "<Gather" in voice.text
    assert voice.headers["Server-Timing"].startswith("app;dur=")
    _pool_is_clean(app)
    consent = signed_post(client, rig.public_url, f"/ivr/consent?attempt={attempt.id}&try=0",
                          form | {"Digits": "1"})
    assert consent.status_code == 200
    for digits in ("2", "3"):  # a new answer (one statement), then a changed one
        answer = signed_post(client, rig.public_url,
                             f"/ivr/answer?attempt={attempt.id}&pos=0&try=0",
                             form | {"Digits": digits})
        assert answer.status_code == 200
        _pool_is_clean(app)
    # a status callback with its token (INSERT ... ON CONFLICT, then the write), twice
    for _ in range(2):
        status = signed_post(client, rig.public_url, f"/ivr/status?attempt={attempt.id}",
                             form | {"CallStatus": "in-progress", "SequenceNumber": "7"},
                             headers={"I-Twilio-Idempotency-Token": "tok-status-7"})
        assert status.status_code == 200
    _pool_is_clean(app)
    with rig.db.session() as s:
        kinds = s.scalars(select(AttemptEvent.kind).where(AttemptEvent.attempt_id == attempt.id)
                          .order_by(AttemptEvent.id)).all()
        row = s.get(CallAttempt, attempt.id)
        ratings = s.scalars(select(Answer.rating)).all()
    assert kinds.count("greeting") == 1 and kinds.count("consent") == 1
    assert kinds.index("digits") < kinds.index("consent")  # one step's events in order
    assert kinds.count("status") == 1  # the repeated callback stored once
    assert row.answered_by == "human" and row.last_sequence == 7
    assert ratings == ["3"]


def test_a_changed_answer_is_audited_with_its_old_and_new_value(rig_factory, client):
    """A key pressed again at a question replaces the rating (one write statement on
    PostgreSQL), and the audit log keeps the old and the new value; the same key
    again changes nothing and audits nothing."""
    from minping.models import AuditLog

    rig = rig_factory()
    attempt = _open_attempt(rig)
    form = {"CallSid": attempt.call_sid, "AccountSid": rig.sim.account_sid}
    path = f"/ivr/answer?attempt={attempt.id}&pos=0&try=0"
    for digits in ("1", "3", "3"):
        r = signed_post(client, rig.public_url, path, form | {"Digits": digits})
        assert r.status_code == 200 and "<Gather" in r.text
    assert rig.answers() == {0: "3"}
    with rig.db.session() as s:
        (log,) = s.scalars(select(AuditLog).where(AuditLog.action == "answer.change")).all()
        answer = s.scalars(select(Answer)).one()
    assert (log.actor, log.entity, log.entity_id) == ("ivr", "answer", str(answer.id))
    assert log.old == {"rating": "1", "channel": "ivr"}
    assert log.new == {"rating": "3", "channel": "ivr"}
    assert answer.attempt_id == attempt.id and answer.channel == "ivr"
