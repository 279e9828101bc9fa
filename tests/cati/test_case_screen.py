"""#17 points 2, 4, 5 and 6 on the case screen, in Chromium on PostgreSQL.

2. Digits always rate the current question unless the focus is in a text field (the
   disposition list included); an out-of-scale key says so; the status line is never stale.
4. An ended session asks for the password in place and keeps what was typed.
5. The screen shows the CATI script (not the IVR key prompts) and fits 1366×768 with the
   number, the dial button, the script and the current question with its scale.
6. Errors in the interviewer's language on the same page, keeping the input; one public
   case identifier; the appointment picker offers only times inside the calling windows.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import select

from minping import calling
from minping.models import Answer, SampleCase
from tests.builders import FIELD_START
from tests.cati import browsing
from tests.cati.browsing import DESKTOP, NARROW, dial, in_view, log_in, serve, shot
from tests.cati.helpers import PASSWORD, add_user

pytestmark = pytest.mark.browser
db_url = browsing.db_url  # PostgreSQL only
chromium = browsing.chromium


@pytest.fixture
def served(app, db):
    server, thread, bundle = serve(app, db, n_cases=4, units_per_case=8)
    yield bundle
    server.shutdown()
    thread.join(5)


def _open_case(page, base):
    page.wait_for_selector("#next-case")
    page.click("#next-case")
    page.wait_for_selector("#questions")
    return int(page.url.rsplit("/", 1)[1])


def _interviewing(chromium, base, db):
    """Ann logged in, on her first case, dialled, with the respondent's consent."""
    add_user(db, "ann")
    page = chromium.new_page(viewport=DESKTOP, locale="zh-CN")
    log_in(page, base, "ann")
    case_id = _open_case(page, base)
    dial(page, consent=True)
    return page, case_id


def test_the_case_screen_reads_the_script_and_fits_one_screen(served, chromium, db):
    base, field, _clock, _sclock = served
    add_user(db, "ann", experienced=True)
    page = chromium.new_page(viewport=DESKTOP, locale="zh-CN")
    log_in(page, base, "ann")
    case_id = _open_case(page, base)
    text = page.text_content("body")
    # the interviewer's script, not the IVR's key prompts
    assert "请按" not in text
    assert "我是县统计局民意调查中心的访员ann" in page.text_content("#introduction")
    assert "请问您现在方便" in page.text_content("#consent-text")
    question = page.text_content("#current-question")
    assert "第 1/8 题" in question and "满意、基本满意、不满意、不了解" in question
    for sel in ("#case-id", "#phone", "#dial-manual", "#introduction", "#consent-text",
                "#current-question", "#scale", "#answer-status"):
        assert in_view(page, sel), f"{sel} is not on the first 1366×768 screen"
    shot(page, "case-1366x768")
    with db.session() as s:
        pseudo = s.get(SampleCase, case_id).pseudo_id
    assert page.text_content("#case-id") == pseudo
    page.set_viewport_size(NARROW)
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    shot(page, "case-800", full=True)


def test_digits_rate_the_question_wherever_the_focus_is(served, chromium, db):
    base, field, _clock, _sclock = served
    add_user(db, "ann")
    page = chromium.new_page(viewport=DESKTOP, locale="zh-CN")
    log_in(page, base, "ann")
    case_id = _open_case(page, base)
    page.keyboard.press("1")  # before the dial: said, nothing saved
    assert "请先拨号" in page.text_content("#answer-status")
    page.click("#dial-manual")
    page.wait_for_selector("#call-state:has-text('通话中')")
    page.keyboard.press("1")  # before consent: said, nothing saved
    page.wait_for_selector("#answer-status:has-text('请先记录受访者同意')")
    page.keyboard.press("Enter")  # the focus is on "consent given"
    page.wait_for_selector("#call-state:has-text('已记录同意')")
    # the disposition list has the focus: digits still rate the current question
    page.focus("#code")
    page.keyboard.press("3")
    page.wait_for_selector("li.unit.current.saved[data-rating='3']")
    assert page.input_value("#code") == ""
    assert "已保存" in page.text_content("#answer-status")
    # an out-of-scale key says so at once: the status line is not left at "saved"
    page.keyboard.press("7")
    status = page.text_content("#answer-status")
    assert "按键 7 不在评价量表内" in status and "已保存" not in status
    shot(page, "case-out-of-scale")
    # in a text field, digits are text
    page.fill("#note", "")
    page.focus("#note")
    page.keyboard.type("13点后再打")
    assert page.input_value("#note") == "13点后再打"
    with db.session() as s:
        ratings = s.scalars(select(Answer.rating).where(Answer.case_id == case_id)).all()
    assert ratings == ["3"]


