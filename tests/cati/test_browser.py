"""The CATI screens in headless Chromium (Debian's package) through Playwright.

The app is served by werkzeug in a thread on 127.0.0.1; its clock is a
:class:`tests.cati.helpers.Clock` the test moves forward.  Screenshots of each
screen go to ``test-artifacts/screenshots/`` (not committed).
"""

from __future__ import annotations

import pathlib
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from minping.models import Answer, Appointment, SampleCase
from minping.runtime import runtime_of
from tests.builders import FIELD_START, build_field
from tests.cati import browsing
from tests.cati.helpers import PASSWORD, Clock, add_user

pytestmark = pytest.mark.browser

SHOTS = pathlib.Path(__file__).parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture
def served(app, db, request):
    from werkzeug.serving import make_server

    field = build_field(db, n_cases=3, units_per_case=4)
    clock = Clock(FIELD_START)
    runtime_of(app).use(clock=clock)
    app.config.update(CATI_PROGRESS_SECONDS=0, CATI_REFRESH_MS=500)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", field, clock
    server.shutdown()
    thread.join(5)


browser = browsing.chromium


def shot(page, name, db_name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{db_name}-{name}.png"), full_page=True)


def log_in(page, base, username):
    page.goto(f"{base}/cati/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login")


def test_interviewer_and_supervisor_in_chromium(served, browser, db):
    base, field, clock = served
    dbn = db.dialect
    add_user(db, "ann")
    add_user(db, "sue", role="supervisor")

    sup = browser.new_context(locale="zh-CN").new_page()
    log_in(sup, base, "sue")
    sup.wait_for_selector("#n-completed")
    assert sup.text_content("#n-completed") == "0"
    assert sup.text_content("#n-released") == "3"
    shot(sup, "1-dashboard-before", dbn)

    page = browser.new_context(locale="zh-CN").new_page()
    page.goto(f"{base}/cati/login")
    shot(page, "0-login", dbn)
    log_in(page, base, "ann")
    page.wait_for_selector("#next-case")
    shot(page, "2-work", dbn)
    page.click("#next-case")
    page.wait_for_selector("#questions")
    case_id = int(page.url.rsplit("/", 1)[1])
    assert "****" in page.text_content("#phone")
    assert field.phones[case_id] not in page.content()
    shot(page, "3-case", dbn)

    # the interviewer refused the supervisor pages
    resp = page.goto(f"{base}/cati/dashboard")
    assert resp.status == 403
    shot(page, "4-forbidden", dbn)
    page.goto(f"{base}/cati/case/{case_id}")
    page.wait_for_selector("#questions")

    # keyboard only: dial with the keyboard, then rate every unit
    page.focus("#dial-manual")
    page.keyboard.press("Enter")
    page.wait_for_selector("#call-state:has-text('通话中')")
    page.keyboard.press("Enter")  # the focus went to "consent given"
    page.wait_for_selector("#call-state:has-text('已记录同意')")
    page.focus("#questions")
    keys = ["1", "2", "3", "0"]
    page.keyboard.press("3")  # a wrong first answer...
    page.wait_for_selector("li.unit.current.saved")
    page.keyboard.press("Enter")
    page.keyboard.press("Backspace")  # ...go back and correct it
    for key in keys:
        page.keyboard.press(key)
        page.wait_for_selector(f"li.unit.current.saved[data-rating='{key}']")
        page.keyboard.press("Enter")
    page.wait_for_selector("#answer-status:has-text('全部单位已评价')")
    shot(page, "5-rated", dbn)
    with db.session() as s:
        ratings = [a.rating for a in s.scalars(select(Answer).where(Answer.case_id == case_id)
                                                .order_by(Answer.unit_id))]
        from minping.cases import case_units

        in_order = [u.rating for u in case_units(s, case_id)]
    assert in_order == keys and sorted(ratings) == sorted(keys)
    assert page.input_value("#code") == "1.1"
    page.keyboard.press("Enter")  # the close button has the focus
    page.wait_for_selector("#next-case")
    shot(page, "6-closed", dbn)

    # the supervisor's dashboard refreshes by itself
    sup.wait_for_selector("#n-completed:has-text('1')", timeout=10_000)
    shot(sup, "7-dashboard-after", dbn)

    # next case: book an appointment for 16:00 local time (08:00 UTC)
    page.click("#next-case")
    page.wait_for_selector("#questions")
    second = int(page.url.rsplit("/", 1)[1])
    page.click("#dial-manual")
    page.wait_for_selector("#call-state:has-text('通话中')")
    page.select_option("#code", "2.211")
    page.select_option("#appt-date", "2026-12-02")
    page.select_option("#appt-time", "16:00")
    page.check("#appt-hard")
    shot(page, "8-appointment", dbn)
    page.click("#close")
    page.wait_for_selector("#next-case")
    with db.session() as s:
        appt = s.scalars(select(Appointment).where(Appointment.case_id == second)).one()
        assert appt.due_at == FIELD_START.replace(hour=8) and appt.kind == "hard"
    shot(page, "9-work-with-appointment", dbn)

    # the third case is given now; then nothing until the appointment's time
    page.click("#next-case")
    page.wait_for_selector("#questions")
    third = int(page.url.rsplit("/", 1)[1])
    assert third not in (case_id, second)
    page.click("#dial-manual")
    page.wait_for_selector("#call-state:has-text('通话中')")
    page.select_option("#code", "3.13")
    page.click("#close")
    page.wait_for_selector("#next-case")
    clock.now = FIELD_START.replace(hour=7, minute=59)
    with db.transaction() as s:  # the no-answer retry would otherwise come first
        s.get(SampleCase, third).next_attempt_at = FIELD_START + timedelta(days=2)
    page.click("#next-case")
    page.wait_for_selector(".flash")
    assert "没有可拨打的样本" in page.text_content(".flash")
    clock.now = FIELD_START.replace(hour=8)
    page.click("#next-case")
    page.wait_for_selector("#questions")
    assert int(page.url.rsplit("/", 1)[1]) == second
    assert "预约" in page.text_content("#history")
    shot(page, "10-appointment-back", dbn)

    # English, per user
    page.select_option("select[name=language]", "en")
    page.wait_for_selector("text=Close the attempt")
    shot(page, "11-english", dbn)
