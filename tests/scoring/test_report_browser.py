"""The report opened in a real headless Chromium shows its plots (a screenshot is kept)."""

from __future__ import annotations

from pathlib import Path

import pytest

from minping.scores import score_and_report
from tests.browser import launch_chromium, screenshot_dir
from tests.scoring.test_report import field  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_report_plots_render_in_chromium(db, field, tmp_path):  # noqa: F811
    summary = score_and_report(db, field.cfg, tmp_path / "out", min_raters=5)
    url = Path(summary["report"]).resolve().as_uri()
    with launch_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        plots = page.locator("svg.dotplot")
        assert plots.count() == 3
        for i in range(3):
            box = plots.nth(i).bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 100
        # the Chinese unit names are text inside the SVG, laid out by the browser
        label = page.locator("svg.dotplot text", has_text="县发展和改革委员会").first
        assert label.bounding_box()["width"] > 20
        shot = screenshot_dir() / "report.png"
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
