"""Privacy: interviewers see masked numbers only; a supervisor's look at a number is audited.

Answer changes by supervisors, with old and new values, are tested in
``tests/cati/test_views.py::test_supervisor_sees_full_numbers_and_changes_are_audited``.
"""

from __future__ import annotations

import re

from sqlalchemy import select

from minping.models import AuditLog, User
from minping.runtime import runtime_of
from tests.builders import FIELD_START, build_field
from tests.cati.helpers import PASSWORD, Clock, add_user

E164 = re.compile(r"\+86\d{11}")
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def _login(app, username):
    client = app.test_client()
    page = client.get("/cati/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    r = client.post("/cati/login", data={"username": username, "password": PASSWORD,
                                         "csrf_token": token})
    assert r.status_code == 302
    return client


def _no_number(page: str, phones) -> None:
    assert not E164.search(page) and not MOBILE.search(page), (E164.findall(page),
                                                                MOBILE.findall(page))
    for phone in phones:
        assert phone not in page and phone.removeprefix("+86") not in page


def test_an_interviewer_sees_masked_numbers_only(app, db):
    field = build_field(db, n_cases=3)
    runtime_of(app).use(clock=Clock(FIELD_START))
    add_user(db, "ivy", "interviewer")
    client = _login(app, "ivy")
    phones = list(field.phones.values())
    pages = ["/cati/", "/cati/work"]
    r = client.post("/cati/next", data={"csrf_token": _csrf(client)})
    if r.status_code == 302:
        pages.append(r.headers["Location"])
    pages += [f"/cati/case/{c}" for c in field.case_ids]
    seen = 0
    for path in pages:
        r = client.get(path, follow_redirects=True)
        if r.status_code == 200:
            page = r.get_data(as_text=True)
            _no_number(page, phones)
            seen += "****" in page
    assert seen, "no page showed a masked number"
    print(f"\ninterviewer pages checked: {len(pages)}, masked numbers on {seen}, "
          f"no full number anywhere")


def _csrf(client):
    with client.session_transaction() as sess:
        return sess["csrf"]


def test_a_supervisor_sees_the_full_number_and_the_view_is_audited(app, db):
    field = build_field(db, n_cases=2)
    runtime_of(app).use(clock=Clock(FIELD_START))
    add_user(db, "sue", "supervisor")
    add_user(db, "stan", "statistician")
    case_id = field.case_ids[0]
    stat = _login(app, "stan")
    page = stat.get(f"/cati/cases/{case_id}").get_data(as_text=True)
    _no_number(page, field.phones.values())
    sup = _login(app, "sue")
    assert field.phones[case_id] in sup.get(f"/cati/cases/{case_id}").get_data(as_text=True)
    assert field.phones[case_id] in sup.post("/cati/cases", data={
        "csrf_token": _csrf(sup), "q": str(case_id)}).get_data(as_text=True)
    with db.session() as s:
        sue = s.scalar(select(User).where(User.username == "sue"))
        logs = s.scalars(select(AuditLog).where(AuditLog.action == "phone.view")
                         .order_by(AuditLog.id)).all()
    assert [(a.user_id, a.actor, a.entity, a.entity_id) for a in logs] == \
        [(sue.id, "supervisor:sue", "case", str(case_id))] * 2
    assert all(a.at == FIELD_START for a in logs)
