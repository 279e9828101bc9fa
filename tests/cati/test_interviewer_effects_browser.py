"""The supervisors' interviewer effects on the dashboard, in headless Chromium.

The field is ``tests.scoring.test_effects_db.experiment_field`` (three
interviewers' CATI ratings) with every rating interviewer iv0 took changed to
不满意 (0 points): iv0 rates far below peers on the same units, which the
screen must name (with only three interviewers the two others then lie above
the unit means and are named too); ρ_int and the design effect are the ones
``scoring.interviewers`` computes (checked against R in
``tests/scoring/test_interviewers.py``).
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, update

from minping.models import Answer, CallAttempt, User
from minping.runtime import runtime_of
from minping.score_effects import interviewer_effects_by_track
from tests.browser import launch_chromium, screenshot_dir
from tests.builders import FIELD_START
from tests.cati.helpers import PASSWORD, Clock, add_user
from tests.scoring.test_effects_db import experiment_field

pytestmark = pytest.mark.browser


@pytest.fixture
def served(app, db):
    from werkzeug.serving import make_server

    field = experiment_field(db)
    with db.transaction() as s:
        iv0 = s.scalar(select(User.id).where(User.username == "iv0"))
        attempts = select(CallAttempt.id).where(CallAttempt.interviewer_id == iv0)
        s.execute(update(Answer).where(Answer.attempt_id.in_(attempts), Answer.rating.is_not(None))
                  .values(rating="3"))
    runtime_of(app).use(clock=Clock(FIELD_START))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", field
    server.shutdown()
    thread.join(5)


def test_supervisor_sees_interviewer_effects(served, db):
    base, field = served
    add_user(db, "sue", role="supervisor", language="en")
    with db.session() as s:
        want = interviewer_effects_by_track(s, field.cfg)["tracks"]
    overall = want["overall"]
    outlying = [r for r in overall["rows"] if r["outlying"]]
    # iv0 far below; with three interviewers the two others then sit above the unit means
    assert outlying[0]["interviewer"] == "iv0" and outlying[0]["mean_residual"] < -10
    with launch_chromium() as browser:
        page = browser.new_context(locale="en-US").new_page()
        page.goto(f"{base}/cati/login")
        page.fill("#username", "sue")
        page.fill("#password", PASSWORD)
        page.click("#login")
        page.wait_for_selector("#interviewer-effects")
        page.click("#effects-details summary")  # the dashboard keeps it folded
        page.screenshot(path=str(screenshot_dir() / f"{db.dialect}-interviewer-effects.png"),
                        full_page=True)
        section = page.locator("#interviewer-effects")
        assert "Interviewer effects" in section.locator("h2").text_content()
        row = section.locator("tr[data-track='overall'] td")
        cells = [c.strip() for c in row.all_text_contents()]
        assert cells[:5] == ["Overall", "3", str(overall["n"]), f"{overall['rho']:.3f}",
                             f"{overall['deff']:.2f}"]
        # named with their mean deviation from the unit means
        assert cells[5] == ", ".join(f"{r['interviewer']} ({r['mean_residual']:+.1f})"
                                     for r in outlying)
        for track in ("departments", "windows"):
            name = field.cfg.track(track).name_en
            assert section.locator(f"tr[data-track='{track}'] td").first.text_content() == name
        # a track nobody rated by CATI says so instead of showing numbers
        agencies = section.locator("tr[data-track='agencies'] td").nth(1).text_content()
        assert agencies == "Too few CATI ratings (two interviewers needed)."
