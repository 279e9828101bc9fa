"""The survey configuration: the real file, broken copies, and the calling rules.

Facts checked against the source document (seed/000_b85ea37f091dbbe7.txt):
39 enterprise-related departments, 76 agencies in three categories, 30 service
windows; 2,020 phone respondents; composite weights 50/50 and 70/30; flag
threshold 70; deductions 0.5-1 point per person-time and 0.1 per lapse.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from minping.config import (
    CONFIG_ENV_VAR,
    ConfigError,
    check_config,
    default_config_path,
    load_config,
)
from minping.errors import MinpingError

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "minping" / "data" / "survey.toml"
DATA = REPO / "tests" / "data" / "config"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _sh(*args: int) -> datetime:
    """A moment in Asia/Shanghai local time."""
    return datetime(*args, tzinfo=SHANGHAI)


def _broken_copy(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """The real file with each ``old`` text (which must occur exactly once) replaced."""
    text = REAL.read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, f"edit target not unique in survey.toml: {old!r}"
        text = text.replace(old, new)
    path = tmp_path / "survey.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


# ---------------------------------------------------------------------------
# The real file


def test_real_file_has_the_145_units_of_the_source_document():
    cfg = load_config(REAL)
    assert [t.id for t in cfg.tracks] == ["departments", "agencies", "windows"]
    assert [len(t.units) for t in cfg.tracks] == [39, 76, 30]
    assert len(cfg.units) == 145
    ids = [u.id for u in cfg.units]
    assert len(set(ids)) == 145
    assert all(cfg.unit(u.id) is u for u in cfg.units)
    assert cfg.unit("fgw").name == "县发展和改革委员会"
    assert cfg.unit("win-tax").track == "windows"
    assert cfg.units[0].id == "fgw" and cfg.units[-1].track == "windows"


def test_real_file_agencies_fall_in_three_categories():
    agencies = load_config(REAL).track("agencies")
    assert [c.name for c in agencies.categories] == [
        "党群系统",
        "政府工作部门",
        "垂直管理及其他单位",
    ]
    counts = {c.id: len(agencies.units_in(c.id)) for c in agencies.categories}
    assert counts == {"party": 25, "government": 28, "vertical": 23}
    assert all(u.category is not None for u in agencies.units)
    assert all(u.category is None for u in load_config(REAL).track("windows").units)


def test_real_file_weights_scale_flags_and_campaign():
    cfg = load_config(REAL)
    assert dict(cfg.track("departments").weights) == {"phone": 0.5, "assessment": 0.5}
    assert dict(cfg.track("agencies").weights) == {"phone": 0.5, "assessment": 0.5}
    assert dict(cfg.track("windows").weights) == {"phone": 0.7, "online": 0.3}
    assert cfg.track("windows").weight("assessment") == 0.0

    scale = cfg.scale
    assert scale.keys == ("1", "2", "3", "0")
    assert [scale.points(k) for k in "1230"] == [100.0, 60.0, 0.0, None]
    assert [scale.is_satisfied(k) for k in "1230"] == [True, True, False, False]
    assert [scale.in_domain(k) for k in "1230"] == [True, True, True, False]
    assert scale.points(2) == 60.0  # an int key works too
    assert scale.option("2").label("cmn-CN") == "基本满意"
    assert scale.option("0").label("en") == "Don't know"
    with pytest.raises(KeyError, match="'7' is not a key"):
        scale.points("7")

    assert cfg.flags.threshold == 70 and cfg.flags.correction == "holm"
    assert cfg.flags.confidence == 0.95
    conduct = cfg.deduction("conduct")
    assert (conduct.min_points, conduct.max_points) == (0.5, 1.0)
    assert cfg.deduction("routine-lapse").max_points == 0.1

    c = cfg.campaign
    assert c.sample_size == 2020 and c.units_per_respondent == 8 and c.min_raters == 30
    assert c.default_language == "cmn-CN"
    assert c.polling_center == "县统计局民意调查中心"
    assert c.start_date < c.end_date
    assert len(cfg.towns) == 8 and cfg.town("chengguan").name == "城关镇"
    assert cfg.languages == ("cmn-CN", "en")


def test_groups_and_their_tracks():
    cfg = load_config(REAL)
    assert [g.id for g in cfg.groups] == ["residents", "deputies", "business"]
    assert [t.id for t in cfg.tracks_for_group("business")] == ["departments", "windows"]
    assert [t.id for t in cfg.tracks_for_group("residents")] == ["agencies", "windows"]
    assert len(cfg.units_for_group("deputies")) == 145
    assert len(cfg.units_for_group("business")) == 39 + 30
    with pytest.raises(KeyError, match="unknown group 'farmers'"):
        cfg.tracks_for_group("farmers")
    with pytest.raises(KeyError, match="unknown unit 'nope'"):
        cfg.unit("nope")


def test_ivr_settings_and_prompts():
    cfg = load_config(REAL)
    assert cfg.ivr.voice("cmn-CN") == "Polly.Zhiyu"
    assert cfg.ivr.voice("en") == "Polly.Joanna"
    assert (cfg.ivr.repeat_key, cfg.ivr.opt_out_key, cfg.ivr.handoff_key) == ("*", "9", "8")
    assert cfg.ivr.max_reasks == 2

    assert "{unit}" in cfg.prompt("question")  # default language
    assert cfg.prompt("question", "en").startswith("How do you rate")
    unit = cfg.unit("win-tax")
    spoken = cfg.render_prompt("question", "cmn-CN", unit=unit.label("cmn-CN"))
    assert spoken.startswith("请您对县税务局窗口的工作作风进行评价")
    greeting = cfg.render_prompt("greeting", "en")
    assert "County Statistics Bureau Public Opinion Survey Center" in greeting
    assert "县统计局民意调查中心" in cfg.render_prompt("greeting", "cmn-CN")
    assert "60" in cfg.render_prompt("comment_invitation", "en")
    with pytest.raises(KeyError, match=r"needs a value for \{unit\}"):
        cfg.render_prompt("question", "en")
    with pytest.raises(KeyError, match="no prompts in language 'fr'"):
        cfg.prompt("greeting", "fr")
    assert cfg.audio("greeting", "cmn-CN") is None


def test_result_objects_are_frozen():
    cfg = load_config(REAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.campaign.sample_size = 10
    with pytest.raises(TypeError):
        cfg.track("windows").weights["phone"] = 1.0
    # hashable, so a configuration can key a cache
    assert hash(load_config(REAL)) == hash(cfg)
    assert load_config(REAL) == cfg


def test_default_path_is_the_bundled_template_unless_the_environment_names_one(tmp_path):
    saved = os.environ.pop(CONFIG_ENV_VAR, None)
    try:
        assert default_config_path() == REAL
        assert load_config().campaign.id == "minping-2026"
        other = _broken_copy(tmp_path, ('id = "minping-2026"', 'id = "minping-2027"'))
        os.environ[CONFIG_ENV_VAR] = str(other)
        assert default_config_path() == other
        assert load_config().campaign.id == "minping-2027"
    finally:
        os.environ.pop(CONFIG_ENV_VAR, None)
        if saved is not None:
            os.environ[CONFIG_ENV_VAR] = saved


def test_check_config_is_empty_for_the_real_file():
    assert check_config(REAL) == []


# ---------------------------------------------------------------------------
# Broken copies


def test_every_injected_problem_is_reported_with_its_key_path(tmp_path):
    path = _broken_copy(
        tmp_path,
        # a unit id used twice (agencies reuse a department id)
        ('{ id = "ag-tzb",', '{ id = "fgw",'),
        # points that are not a number
        ("points = 60,", 'points = "abc",'),
        # windows weights summing to 0.9
        ("weights = { phone = 0.7, online = 0.3 }", "weights = { phone = 0.6, online = 0.3 }"),
        # an impossible time of day
        ('mon = ["09:00-12:00", "14:30-20:30"]', 'mon = ["25:00-12:00", "14:30-20:30"]'),
        # a typo in a key name
        ("[ivr.voices]", "[ivr.voise]"),
        # a group naming a track that does not exist
        ('tracks = ["departments", "windows"]', 'tracks = ["departments", "window"]'),
        # a unit in a category its track does not have
        ('{ id = "ag-xwb", category = "party",', '{ id = "ag-xwb", category = "partyy",'),
        # hand-over on the scale's "don't know" key
        ('handoff_key = "8"', 'handoff_key = "0"'),
        ('timezone = "Asia/Shanghai"', 'timezone = "Asia/Shanghia"'),
        ("end_date = 2027-01-15", "end_date = 2026-01-15"),
        ("sample_size = 2020", 'sample_size = "2020"'),
        ("holidays = [2027-01-01, 2027-01-02, 2027-01-03]", 'holidays = ["2027-02-30"]'),
        ('correction = "holm"', 'correction = "bonferroni"'),
    )
    problems = _problems(path)
    expected = [
        'tracks[1].units[6].id: duplicate id "fgw" (also at tracks[0].units[0].id)',
        'scale.options[1].points: must be a number between 0 and 100, got "abc"',
        "tracks[2].weights: weights must sum to 1, got 0.9",
        'calling.windows.mon[0]: "25:00-12:00" is not a time range HH:MM-HH:MM',
        "ivr.voise: unknown key",
        "ivr.voices: missing required key",
        'groups[2].tracks[1]: unknown track "window" (tracks: departments, agencies, windows)',
        'tracks[1].units[0].category: unknown category "partyy" '
        "(categories: party, government, vertical)",
        'ivr.handoff_key: "0" collides with scale key "0" (不了解)',
        'calling.timezone: "Asia/Shanghia" is not a known time zone '
        "(IANA name, e.g. Asia/Shanghai)",
        "campaign.end_date: 2026-01-15 is before start_date 2026-11-16",
        'campaign.sample_size: must be an integer of at least 1, got "2020"',
        'calling.holidays[0]: "2027-02-30" is not a date YYYY-MM-DD',
        'flags.correction: must be one of "holm", "bh", "none", got "bonferroni"',
    ]
    for line in expected:
        assert line in problems, f"not reported: {line}\nreported:\n" + "\n".join(problems)
    assert len(problems) == len(expected), "\n".join(problems)


def test_error_message_names_the_file_then_lists_every_problem(tmp_path):
    path = _broken_copy(
        tmp_path,
        ("[ivr.voices]", "[ivr.voise]"),
        ("max_reasks = 2", "max_reasks = -1"),
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert isinstance(error, MinpingError)
    assert error.path == str(path)
    lines = str(error).splitlines()
    assert lines[0] == f"{path}: 3 problems in the survey configuration"
    assert lines[1:] == [f"  {p}" for p in error.problems]
    assert "  ivr.max_reasks: must be an integer between 0 and 10, got -1" in lines
    assert check_config(path) == error.problems


def test_missing_keys_wrong_types_and_unknown_sections(tmp_path):
    path = _broken_copy(
        tmp_path,
        ('name_en = "Residents\' representatives"\n', ""),
        ("record_comment = true", 'record_comment = "yes"'),
        ("max_attempts = 6", "max_attempts = 6\nmax_atempts = 7"),
        ("\n[flags]\n", "\n[flag]\nthreshold = 60\n\n[flags]\n"),
        ("busy = 20 ", "busy = -5 "),
        ('cmn-CN = "Polly.Zhiyu"', "cmn-CN = 1"),
    )
    problems = _problems(path)
    assert problems == [
        "flag: unknown key",
        "groups[0].name_en: missing required key",
        "calling.max_atempts: unknown key",
        "calling.retry_delay_minutes.busy: must be a number of at least 0, got -5",
        'ivr.voices.cmn-CN: must be a voice name such as "Polly.Zhiyu", got 1',
        'ivr.record_comment: must be true or false, got "yes"',
    ]


def test_calling_windows_must_be_ranges_that_do_not_overlap(tmp_path):
    path = _broken_copy(
        tmp_path,
        ('tue = ["09:00-12:00", "14:30-20:30"]', 'tue = ["09:00-12:00", "11:30-13:00"]'),
        ('wed = ["09:00-12:00", "14:30-20:30"]', 'wed = ["12:00-09:00", "9:00-10:00"]'),
        ("sun = []", 'sun = "none"\nholiday = []'),
    )
    assert _problems(path) == [
        "calling.windows.holiday: unknown key",
        'calling.windows.tue[1]: "11:30-13:00" overlaps "09:00-12:00"',
        'calling.windows.wed[0]: "12:00-09:00" does not end after it starts',
        'calling.windows.wed[1]: "9:00-10:00" is not a time range HH:MM-HH:MM',
        'calling.windows.sun: must be an array, got "none"',
    ]


def test_ids_categories_groups_and_keys_are_cross_checked(tmp_path):
    path = _broken_copy(
        tmp_path,
        # the same name twice in one track, and a badly formed id
        ('{ id = "kjj", name = "县科学技术局",', '{ id = "KJJ", name = "县财政局",'),
        # a department given a category although its track has none
        (
            '{ id = "water", name = "县自来水公司",',
            '{ id = "water", category = "x", name = "县自来水公司",',
        ),
        # every vertical unit moved to "government": the category is left empty
        *[
            (
                f'{{ id = "ag-{slug}", category = "vertical"',
                f'{{ id = "ag-{slug}", category = "government"',
            )
            for slug in [
                "tax",
                "sthj",
                "qxj",
                "ycj",
                "power",
                "xf",
                "fy",
                "jcy",
                "gjj",
                "post",
                "telecom",
                "mobile",
                "unicom",
                "dzj",
                "jgsw",
                "gxs",
                "bdc",
                "jjdd",
                "sbzx",
                "kfq",
                "rmyy",
                "rcb",
                "water",
            ]
        ],
        # nobody rates the departments any more
        ('tracks = ["departments", "agencies", "windows"]', 'tracks = ["agencies", "windows"]'),
        ('tracks = ["departments", "windows"]', 'tracks = ["windows", "windows"]'),
        # the repeat key is also the opt-out key
        ('repeat_key = "*"', 'repeat_key = "9"'),
        ("units_per_respondent = 8", "units_per_respondent = 31"),
    )
    assert _problems(path) == [
        'tracks[0].units[2].id: "KJJ" is not an id (lowercase ASCII letters, digits and '
        "hyphens, at most 40 characters)",
        'tracks[0].units[5].name: duplicate name "县财政局" (also at tracks[0].units[2].name)',
        'tracks[0].units[37].category: track "departments" has no categories',
        'tracks[1].categories[2]: no unit is in category "vertical"',
        'groups[2].tracks[1]: track "windows" is listed twice',
        "groups[2].tracks: the group can rate 30 units, fewer than "
        "campaign.units_per_respondent = 31",
        'tracks[0]: no group rates track "departments"',
        'ivr.opt_out_key: "9" collides with repeat_key',
    ]


def test_prompts_scale_and_language_checks(tmp_path):
    path = _broken_copy(
        tmp_path,
        # the English question forgets {unit} and "Basically satisfied"
        (
            'question = "How do you rate the {unit}? Satisfied, press 1. Basically satisfied, press 2.',
            'question = "How do you rate it? Satisfied, press 1. Fairly happy, press 2.',
        ),
        ('thanks = "评价结束', 'thanks = "{name}评价结束'),
        ('handoff = "正在为您转接人工访员，请稍候。"', 'handoff = "正在为您转接{"'),
        ('no_answer = "Sorry, we did not receive a key press."\n', ""),
        # a scale option with no English label, and "satisfied" without points
        (
            '{ key = "0", label = { cmn-CN = "不了解", en = "Don\'t know" } }',
            '{ key = "0", label = { cmn-CN = "不了解" }, satisfied = true }',
        ),
        ('default_language = "cmn-CN"', 'default_language = "fr"'),
        ("[prompts.en]", '[prompts.audio.fr]\ngreeting = "x.mp3"\n\n[prompts.en]'),
    )
    problems = _problems(path)
    # the parser's own words for the bad template vary between Python versions
    bad_template = "prompts.cmn-CN.handoff: is not a valid template ("
    assert sum(p.startswith(bad_template) for p in problems) == 1
    assert next(p for p in problems if p.startswith(bad_template)).endswith(
        "; write {{ and }} for literal braces"
    )
    assert [p for p in problems if not p.startswith(bad_template)] == [
        'campaign.default_language: "fr" has no [prompts.fr] table',
        "scale.options[3].label.en: missing required key",
        "scale.options[3].satisfied: an option without points cannot count as satisfied",
        "prompts.cmn-CN.thanks: unknown placeholder {name} (allowed: {campaign}, {center})",
        "prompts.en.question: must contain the placeholder {unit}",
        'prompts.en.question: does not read out scale option "2" (Basically satisfied)',
        "prompts.en.no_answer: missing required key",
        "prompts.audio.fr: no [prompts.fr] table for this language",
    ]


def test_invalid_toml_is_reported_with_line_and_column():
    path = DATA / "syntax_error.toml"
    problems = _problems(path)
    assert len(problems) == 1
    # line 7 of the file: `sample_size = = 2020`
    assert problems[0].startswith("line 7, column 15: invalid TOML: ")


def test_an_empty_file_lists_every_missing_section(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("", encoding="utf-8")
    problems = _problems(path)
    for section in (
        "campaign",
        "towns",
        "groups",
        "tracks",
        "scale",
        "deductions",
        "flags",
        "calling",
        "ivr",
        "prompts",
    ):
        assert f"{section}: missing required key" in problems


def test_a_missing_file_is_a_config_error(tmp_path):
    path = tmp_path / "nowhere.toml"
    assert check_config(path) == ["file not found"]
    with pytest.raises(ConfigError, match=r"nowhere\.toml: 1 problem in the survey configuration"):
        load_config(path)


def test_recorded_audio_replaces_a_prompt(tmp_path):
    path = _broken_copy(
        tmp_path,
        (
            '# [prompts.audio.cmn-CN]\n# greeting = "https://example.org/minping/audio/greeting-cmn.mp3"',
            '[prompts.audio.cmn-CN]\ngreeting = "https://example.org/minping/audio/greeting-cmn.mp3"',
        ),
    )
    cfg = load_config(path)
    assert cfg.audio("greeting", "cmn-CN") == "https://example.org/minping/audio/greeting-cmn.mp3"
    assert cfg.audio("greeting") == cfg.audio("greeting", "cmn-CN")
    assert cfg.audio("greeting", "en") is None
    assert cfg.audio("thanks", "cmn-CN") is None


def test_handoff_can_be_disabled(tmp_path):
    path = _broken_copy(tmp_path, ('handoff_key = "8"', 'handoff_key = ""'))
    assert load_config(path).ivr.handoff_key is None


# ---------------------------------------------------------------------------
# Calling rules (Asia/Shanghai is UTC+8 all year, no daylight saving)
# The real campaign runs 2026-11-16 (a Monday) to 2027-01-15; 2027-01-01..03 are holidays.


def test_weekday_windows():
    rules = load_config(REAL).calling
    assert rules.is_callable(_sh(2026, 11, 17, 9, 0))  # Tuesday, window opens
    assert rules.is_callable(_sh(2026, 11, 17, 11, 59, 59))
    assert not rules.is_callable(_sh(2026, 11, 17, 12, 0))  # lunch break
    assert not rules.is_callable(_sh(2026, 11, 17, 14, 29))
    assert rules.is_callable(_sh(2026, 11, 17, 14, 30))
    assert not rules.is_callable(_sh(2026, 11, 17, 8, 59))
    assert rules.is_callable(_sh(2026, 11, 21, 10, 0))  # Saturday
    assert not rules.is_callable(_sh(2026, 11, 21, 9, 30))  # Saturday opens at 10:00
    assert not rules.is_callable(_sh(2026, 11, 22, 10, 0))  # Sunday: no calls


def test_evening_boundary_is_exclusive():
    rules = load_config(REAL).calling
    assert rules.is_callable(_sh(2026, 11, 18, 20, 29, 59))
    assert not rules.is_callable(_sh(2026, 11, 18, 20, 30))
    assert rules.is_callable(_sh(2026, 11, 21, 17, 59))  # Saturday evening ends at 18:00
    assert not rules.is_callable(_sh(2026, 11, 21, 18, 0))
    assert rules.window_end(_sh(2026, 11, 18, 19, 0)) == _sh(2026, 11, 18, 20, 30)
    assert rules.window_end(_sh(2026, 11, 18, 21, 0)) is None


def test_holidays_and_campaign_dates():
    rules = load_config(REAL).calling
    assert not rules.is_callable(_sh(2027, 1, 1, 10, 0))  # New Year's Day, a Friday
    assert rules.is_callable(_sh(2026, 12, 31, 10, 0))  # the Thursday before
    assert rules.is_callable(_sh(2027, 1, 4, 10, 0))  # the Monday after
    assert not rules.is_callable(_sh(2026, 11, 13, 10, 0))  # Friday before the start
    assert rules.is_callable(_sh(2026, 11, 16, 9, 0))  # first day
    assert rules.is_callable(_sh(2027, 1, 15, 20, 29))  # last day, a Friday
    assert not rules.is_callable(_sh(2027, 1, 18, 10, 0))  # Monday after the end
    assert rules.windows_on(date(2027, 1, 1)) == ()
    assert [str(w) for w in rules.windows_on(date(2026, 11, 21))] == ["10:00-12:00", "14:30-18:00"]


def test_utc_times_are_converted_to_the_campaign_time_zone():
    rules = load_config(REAL).calling
    # 01:00 UTC is 09:00 in Shanghai: callable; 13:00 UTC is 21:00: not.
    assert rules.is_callable(datetime(2026, 11, 17, 1, 0, tzinfo=UTC))
    assert not rules.is_callable(datetime(2026, 11, 17, 0, 59, tzinfo=UTC))
    assert not rules.is_callable(datetime(2026, 11, 17, 13, 0, tzinfo=UTC))
    assert rules.is_callable(datetime(2026, 11, 17, 12, 29, tzinfo=UTC))
    # 2026-11-21 23:00 UTC is Sunday 07:00 in Shanghai although it is Saturday in UTC.
    assert not rules.is_callable(datetime(2026, 11, 21, 23, 0, tzinfo=UTC))
    # 2026-12-31 18:00 UTC is 2027-01-01 02:00 in Shanghai; 2027-01-01 01:00 UTC is a holiday 09:00.
    assert not rules.is_callable(datetime(2027, 1, 1, 1, 0, tzinfo=UTC))
    new_york = ZoneInfo("America/New_York")
    assert rules.is_callable(datetime(2026, 11, 16, 20, 0, tzinfo=new_york))  # Tue 09:00 Shanghai
    with pytest.raises(ValueError, match="timezone-aware"):
        rules.is_callable(datetime(2026, 11, 17, 10, 0))


def test_next_callable():
    rules = load_config(REAL).calling
    inside = _sh(2026, 11, 17, 10, 15)
    assert rules.next_callable(inside) == inside
    assert rules.next_callable(_sh(2026, 11, 17, 12, 0)) == _sh(2026, 11, 17, 14, 30)
    assert rules.next_callable(_sh(2026, 11, 17, 7, 0)) == _sh(2026, 11, 17, 9, 0)
    # Friday 20:30 -> Saturday 10:00; Saturday 18:00 -> Monday 09:00 (Sunday closed)
    assert rules.next_callable(_sh(2026, 11, 20, 20, 30)) == _sh(2026, 11, 21, 10, 0)
    assert rules.next_callable(_sh(2026, 11, 21, 18, 0)) == _sh(2026, 11, 23, 9, 0)
    # Thursday evening before New Year: skip the holidays Fri-Sun
    assert rules.next_callable(_sh(2026, 12, 31, 21, 0)) == _sh(2027, 1, 4, 9, 0)
    # before the campaign: its first window; after its last window: none
    assert rules.next_callable(_sh(2026, 10, 1, 12, 0)) == _sh(2026, 11, 16, 9, 0)
    assert rules.next_callable(_sh(2027, 1, 15, 20, 30)) is None
    # a UTC input: 2026-11-17 04:10 UTC is 12:10 in Shanghai
    found = rules.next_callable(datetime(2026, 11, 17, 4, 10, tzinfo=UTC))
    assert found == _sh(2026, 11, 17, 14, 30)
    assert found.utcoffset() == timedelta(hours=8)


def test_retry_delays_and_next_attempt():
    rules = load_config(REAL).calling
    assert rules.retry_delay("busy") == timedelta(minutes=20)
    assert rules.retry_delay("no-answer") == timedelta(hours=2)
    assert rules.retry_delay("soft-refusal") == timedelta(days=2)
    with pytest.raises(KeyError, match="no retry delay for outcome 'fax'"):
        rules.retry_delay("fax")
    # no answer at 19:00 on a Friday: two hours later is 21:00, so Saturday 10:00
    assert rules.next_attempt(_sh(2026, 11, 20, 19, 0), "no-answer") == _sh(2026, 11, 21, 10, 0)
    assert rules.next_attempt(_sh(2026, 11, 17, 9, 0), "busy") == _sh(2026, 11, 17, 9, 20)
    assert rules.max_attempts == 6 and rules.calls_per_second == 1
