"""#17: a scripted interviewer shift in Chromium on PostgreSQL.

Fifty cases in a row with mixed dispositions (completes keyed from the keyboard, partials,
no answers, busy lines, soft and hard refusals), one hard appointment booked and kept
when it comes due, a bogus "1.1" on a partial interview tried (refused on the page), and
a session left idle past its time-out in the middle of an interview (the password is
asked in place and the interview goes on).  At the end no disposition contradicts the
interview's state, and the keystrokes per complete are printed.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from minping.models import Answer, Appointment, AttemptEvent, CallAttempt, SampleCase
from scoring.dispositions import interview_code
from tests.cati import browsing
from tests.cati.browsing import DESKTOP, dial, log_in, serve, shot
from tests.cati.helpers import PASSWORD, add_user

pytestmark = pytest.mark.browser
db_url = browsing.db_url  # PostgreSQL only
chromium = browsing.chromium

UNITS = 8
CASES = 50
#: What the respondent does, by the case's place in the shift (i % 10).
PLAN = ["complete"] * 5 + ["busy", "no-answer", "partial", "soft-refusal", "hard-refusal"]


class Keys:
    """The interviewer's keyboard and mouse, counted."""

    def __init__(self, page):
        self.page, self.keys, self.clicks = page, 0, 0

    def press(self, key):
        self.keys += 1
        self.page.keyboard.press(key)

    def type(self, text):
        self.keys += len(text)
        self.page.keyboard.type(text)

    def click(self, selector):
        self.clicks += 1
        self.page.click(selector)

    def choose(self, selector, value):  # a drop-down: one click and one choice
        self.clicks += 2
        self.page.select_option(selector, value)


@pytest.fixture
def served(app, db):
    server, thread, bundle = serve(app, db, n_cases=70, units_per_case=UNITS)
    yield bundle
    server.shutdown()
    thread.join(5)


def _rate(page, k, n):
    for i in range(n):
        key = "1230"[i % 4]
        k.press(key)
        page.wait_for_selector(f"li.unit.current.saved[data-rating='{key}']")
        k.press("Enter")


def _dial(page, k, *, consent):
    k.clicks += 1
    dial(page, consent=consent, press=k.press)


def _close(page, k, code):
    k.choose("#code", code)
    k.click("#close")


def test_an_interviewer_works_a_shift(served, chromium, db):
    base, field, clock, sclock = served
    add_user(db, "ann", experienced=True)
    page = chromium.new_page(viewport=DESKTOP, locale="zh-CN")
    log_in(page, base, "ann")
    k = Keys(page)
    done = Counter()
    refused_on_page = 0
    appointment_case = None
    appointment_back = False
    idle_tested = False
    for i in range(CASES):
        page.wait_for_selector("#next-case")
        page.focus("#next-case")  # autofocus: no key for it
        k.press("Enter")
        page.wait_for_selector("#questions")
        case_id = int(page.url.rsplit("/", 1)[1])
        what = PLAN[i % 10]
        if i == 5:
            what = "appointment"
        left = page.locator("li.unit[data-asked='1']").count()
        if case_id == appointment_case:
            what, appointment_back = "complete", True
        elif left < UNITS:  # a partial interview come back: finish it
            what = "complete"
        if what == "complete":
            _dial(page, k, consent=True)
            if i >= 21 and left == UNITS and not idle_tested:  # idle past the time-out
                _rate(page, k, 3)
                sclock.now += timedelta(minutes=31)
                k.press("1")
                page.wait_for_selector("#reauth:not([hidden])")
                shot(page, "shift-session-ended")
                page.fill("#reauth-password", PASSWORD)
                k.keys += len(PASSWORD)
                k.press("Enter")
                page.wait_for_selector("#reauth", state="hidden")
                page.wait_for_selector("li.unit.current.saved[data-rating='1']")
                k.press("Enter")
                _rate(page, k, UNITS - 4)
                idle_tested = True
            else:
                _rate(page, k, left)
            assert page.input_value("#code") == "1.1"
            k.press("Enter")  # the close button has the focus
        elif what == "partial":
            _dial(page, k, consent=True)
            _rate(page, k, 5)
            _close(page, k, "1.1")  # the bogus complete is refused on the page
            page.wait_for_selector("#form-error")
            assert "应为 1.2，不是 1.1" in page.text_content("#form-error")
            refused_on_page += 1
            _close(page, k, "1.2")
        elif what == "appointment":
            _dial(page, k, consent=False)
            k.choose("#code", "2.211")
            k.choose("#appt-time", "11:00")
            k.click("#appt-hard")
            k.click("#close")
            appointment_case = case_id
        else:
            _dial(page, k, consent=False)
            _close(page, k, {"busy": "3.12", "no-answer": "3.13", "soft-refusal": "2.1121",
                             "hard-refusal": "2.112"}[what])
        page.wait_for_selector("#next-case")
        done[what] += 1
        clock.now += timedelta(minutes=2)
        sclock.now += timedelta(minutes=2)
    shot(page, "shift-end", full=True)

    assert appointment_back and idle_tested and refused_on_page == done["partial"]
    with db.session() as s:
        appt = s.scalars(select(Appointment).where(Appointment.case_id == appointment_case)).one()
        assert appt.status == "kept"
        # no bogus disposition: every outcome followed a dial; every interview code is the
        # one its answers earn, after consent; every answer was given after consent
        attempts = s.scalars(select(CallAttempt).where(CallAttempt.outcome.is_not(None))).all()
        assert len(attempts) == CASES
        kinds = {}
        for a in attempts:
            kinds[a.id] = set(s.scalars(select(AttemptEvent.kind).where(
                AttemptEvent.attempt_id == a.id)))
            assert "dial" in kinds[a.id], a.outcome
        for case in s.scalars(select(SampleCase).where(SampleCase.attempts > 0)):
            answers = s.scalars(select(Answer).where(Answer.case_id == case.id)).all()
            assert all("consent" in kinds[x.attempt_id] for x in answers)
            for a in attempts:
                if a.case_id == case.id and a.outcome in ("1.1", "1.2", "2.12"):
                    answered = sum(x.rating is not None and x.answered_at <= a.ended_at
                                   for x in answers)
                    assert a.outcome == interview_code(answered, UNITS), (case.id, a.outcome)
        completes = sum(1 for a in attempts if a.outcome == "1.1")
    assert completes == done["complete"]
    per_complete = k.keys / completes
    print(f"\nshift: {CASES} cases {dict(done)}; {completes} completes; "
          f"{k.keys} keystrokes and {k.clicks} clicks in all; "
          f"{per_complete:.1f} keystrokes per complete ({UNITS} units each)")
