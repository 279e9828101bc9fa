"""The hand-over seen by the interviewer: their CATI screen in headless Chromium.

A respondent answers one question by keypad, presses the hand-over key; the
simulator plays ``<Dial>`` to the interviewer's phone, which answers.  The
interviewer's CATI screen (Debian's Chromium through Playwright,
:mod:`tests.browser`) then offers that case and opens it with the IVR answer
already there, marked ``(IVR)``, and the questions still to ask.
"""

from __future__ import annotations

import threading

import pytest

from ivr.simulator import Persona
from tests.browser import launch_chromium, screenshot_dir
from tests.cati.helpers import PASSWORD, add_user

pytestmark = pytest.mark.browser

INTERVIEWER_PHONE = "+8613700000002"


@pytest.fixture
def served(app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def test_the_interviewers_screen_opens_the_handed_over_case_with_its_ivr_answers(
        rig_factory, served, db):
    rig = rig_factory()
    add_user(rig.db, "wang", phone=INTERVIEWER_PHONE)
    rig.sim.set_persona(INTERVIEWER_PHONE, Persona(line="human", answer_probability=1.0,
                                                   busy_probability=0.0, ring_seconds=3))
    rig.persona(keys=["1", "3", "8"], record_seconds=0)
    rig.dial()
    (call,) = rig.calls_to()
    assert [d.detail for d in call.transcript.of_kind("dial")] == ["completed"]
    names = rig.unit_names()
    case = rig.case()

    with launch_chromium() as browser:
        page = browser.new_context(locale="zh-CN").new_page()
        page.goto(f"{served}/cati/login")
        page.fill("#username", "wang")
        page.fill("#password", PASSWORD)
        page.click("#login")
        page.wait_for_selector("#resume")  # "you hold case ..." -- the handed-over case
        assert case.pseudo_id in page.text_content("body")
        page.click("#resume")
        page.wait_for_selector("ol.units")
        page.screenshot(path=str(screenshot_dir() / f"{db.dialect}-ivr-handoff-case.png"),
                        full_page=True)
        units = page.locator("ol.units li.unit")
        assert units.count() == len(names)
        first = units.nth(0)
        assert names[0] in first.text_content()
        assert "done" in (first.get_attribute("class") or "")
        assert first.locator(".answer").text_content().strip() == "3 不满意 (IVR)"
        for i in range(1, len(names)):  # still to ask, by the interviewer
            assert units.nth(i).get_attribute("data-asked") == "1"
            assert units.nth(i).locator(".answer").text_content().strip() == ""
