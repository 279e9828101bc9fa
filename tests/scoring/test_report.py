"""The HTML report and ``score_and_report`` on a small field with every kind of input."""

from __future__ import annotations

import re

import pytest

from minping.inputs import import_input
from minping.scores import run_scoring, score_and_report
from tests.scoring.test_db_scores import scored_field

PHONE = re.compile(r"\+86\d{11}|1[3-9]\d{9}")


@pytest.fixture
def field(db, tmp_path):
    f = scored_field(db)
    ballots = tmp_path / "ballots.csv"
    ballots.write_text("venue,unit,rating\n" + "".join(
        f"企业家座谈会,{u},{k}\n" for u, ks in {"fgw": "1112", "jxj": "3332"}.items() for k in ks),
        encoding="utf-8")
    votes = tmp_path / "votes.csv"
    votes.write_text("unit,option,count\nwin-tax,1,300\nwin-tax,2,100\nwin-tax,3,100\n",
                     encoding="utf-8")
    inspections = tmp_path / "inspections.csv"
    inspections.write_text("unit,date,kind,points\nfgw,2026-11-20,conduct,1\n"
                           "sjj,2026-11-21,routine-lapse,0.1\nsjj,2026-11-22,conduct,0.5\n",
                           encoding="utf-8")
    for kind, path in (("assessment", ballots), ("online", votes), ("inspection", inspections)):
        import_input(db, f.cfg, kind, path)
    return f


def test_composites_from_all_parts(db, field):
    results = run_scoring(db, field.cfg, min_raters=5)
    deps = {t.id: t for t in results.tracks}["departments"].scores
    wins = {t.id: t for t in results.tracks}["windows"].scores
    phone = results.phone
    # fgw: 0.5 phone + 0.5 assessment (mean of 100,100,100,60 = 90) − 1 point deducted
    assert deps["fgw"].composite == pytest.approx(0.5 * phone["fgw"].score + 0.5 * 90.0 - 1.0)
    # the composite's SE: 0.5² SE_phone² + 0.5² SE_assessment² (independent samples)
    se_a = results.assessment["fgw"].se
    assert deps["fgw"].se == pytest.approx((0.25 * phone["fgw"].se ** 2 + 0.25 * se_a ** 2) ** 0.5)
    # win-tax: 0.7 phone + 0.3 online ((300·100 + 100·60 + 100·0)/500 = 72)
    assert wins["win-tax"].composite == pytest.approx(0.7 * phone["win-tax"].score + 0.3 * 72.0)
    # win-scj has no online votes: its phone score alone, marked incomplete
    assert wins["win-scj"].composite == pytest.approx(phone["win-scj"].score)
    assert wins["win-scj"].missing == ("online",) and wins["win-scj"].status == "incomplete"
    # sjj has deductions only: no composite, the deduction still reported
    assert deps["sjj"].status == "no-score" and deps["sjj"].deduction == pytest.approx(0.6)
    assert deps["sjj"].flag is None and deps["sjj"].rank is None
    assert results.rates is not None and results.rates.counts.I == 28
    assert results.rates.counts.P == 2 and results.rates.counts.R == 2
    # mode and interviewer effects per track and overall (estimators checked against R in
    # test_modes.py and test_interviewers.py); no mode experiment: experimental is None
    effects = results.as_dict()["effects"]
    assert set(effects["mode"]) == {"overall", "departments", "agencies", "windows"}
    assert all(m["experimental"] is None for m in effects["mode"].values())
    assert set(effects["interviewers"]) == set(effects["mode"])


