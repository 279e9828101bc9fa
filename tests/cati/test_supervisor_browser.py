"""The supervisor's and the statistician's screens in headless Chromium, on PostgreSQL.

A small field: ann has a soft refusal (2.1121) and a hard appointment (2.211), one case
is complete, one is held by ann when it is reassigned; replicate 2 (two strata) and a
reserve case are still held.  Checked as a supervisor would:

* the dashboard fits one 1366×768 screen, has no sideways scroll at 800 px, labels each
  code from the AAPOR catalogue (2.1121 is the soft refusal, not "2.112 拒访（硬）"),
  also in ``dashboard.json``, and drills into case lists;
* "release the next replicate" shows the counts per stratum and asks to confirm; the
  same confirmation sent again releases nothing (never the reserve);
* reassigning moves the hard appointment to the new interviewer's list and ends the
  old interviewer's hold;
* the case lists filter (refusal conversions, today's appointments, by interviewer);
* the statistician's page shows rates per stratum and by mode, balance and scores.

Screenshots: ``test-artifacts/screenshots/supervisor-*-{1366,800}.png``.
"""

from __future__ import annotations

import threading
from datetime import date, time, timedelta

import pytest
from sqlalchemy import select

from cati import service
from minping.models import Appointment, RespondentGroup, SampleCase, SampleDraw, Stratum, User
from minping.runtime import runtime_of
from tests.browser import launch_chromium, screenshot_dir
from tests.builders import FIELD_START, build_field
from tests.cati.browsing import dial
from tests.cati.helpers import PASSWORD, Clock, add_user

pytestmark = pytest.mark.browser

SIZES = {"1366": (1366, 768), "800": (800, 900)}


@pytest.fixture
def supervised(app, db):
    """The field described in the module's docstring, served on a werkzeug thread."""
    from werkzeug.serving import make_server

    field = build_field(db, n_cases=14, units_per_case=2)
    cfg = field.cfg
    ann, bob = add_user(db, "ann", experienced=True), add_user(db, "bob")
    add_user(db, "sue", role="supervisor")
    add_user(db, "stan", role="statistician")
    ids = field.case_ids
    t = FIELD_START
    with db.transaction() as s:
        business = s.scalar(select(RespondentGroup.id).where(RespondentGroup.code == "business"))
        other = Stratum(draw_id=field.draw_id, code="business", group_id=business,
                        town_id=None, population=50, target=3)
        s.add(other)
        s.flush()
        s.get(SampleDraw, field.draw_id).replicates = 2
        for k, cid in enumerate(ids[9:]):  # 9..12 replicate 2 (two strata), 13 the reserve
            case = s.get(SampleCase, cid)
            case.release_state, case.released_at = "held", None
            case.replicate = 2 if cid != ids[-1] else 3
            case.is_reserve = cid == ids[-1]
            if k % 2:
                case.stratum_id = other.id
    with db.transaction() as s:
        user = s.get(User, ann)
        for code in ("2.1121", "2.211", "1.1"):
            case = service.take_next(s, user, now=t, cfg=cfg)
            service.begin_attempt(s, case, user, now=t, how="manual")
            if code == "1.1":
                service.mark_answered(s, service.open_attempt(s, case, user), now=t,
                                      consent=True)
                for u in case.units:
                    service.save_answer(s, case, user, u.unit_id, "1", now=t, cfg=cfg)
            appt = (service.AppointmentRequest(day=date(2026, 12, 2), at=time(16, 0),
                                               kind="hard") if code == "2.211" else None)
            service.close_attempt(s, case, user, code=code, now=t, cfg=cfg,
                                  appointment=appt, refusal_conversion=code == "2.1121")
        held = service.take_next(s, user, now=t, cfg=cfg)  # ann holds this one now
    with db.session() as s:
        appt_case = s.scalar(select(Appointment.case_id))
        soft = s.scalar(select(SampleCase.id).where(SampleCase.current_disposition == "2.1121"))
    clock = Clock(t + timedelta(minutes=5))
    runtime_of(app).use(clock=clock)
    app.config.update(CATI_PROGRESS_SECONDS=0, CATI_REFRESH_MS=400)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"base": f"http://127.0.0.1:{server.server_port}", "field": field, "ann": ann,
           "bob": bob, "appt_case": appt_case, "soft": soft, "held": held.id}
    server.shutdown()
    thread.join(5)


