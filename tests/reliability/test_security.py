"""Security: every CATI route walked as each role, CSRF, cookies, hashes, production start."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select, text

from minping.models import AuditLog, CallAttempt, SampleCase, User
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
    "cati.keepalive": INTERVIEWER, "cati.give_back": INTERVIEWER, "cati.close": INTERVIEWER,
    "cati.dashboard": READERS, "cati.dashboard_json": READERS, "cati.search": READERS,
    "cati.case_detail": READERS,
    "cati.change_answer": SUPERVISOR, "cati.reassign": SUPERVISOR, "cati.handover": SUPERVISOR,
    "cati.release_replicate": SUPERVISOR, "cati.release_confirm": SUPERVISOR,
    "cati.case_list": READERS, "cati.statistics": READERS,
    "cati.practice": INTERVIEWER, "cati.practice_next": INTERVIEWER,
    "cati.index": EVERYONE, "cati.language": EVERYONE, "cati.logout": EVERYONE,
}
#: Open to anybody: the log-in page, and the case screen's in-place password prompt
#: (``session-token`` gives this browser's own CSRF token; ``reauth`` is a log-in).
PUBLIC = {"cati.login", "cati.static", "static", "healthz", "readyz", "cati.session_token",
          "cati.reauth"}


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
        path = rule.rule.replace("<id:case_id>", str(case_id))
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
            # a form goes back with a message (303), never a raw error page
            assert anon.post(path).status_code in (303, 401, 403), path
        checked += 1
    for role in ROLES:
        client = _login(app, role)  # one log-in per role (scrypt is slow on purpose)
        for endpoint, method, path in routes:
            if endpoint == "cati.logout":
                continue
            if method == "GET":
                r = client.get(path)
            else:
                assert client.post(path).status_code == 303, f"{path}: POST without CSRF token"
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


# --- #14: what a probe of a production instance got through -----------------------------------
#
# Each test below names the point of issue #14 it guards.  They run on SQLite and
# PostgreSQL (the ``db``/``app`` fixtures); the first one against gunicorn.


def _post_login(client, username, password, **kwargs):
    return client.post("/cati/login", data={"username": username, "password": password,
                                            "csrf_token": _token(client, "/cati/login")},
                       **kwargs)


def _failed_reasons(db) -> list[str]:
    with db.session() as s:
        return [a.new["reason"] for a in s.scalars(
            select(AuditLog).where(AuditLog.action == "user.login_failed").order_by(AuditLog.id))]


def _search(client, q):
    with client.session_transaction() as sess:
        token = sess["csrf"]
    return client.post("/cati/cases", data={"csrf_token": token, "q": q})


def test_phone_search_is_for_supervisors_audited_and_never_in_a_url(app, db):
    """#14.4, #14.6: a statistician's 22 substring searches recover nothing; a supervisor's
    search is audited (without the digits); the number is posted, never in a URL."""
    field = build_field(db, n_cases=3)
    runtime_of(app).use(clock=Clock(FIELD_START))
    add_user(db, "sue", "supervisor")
    add_user(db, "stan", "statistician")
    case_id = field.case_ids[0]
    phone = field.phones[case_id]
    stat = _login(app, "stan")
    digits = phone.removeprefix("+86")
    for i in range(len(digits) - 3):  # every 4-digit window, then longer ones
        for q in (digits[i:i + 4], digits[i:]):
            page = _search(stat, q).get_data(as_text=True)
            results = page[page.index('<table id="results"'):]  # the page echoes the query
            assert f'href="/cati/cases/{case_id}"' not in results, q
            assert phone not in results and digits not in results
    sup = _login(app, "sue")
    page = _search(sup, digits).get_data(as_text=True)
    assert phone in page  # supervisors see full numbers
    page = sup.get(f"/cati/cases?q={digits}").get_data(as_text=True)
    assert 'id="results"' not in page  # a GET never searches: no number in access logs
    assert 'form method="post"' in page
    with db.session() as s:
        searches = s.scalars(select(AuditLog).where(AuditLog.action == "phone.search")).all()
    assert [(a.actor, a.new["digits"], a.new["found"]) for a in searches] == \
        [("supervisor:sue", 11, [case_id])]
    assert digits not in json.dumps([a.new for a in searches])


def test_bad_ids_numbers_and_next_are_4xx_never_500(app, db):
    """#14.5, #14.9: 11- and 20-digit numbers, ids >= 2^31 in paths and forms, CR/LF in next=."""
    field = build_field(db, n_cases=3)
    runtime_of(app).use(clock=Clock(FIELD_START))
    add_user(db, "sue", "supervisor")
    add_user(db, "ann", "interviewer")
    sup = _login(app, "sue")
    assert _search(sup, "13800000000").status_code == 200
    assert _search(sup, "99999999999").status_code == 200  # compared as an id: no overflow
    assert _search(sup, "1" * 20).status_code == 400
    assert _search(sup, "1" * 41).status_code == 400
    huge = "99999999999999999999"
    missing = sup.get(f"/cati/cases/{huge}")
    assert missing.status_code == 404
    # the router's 404 is the screens' page in the user's language, not werkzeug's
    assert "没有这个页面或样本" in missing.get_data(as_text=True), missing.get_data(as_text=True)
    assert sup.get(f"/cati/cases/{2**31}").status_code == 404
    with sup.session_transaction() as sess:
        token = sess["csrf"]
    case_id = field.case_ids[0]
    for path, data in ((f"/cati/cases/{case_id}/reassign", {"interviewer_id": huge}),
                       (f"/cati/cases/{case_id}/answer", {"unit_id": str(2**31), "key": "1"}),
                       ("/cati/release-replicate", {"draw_id": huge})):
        r = sup.post(path, data={"csrf_token": token, **data})
        assert r.status_code == 400, (path, r.status_code)
    ann = _login(app, "ann")
    assert ann.get(f"/cati/case/{huge}").status_code == 404
    with ann.session_transaction() as sess:
        token = sess["csrf"]
    r = ann.post("/cati/next", data={"csrf_token": token})
    held = r.headers["Location"].rsplit("/", 1)[1]
    r = ann.post(f"/cati/case/{held}/answer", json={"unit_id": 2**40, "key": "1"},
                 headers={"X-CSRF-Token": token})
    assert r.status_code == 400
    client = app.test_client()
    r = _post_login(client, "ann", PASSWORD, query_string={"next": "/cati/work\r\nX-A: b"})
    assert r.status_code == 302 and r.headers["Location"] == "/cati/"
    assert "X-A" not in r.headers


