"""Security: every CATI route walked as each role, CSRF, cookies, hashes, production start."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from minping.models import User
from minping.runtime import runtime_of
from minping.settings import SettingsError
from tests.builders import FIELD_START, build_field
from tests.cati.helpers import PASSWORD, Clock, add_user

ROLES = ("interviewer", "supervisor", "statistician")
INTERVIEWER = {"interviewer"}
READERS = {"supervisor", "statistician"}
SUPERVISOR = {"supervisor"}
EVERYONE = set(ROLES)

#: endpoint -> roles allowed (a route missing here fails the walk: classify it).
ACCESS = {
    "cati.work": INTERVIEWER, "cati.take_next": INTERVIEWER, "cati.case_screen": INTERVIEWER,
    "cati.dial": INTERVIEWER, "cati.consent": INTERVIEWER, "cati.answer": INTERVIEWER,
    "cati.keepalive": INTERVIEWER, "cati.release": INTERVIEWER, "cati.close": INTERVIEWER,
    "cati.dashboard": READERS, "cati.dashboard_json": READERS, "cati.search": READERS,
    "cati.case_detail": READERS,
    "cati.change_answer": SUPERVISOR, "cati.reassign": SUPERVISOR, "cati.handover": SUPERVISOR,
    "cati.release_replicate": SUPERVISOR,
    "cati.index": EVERYONE, "cati.language": EVERYONE, "cati.logout": EVERYONE,
}
PUBLIC = {"cati.login", "cati.static", "static", "healthz", "readyz"}


def _token(client, path):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def _login(app, username):
    client = app.test_client()
    r = client.post("/cati/login", data={"username": username, "password": PASSWORD,
                                         "csrf_token": _token(client, "/cati/login")})
    assert r.status_code == 302
    return client


def _routes(app, case_id):
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("cati.") or rule.endpoint in PUBLIC:
            continue
        path = rule.rule.replace("<int:case_id>", str(case_id))
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, path


def test_every_cati_route_answers_each_role_as_the_table_says(app, db):
    field = build_field(db, n_cases=3)
    runtime_of(app).use(clock=Clock(FIELD_START))
    for role in ROLES:
        add_user(db, role, role)
    routes = list(_routes(app, field.case_ids[0]))
    assert {e for e, _, _ in routes} == set(ACCESS), "classify every new route in ACCESS"
    checked = 0
    anon = app.test_client()
    for _endpoint, method, path in routes:
        if method == "GET":
            r = anon.get(path)
            assert r.status_code == 302 and "/cati/login" in r.headers["Location"], (path, r)
        else:  # no session, no CSRF token: refused before anything else
            assert anon.post(path).status_code in (400, 401, 403), path
        checked += 1
    for role in ROLES:
        client = _login(app, role)  # one log-in per role (scrypt is slow on purpose)
        for endpoint, method, path in routes:
            if endpoint == "cati.logout":
                continue
            if method == "GET":
                r = client.get(path)
            else:
                assert client.post(path).status_code == 400, f"{path}: POST without CSRF token"
                with client.session_transaction() as sess:
                    token = sess["csrf"]
                r = client.post(path, data={"csrf_token": token})
            allowed = role in ACCESS[endpoint]
            if allowed:
                assert r.status_code not in (401, 403), (role, method, path, r.status_code)
                assert not (r.status_code == 302 and "/cati/login" in r.headers["Location"])
                assert r.status_code < 500, (role, method, path)
            else:
                assert r.status_code == 403, (role, method, path, r.status_code)
            checked += 1
    print(f"\nroutes walked: {len(routes)} route/method pairs x (anonymous + {len(ROLES)} "
          f"roles) = {checked} requests, every answer as the table says")


def test_session_cookie_flags_and_secure_behind_https(db_url):
    from minping import create_app

    for public, secure in (("https://survey.example.org", True), ("http://127.0.0.1:5000", False)):
        app = create_app({"TESTING": True, "DATABASE_URL": db_url, "MINPING_PUBLIC_URL": public,
                          "ENVIRON": {"MINPING_ENV": "testing", "MINPING_SECRET_KEY": "k"}})
        client = app.test_client()
        r = client.get("/cati/login")
        cookie = r.headers.get("Set-Cookie", "")
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie, cookie
        assert ("Secure" in cookie) is secure, (public, cookie)
        app.extensions["minping.db"].dispose()


def test_passwords_are_stored_as_kdf_hashes_and_logins_are_limited(app, db):
    add_user(db, "ann")
    with db.session() as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "ann"))
    assert PASSWORD not in stored
    assert stored.split(":")[0] in ("scrypt", "pbkdf2", "argon2"), stored[:20]
    client = app.test_client()
    answers = []
    for _ in range(6):
        r = client.post("/cati/login", data={"username": "ann", "password": "wrong",
                                             "csrf_token": _token(client, "/cati/login")})
        answers.append(r.status_code)
    r = client.post("/cati/login", data={"username": "ann", "password": PASSWORD,
                                         "csrf_token": _token(client, "/cati/login")})
    assert r.status_code != 302  # locked: even the right password is refused now
    print(f"\nhash scheme {stored.split('$')[0]}; locked after 5 failures")


def test_production_refuses_to_start_without_twilio_auth_token(tmp_path):
    from minping import create_app

    environ = {"MINPING_ENV": "production", "MINPING_SECRET_KEY": "k",
               "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite",
               "MINPING_PUBLIC_URL": "https://survey.example.org",
               "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_FROM_NUMBER": "+8657100000000"}
    with pytest.raises(SettingsError, match="TWILIO_AUTH_TOKEN"):
        create_app({"ENVIRON": environ})
    with pytest.raises(SettingsError, match="MINPING_VERIFY_SIGNATURES"):
        create_app({"ENVIRON": environ | {"TWILIO_AUTH_TOKEN": "t",
                                          "MINPING_VERIFY_SIGNATURES": "0"}})
