"""Tests for scoring.aapor's codes: the disposition catalogue, final codes, Twilio outcomes.

The catalogue follows AAPOR's Standard Definitions (10th edition, 2023), tables 2
and 4 (telephone surveys); the outcome rates are in ``test_aapor_rates.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring.aapor import (
    CATEGORIES,
    CATI_CHOICES,
    CODES,
    DISPOSITIONS,
    SIP_CODE_DISPOSITIONS,
    Disposition,
    UnknownDispositionError,
    counts_from_codes,
    disposition,
    final_disposition,
    from_twilio_status,
)
from scoring.errors import ScoringError

# --- the catalogue ------------------------------------------------------------------------


def test_lookup_returns_frozen_disposition():
    d = disposition("2.112")
    assert isinstance(d, Disposition)
    assert (d.code, d.category, d.final, d.eligibility) == ("2.112", "R", True, "eligible")
    assert d.label_zh == "拒访（硬）"
    with pytest.raises(AttributeError):
        d.final = False  # type: ignore[misc]


def test_lookup_ignores_surrounding_blanks():
    assert disposition(" 3.13 ").code == "3.13"


@pytest.mark.parametrize(
    ("code", "category", "eligibility"),
    [
        ("1.1", "I", "eligible"),
        ("1.2", "P", "eligible"),
        ("2.111", "R", "eligible"),
        ("2.12", "R", "eligible"),
        ("2.21", "NC", "eligible"),
        ("2.222", "NC", "eligible"),
        ("2.31", "O", "eligible"),
        ("2.333", "O", "eligible"),
        ("3.11", "UH", "unknown"),
        ("3.16", "UH", "unknown"),
        ("3.21", "UO", "unknown"),
        ("3.90", "UO", "unknown"),
        ("4.10", "NE", "ineligible"),
        ("4.20", "NE", "ineligible"),
        ("4.32", "NE", "ineligible"),
        ("4.70", "NE", "ineligible"),
    ],
)
def test_category_and_eligibility_follow_aapor(code, category, eligibility):
    d = disposition(code)
    assert d.category == category
    assert d.eligibility == eligibility


def test_every_code_has_labels_and_a_valid_category():
    assert len(set(CODES)) == len(CODES)
    for d in DISPOSITIONS.values():
        assert d.label_zh.strip() and d.label_en.strip()
        assert d.category in CATEGORIES
        # a code is reported under itself or under its AAPOR parent
        assert d.code.startswith(d.reported_as)
        assert not DISPOSITIONS[d.reported_as].is_local


def test_finality_of_codes_the_interviewer_picks():
    final = {c for c, d in DISPOSITIONS.items() if d.final}
    # ends the case when set
    for code in ("1.1", "2.111", "2.112", "2.31", "2.32", "4.20", "4.31", "4.32", "4.51", "4.70"):
        assert code in final, code
    # stays in the field: soft refusals go to refusal conversion, break-offs and
    # partials resume where they stopped, appointments and non-contacts are called again
    for code in ("1.2", "2.1111", "2.1121", "2.12", "2.21", "2.211", "2.22", "3.12", "3.13"):
        assert code not in final, code
    for code in ("3.14", "3.15", "3.16", "3.21"):
        assert code not in final, code


def test_local_subcodes_report_as_their_aapor_parent():
    assert disposition("2.1121").reported_as == "2.112"
    assert disposition("2.1111").reported_as == "2.111"
    assert disposition("2.211").reported_as == "2.21"
    assert disposition("2.211").label_zh == "预约"
    assert {d.code for d in DISPOSITIONS.values() if d.is_local} == {"2.1111", "2.1121", "2.211"}


def test_cati_choices_cover_the_screen():
    codes = [d.code for d in CATI_CHOICES]
    assert len(codes) == len(set(codes))
    assert codes[0] == "1.1"
    labels = {d.label_zh for d in CATI_CHOICES}
    for label in (
        "成功访问",
        "部分完成",
        "拒访（软）",
        "拒访（硬）",
        "中途挂断",
        "无人接听",
        "占线",
    ):
        assert label in labels, label
    for label in ("空号", "停机", "传真/数据线", "不符合条件", "预约", "来电拦截", "技术故障"):
        assert label in labels, label
    assert any(label.startswith("答录机") for label in labels)
    assert any(label.startswith("语言障碍") for label in labels)


def test_unknown_code_error_names_the_value():
    with pytest.raises(UnknownDispositionError, match=r"unknown AAPOR telephone .*'2\.5'") as info:
        disposition("2.5")
    assert info.value.code == "2.5"
    assert isinstance(info.value, ScoringError)
    assert isinstance(info.value, LookupError)


def test_group_heading_error_lists_the_codes_under_it():
    with pytest.raises(UnknownDispositionError, match=r"'2\.10' is AAPOR's heading") as info:
        disposition("2.10")
    assert "2.111, 2.112, 2.12" in str(info.value)
    with pytest.raises(UnknownDispositionError, match=r"4\.31, 4\.32, 4\.33"):
        disposition("4.30")


@pytest.mark.parametrize("bad", [None, 2.112, ""])
def test_non_string_or_empty_code_is_rejected(bad):
    with pytest.raises(UnknownDispositionError):
        disposition(bad)  # type: ignore[arg-type]


# --- final disposition --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "exhausted", "expected"),
    [
        # a complete always wins, also over finals set after it
        (["3.13", "1.1", "2.112"], False, "1.1"),
        (["2.112", "1.1"], True, "1.1"),
        # the most recent final code wins over earlier finals and later temporaries
        (["4.31", "2.112", "3.13"], False, "2.112"),
        (["3.13", "3.12", "4.32"], False, "4.32"),
        (["2.1121", "3.13", "2.112"], False, "2.112"),
        # a partial followed by a hard refusal is still a partial (data collected)
        (["1.2", "2.112"], False, "1.2"),
        # ... but not when the case turns out ineligible
        (["1.2", "4.70"], False, "4.70"),
        # no final code, attempts remain: still in the field
        (["3.13", "2.1121"], False, None),
        ([], False, None),
        # exhausted: partial first
        (["2.12", "1.2", "3.13"], True, "1.2"),
        # exhausted, ever known eligible: R > O > NC, reported codes
        (["3.13", "2.1121", "3.13"], True, "2.112"),
        (["2.1111", "3.14"], True, "2.111"),
        (["2.211", "2.1121", "2.211"], True, "2.112"),
        (["2.12", "2.211"], True, "2.12"),
        (["2.1121", "2.12"], True, "2.12"),  # most recent within R
        (["2.22", "2.34", "3.13"], True, "2.34"),
        (["3.14", "2.22", "3.13"], True, "2.22"),
        (["2.211", "3.13"], True, "2.21"),
        (["2.221", "2.211"], True, "2.21"),  # most recent within NC
        (["3.21", "2.222"], True, "2.222"),
        # exhausted, unknown eligibility: 3.21 > 3.14 > 3.15 > 3.13 > 3.12 > 3.16 > 3.11
        (["3.13", "3.21", "3.14"], True, "3.21"),
        (["3.13", "3.14", "3.12"], True, "3.14"),
        (["3.13", "3.15"], True, "3.15"),
        (["3.14", "3.15", "3.13"], True, "3.14"),
        (["3.90", "3.14"], True, "3.90"),
        (["3.12", "3.13", "3.16"], True, "3.13"),
        (["3.16", "3.12", "3.16"], True, "3.12"),
        (["3.11", "3.16"], True, "3.16"),
        (["3.11"], True, "3.11"),
        ([], True, "3.11"),
    ],
)
def test_final_disposition_precedence(attempts, exhausted, expected):
    assert final_disposition(attempts, attempts_exhausted=exhausted) == expected


def test_final_disposition_never_returns_a_local_subcode():
    for code in CODES:
        result = final_disposition([code], attempts_exhausted=True)
        assert result is not None
        assert not disposition(result).is_local


def test_final_disposition_names_the_bad_attempt():
    with pytest.raises(UnknownDispositionError, match=r"attempt 2: unknown .*'9\.9'"):
        final_disposition(["3.13", "9.9"], attempts_exhausted=False)


def test_final_disposition_rejects_a_bare_string():
    with pytest.raises(TypeError, match="single string"):
        final_disposition("3.13", attempts_exhausted=True)


# --- Twilio mapping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"call_status": "busy"}, "3.12"),
        ({"call_status": "no-answer"}, "3.13"),
        ({"call_status": "canceled"}, "3.11"),
        ({"call_status": "failed"}, "3.16"),
        ({"call_status": "failed", "sip_code": 404}, "4.31"),
        ({"call_status": "failed", "sip_code": 484}, "4.31"),
        ({"call_status": "failed", "sip_code": 604}, "4.31"),
        ({"call_status": "failed", "sip_code": 410}, "4.32"),
        ({"call_status": "failed", "sip_code": 486}, "3.12"),
        ({"call_status": "failed", "sip_code": 480}, "3.13"),
        ({"call_status": "failed", "sip_code": 603}, "3.15"),
        ({"call_status": "failed", "sip_code": 608}, "3.15"),
        ({"call_status": "failed", "sip_code": 503}, "3.16"),
        ({"call_status": "failed", "sip_code": 403}, "3.16"),
        # answering machine: unknown eligibility unless the number is known eligible
        ({"call_status": "completed", "answered_by": "machine_start"}, "3.14"),
        ({"call_status": "completed", "answered_by": "machine_end_beep"}, "3.14"),
        (
            {"call_status": "completed", "answered_by": "machine_end_other", "known_eligible": True},
            "2.22",
        ),
        ({"call_status": "completed", "answered_by": "fax"}, "4.20"),
        # answers: complete, partial (>= 50%), break-off (< 50%)
        (
            {"call_status": "completed", "answered_by": "human", "had_consent": True,
             "answered_units": 6, "total_units": 6},
            "1.1",
        ),
        (
            {"call_status": "completed", "had_consent": True, "answered_units": 3,
             "total_units": 6},
            "1.2",
        ),
        (
            {"call_status": "completed", "had_consent": True, "answered_units": 5,
             "total_units": 6},
            "1.2",
        ),
        (
            {"call_status": "completed", "had_consent": True, "answered_units": 2,
             "total_units": 6},
            "2.12",
        ),
        # keys pressed override answering-machine detection
        (
            {"call_status": "completed", "answered_by": "machine_start", "had_consent": True,
             "answered_units": 4, "total_units": 4},
            "1.1",
        ),
        # consented, hung up before the first rating
        ({"call_status": "completed", "answered_by": "human", "had_consent": True,
          "total_units": 6}, "2.12"),
        # consent refused, opt-out key
        ({"call_status": "completed", "answered_by": "human", "refused": True}, "2.112"),
        (
            {"call_status": "completed", "had_consent": True, "answered_units": 1,
             "total_units": 6, "refused": True},
            "2.112",
        ),
        # hung up during the introduction
        ({"call_status": "completed", "answered_by": "human"}, "3.21"),
        ({"call_status": "completed"}, "3.21"),
        ({"call_status": "completed", "answered_by": "unknown", "known_eligible": True},
         "2.1111"),
    ],
)  # fmt: skip
def test_twilio_mapping_table(kwargs, expected):
    assert from_twilio_status(**kwargs) == expected


def test_twilio_thresholds_are_configurable():
    # AAPOR's example standard: complete from 80%, partial from 50%
    kw = {"call_status": "completed", "had_consent": True, "total_units": 10}
    assert from_twilio_status(**kw, answered_units=8, complete_share=0.8) == "1.1"
    assert from_twilio_status(**kw, answered_units=7, complete_share=0.8) == "1.2"
    assert from_twilio_status(**kw, answered_units=4, partial_share=0.4) == "1.2"
    assert from_twilio_status(**kw, answered_units=4) == "2.12"


def test_sip_table_codes_are_in_the_catalogue():
    for sip, code in SIP_CODE_DISPOSITIONS.items():
        assert 400 <= sip <= 699
        assert disposition(code).category in ("UH", "NE")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"call_status": "ringing"}, "not a final call status"),
        ({"call_status": "in-progress"}, "not a final call status"),
        ({"call_status": "Busy"}, "unknown Twilio call_status 'Busy'"),
        ({"call_status": "completed", "answered_by": "robot"}, "answered_by 'robot'"),
        ({"call_status": "failed", "sip_code": 99}, "sip_code"),
        ({"call_status": "failed", "sip_code": "404"}, "sip_code"),
        ({"call_status": "completed", "answered_units": 3, "total_units": 2}, "cannot exceed"),
        ({"call_status": "completed", "answered_units": -1}, "answered_units"),
        ({"call_status": "completed", "total_units": 2.5}, "total_units"),
        ({"call_status": "completed", "partial_share": 0}, "partial_share"),
        ({"call_status": "completed", "complete_share": 1.5}, "complete_share"),
        (
            {"call_status": "completed", "partial_share": 0.9, "complete_share": 0.8},
            "cannot exceed",
        ),
    ],
)
def test_twilio_mapping_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        from_twilio_status(**kwargs)


# --- properties ---------------------------------------------------------------------------

attempt_code = st.sampled_from(CODES)


@given(st.lists(attempt_code, max_size=8), st.booleans())
def test_final_disposition_is_aapor_and_final_when_exhausted(codes, exhausted):
    result = final_disposition(codes, attempts_exhausted=exhausted)
    if exhausted:
        assert result is not None
    if result is not None:
        d = disposition(result)
        assert not d.is_local
        # a case ends as ineligible only on an ineligible attempt, and as
        # eligible only if some attempt showed eligibility
        if d.eligibility == "ineligible":
            assert any(disposition(c).eligibility == "ineligible" for c in codes)
        if d.eligibility == "eligible":
            assert any(disposition(c).eligibility == "eligible" for c in codes)
        counts_from_codes([result])  # accepted as a final code
    if "1.1" in codes:
        assert result == "1.1"
