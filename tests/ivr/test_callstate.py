"""The end of a call written in one statement (``ivr.callstate``): what a supervisor
sees afterwards is what the ORM's ``cases.finish_attempt`` would have left, a status
never moves back, and a call is closed once however its final callbacks arrive."""

from __future__ import annotations

import threading

from sqlalchemy import select

from minping.app import database_of
from minping.models import AttemptEvent, CallAttempt, DispositionEvent, SampleCase
from tests.ivr.conftest import signed_post


def _open_attempt(rig):
    rig.persona(keys=["1", "1", "1", "1"], ring_seconds=5)
    rig.dialer.step()
    with rig.db.session() as s:
        return s.scalars(select(CallAttempt)).one()


def _status(client, rig, attempt, status, seq, token, **extra):
    form = {"CallSid": attempt.call_sid, "AccountSid": rig.sim.account_sid,
            "CallStatus": status, "SequenceNumber": str(seq)} | extra
    response = signed_post(client, rig.public_url, f"/ivr/status?attempt={attempt.id}", form,
                           headers={"I-Twilio-Idempotency-Token": token})
    assert response.status_code == 200
    return response


class _Statements:
    """Statements the app sends to PostgreSQL (``BEGIN``/``COMMIT`` aside), counted where
    psycopg sends them: the webhooks run theirs on the psycopg connection itself, past
    SQLAlchemy's events (:mod:`ivr.fastsql`)."""

    def __init__(self, engine):
        import psycopg

        self.count, self._cls, self._orig = 0, psycopg.Cursor, psycopg.Cursor.execute
        meter, orig = self, self._orig

        def counted(cursor, query, *args, **kwargs):
            if not str(query).lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
                meter.count += 1
            return orig(cursor, query, *args, **kwargs)

        self._cls.execute = counted

    def close(self):
        self._cls.execute = self._orig


def test_callbacks_move_forward_and_the_end_of_the_call_closes_the_case_once(
        rig_factory, client, app):
    rig = rig_factory()
    attempt = _open_attempt(rig)
    engine = database_of(app).engine
    engine.connect().close()  # the pool's first connection asks the server its settings
    statements = _Statements(engine)
    try:
        _status(client, rig, attempt, "ringing", 1, "t-ringing")
        ringing = statements.count
        _status(client, rig, attempt, "in-progress", 2, "t-answered", AnsweredBy="human")
        _status(client, rig, attempt, "ringing", 1, "t-ringing-late")  # older: stored, no move
        before_end = statements.count
        _status(client, rig, attempt, "no-answer", 3, "t-end", CallDuration="0")
        end = statements.count - before_end
        _status(client, rig, attempt, "no-answer", 3, "t-end", CallDuration="0")  # again
        _status(client, rig, attempt, "completed", 4, "t-other-end", CallDuration="0")
    finally:
        statements.close()
    if engine.dialect.name == "postgresql":
        assert ringing == 2  # the attempt's read, the event with the attempt's update
        assert end == 3  # the read, what the close decides on, the close
    with rig.db.session() as s:
        row = s.get(CallAttempt, attempt.id)
        case = s.get(SampleCase, row.case_id)
        kinds = s.scalars(select(AttemptEvent.kind).where(
            AttemptEvent.attempt_id == attempt.id)).all()
        codes = s.scalars(select(DispositionEvent.code).where(
            DispositionEvent.attempt_id == attempt.id)).all()
    assert kinds.count("status") == 5  # every callback once, the repeated one not again
    assert row.status == "no-answer" and row.last_sequence == 4
    assert row.answered_by == "human" and row.answered_at is not None
    assert codes == [row.outcome] and row.outcome is not None  # closed once
    assert case.lock_channel is None and case.current_disposition == row.outcome
    assert (case.state == "final") == (case.next_attempt_at is None)


def test_two_final_callbacks_at_the_same_moment_close_the_attempt_once(
        rig_factory, client, app):
    rig = rig_factory()
    attempt = _open_attempt(rig)
    _status(client, rig, attempt, "in-progress", 1, "t-answered", AnsweredBy="human")
    barrier = threading.Barrier(2)
    errors = []

    def post(status, token):
        try:
            with app.test_client() as own:
                barrier.wait(timeout=10)
                _status(own, rig, attempt, status, 2, token, CallDuration="12")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=args)
               for args in (("completed", "t-a"), ("completed", "t-b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with rig.db.session() as s:
        codes = s.scalars(select(DispositionEvent.code).where(
            DispositionEvent.attempt_id == attempt.id)).all()
        row = s.get(CallAttempt, attempt.id)
        statuses = s.scalars(select(AttemptEvent.idempotency_token).where(
            AttemptEvent.attempt_id == attempt.id, AttemptEvent.kind == "status")).all()
    assert len(codes) == 1 and codes == [row.outcome]  # one close
    assert sorted(statuses) == ["t-a", "t-answered", "t-b"]  # both callbacks stored
    assert row.status == "completed" and row.duration_seconds == 12