def _log_in(browser, base, username, size="1366"):
    w, h = SIZES[size]
    page = browser.new_context(locale="zh-CN", viewport={"width": w, "height": h}).new_page()
    page.goto(f"{base}/")  # the root leads to the log-in page
    page.wait_for_selector("#username")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login")
    return page


def _shot(page, name):
    page.screenshot(path=str(screenshot_dir() / f"supervisor-{name}.png"), full_page=True)


def _no_sideways_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_supervisor_and_statistician_screens(supervised, db):
    base, f = supervised["base"], supervised
    with launch_chromium() as browser:
        # --- the dashboard: one screen, catalogue labels, drill-down ---------------------
        for size in ("1366", "800"):
            page = _log_in(browser, base, "sue", size)
            page.wait_for_selector("#dispositions-table")
            row = page.locator("#dispositions-table tr", has_text="2.1121")
            assert "拒访（软）" in row.inner_text() and "2.112" in row.inner_text()
            assert "拒访（硬）" not in row.inner_text()
            assert "预约" in page.locator("#dispositions-table tr", has_text="2.211").inner_text()
            assert page.text_content("#n-completed") == "1"
            assert _no_sideways_scroll(page), size
            if size == "1366":
                height = page.evaluate("document.documentElement.scrollHeight")
                assert height <= 768, f"the dashboard is {height} px tall at 1366×768"
                assert not page.is_visible("#units-table")  # collapsed until asked for
                page.click("#units-details summary")
                page.wait_for_selector("#units-table")
            _shot(page, f"dashboard-{size}")
            page.context.close()
        data = _log_in(browser, base, "sue").request.get(f"{base}/cati/dashboard.json").json()
        soft = next(d for d in data["dispositions"] if d["code"] == "2.1121")
        assert (soft["label_zh"], soft["counts_as"]) == ("拒访（软）", "2.112")

        # --- release the next replicate: counts per stratum, then confirm ------------------
        page = _log_in(browser, base, "sue")
        page.wait_for_selector("#release-replicate")
        page.click("#release-replicate")
        page.wait_for_selector("#release-plan")
        plan = page.inner_text("#release-plan")
        assert page.text_content("#release-total") == "4"
        assert plan.count("\n") >= 3  # two strata and the total
        _shot(page, "release-confirm-1366")
        # the same confirmation open in a second tab: its click comes second
        second = page.context.new_page()
        second.goto(page.url)
        second.wait_for_selector("#release-confirm-button")
        page.click("#release-confirm-button")
        page.wait_for_selector(".flash:has-text('4')")
        second.click("#release-confirm-button")
        second.wait_for_selector(".flash.error")
        assert "没有投放任何样本" in second.inner_text(".flash.error")
        _shot(second, "release-second-click-1366")
        second.close()
        page.goto(f"{base}/cati/release-replicate")  # now: nothing left, the reserve stays
        page.wait_for_selector("#release-nothing")
        with db.session() as s:
            released = s.scalars(select(SampleCase).where(
                SampleCase.release_state == "released")).all()
        assert len(released) == 13 and not any(c.is_reserve for c in released)

        # --- reassign: the hard appointment and the hold move --------------------------------
        page.goto(f"{base}/cati/cases/{f['appt_case']}")
        page.select_option("#reassign-to", str(f["bob"]))
        page.click("#reassign")
        page.wait_for_selector(".flash")
        page.goto(f"{base}/cati/cases/{f['held']}")
        page.select_option("#reassign-to", str(f["bob"]))
        page.click("#reassign")
        page.wait_for_selector(".flash")
        with db.session() as s:
            appt = s.scalar(select(Appointment).where(Appointment.case_id == f["appt_case"]))
            assert appt.interviewer_id == f["bob"] and appt.kind == "hard"
            held = s.get(SampleCase, f["held"])
            assert held.assigned_to == f["bob"] and held.lock_expires_at <= held.locked_at
        bob = _log_in(browser, base, "bob")
        bob.wait_for_selector("#next-case")
        with db.session() as s:
            pseudo = s.get(SampleCase, f["appt_case"]).pseudo_id
        assert pseudo in bob.content()  # the appointment is on bob's list now
        ann = _log_in(browser, base, "ann")
        ann.wait_for_selector("#next-case")
        assert pseudo not in ann.content()

        # --- case lists with filters ----------------------------------------------------------
        page.goto(f"{base}/cati/caselist?view=conversions")
        page.wait_for_selector("#case-list")
        with db.session() as s:
            soft_pseudo = s.get(SampleCase, f["soft"]).pseudo_id
        assert page.locator(f"#case-list tr[data-case='{soft_pseudo}']").count() == 1
        assert page.text_content("#case-count").startswith("1 ")
        page.goto(f"{base}/cati/caselist?view=appointments_today")
        assert page.locator(f"#case-list tr[data-case='{pseudo}']").count() == 1
        page.select_option("#f-interviewer", str(f["bob"]))
        page.click("#filter")
        page.wait_for_selector("#case-list")
        assert page.locator(f"#case-list tr[data-case='{pseudo}']").count() == 1
        _shot(page, "case-list-1366")
        page.goto(f"{base}/cati/caselist?code=2.1121")
        assert page.locator("#case-list tbody tr").count() == 1
        page.context.close()

        # --- the statistician's page -----------------------------------------------------------
        for size in ("1366", "800"):
            stan = _log_in(browser, base, "stan", size)
            stan.wait_for_selector("#n-completed")  # statisticians land on the dashboard
            stan.click("#nav-statistics")
            stan.wait_for_selector("#rates-table")
            rates = stan.inner_text("#rates-table")
            assert "CATI" in rates and "两代表一委员" in rates  # by mode and per stratum
            assert stan.locator("#rates-table tr.stratum").count() == 2
            assert stan.is_visible("#balance-units") and stan.is_visible("#stats-scores")
            assert "检验依据" in stan.inner_text("#stats-balance")  # (test_supervisor_pages: a real draw)
            assert _no_sideways_scroll(stan), size
            _shot(stan, f"statistics-{size}")
            stan.context.close()


