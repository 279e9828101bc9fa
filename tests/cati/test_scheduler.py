"""The CATI scheduler's order and eligibility rules (service level, both databases)."""

import time
from datetime import timedelta

from sqlalchemy import select

from cati import service
from minping import cases
from minping.models import Appointment, DoNotCall, SampleCase, User
from minping.scheduler import Progress, ProgressCache, field_progress, next_case
from tests.builders import FIELD_START, build_field
from tests.cati.helpers import add_user

NOW = FIELD_START


def pick(db, user_id, now=NOW, progress=None, **kw):
    with db.transaction() as s:
        user = s.get(User, user_id)
        case = next_case(s, user, now=now, rules=kw.pop("rules"), progress=progress, **kw)
        return None if case is None else case.id


def test_order_appointment_then_handoff_then_priority_then_oldest_attempt(db):
    field = build_field(db, n_cases=6)
    rules = field.cfg.calling
    a, b, c, d, e, f = field.case_ids
    ann = add_user(db, "ann")
    with db.transaction() as s:
        s.get(SampleCase, a).last_attempt_at = NOW - timedelta(hours=5)
        s.get(SampleCase, b).last_attempt_at = NOW - timedelta(hours=9)
        s.get(SampleCase, c).priority = 5
        s.get(SampleCase, d).state = "handoff_cati"
        s.add(Appointment(case_id=e, due_at=NOW - timedelta(minutes=1), kind="soft"))
        # f: never attempted
    order = []
    for _ in range(6):
        got = pick(db, ann, rules=rules)
        order.append(got)
        with db.transaction() as s:
            cases.release_hold(s, s.get(SampleCase, got))
            s.get(SampleCase, got).next_attempt_at = NOW + timedelta(days=1)
    assert order == [e, d, c, f, b, a]


def test_strata_furthest_behind_come_first(db):
    field = build_field(db, n_cases=4)
    ann = add_user(db, "ann")
    with db.session() as s:
        stratum = s.get(SampleCase, field.case_ids[0]).stratum_id
    # one stratum only in the builder: the unit ranking decides among equals
    with db.session() as s:
        units = {cid: [u.unit_id for u in cases.case_units(s, cid)] for cid in field.case_ids}
    behind = field.case_ids[2]
    progress = Progress(stratum={stratum: 0.5},
                        unit={u: (0.0 if u in units[behind] else 0.9)
                              for ids in units.values() for u in ids})
    # case 2's units are shared with no other case only partly: make the others ahead
    for cid in field.case_ids:
        if cid != behind:
            for u in units[cid]:
                if u not in units[behind]:
                    progress.unit[u] = 0.9
    assert pick(db, ann, progress=progress, rules=field.cfg.calling) == behind


def test_only_eligible_cases_are_given(db):
    field = build_field(db, n_cases=7)
    rules = field.cfg.calling
    ids = field.case_ids
    ann = add_user(db, "ann")
    bob = add_user(db, "bob")
    with db.transaction() as s:
        s.get(SampleCase, ids[0]).next_attempt_at = NOW + timedelta(minutes=5)  # delay
        s.get(SampleCase, ids[1]).attempts = rules.max_attempts  # cap
        s.get(SampleCase, ids[2]).refusal_conversion = True  # experienced only
        s.add(DoNotCall(phone=field.phones[ids[3]], source="test"))
        s.get(SampleCase, ids[4]).assigned_to = bob  # reassigned to bob
        s.add(Appointment(case_id=ids[5], due_at=NOW - timedelta(minutes=2), kind="hard",
                          interviewer_id=bob))
    with db.transaction() as s:  # ids[6] in an IVR call
        assert cases.try_hold(s, ids[6], channel="ivr", now=NOW)
    assert pick(db, ann, rules=rules) is None
    # bob gets his hard appointment first, then his reassigned case
    got = pick(db, bob, rules=rules)
    assert got == ids[5]


def test_hard_appointment_opens_to_others_after_the_grace(db):
    field = build_field(db, n_cases=1)
    ann, bob = add_user(db, "ann"), add_user(db, "bob")
    cid = field.case_ids[0]
    with db.transaction() as s:
        s.add(Appointment(case_id=cid, due_at=NOW, kind="hard", interviewer_id=bob))
    assert pick(db, ann, rules=field.cfg.calling) is None
    later = NOW + timedelta(minutes=16)
    assert pick(db, ann, now=later, rules=field.cfg.calling) == cid


def test_experienced_interviewer_gets_refusal_conversion(db):
    field = build_field(db, n_cases=1)
    vet = add_user(db, "vet", experienced=True)
    with db.transaction() as s:
        s.get(SampleCase, field.case_ids[0]).refusal_conversion = True
    assert pick(db, vet, rules=field.cfg.calling) == field.case_ids[0]


def test_nothing_outside_the_calling_window(db):
    field = build_field(db, n_cases=2)
    ann = add_user(db, "ann")
    night = NOW.replace(hour=14)  # 22:00 in Asia/Shanghai
    assert pick(db, ann, now=night, rules=field.cfg.calling) is None


def test_an_interviewer_holding_a_case_gets_it_back(db):
    field = build_field(db, n_cases=3)
    ann = add_user(db, "ann")
    first = pick(db, ann, rules=field.cfg.calling)
    assert pick(db, ann, rules=field.cfg.calling) == first
    with db.session() as s:
        held = s.scalars(select(SampleCase.id).where(SampleCase.lock_channel == "cati")).all()
    assert held == [first]


