"""The calling schedule (minping.calling): windows, holidays, retry day-parts from the configuration."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from minping import calling
from minping.config import ConfigError, load_config

TEMPLATE = Path(__file__).resolve().parents[2] / "minping" / "data" / "survey.toml"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def rules():
    return load_config(TEMPLATE).calling


def test_the_template_keeps_the_day_parts_the_retry_logic_always_used(rules):
    assert rules.retry_day_parts == calling.DEFAULT_DAY_PARTS == (time(12), time(17))


def test_allowed_instants_follow_windows_holidays_and_dates(rules):
    monday_9 = datetime(2026, 11, 16, 9, 0, tzinfo=SHANGHAI)
    assert calling.is_allowed(rules, monday_9)
    assert calling.is_allowed(rules, monday_9.astimezone(UTC))  # 01:00 UTC is 09:00 local
    assert not calling.is_allowed(rules, monday_9.replace(hour=13))  # lunch break
    assert calling.next_allowed(rules, monday_9.replace(hour=13)) == monday_9.replace(
        hour=14, minute=30)
    sunday = datetime(2026, 11, 22, 10, 0, tzinfo=SHANGHAI)
    assert not calling.is_allowed(rules, sunday)
    assert calling.next_allowed(rules, sunday) == datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)
    new_year = datetime(2027, 1, 1, 10, 0, tzinfo=SHANGHAI)
    assert not calling.is_allowed(rules, new_year)
    assert calling.window_end(rules, monday_9) == monday_9.replace(hour=12)
    # the rules' own methods are the same schedule
    assert rules.is_callable(monday_9) and rules.next_callable(sunday) == calling.next_allowed(
        rules, sunday)


def test_retry_is_spread_into_a_part_of_the_day_not_tried(rules):
    monday_10 = datetime(2026, 11, 16, 10, 0, tzinfo=SHANGHAI)
    plain = calling.next_attempt(rules, monday_10, "no-answer")  # 12:00 is lunch: 14:30
    assert plain == monday_10.replace(hour=14, minute=30)
    assert calling.day_part(rules, plain) == 1
    # the afternoon was tried already: the evening (from 17:00)
    spread = calling.spread_retry(rules, now=monday_10, outcome="no-answer", tried={1})
    assert spread == monday_10.replace(hour=17)
    # every part tried: the first allowed instant
    assert calling.spread_retry(rules, now=monday_10, outcome="no-answer",
                                tried={0, 1, 2}) == plain


def test_day_parts_come_from_the_configuration(rules):
    two_parts = dataclasses.replace(rules, retry_day_parts=(time(15, 0),))
    monday_10 = datetime(2026, 11, 16, 10, 0, tzinfo=SHANGHAI)
    assert calling.day_part(two_parts, monday_10.replace(hour=14, minute=59)) == 0
    assert calling.day_part(two_parts, monday_10.replace(hour=15)) == 1
    # the afternoon until 15:00 counts as morning: a retry tried in part 0 moves to 15:00
    assert calling.spread_retry(two_parts, now=monday_10, outcome="no-answer",
                                tried={0}) == monday_10.replace(hour=15)


def test_bad_day_parts_are_reported_with_their_key_path(tmp_path):
    text = TEMPLATE.read_text(encoding="utf-8").replace(
        'retry_day_parts = ["12:00", "17:00"]', 'retry_day_parts = ["17:00", "12:00", "25:00"]')
    path = tmp_path / "survey.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problems = "\n".join(err.value.problems)
    assert "calling.retry_day_parts[1]" in problems
    assert "calling.retry_day_parts[2]" in problems