@pytest.fixture
def practice_served(app, db):
    from werkzeug.serving import make_server

    from minping.practice import create_practice

    field = build_field(db, n_cases=3, units_per_case=2)
    add_user(db, "ann")
    add_user(db, "sue", role="supervisor")
    with db.transaction() as s:
        create_practice(s, field.cfg, size=3, now=FIELD_START)
    runtime_of(app).use(clock=Clock(FIELD_START + timedelta(hours=13)))  # 23:00 local
    app.config.update(CATI_PROGRESS_SECONDS=0, CATI_REFRESH_MS=400)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_practice_in_chromium_at_night_counts_nowhere(practice_served, db):
    base = practice_served
    with launch_chromium() as browser:
        sup = _log_in(browser, base, "sue")
        sup.wait_for_selector("#n-released")
        released = sup.text_content("#n-released")
        for size in ("1366", "800"):
            page = _log_in(browser, base, "ann", size)
            page.wait_for_selector("#nav-practice")
            page.click("#nav-practice")
            page.wait_for_selector("#practice-next")
            _shot(page, f"practice-{size}")
            if size == "800":
                page.context.close()
                continue
            page.click("#practice-next")
            page.wait_for_selector("#questions")
            case_id = int(page.url.rsplit("/", 1)[1])
            dial(page, consent=True)  # a rating needs the respondent's consent first
            with db.session() as s:
                case = s.get(SampleCase, case_id)
                assert case.release_state == "practice"
                n_units = len(case.units)
            for _ in range(n_units):
                page.keyboard.press("1")
                page.wait_for_selector("li.unit.current.saved[data-rating='1']")
                page.keyboard.press("Enter")
            _shot(page, "practice-case-1366")
            page.select_option("#code", "1.1")
            page.click("#close")
            page.wait_for_selector("#next-case")
            with db.session() as s:
                assert s.get(SampleCase, case_id).final_disposition == "1.1"
            page.context.close()
        sup.reload()
        sup.wait_for_selector("#n-released")
        assert sup.text_content("#n-completed") == "0"  # the practice complete counts nowhere
        assert sup.text_content("#n-released") == released
