"""The field forecast: ``minping field forecast --json`` and the dashboard chart agree.

A field of 40 deputies' cases worked by an interviewer on Wednesday 2026-12-02
(known codes), forecast on Thursday morning: the CLI's JSON and the dashboard's
forecast partial (in headless Chromium) show the same dates and counts.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cati import service
from minping import calling, calltimes
from minping import forecast as fc
from minping.models import SampleCase, User
from minping.runtime import runtime_of
from tests.builders import FIELD_START, build_field
from tests.cati.helpers import PASSWORD, Clock, add_user, answer_for

#: Thursday 2026-12-03 09:30 in Shanghai, the morning after the worked day.
AT = datetime(2026, 12, 3, 1, 30, tzinfo=UTC)
# per case, the codes of its attempts on the first day
PLAN = ([["1.1"]] * 8 + [["3.13", "1.1"]] * 4 + [["2.112"]] * 3 + [["3.13", "3.13"]] * 10
        + [["3.13"]] * 10)


def work(db, field):
    cfg = field.cfg
    uid = add_user(db, "ann")
    for i, (case_id, codes) in enumerate(zip(field.case_ids, PLAN, strict=False)):
        for n, code in enumerate(codes):
            t = FIELD_START + timedelta(minutes=7 * i, hours=3 * n)
            with db.transaction() as s:
                user = s.get(User, uid)
                case = s.get(SampleCase, case_id)
                case.next_attempt_at = None
                assert service.cases.try_hold(s, case_id, channel="cati", now=t, user_id=uid)
                service.begin_attempt(s, case, user, now=t)
                answer_for(s, case, user, code, now=t + timedelta(minutes=2), cfg=cfg)
                service.close_attempt(s, case, user, code=code, now=t + timedelta(minutes=3),
                                      cfg=cfg)


@pytest.fixture
def worked(db):
    field = build_field(db, n_cases=40, units_per_case=4)
    work(db, field)
    return field


def test_forecast_json_says_when_the_stratum_gets_there_and_what_closes_the_gap(worked, runner):
    out = runner.invoke(["field", "forecast", "--json", "--at", AT.isoformat()])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    (stratum,) = data["strata"]
    assert stratum["key"] == "deputies" and stratum["now"] == 12 and stratum["target"] == 40
    # 25 open cases cannot give 28 more completes: the target is out of reach
    assert stratum["date"] is None and not stratum["before_end"]
    assert stratum["shortfall"] > 0 and stratum["cases_to_release"] >= stratum["shortfall"]
    assert stratum["extra_interviewer_hours"] is not None
    band = stratum["band"]
    assert band[0]["low"] <= band[0]["median"] <= band[0]["high"]
    assert all(a["median"] <= b["median"] for a, b in zip(band, band[1:], strict=False))
    assert max(b["high"] for b in band) <= 12 + 25
    assert {u["kind"] for u in data["units"]} == {"unit"}
    assert all(u["target"] == worked.cfg.campaign.min_raters for u in data["units"])
    text = runner.invoke(["field", "forecast", "--at", AT.isoformat()]).output
    assert "deputies: 12/40" in text and "NOT BY THE END DATE" in text
    bad = runner.invoke(["field", "forecast", "--at", "2026-12-03 09:30"])
    assert bad.exit_code == 1 and "--at" in bad.output


@pytest.mark.browser
def test_dashboard_chart_matches_the_cli(app, db, worked, runner):
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from tests.browser import CHROMIUM
    from tests.browser import CHROMIUM_ARGS as ARGS

    expected = json.loads(runner.invoke(
        ["field", "forecast", "--json", "--at", AT.isoformat(), "--sims",
         str(fc.DEFAULT_SIMS)]).output)
    add_user(db, "sue", role="supervisor")
    runtime_of(app).use(clock=Clock(AT))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_context(locale="en-US").new_page()
            base = f"http://127.0.0.1:{server.server_port}"
            page.goto(f"{base}/cati/login")
            page.fill("#username", "sue")
            page.fill("#password", PASSWORD)
            page.click("#login")
            page.click("#forecast-details summary")  # the dashboard keeps it folded
            page.wait_for_selector("#forecast svg.forecast-chart polygon.band")
            row = page.locator('#forecast tr[data-key="deputies"]')
            want = expected["strata"][0]
            assert row.get_attribute("data-date") == (want["date"] or "")
            assert row.get_attribute("data-date-low") == (want["date_low"] or "")
            assert row.get_attribute("data-date-high") == (want["date_high"] or "")
            assert row.get_attribute("data-before-end") == ("yes" if want["before_end"] else "no")
            assert f"{want['now']} / {want['target']}" in row.inner_text()
            assert str(want["cases_to_release"]) in row.locator("td.gap").inner_text()
            assert page.locator("#forecast line.target").count() == 1
            on_track = sum(u["before_end"] for u in expected["units"])
            assert page.text_content("#units-on-track") == str(on_track)
            as_of = page.locator("#forecast-as-of")                   # when it was computed
            assert as_of.get_attribute("datetime") == AT.astimezone(
                worked.cfg.calling.tz).isoformat()
            assert "2026-12-03 09:30" in as_of.inner_text()
            browser.close()
    finally:
        server.shutdown()
        thread.join(5)


def test_learned_contact_chances_are_read_from_the_attempts(worked, db):
    rules = replace(worked.cfg.calling, retry_method="learned")
    with db.session() as s:
        rates = calltimes.load_contact_rates(s, rules)
        # PLAN: 12 completes and 3 refusals reached someone; 49 attempts in all
        assert rates.overall == (15, 49)
        case = s.get(SampleCase, worked.case_ids[-1])           # one no-answer so far
        due = calltimes.retry_at(s, rules, case, now=AT, outcome="no-answer", rates=rates)
    assert due >= AT + rules.retry_delay("no-answer")
    assert calling.is_allowed(rules, due)


def test_the_dashboard_forecast_is_cached_until_the_field_moves(worked, db):
    cfg = worked.cfg
    cache = fc.ForecastCache(min_seconds=300, max_seconds=3600)
    with db.session() as s:
        first = cache.get(s, cfg, now=AT, n_sims=50)
        assert not first["cached"] and cache.computed == 1
        assert first["as_of"] == AT.astimezone(cfg.calling.tz).isoformat()
        # the same answer as the uncached call at that moment
        plain = fc.field_forecast(s, cfg, now=AT, n_sims=50)
        assert first["strata"] == plain["strata"] and first["units"] == plain["units"]
        again = cache.get(s, cfg, now=AT + timedelta(minutes=1), n_sims=50)
        assert again["cached"] and again["as_of"] == first["as_of"] and cache.computed == 1
        # past the minimum age, nothing changed: still held
        assert cache.get(s, cfg, now=AT + timedelta(minutes=20), n_sims=50)["cached"]
        assert cache.computed == 1
    uid = add_user(db, "bob")
    t = AT + timedelta(minutes=21)
    with db.transaction() as s:                     # the field moves: one more attempt
        user = s.get(User, uid)
        case = s.get(SampleCase, worked.case_ids[-1])
        case.next_attempt_at = None
        assert service.cases.try_hold(s, case.id, channel="cati", now=t, user_id=uid)
        service.begin_attempt(s, case, user, now=t)
        service.close_attempt(s, case, user, code="3.13", now=t + timedelta(minutes=1),
                              cfg=cfg)
    with db.session() as s:
        # younger than the minimum age: the held forecast, whatever changed
        assert cache.get(s, cfg, now=AT + timedelta(minutes=4), n_sims=50)["cached"]
        moved = cache.get(s, cfg, now=AT + timedelta(minutes=25), n_sims=50)
        assert not moved["cached"] and cache.computed == 2
        later = AT + timedelta(minutes=25, seconds=3600)              # the maximum age
        assert not cache.get(s, cfg, now=later, n_sims=50)["cached"] and cache.computed == 3
        back = AT                                                     # a clock set back
        assert not cache.get(s, cfg, now=back, n_sims=50)["cached"] and cache.computed == 4