def test_report_in_chinese(db, field, tmp_path):
    summary = score_and_report(db, field.cfg, tmp_path / "out", min_raters=5)
    path = tmp_path / "out" / "index.html"
    assert summary["report"] == str(path)
    html = path.read_text(encoding="utf-8")
    for unit in field.cfg.units:
        assert unit.name in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="dotplot"') == 3
    assert html.count('class="threshold"') == 3
    assert re.search(r'<text class="threshold-label"[^>]*>70</text>', html)
    assert re.search(r"<text [^>]*>县发展和改革委员会</text>", html)
    assert "Holm" in html and "RR1" in html and "COOP1" in html and "e = " in html
    assert "缺少：网上评议" in html  # win-scj
    assert "单位 u 的权数为 N_h/n_hu" in html  # the per-unit design of the database mode
    assert "无综合得分" in html  # sjj: deductions only
    assert not re.search(r"<script|<link|@import|https?://(?!www\.w3\.org/2000/svg)", html)
    assert not PHONE.search(html)
    for phone in field.phones:
        assert phone[3:] not in html
    tracks = {t["track"]: t for t in summary["tracks"]}
    assert {r["unit"] for r in tracks["windows"]["rows"]} == {u.id for u in field.cfg.track("windows").units}
    assert all("flag" in r and "rank_low" in r for r in tracks["departments"]["rows"])


def test_report_in_english_by_command(db, field, runner, tmp_path):
    out = runner.invoke(["report", "--out", str(tmp_path / "en"), "--lang", "en",
                         "--min-raters", "5"])
    assert out.exit_code == 0, out.output
    assert "report written to" in out.stdout
    html = (tmp_path / "en" / "index.html").read_text(encoding="utf-8")
    assert "County Development and Reform Commission" in html
    assert "Holm&#39;s step-down correction" in html
    assert "missing: Online vote" in html
    assert "with the weight N_h/n_hu" in html
    # the flag rule and the rank intervals' coverage as the code applies them
    assert "Adjusted p &lt; 0.025 (a one-sided test at 0.025): &#34;below 70&#34;" in html
    assert "lower end of its 95% two-sided interval (unadjusted) is under 70" in html
    assert "covers its true rank with probability 95%" in html
    simultaneous = runner.invoke(["report", "--out", str(tmp_path / "sim"), "--lang", "en",
                                  "--min-raters", "5", "--ranks", "simultaneous"])
    assert simultaneous.exit_code == 0, simultaneous.output
    html_sim = (tmp_path / "sim" / "index.html").read_text(encoding="utf-8")
    assert "cover their true ranks jointly with probability 95%" in html_sim
    assert not PHONE.search(html)


def test_report_counts_agree_with_the_cli_and_show_rates_by_stratum_and_mode(
        db, field, runner, tmp_path):
    """The report's drawn (without the reserve), reserve, released and completes per stratum
    are the numbers ``minping sample balance --json`` prints; it shows AAPOR rates by mode
    and per stratum, and a legend for its dot plots."""
    import json

    from sqlalchemy import select

    from minping.models import SampleCase

    with db.transaction() as s:  # two cases of the first stratum become held reserve cases
        for case in s.scalars(select(SampleCase).where(
                SampleCase.final_disposition.is_distinct_from("1.1"),
                SampleCase.final_disposition.is_distinct_from("1.2"))
                .order_by(SampleCase.id).limit(2)):
            case.is_reserve, case.release_state = True, "held"
    out = runner.invoke(["report", "--out", str(tmp_path / "r"), "--json"])
    assert out.exit_code == 0, out.output
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    balance = json.loads(runner.invoke(["sample", "balance", "--json"]).output)
    assert sum(s["reserve"] for s in balance["strata"]) == 2
    for s in balance["strata"]:
        row = re.search(rf'<tr data-stratum="{re.escape(s["stratum"])}">(.*?)</tr>', html, re.S)
        assert row, s["stratum"]
        cells = dict(re.findall(r'<td class="(drawn|reserve|released|completed)">(\d+)</td>',
                                row.group(1)))
        assert {k: int(v) for k, v in cells.items()} == {
            k: s[k] for k in ("drawn", "reserve", "released", "completed")}, s["stratum"]
    rates = re.search(r'<table class="rates-by" id="rates-by">(.*?)</table>', html, re.S).group(1)
    assert rates.count('<tr class="stratum">') == len(balance["strata"])
    # (this field's cases have no call attempts, so there is no mode row; a case counts for
    # the mode of its last attempt, as on the dashboard: tests/cati/test_supervisor_browser.py)
    assert 'id="plot-legend"' in html and "置信区间" in html and "低于达标线" in html
