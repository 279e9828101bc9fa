"""The CATI screens through Flask's test client (both databases)."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from cati.i18n import ZH
from minping.models import Answer, AuditLog, CallAttempt, SampleCase, User
from minping.runtime import runtime_of
from tests.builders import FIELD_START, build_field
from tests.cati.helpers import PASSWORD, Clock, add_user


@pytest.fixture
def field_app(app, db):
    field = build_field(db, n_cases=5, units_per_case=3)
    clock = Clock(FIELD_START)
    runtime_of(app).use(clock=clock)
    app.config["CATI_PROGRESS_SECONDS"] = 0
    return app, db, field, clock


def csrf(client, path="/cati/login"):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def login(client, username, password=PASSWORD):
    token = csrf(client)
    return client.post("/cati/login", data={"username": username, "password": password,
                                            "csrf_token": token})


def test_login_logout_and_chinese_by_default(field_app):
    app, db, _field, _clock = field_app
    add_user(db, "ann")
    client = app.test_client()
    page = client.get("/cati/login").get_data(as_text=True)
    assert "登录" in page
    assert client.get("/cati/work").status_code == 302
    r = login(client, "ann")
    assert r.status_code == 302 and r.headers["Location"].endswith("/cati/")
    assert "下一个样本" in client.get("/cati/work").get_data(as_text=True)
    token = csrf(client, "/cati/work")
    client.post("/cati/logout", data={"csrf_token": token})
    assert client.get("/cati/work").status_code == 302


def test_post_without_csrf_token_is_refused(field_app):
    app, db, *_ = field_app
    add_user(db, "ann")
    client = app.test_client()
    # refused, and said in the user's language on the page the form came from (303: a
    # reload does not post again), never a raw "Bad Request / CSRF token missing" page
    r = client.post("/cati/login", data={"username": "ann", "password": PASSWORD},
                    headers={"Referer": "http://localhost/cati/login"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/cati/login")
    page = client.get("/cati/login").get_data(as_text=True)
    assert "页面已过期" in page and "CSRF" not in page
    login(client, "ann")
    r = client.post("/cati/next", headers={"Referer": "http://localhost/cati/work"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/cati/work")
    assert "页面已过期，未保存任何内容" in client.get("/cati/work").get_data(as_text=True)
    assert client.post("/cati/next", data={"csrf_token": "forged"}).status_code == 303
    # the page's fetch calls get JSON in the user's language
    r = client.post("/cati/next", json={}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403 and r.json["csrf"] and "页面已过期" in r.json["error"]


def test_account_locks_after_repeated_failures(field_app):
    app, db, _field, clock = field_app
    app.config["CATI_MAX_FAILED_LOGINS"] = 3
    app.config["CATI_THROTTLE_NAME"] = 100  # the lock alone, without the back-off
    add_user(db, "ann")
    client = app.test_client()
    for _ in range(3):
        wrong = login(client, "ann", "wrong-password")
        assert wrong.status_code == 401
    r = login(client, "ann")  # locked: answered exactly like a wrong password
    assert r.status_code == 401 and "用户名或密码错误" in r.get_data(as_text=True)
    assert _error(r) == _error(wrong)
    clock.now = FIELD_START + timedelta(minutes=16)
    assert login(client, "ann").status_code == 302


def _error(response):
    return re.search(r'class="flash error"[^>]*>([^<]*)<', response.get_data(as_text=True)).group(1)


def test_session_expires(field_app):
    app, db, *_ = field_app
    add_user(db, "ann")
    app.permanent_session_lifetime = timedelta(seconds=0)
    client = app.test_client()
    login(client, "ann")
    assert client.get("/cati/work").status_code == 302


def test_interviewer_is_refused_supervisor_pages(field_app):
    app, db, *_ = field_app
    add_user(db, "ann")
    client = app.test_client()
    login(client, "ann")
    for path in ("/cati/dashboard", "/cati/dashboard.json", "/cati/cases?q=1", "/cati/cases/1"):
        assert client.get(path).status_code == 403, path


def test_interview_through_the_screen(field_app):
    app, db, field, _clock = field_app
    add_user(db, "ann")
    client = app.test_client()
    login(client, "ann")
    token = csrf(client, "/cati/work")
    r = client.post("/cati/next", data={"csrf_token": token})
    case_id = int(r.headers["Location"].rsplit("/", 1)[1])
    page = client.get(f"/cati/case/{case_id}").get_data(as_text=True)
    assert "138****" in page and field.phones[case_id] not in page
    headers = {"X-CSRF-Token": token}
    # answering before dialing is refused
    units = [u for u in re.findall(r'data-unit="(\d+)"', page)]
    r = client.post(f"/cati/case/{case_id}/answer", json={"unit_id": units[0], "key": "1"},
                    headers=headers)
    assert r.status_code == 409
    assert client.post(f"/cati/case/{case_id}/dial?how=manual", headers=headers).json["ok"]
    # ratings only after consent
    r = client.post(f"/cati/case/{case_id}/answer", json={"unit_id": units[0], "key": "1"},
                    headers=headers)
    assert r.status_code == 409 and "请先记录受访者同意" in r.json["error"]
    assert client.post(f"/cati/case/{case_id}/consent", headers=headers).json["ok"]
    r = client.post(f"/cati/case/{case_id}/answer", json={"unit_id": units[0], "key": "7"},
                    headers=headers)
    assert r.status_code == 400 and "按键 7 不在评价量表内" in r.json["error"]
    for unit, key in zip(units, "120", strict=True):
        assert client.post(f"/cati/case/{case_id}/answer", json={"unit_id": unit, "key": key},
                           headers=headers).json["ok"]
    r = client.post(f"/cati/case/{case_id}/close", data={"csrf_token": token, "code": "1.1"})
    assert r.status_code == 303
    with db.session() as s:
        case = s.get(SampleCase, case_id)
        assert case.final_disposition == "1.1" and case.lock_channel is None
        assert sorted(a.rating for a in s.scalars(select(Answer))) == ["0", "1", "2"]
        assert s.scalars(select(CallAttempt)).one().interviewer_id is not None


def test_supervisor_sees_full_numbers_and_changes_are_audited(field_app):
    app, db, field, _clock = field_app
    add_user(db, "sue", role="supervisor")
    add_user(db, "stan", role="statistician")
    case_id = field.case_ids[0]
    with db.transaction() as s:
        from minping import cases

        case = s.get(SampleCase, case_id)
        unit = cases.case_units(s, case_id)[0].unit_id
        call = cases.start_attempt(s, case, channel="ivr", now=FIELD_START)
        cases.add_event(s, call, "consent", now=FIELD_START)
        cases.record_answer(s, case, unit, "1", channel="ivr", now=FIELD_START, actor="ivr",
                            attempt_id=call.id)
    stat = app.test_client()
    login(stat, "stan")
    stoken = csrf(stat, "/cati/cases")
    # a statistician may not search by number; by case id the number stays masked
    page = stat.post("/cati/cases", data={"csrf_token": stoken, "q": field.phones[case_id][-8:]}
                     ).get_data(as_text=True)
    assert f'href="/cati/cases/{case_id}"' not in page and field.phones[case_id] not in page
    page = stat.post("/cati/cases", data={"csrf_token": stoken, "q": str(case_id)}
                     ).get_data(as_text=True)
    assert "138****" in page and field.phones[case_id] not in page
    sup = app.test_client()
    login(sup, "sue")
    page = sup.post("/cati/cases", data={"csrf_token": csrf(sup, "/cati/cases"),
                                         "q": str(case_id)}).get_data(as_text=True)
    assert field.phones[case_id] in page
    token = csrf(sup, f"/cati/cases/{case_id}")
    r = sup.post(f"/cati/cases/{case_id}/answer",
                 data={"csrf_token": token, "unit_id": unit, "key": "3", "reason": "callback"})
    assert r.status_code == 302
    # a malformed field is refused with 400 naming it, not a server error
    for field_name, path in (("unit_id", "answer"), ("interviewer_id", "reassign")):
        bad = sup.post(f"/cati/cases/{case_id}/{path}",
                       data={"csrf_token": token, field_name: "abc", "key": "3"})
        assert bad.status_code == 400 and field_name in bad.get_data(as_text=True)
    # a statistician may look but not change
    stoken = csrf(stat, f"/cati/cases/{case_id}")
    assert stat.post(f"/cati/cases/{case_id}/answer",
                     data={"csrf_token": stoken, "unit_id": unit, "key": "2"}).status_code == 403
    with db.session() as s:
        log = s.scalars(select(AuditLog).where(AuditLog.action == "answer.change")).one()
        sue = s.scalar(select(User).where(User.username == "sue"))
        assert (log.user_id, log.old["rating"], log.new["rating"]) == (sue.id, "1", "3")
    page = sup.get(f"/cati/cases/{case_id}").get_data(as_text=True)
    assert "answer.change" in page
    data = sup.get("/cati/dashboard.json").json
    assert data["totals"]["released"] == 5
    assert data["rates"]["overall"]["e_basis"] == "default"


def test_supervisor_reassigns_hands_over_and_releases(field_app):
    app, db, field, _clock = field_app
    add_user(db, "sue", role="supervisor")
    bob = add_user(db, "bob")
    with db.transaction() as s:
        s.get(SampleCase, field.case_ids[4]).release_state = "held"
        s.get(SampleCase, field.case_ids[4]).replicate = 2
    sup = app.test_client()
    login(sup, "sue")
    cid = field.case_ids[0]
    token = csrf(sup, f"/cati/cases/{cid}")
    sup.post(f"/cati/cases/{cid}/reassign", data={"csrf_token": token, "interviewer_id": bob})
    sup.post(f"/cati/cases/{cid}/handover", data={"csrf_token": token, "channel": "cati"})
    page = sup.get("/cati/release-replicate").get_data(as_text=True)
    assert 'name="replicate" value="2"' in page  # the confirmation names what it releases
    sup.post("/cati/release-replicate", data={"csrf_token": token, "replicate": "2"})
    with db.session() as s:
        case = s.get(SampleCase, cid)
        assert case.assigned_to == bob and case.state == "handoff_cati"
        assert s.get(SampleCase, field.case_ids[4]).release_state == "released"


def test_every_screen_string_has_a_chinese_translation():
    import pathlib

    root = pathlib.Path(__file__).parents[2] / "cati"
    found = set()
    for path in [*root.glob("templates/cati/*.html"), root / "views.py",
                 root / "supervisor.py", root / "practice_views.py"]:
        text = path.read_text()
        found |= {m[1] for m in re.findall(r'''(?:\b_|gettext)\(\s*(["'])(.*?)\1''', text)}
    missing = sorted(found - set(ZH))
    assert not missing
