"""The draw in the database: weights, replicates, units, reproducibility, verify, release, balance."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from minping import draws
from minping.commands.sample import format_balance, write_balance_csv
from minping.config import load_config
from minping.errors import MinpingError
from minping.frames import import_frame
from minping.models import CaseUnit, FrameContact, SampleCase, SampleDraw, Stratum, Unit
from tests.minping.test_frames import write_frame

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture
def frame_file(cfg, tmp_path):
    path = tmp_path / "frame.csv"
    write_frame(path, cfg, 4000, seed=11)
    return path


@pytest.fixture
def loaded(db, cfg, frame_file):
    with db.transaction() as s:
        import_frame(s, cfg, frame_file)
    return db


def _draw(db, cfg, **kw):
    kw.setdefault("seed", 20261126)
    kw.setdefault("size", 400)
    with db.transaction() as s:
        return draws.draw_sample(s, cfg, now=NOW, **kw)


def _cases(db, draw_id):
    with db.session() as s:
        return s.execute(
            select(SampleCase, FrameContact.phone, Stratum.code)
            .join(FrameContact, FrameContact.id == SampleCase.contact_id)
            .join(Stratum, Stratum.id == SampleCase.stratum_id)
            .where(SampleCase.draw_id == draw_id)
        ).all()


def test_draw_stores_consistent_design(loaded, cfg):
    summary = _draw(loaded, cfg, replicates=3, reserve=4)
    rows = _cases(loaded, summary.draw_id)
    with loaded.session() as s:
        strata = {st.code: st for st in s.scalars(select(Stratum))}
        sd = s.get(SampleDraw, summary.draw_id)
        units = s.execute(select(CaseUnit.case_id, Unit.code).join(Unit)).all()
    assert sum(st.target for st in strata.values()) == 400
    assert sum(st.population for st in strata.values()) == 4000
    weight_sum, n_sample = defaultdict(float), Counter()
    for case, _phone, code in rows:
        st = strata[code]
        assert case.inclusion_prob == pytest.approx(st.target / st.population)
        assert case.weight == pytest.approx(st.population / st.target)
        assert case.release_state == "held" and case.pseudo_id.startswith("R")
        if not case.is_reserve:
            weight_sum[code] += case.weight
            n_sample[code] += 1
            assert 1 <= case.replicate <= 3
        else:
            assert case.replicate == 4
    for code, st in strata.items():
        assert weight_sum[code] == pytest.approx(st.population)  # Σ weights = N_h
        assert n_sample[code] == st.target
    reps = Counter(c.replicate for c, _, _ in rows if not c.is_reserve)
    assert max(reps.values()) - min(reps.values()) <= 1
    assert sum(1 for c, _, _ in rows if c.is_reserve) == 4 * len(strata)
    # every case: k distinct units its group may rate
    k = cfg.campaign.units_per_respondent
    per_case = defaultdict(list)
    for cid, code in units:
        per_case[cid].append(code)
    for case, _phone, code in rows:
        us = per_case[case.id]
        assert len(us) == len(set(us)) == k
        assert set(us) <= {u.id for u in cfg.units_for_group(code)}
    # the audit record
    audit = sd.allocation["audit"]
    assert audit["seed"] == 20261126 and sd.seed == "20261126"
    assert audit["frame_hash"] == sd.frame_hash == summary.frame_hash
    assert audit["software_version"] == sd.software_version
    assert audit["extra"]["assignment_digest"] == sd.assignment["digest"]
    assert sd.assignment["priority"] == "group"


def test_same_frame_and_seed_give_the_same_sample(db, cfg, tmp_path):
    # the same contacts imported in another order into two frames: the same cases
    path = tmp_path / "a.csv"
    write_frame(path, cfg, 3000, seed=12)
    lines = path.read_bytes().split(b"\r\n")
    header, body = lines[0], [ln for ln in lines[1:] if ln]
    shuffled = tmp_path / "b.csv"
    shuffled.write_bytes(b"\r\n".join([header, *reversed(body)]) + b"\r\n")
    with db.transaction() as s:
        import_frame(s, cfg, path, frame_name="one")
        import_frame(s, cfg, shuffled, frame_name="two")
    a = _draw(db, cfg, frame="one", replicates=2, reserve=2)
    b = _draw(db, cfg, frame="two", replicates=2, reserve=2)
    assert a.frame_hash == b.frame_hash
    key = [(phone, code, c.draw_order, c.replicate, c.is_reserve) for c, phone, code in
           _cases(db, a.draw_id)]
    key_b = [(phone, code, c.draw_order, c.replicate, c.is_reserve) for c, phone, code in
             _cases(db, b.draw_id)]
    assert sorted(key) == sorted(key_b)
    with db.session() as s:
        digests = [s.get(SampleDraw, d).assignment["digest"] for d in (a.draw_id, b.draw_id)]
    assert digests[0] == digests[1]
    c = _draw(db, cfg, frame="one", seed=7, force=True)
    assert {p for _, p, _ in _cases(db, c.draw_id)} != {k[0] for k in key}


def test_group_town_keeps_both_margins(loaded, cfg):
    summary = _draw(loaded, cfg, strata="group_town", size=401)
    assert sum(s["n"] for s in summary.strata) == 401
    by_group = defaultdict(lambda: [0, 0.0])
    for s in summary.strata:
        g = s["stratum"].split("/")[0]
        by_group[g][0] += s["n"]
        by_group[g][1] += s["real"]
        assert abs(s["n"] - s["real"]) < 1
    for n, real in by_group.values():
        assert abs(n - real) < 1


def test_allocation_options(loaded, cfg):
    summary = _draw(loaded, cfg, method="neyman",
                    S={"residents": 30.0, "deputies": 10.0, "business": 25.0},
                    lower={"deputies": 60})
    n = {s["stratum"]: s["n"] for s in summary.strata}
    assert n["deputies"] == 60 and sum(n.values()) == 400
    fixed = _draw(loaded, cfg, method="fixed", force=True,
                  fixed={"residents": 300, "deputies": 50, "business": 50})
    assert {s["stratum"]: s["n"] for s in fixed.strata} == {
        "residents": 300, "deputies": 50, "business": 50}


def test_clear_errors(loaded, cfg):
    with pytest.raises(MinpingError, match="larger than the frame"):
        _draw(loaded, cfg, size=4001)
    with pytest.raises(MinpingError, match="lower bounds"):
        _draw(loaded, cfg, lower={"residents": 300, "deputies": 100, "business": 100})
    with pytest.raises(MinpingError, match="unknown stratum 'nobody'"):
        _draw(loaded, cfg, upper={"nobody": 3})
    _draw(loaded, cfg)
    with pytest.raises(MinpingError, match="already has a draw"):
        _draw(loaded, cfg)
    with loaded.transaction() as s:
        draws.release(s, cfg, replicate=1, now=NOW)
    with pytest.raises(MinpingError, match="released into the field"):
        _draw(loaded, cfg, force=True)


def test_verify_matches_then_detects_tampering(loaded, cfg, frame_file):
    summary = _draw(loaded, cfg, replicates=2, reserve=3)
    with loaded.session() as s:
        result = draws.verify(s, cfg)
    assert result["matches"] and result["cases"] == 400 + 3 * 3 and not result["problems"]
    with loaded.session() as s:
        assert draws.verify(s, cfg, frame_file=frame_file)["matches"]
    # swap one case's contact for a contact that was not drawn
    with loaded.transaction() as s:
        drawn = set(s.scalars(select(SampleCase.contact_id)))
        victim = s.scalars(select(SampleCase).order_by(SampleCase.id)).first()
        other = s.scalars(select(FrameContact.id).where(FrameContact.id.not_in(drawn))).first()
        victim.contact_id = other
        pseudo = victim.pseudo_id
    with loaded.session() as s:
        result = draws.verify(s, cfg)
    assert not result["matches"]
    statuses = Counter(p["status"] for p in result["problems"])
    assert statuses["not_rederived"] == 1 and statuses["missing"] == 1
    assert any(p["pseudo_id"] == pseudo for p in result["problems"])
    assert result["frame_hash_matches"]
    assert summary.draw_id == result["draw_id"]


def test_verify_detects_changed_units(loaded, cfg):
    _draw(loaded, cfg)
    with loaded.transaction() as s:
        row = s.scalars(select(CaseUnit).order_by(CaseUnit.id)).first()
        case_units = set(s.scalars(select(CaseUnit.unit_id).where(CaseUnit.case_id == row.case_id)))
        group_units = set(s.scalars(select(Unit.id)))
        row.unit_id = min(group_units - case_units)
    with loaded.session() as s:
        result = draws.verify(s, cfg)
    assert not result["matches"] and not result["assignment_matches"]
    assert [p["status"] for p in result["problems"]] == ["assignment"]


def test_release_next_all_and_reserve(loaded, cfg):
    summary = _draw(loaded, cfg, replicates=3, reserve=2)
    with loaded.transaction() as s:
        first = draws.release(s, cfg, next_=True, now=NOW)
    assert first["replicate"] == 1 and first["released"] in (133, 134)
    assert first["held_replicates"] == [2, 3]
    with loaded.transaction() as s:
        with pytest.raises(MinpingError, match="reserve"):
            draws.release(s, cfg, replicate=4, now=NOW)
        rest = draws.release_all(s, cfg, now=NOW)
    assert rest["released"] == 400 - first["released"]
    # two residents' cases end not eligible (4.x): two residents' reserve cases go out
    with loaded.transaction() as s:
        st = s.scalar(select(Stratum.id).where(Stratum.code == "residents"))
        ids = s.scalars(select(SampleCase.id).where(
            SampleCase.stratum_id == st, SampleCase.is_reserve.is_(False)).limit(3)).all()
        s.execute(update(SampleCase).where(SampleCase.id.in_(ids[:2]))
                  .values(state="final", final_disposition="4.31"))
        s.execute(update(SampleCase).where(SampleCase.id == ids[2])
                  .values(state="final", final_disposition="1.1"))
    with loaded.transaction() as s:
        res = draws.release_reserve(s, cfg, now=NOW)
    assert res["by_stratum"] == {"residents": 2} and res["short"] == {}
    with loaded.transaction() as s:
        assert draws.release_reserve(s, cfg, now=NOW)["released"] == 0
        # the released reserve cases are the first two of the stratum's reserve
        orders = s.scalars(select(SampleCase.draw_order).where(
            SampleCase.stratum_id == st, SampleCase.is_reserve.is_(True),
            SampleCase.release_state == "released")).all()
        target = s.scalar(select(Stratum.target).where(Stratum.id == st))
    assert sorted(orders) == [target + 1, target + 2]
    with loaded.session() as s:
        report = draws.balance_report(s, cfg)
    row = next(r for r in report["strata"] if r["stratum"] == "residents")
    assert row["completed"] == 1 and row["released"] == row["drawn"] + 2
    assert row["gap"] == 1 - row["target"]
    assert summary.draw_id == report["draw_id"]


def test_balance_report(loaded, cfg, tmp_path):
    _draw(loaded, cfg, size=600)
    with loaded.session() as s:
        report = draws.balance_report(s, cfg)
    assert report["tested"] == "assigned"
    assert len(report["units"]) == len(cfg.units)
    assert report["failing_units"] == 0
    assert report["totals"]["target"] == report["totals"]["drawn"] == 600
    k = cfg.campaign.units_per_respondent
    assert sum(sum(u["assigned"]) for u in report["units"]) == 600 * k
    for u in report["units"]:
        assert sum(u["expected_assigned"]) == pytest.approx(sum(u["assigned"]), abs=0.01)
        assert u["dissimilarity"] <= 0.1
    # proportional allocation: equal weights up to rounding, so deff is close to 1
    assert report["kish"]["sample"]["deff"] == pytest.approx(1.0, abs=1e-3)
    lines = format_balance(report, max_units=5)
    assert any("Kish deff" in ln for ln in lines)
    n = write_balance_csv(report, tmp_path / "balance.csv")
    assert n == len(report["strata"]) + sum(len(u["groups"]) for u in report["units"])


def test_group_town_assignment_covers_every_stratum_and_verifies(loaded, cfg):
    """Units are assigned within each stratum first: every unit has cases in every
    group × town stratum with n_h·k ≥ m_h; sample verify re-derives the assignment."""
    _draw(loaded, cfg, strata="group_town", size=1200)
    k = cfg.campaign.units_per_respondent
    with loaded.session() as s:
        cases = s.execute(select(SampleCase.id, Stratum.code, SampleCase.release_state)
                          .join(Stratum, Stratum.id == SampleCase.stratum_id)).all()
        units_of = defaultdict(set)
        for case_id, unit_id in s.execute(select(CaseUnit.case_id, CaseUnit.unit_id)):
            units_of[case_id].add(unit_id)
        code = dict(s.execute(select(Unit.id, Unit.code)).all())
        result = draws.verify(s, cfg)
    assert result["matches"] and not result["problems"]
    size = Counter(h for _, h, _ in cases)
    covered = defaultdict(set)
    for case_id, h, _ in cases:
        covered[h] |= {code[u] for u in units_of[case_id]}
    for h, n_h in size.items():
        eligible = {u.id for u in cfg.units_for_group(h.split("/")[0])}
        if n_h * k >= len(eligible):
            assert covered[h] == eligible, h