def test_no_phone_number_in_any_log_line(app, db, caplog):
    """#14.5, #14.6: the engine hides statement parameters; every log line is redacted."""
    import logging

    from minping.logs import JsonFormatter, RedactingFormatter

    engine = app.extensions["minping.db"].engine
    assert engine.hide_parameters
    field = build_field(db, n_cases=2)
    runtime_of(app).use(clock=Clock(FIELD_START))
    add_user(db, "sue", "supervisor")
    phone = field.phones[field.case_ids[0]]
    caplog.set_level(logging.DEBUG)
    sup = _login(app, "sue")
    _search(sup, phone)
    _post_login(app.test_client(), phone, "wrong-password")  # a number as the user name
    try:
        with engine.connect() as conn:  # a failing statement with the number as a parameter
            conn.execute(text("SELECT CAST(:p AS INTEGER) + 1/0"), {"p": phone})
    except Exception:
        logging.getLogger("minping.test").exception("statement failed: %s", phone)
    lines = [f.format(r) for r in caplog.records for f in (JsonFormatter(),
                                                           RedactingFormatter("%(message)s"))]
    assert any('"event": "login.failed"' in line for line in lines)
    national = phone.removeprefix("+86")
    assert not [line for line in lines if national in line or phone in line]


def test_security_headers(db_url):
    """#14.7: CSP, framing, nosniff, referrer, HSTS behind https, no-store on CATI pages."""
    from minping import create_app

    for public in ("https://survey.example.org", "http://127.0.0.1:5000"):
        app = create_app({"TESTING": True, "DATABASE_URL": db_url, "MINPING_PUBLIC_URL": public,
                          "ENVIRON": {"MINPING_ENV": "testing", "MINPING_SECRET_KEY": "k"}})
        client = app.test_client()
        r = client.get("/cati/login")
        h = r.headers
        csp = h["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert "'unsafe-inline'" not in csp
        nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
        assert f'<script nonce="{nonce}">' in r.get_data(as_text=True)
        assert "onchange=" not in r.get_data(as_text=True)
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "same-origin"
        assert h["Cache-Control"] == "no-store"
        assert ("Strict-Transport-Security" in h) is public.startswith("https")
        static = client.get("/cati/static/cati.css")
        assert "no-store" not in static.headers.get("Cache-Control", "")
        static.close()
        webhook = client.post("/ivr/voice?attempt=1", data={"CallSid": "CA1"})  # unsigned
        assert webhook.status_code == 403
        assert webhook.headers["X-Content-Type-Options"] == "nosniff"  # TwiML: no page headers
        assert "Content-Security-Policy" not in webhook.headers
        app.extensions["minping.db"].dispose()


def test_weak_passwords_are_refused(db):
    """#14.8: common, blank and name-derived passwords."""
    from minping.errors import MinpingError
    from minping.users import create_user

    for weak in ("12345678", "password", "Password1", " " * 8, "aaaaaaaa", "wang.li2026",
                 "wangli123", "ilgnaw.w99", "Wang Li!", "qwertyuiop"):
        with db.transaction() as s, pytest.raises(MinpingError, match="password"):
            create_user(s, username="wang.li", password=weak, role="interviewer")
    with db.transaction() as s:
        create_user(s, username="wang.li", password="violet-harbour-41", role="interviewer")


def test_formula_cells_are_neutralised_in_rejects_and_exports(tmp_path):
    """#14.10: every CSV/XLSX minping writes (rejects file, exports) goes through one helper."""
    import csv

    import openpyxl

    from minping.export import RespondentTable, write_export
    from minping.frame_file import read_frame, write_rejects

    frame = tmp_path / "frame.csv"
    frame.write_text("姓名,电话,类别,乡镇,备注\n"
                     '=HYPERLINK("http://x.invalid"),12345,residents,chengguan,@SUM(A1)\n'
                     "-2+3,13812345678,农民,chengguan,+cmd\n", encoding="utf-8")
    ff = read_frame(frame, known_groups={"residents": "residents"},
                    known_towns={"chengguan": "chengguan"})
    out = tmp_path / "rejects.csv"
    assert write_rejects(ff, out) == 2
    with open(out, encoding="utf-8-sig", newline="") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    assert "'=HYPERLINK(\"http://x.invalid\")" in cells and "'@SUM(A1)" in cells
    assert "'-2+3" in cells and "'+cmd" in cells
    assert not [c for c in cells if c[:1] in "=+-@" and not c.lstrip("+-").isdigit()]
    table = RespondentTable(columns={"id": ["=1+1", "-1.5", "ok"], "n": [1, -2, 3]},
                            variable_labels={"id": "@label"}, value_labels={})
    write_export(table, tmp_path / "x.csv", "csv")
    with open(tmp_path / "x.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1:] == [["'=1+1", "1"], ["-1.5", "-2"], ["ok", "3"]]
    write_export(table, tmp_path / "x.xlsx", "xlsx")
    book = openpyxl.load_workbook(tmp_path / "x.xlsx")
    values = [c.value for row in book["data"].iter_rows() for c in row]
    assert "'=1+1" in values and -2 in values
    assert all(c.data_type != "f" for ws in book for row in ws.iter_rows() for c in row)
    assert "'@label" in [c.value for row in book["codebook"].iter_rows() for c in row]


def test_serve_check_refuses_weak_production_settings(runner, db_url, tmp_path):
    """#14.11: a short MINPING_SECRET_KEY, an http:// public URL."""
    from minping.resources import CAMPAIGN_TEMPLATE

    # a campaign Twilio accepts for mainland numbers: its SMS through a Messaging Service
    campaign = tmp_path / "survey.toml"
    campaign.write_text(CAMPAIGN_TEMPLATE.read_text(encoding="utf-8").replace(
        'messaging_service_sid = ""', 'messaging_service_sid = "MG' + "0" * 32 + '"', 1),
        encoding="utf-8")
    env = {"MINPING_ENV": "production", "DATABASE_URL": db_url, "MINPING_CONFIG": str(campaign),
           "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "t" * 32,
           "TWILIO_FROM_NUMBER": "+14155550100",  # not +86: Twilio refuses that without BYOC
           "MINPING_PUBLIC_URL": "https://survey.example.org",
           "MINPING_SECRET_KEY": "s" * 40}
    for change, named in (({"MINPING_SECRET_KEY": "short-key"}, "MINPING_SECRET_KEY"),
                          ({"MINPING_PUBLIC_URL": "http://survey.example.org"},
                           "MINPING_PUBLIC_URL")):
        r = runner.invoke(["serve", "--check"], env=env | change)
        assert r.exit_code == 1 and named in r.stderr, r.output
    ok = runner.invoke(["serve", "--check"], env=env)
    assert ok.exit_code == 0, ok.output


def test_security_events_are_logged_and_failed_logins_audited(app, db, caplog):
    """#14.12: failed log-ins (name, address), lock-outs, CSRF and role refusals."""
    import logging

    caplog.set_level(logging.INFO, logger="cati.security")
    runtime_of(app).use(clock=Clock(FIELD_START))
    app.config.update(CATI_MAX_FAILED_LOGINS=2,
                      CATI_THROTTLE_NAME=100)
    add_user(db, "ann")
    add_user(db, "stan", "statistician")
    client = app.test_client()
    for _ in range(2):
        _post_login(client, "ann", "secret-wrong-pw")
    stat = _login(app, "stan")
    stat.post("/cati/next", data={"csrf_token": "forged"})
    stat.get("/cati/work")
    events = [(r.event, getattr(r, "username", None) or getattr(r, "user", None),
               getattr(r, "address", None)) for r in caplog.records if hasattr(r, "event")]
    assert ("login.failed", "ann", "127.0.0.1") in events
    assert ("login.locked", "ann", "127.0.0.1") in events
    assert ("csrf.refused", "stan", "127.0.0.1") in events
    assert ("role.refused", "stan", "127.0.0.1") in events
    assert not [r for r in caplog.records if "secret-wrong-pw" in str(r.__dict__)]
    assert _failed_reasons(db) == ["password", "password"]


def test_every_field_has_a_server_side_limit(app, db):
    """#14.13: a 5,075-character note is refused (nothing stored); so are over-long names,
    passwords, reasons and searches."""
    field = build_field(db, n_cases=2)
    runtime_of(app).use(clock=Clock(FIELD_START))
    add_user(db, "ann")
    assert _post_login(app.test_client(), "a" * 65, PASSWORD).status_code == 400
    assert _post_login(app.test_client(), "ann", "p" * 1025).status_code == 400
    ann = _login(app, "ann")
    with ann.session_transaction() as sess:
        token = sess["csrf"]
    held = ann.post("/cati/next", data={"csrf_token": token}).headers["Location"].rsplit("/")[-1]
    r = ann.post(f"/cati/case/{held}/close",
                 data={"csrf_token": token, "code": "2.111", "note": "x" * 5075})
    assert r.status_code == 400 and "note" in r.get_data(as_text=True)
    with db.session() as s:
        assert s.scalars(select(CallAttempt)).all() == []
    ann.post(f"/cati/case/{held}/dial?how=manual", headers={"X-CSRF-Token": token})
    r = ann.post(f"/cati/case/{held}/close",
                 data={"csrf_token": token, "code": "2.111", "note": "x" * 500})
    assert r.status_code == 303
    from cati.service import MAX_NOTE, close_attempt
    from minping.cases import CaseError

    with db.session() as s:  # the service refuses it too, whoever calls it
        user = s.scalar(select(User).where(User.username == "ann"))
        case = s.get(SampleCase, field.case_ids[1])
        with pytest.raises(CaseError, match="(?i)note"):
            close_attempt(s, case, user, code="2.111", now=FIELD_START, cfg=field.cfg,
                          note="x" * (MAX_NOTE + 1))


def test_roles_required_answers_json_requests_with_401_like_login_required(app, db):
    """One rule for anonymous requests: the log-in page for a browser, 401 for JSON."""
    anon = app.test_client()
    for path in ("/cati/dashboard.json", "/cati/"):  # roles_required, login_required
        assert anon.get(path, headers={"Accept": "application/json"}).status_code == 401
        r = anon.get(path)
        assert r.status_code == 302 and "/cati/login" in r.headers["Location"]


def test_composite_with_one_ballot_and_an_exact_phone_score_has_no_df_not_a_crash():
    """#14.14: ``minping report`` on three ballots died with ZeroDivisionError in the
    Welch-Satterthwaite df (one unit had a single ballot, so no variance anywhere)."""
    import math

    from scoring.composite import PartScore, assessment_scores, composite_scores

    ballots = assessment_scores(["a", "a", "b"], ["1", "1", "2"])
    phone = {u: PartScore(u, 75.0, 0.0, 2.0, 3, True) for u in ("a", "b")}
    track = composite_scores("t", ["a", "b"], {"phone": 0.5, "assessment": 0.5},
                             {"phone": phone, "assessment": ballots}, min_raters=1)
    b = track["b"]
    assert math.isnan(b.df) and math.isnan(b.se) and b.rank is None
    assert b.composite == pytest.approx(0.5 * 75.0 + 0.5 * 60.0)


@pytest.mark.parametrize(("text", "expected"), [
    ("call 13800000000 now", "call [number] now"),
    ("号码13800000000已拨", "号码[number]已拨"),
    ("+86 138-0000-0000", "[number]"),
    ("q=%2B8613800000000&x=1", "q=%2B[number]&x=1"),
    ("CallSid=CA6ca1e88517c0061597ddaf080fa29947", "CallSid=CA6ca1e88517c0061597ddaf080fa29947"),
    ("at 2026-12-01 10:00", "at 2026-12-01 10:00"),
])
def test_log_redaction_masks_numbers_not_twilio_sids(text, expected):
    """#14.6: numbers in any form are masked; a Twilio SID keeps the digits that identify it."""
    from minping.logs import redact

    assert redact(text) == expected
