"""The interviewer's screens in headless Chromium on PostgreSQL: fixtures and helpers.

The app is served by werkzeug in a thread; the field clock (calling windows,
appointments) and the session clock (idle time-outs) are settable
:class:`~tests.cati.helpers.Clock` objects.  Screenshots go to
``test-artifacts/screenshots/`` at 1366×768 and at 800 px wide (not committed).
"""

from __future__ import annotations

import pathlib
import threading

import pytest

from minping.runtime import runtime_of
from tests.browser import CHROMIUM, CHROMIUM_ARGS, screenshot_dir
from tests.builders import FIELD_START, build_field
from tests.cati.helpers import PASSWORD, Clock
from tests.conftest import _truncate_postgres

DESKTOP = {"width": 1366, "height": 768}
NARROW = {"width": 800, "height": 900}


@pytest.fixture
def db_url(request):
    """PostgreSQL only: these tests are about the screens a polling center runs."""
    url = request.getfixturevalue("pg_database")
    _truncate_postgres(url)
    return url


def serve(app, db, *, n_cases, units_per_case):
    from werkzeug.serving import make_server

    field = build_field(db, n_cases=n_cases, units_per_case=units_per_case)
    clock = Clock(FIELD_START)
    session_clock = Clock(FIELD_START)
    runtime_of(app).use(clock=clock)
    app.config.update(CATI_PROGRESS_SECONDS=0, CATI_SESSION_CLOCK=session_clock,
                      CATI_SESSION_IDLE_MINUTES=30)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread, (f"http://127.0.0.1:{server.server_port}", field, clock,
                            session_clock)


@pytest.fixture
def chromium():
    from playwright.sync_api import sync_playwright

    if not pathlib.Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shot(page, name, *, full=False):
    page.screenshot(path=str(screenshot_dir() / f"{name}.png"), full_page=full)


def log_in(page, base, username, password=PASSWORD):
    page.goto(f"{base}/cati/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login")


def in_view(page, selector) -> bool:
    """The element is entirely inside the viewport, without scrolling."""
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return (box is not None and box["y"] >= 0 and box["x"] >= 0
            and box["y"] + box["height"] <= size["height"]
            and box["x"] + box["width"] <= size["width"])


def dial(page, *, consent: bool, press=None):
    """Click "I dialled"; with ``consent`` press Enter on "consent given" (it has the focus)."""
    page.click("#dial-manual")
    page.wait_for_selector("#call-state:has-text('通话中')")
    if consent:
        (press or page.keyboard.press)("Enter")
        page.wait_for_selector("#call-state:has-text('已记录同意')")
