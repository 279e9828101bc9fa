"""Security of log-ins and sessions: guesses counted before they are checked, throttling,
lock-outs that answer like a wrong password, the user commands, log-out and the session's
idle and absolute limits (split from ``test_security.py``)."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy import func, select, update

from minping.models import AuditLog, User, UserSession
from minping.runtime import runtime_of
from tests.builders import FIELD_START
from tests.cati.helpers import PASSWORD, Clock, add_user
from tests.reliability.test_security import _failed_reasons, _login, _post_login


def test_parallel_wrong_passwords_check_no_more_guesses_than_the_limit(db):
    """#14.1: 16 wrong passwords at once against gunicorn (2 workers x 8 threads): the
    guesses are counted before they are checked, so exactly 5 reach the KDF and the
    account locks; the other 11 are answered like a wrong password, unchecked."""
    from tests.reliability.harness import Gunicorn

    add_user(db, "ann")
    server = Gunicorn(db.url, extra_env={"MINPING_THROTTLE_NAME": "1000",
                                         "MINPING_THROTTLE_ADDRESS": "1000"})
    server.start()
    n = 16
    statuses: list[int] = []
    try:
        forms = []
        for _ in range(n):  # one browser each: its own session cookie and CSRF token
            r = requests.get(server.base + "/cati/login", timeout=60)
            token = re.search(r'name="csrf-token" content="([^"]+)"', r.text).group(1)
            forms.append((r.headers["Set-Cookie"].split(";")[0], token))
        barrier = threading.Barrier(n)

        def guess(i, cookie, token):
            barrier.wait()
            r = requests.post(server.base + "/cati/login", allow_redirects=False, timeout=120,
                              headers={"Cookie": cookie},  # the cookie is Secure (https URL)
                              data={"username": "ann", "password": f"wrong-guess-{i}",
                                    "csrf_token": token})
            statuses.append(r.status_code)

        threads = [threading.Thread(target=guess, args=(i, *f)) for i, f in enumerate(forms)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    assert statuses == [401] * n, statuses
    reasons = _failed_reasons(db)
    assert reasons.count("password") == 5, reasons  # checked against the hash
    assert reasons.count("locked") == n - 5, reasons  # refused unchecked
    with db.session() as s:
        ann = s.scalar(select(User).where(User.username == "ann"))
        assert ann.locked_until is not None
        assert s.scalar(select(func.count()).select_from(AuditLog)
                        .where(AuditLog.action == "user.locked")) == 1
    print(f"\n{n} parallel guesses: {reasons.count('password')} checked, account locked")


def test_one_address_cannot_lock_every_account(app, db):
    """#14.2: throttling per address and per name, with a doubling back-off, before any
    account reaches its lock-out."""
    clock = Clock(FIELD_START)
    runtime_of(app).use(clock=clock)
    app.config.update(CATI_THROTTLE_ADDRESS=4, CATI_THROTTLE_NAME=2)
    for name in ("ann", "bob", "cai"):
        add_user(db, name)
    client = app.test_client()
    for name in ("ann", "bob", "cai", "ann"):
        assert _post_login(client, name, "wrong-password").status_code == 401
    r = _post_login(client, "bob", PASSWORD)  # even the right password waits
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    clock.now += timedelta(seconds=1)
    assert _post_login(client, "cai", "wrong-password").status_code == 401
    r = _post_login(client, "cai", "wrong-password")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"  # backing off
    with db.session() as s:
        assert s.scalars(select(User.locked_until)).all() == [None] * 3
    # another address is not slowed down by this one ...
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.0.0.7"
    assert _post_login(other, "bob", PASSWORD).status_code == 302
    # ... but a name is throttled whatever the address (cai failed twice)
    third = app.test_client()
    third.environ_base["REMOTE_ADDR"] = "10.0.0.8"
    assert _post_login(third, "cai", PASSWORD).status_code == 429
    # behind a trusted proxy the client's address is the last X-Forwarded-For entry
    proxied = app.test_client()
    r = _post_login(proxied, "ann", PASSWORD, headers={"X-Forwarded-For": "10.0.0.9"})
    assert r.status_code == 302


def test_locked_unknown_and_wrong_answer_alike_after_the_same_kdf_work(app, db, monkeypatch):
    """#14.2: a locked account, an unknown name and a wrong password get the same answer
    after one KDF check each (timing does not tell them apart)."""
    import werkzeug.security

    import minping.users

    checks = []
    original = werkzeug.security.check_password_hash

    def counting(pwhash, password):
        checks.append(pwhash.split("$")[0])
        return original(pwhash, password)

    monkeypatch.setattr(werkzeug.security, "check_password_hash", counting)
    monkeypatch.setattr(minping.users, "check_password_hash", counting)
    runtime_of(app).use(clock=Clock(FIELD_START))
    app.config.update(CATI_THROTTLE_NAME=100)
    add_user(db, "ann")
    add_user(db, "bob")
    with db.transaction() as s:
        s.execute(update(User).where(User.username == "bob")
                  .values(locked_until=FIELD_START + timedelta(minutes=10)))
    client = app.test_client()
    answers = {}
    for label, name, password in (("wrong", "ann", "wrong-password"),
                                  ("unknown", "nobody", PASSWORD),
                                  ("locked", "bob", PASSWORD)):
        checks.clear()
        r = _post_login(client, name, password)
        answers[label] = (r.status_code, _error(r))
        assert len(checks) == 1 and checks[0].startswith("scrypt"), (label, checks)
    assert len(set(answers.values())) == 1, answers


def _error(response):
    return re.search(r'class="flash error"[^>]*>([^<]*)<',
                     response.get_data(as_text=True)).group(1)


def test_user_list_unlock_disable_and_reset_password(app, db, runner):
    """#14.2, #14.3, #14.8: the user commands; a new password and a disabled account end
    the user's sessions; no password on the command line."""
    add_user(db, "ann")
    with db.transaction() as s:
        s.execute(update(User).where(User.username == "ann").values(
            locked_until=datetime.now(UTC) + timedelta(minutes=10), failed_logins=0))
    listed = json.loads(runner.invoke(["user", "list", "--json"]).output)
    assert listed[0]["username"] == "ann" and listed[0]["locked_until"] is not None
    assert runner.invoke(["user", "unlock", "ann"]).exit_code == 0
    assert json.loads(runner.invoke(["user", "list", "--json"]).output)[0]["locked_until"] is None
    client = _login(app, "ann")
    assert client.get("/cati/work").status_code == 200
    bad = runner.invoke(["user", "reset-password", "ann"], env={"MINPING_NEW_PASSWORD": "ann12345"})
    assert bad.exit_code == 1 and "name" in bad.stderr
    argv = runner.invoke(["user", "reset-password", "ann", "--password", "x"])
    assert argv.exit_code == 2 and "No such option" in argv.output
    r = runner.invoke(["user", "reset-password", "ann", "--json"],
                      env={"MINPING_NEW_PASSWORD": "violet-harbour-41"})
    assert r.exit_code == 0 and json.loads(r.output)["sessions_ended"] == 1
    assert client.get("/cati/work").status_code == 302  # the copied session is over
    again = app.test_client()
    assert _post_login(again, "ann", "violet-harbour-41").status_code == 302
    r = runner.invoke(["user", "disable", "ann", "--json"])
    assert json.loads(r.output) == {"username": "ann", "disabled": True, "sessions_ended": 1}
    assert again.get("/cati/work").status_code == 302
    assert _post_login(app.test_client(), "ann", "violet-harbour-41").status_code == 401
    prompt = runner.invoke(["user", "add", "zed", "--role", "interviewer"],
                           input="violet-harbour-41\nviolet-harbour-41\n")
    assert prompt.exit_code == 0, prompt.output
    assert "violet-harbour-41" not in prompt.output  # typed at a hidden prompt