def test_appointment_comes_back_at_its_time_and_soft_refusal_to_conversion(db):
    field = build_field(db, n_cases=1, units_per_case=2)
    cfg = field.cfg
    ann = add_user(db, "ann")
    vet = add_user(db, "vet", experienced=True)
    with db.transaction() as s:
        user = s.get(User, ann)
        case = service.take_next(s, user, now=NOW, cfg=cfg)
        service.begin_attempt(s, case, user, now=NOW)
        req = service.AppointmentRequest(day=NOW.date(), at=NOW.replace(hour=16).time()
                                         .replace(tzinfo=None))
        # 16:00 local on the same day = 08:00 UTC
        service.close_attempt(s, case, user, code="2.211", now=NOW, cfg=cfg, appointment=req)
        assert case.next_attempt_at == NOW.replace(hour=8)
    assert pick(db, ann, now=NOW.replace(hour=7), rules=cfg.calling) is None
    at = NOW.replace(hour=8)
    with db.transaction() as s:
        user = s.get(User, ann)
        case = service.take_next(s, user, now=at, cfg=cfg)
        assert case is not None
        service.begin_attempt(s, case, user, now=at)
        service.close_attempt(s, case, user, code="2.1121", now=at, cfg=cfg,
                              refusal_conversion=True)
        appt = s.scalars(select(Appointment)).one()
        assert appt.status == "kept"
    later = at + timedelta(days=3)
    assert pick(db, ann, now=later, rules=cfg.calling) is None
    assert pick(db, vet, now=later, rules=cfg.calling) == field.case_ids[0]


def test_an_abandoned_screen_is_closed_by_the_next_pick_and_its_case_not_given_open(db):
    """The pick reports CATI attempts left open on cases nobody holds; take_next closes
    them in the same transaction (3.16 without consent) and never gives such a case
    while its attempt is open."""
    field = build_field(db, n_cases=2)
    cfg = field.cfg
    ann, bob = add_user(db, "ann"), add_user(db, "bob")
    with db.transaction() as s:
        user = s.get(User, ann)
        left = service.take_next(s, user, now=NOW, cfg=cfg)
        service.begin_attempt(s, left, user, now=NOW)
        left.lock_expires_at = NOW  # the browser was closed
        left_id = left.id
    later = NOW + timedelta(minutes=5)
    # next_case alone (no reaping) steps over the case whose attempt is still open
    assert pick(db, bob, now=later, rules=cfg.calling) != left_id
    with db.transaction() as s:  # bob gives his case back untouched
        cases.release_hold(s, s.scalars(select(SampleCase).where(
            SampleCase.locked_by == bob, SampleCase.id != left_id)).one())
    with db.transaction() as s:
        user = s.get(User, bob)
        got = service.take_next(s, user, now=later, cfg=cfg)
        assert got is not None and got.id != left_id
        closed = s.scalars(select(service.CallAttempt).where(
            service.CallAttempt.case_id == left_id)).one()
        assert closed.outcome == "3.16"
        assert s.get(SampleCase, left_id).lock_channel is None


def test_the_pick_re_checks_a_case_changed_since_the_window_was_read(db):
    """A case held, called and put back with a later retry between two picks is not
    given again before its time (the rules of the row are checked on its latest
    version), and one interviewer never holds two cases."""
    field = build_field(db, n_cases=3)
    cfg = field.cfg
    ann, bob = add_user(db, "ann"), add_user(db, "bob")
    first = pick(db, ann, rules=cfg.calling)
    with db.transaction() as s:
        case = s.get(SampleCase, first)
        cases.release_hold(s, case)
        case.next_attempt_at = NOW + timedelta(hours=2)
    seen = {pick(db, bob, rules=cfg.calling)}
    assert pick(db, bob, rules=cfg.calling) in seen  # his own case back, not a second one
    assert first not in seen


def _refreshed(cache, db, old, timeout=30.0):
    """The cache's value once its background refresh has replaced ``old``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as s:
            got = cache.get(s)
        if got is not old:
            return got
        time.sleep(0.02)
    raise AssertionError("the progress was not recomputed")


def test_the_progress_is_recomputed_without_keeping_a_pick_waiting(db):
    """Past its age the cached progress is recomputed in the background: the pick that
    finds it old gets the previous value at once, a later pick the new one."""
    field = build_field(db, n_cases=4)
    cache = ProgressCache(0.05)
    with db.session() as s:
        first = cache.get(s)  # the first of all waits for it
    assert all(share == 0 for share in first.stratum.values())
    with db.transaction() as s:
        case = s.get(SampleCase, field.case_ids[0])
        case.final_disposition, case.state = "1.1", "final"
    time.sleep(0.1)
    with db.session() as s:
        assert cache.get(s) is first  # old: the previous value, without waiting
    fresh = _refreshed(cache, db, first)
    assert fresh.stratum[case.stratum_id] > 0
    with db.session() as s:
        assert field_progress(s) == fresh


def test_a_cache_of_no_age_is_always_fresh(db):
    """``seconds == 0`` (the screens' tests) recomputes on every call, in the caller."""
    field = build_field(db, n_cases=2)
    cache = ProgressCache(0)
    with db.session() as s:
        first = cache.get(s)
    with db.transaction() as s:
        case = s.get(SampleCase, field.case_ids[0])
        case.final_disposition, case.state = "1.1", "final"
    with db.session() as s:
        assert cache.get(s).stratum[case.stratum_id] > first.stratum[case.stratum_id]