def test_refusals_stay_on_the_page_in_chinese_with_the_input(served, chromium, db):
    base, field, clock, _sclock = served
    page, case_id = _interviewing(chromium, base, db)
    page.focus("#questions")
    for key in "12":
        page.keyboard.press(key)
        page.wait_for_selector(f"li.unit.current.saved[data-rating='{key}']")
        page.keyboard.press("Enter")
    page.select_option("#code", "1.1")
    page.fill("#note", "受访者说晚上有空")
    page.click("#close")
    page.wait_for_selector("#form-error")
    error = page.text_content("#form-error")
    assert "8 个单位中已有 2 个作答" in error and "应为 2.12，不是 1.1" in error
    assert page.input_value("#note") == "受访者说晚上有空"
    assert page.input_value("#code") == "1.1"
    shot(page, "case-refused")
    # the appointment picker offers only times inside the calling windows
    page.select_option("#code", "2.211")
    cfg = field.cfg
    days = page.eval_on_selector_all("#appt-date option", "os => os.map(o => o.value)")
    assert days and len(days) >= 5
    for day in days[:3]:
        page.select_option("#appt-date", day)
        times = page.eval_on_selector_all("#appt-time option", "os => os.map(o => o.value)")
        assert times
        for t in times:
            local = datetime.combine(date.fromisoformat(day), time.fromisoformat(t),
                                     tzinfo=cfg.calling.tz)
            assert calling.is_allowed(cfg.calling, local) and local > clock.now, (day, t)
        assert "13:00" not in times and "21:00" not in times
    page.select_option("#appt-date", days[0])
    page.select_option("#appt-time", "15:00")
    shot(page, "case-appointment")
    page.click("#close")
    page.wait_for_selector("#next-case")
    with db.session() as s:
        case = s.get(SampleCase, case_id)
        assert case.current_disposition == "2.211"
        pseudo = case.pseudo_id
    assert page.text_content(".flash").startswith(f"样本 {pseudo} ")  # the one public id


def test_an_ended_session_asks_for_the_password_in_place(served, chromium, db):
    base, field, _clock, sclock = served
    page, case_id = _interviewing(chromium, base, db)
    page.fill("#note", "已约好回访")
    page.focus("#questions")
    sclock.now = FIELD_START + timedelta(minutes=31)  # idle past the 30-minute time-out
    page.keyboard.press("2")
    page.wait_for_selector("#reauth:not([hidden])")
    assert "登录已过期" in page.text_content("#reauth")
    shot(page, "case-session-ended")
    page.fill("#reauth-password", "wrong-password")
    page.click("#reauth-go")
    page.wait_for_selector("#reauth-error:has-text('用户名或密码错误')")
    page.fill("#reauth-password", PASSWORD)
    page.click("#reauth-go")
    page.wait_for_selector("#reauth", state="hidden")
    page.wait_for_selector("li.unit.current.saved[data-rating='2']")  # sent again, saved
    assert page.input_value("#note") == "已约好回访"
    with db.session() as s:
        assert s.scalars(select(Answer.rating).where(Answer.case_id == case_id)).all() == ["2"]
    # a form posted with a stale token comes back to its page, in Chinese, never re-posted
    page.evaluate("document.querySelector('#close-form input[name=csrf_token]').value='x'")
    page.evaluate("document.getElementById('close-form').submit()")
    page.wait_for_selector(".flash.error")
    assert "页面已过期" in page.text_content(".flash.error")
    assert "CSRF" not in page.content() and "Bad Request" not in page.content()
    assert page.url.endswith(f"/cati/case/{case_id}")