def test_logout_ends_the_session_on_the_server(app, db):
    """#14.3: a cookie copied before log-out does not work after it."""
    add_user(db, "ann")
    client = _login(app, "ann")
    stolen = client.get_cookie("session").value
    copy = app.test_client()
    copy.set_cookie("session", stolen)
    assert copy.get("/cati/work").status_code == 200
    with client.session_transaction() as sess:
        token = sess["csrf"]
    client.post("/cati/logout", data={"csrf_token": token})
    r = copy.get("/cati/work")
    assert r.status_code == 302 and "/cati/login" in r.headers["Location"]


def test_sessions_end_when_idle_and_after_the_absolute_limit(app, db):
    """#14.3, #17.4: idle 30 min (each request slides it), 12 h whatever the activity (a
    shift from the morning window keeps the evening one)."""
    clock = Clock(datetime(2026, 12, 2, 1, 0, tzinfo=UTC))
    app.config["CATI_SESSION_CLOCK"] = clock
    add_user(db, "ann")
    client = _login(app, "ann")
    for _ in range(3):  # active every 25 minutes: 75 minutes in, still signed in
        clock.now += timedelta(minutes=25)
        assert client.get("/cati/work").status_code == 200
    clock.now += timedelta(minutes=31)
    assert client.get("/cati/work").status_code == 302  # idle too long
    client = _login(app, "ann")
    for _ in range(28):  # 28 x 25 min = 11 h 40 min
        clock.now += timedelta(minutes=25)
        assert client.get("/cati/work").status_code == 200
    clock.now += timedelta(minutes=25)  # 12 h 05 min after log-in
    assert client.get("/cati/work").status_code == 302
    with db.session() as s:
        reasons = s.scalars(select(UserSession.end_reason).order_by(UserSession.created_at)).all()
    assert reasons == ["idle", "absolute"]
