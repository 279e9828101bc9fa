"""Units rated by random subsamples: the per-unit design N_h/n_hu against R survey.

Fixture ``data/assigned_units.csv`` (3 strata; each respondent assigned 2 of
the m_h units of the group: m = 3 residents, 6 deputies, 4 business, so the
whole-sample weight N_h/n_h and the unit weight N_h/n_hu differ by m_h/2,
unequally across strata).  Reference numbers from
``data/reference_assigned.R`` (R 4, survey 4.1.1): per unit
``svydesign(id=~1, strata=~stratum, fpc=~N, data=<assigned to u>)``,
``svymean(~y, subset(design, answered))``, ``degf``, ``confint(df = degf)``,
``svyciprop(method = "beta")``; unit sfj has a single business respondent
(``survey.lonely.psu = "adjust"``).
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, select

from minping.campaign import codes, sync_campaign
from minping.cases import new_pseudo_id
from minping.config import load_config
from minping.models import (
    Answer,
    CaseUnit,
    Frame,
    FrameContact,
    RespondentGroup,
    SampleCase,
    SampleDraw,
    Stratum,
    Town,
    Unit,
)
from scoring.estimators import AssignedDesign, StratifiedDesign
from scoring.scale import RatingScale
from scoring.units import score_units

DATA = Path(__file__).parent / "data"
POPULATION = {"residents": 5000, "deputies": 300, "business": 800}
AT = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)

# reference_assigned.R, "unit" lines: n = nrow(subset), svymean, SE, degf,
# confint(df = degf), svyciprop(beta) estimate, its SE, interval.
R_UNITS = {
    "czj": (8, 27.5, 13.9211213286725, 7, -5.41822110314444, 60.4182211031444,
            0.375, 0.180525027944287, 0.0752319551672835, 0.773823209544526),
    "fgw": (24, 76.5168539325843, 5.54712454635916, 21, 64.980976927547, 88.0527309376215,
            0.939807383627608, 0.0278546549229037, 0.857689514998207, 0.982182901478544),
    "gaj": (12, 45.7575757575758, 13.184856688206, 10, 16.3798843127129, 75.1352672024386,
            0.590909090909091, 0.165103004075394, 0.232110151430419, 0.888467000453872),
    "jxj": (24, 81.0735930735931, 5.44640692218646, 21, 69.7471698341934, 92.4000163129927,
            0.909090909090909, 0.0344499285368065, 0.815191208310801, 0.964990037261536),
    "kjj": (22, 62.6559714795009, 9.07285120045667, 19, 43.6662756748778, 81.645667284124,
            0.795900178253119, 0.0936471065366003, 0.545821505047794, 0.944910876930661),
    "sfj": (9, 56.5909090909091, 4.75632348688637, 7, 45.3439912253972, 67.8378269564209,
            0.897727272727273, 0.0891599121539993, 0.572861917469892, 0.996327105335752),
}
# reference_assigned.R, "old weighting" lines: Σ w y / Σ w with w = N_h/n_h for everyone.
R_OLD = {"czj": 27.5, "fgw": 78.4201537147737, "gaj": 43.3333333333333,
         "jxj": 83.440260344026, "kjj": 64.4539411206078, "sfj": 51.6666666666667}


def _rows() -> list[dict[str, str]]:
    with open(DATA / "assigned_units.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _scale() -> RatingScale:
    base = RatingScale.default()
    return RatingScale(points={**base.points, "": None}, satisfied=base.satisfied,
                       labels={**base.labels, "": ""})


def _score(rows, **options):
    return score_units([r["respondent_id"] for r in rows], [r["stratum"] for r in rows],
                       [r["unit"] for r in rows], [r["rating"] for r in rows], POPULATION,
                       scale=_scale(), assigned=[r["assigned"] == "1" for r in rows], **options)


def load_fixture(db) -> int:
    """The fixture as a campaign in the database; returns the draw id.

    Every fixture row with ``assigned = 1`` is a ``CaseUnit``; a rating is an
    ``Answer`` (an empty rating alternates between no answer and an answer
    with no key); the row with ``assigned = 0`` is an answer to a unit not
    assigned.  Each stratum also has a refusal whose answers must not count.
    """
    cfg = load_config()
    rows = _rows()
    with db.transaction() as s:
        campaign = sync_campaign(s, cfg)
        groups = codes(s, RespondentGroup, campaign.id)
        town = codes(s, Town, campaign.id)[cfg.towns[0].id]
        units = codes(s, Unit, campaign.id)
        frame = Frame(campaign_id=campaign.id, name="assigned units fixture", synthetic=True)
        s.add(frame)
        s.flush()
        contacts = []
        i = 0
        for group, n_pop in POPULATION.items():
            for _ in range(min(n_pop, 40)):
                contacts.append({"frame_id": frame.id, "phone": f"+86138{i:08d}",
                                 "group_id": groups[group], "town_id": town,
                                 "source_row": i + 2, "attributes": {}})
                i += 1
        s.execute(insert(FrameContact), contacts)
        draw = SampleDraw(campaign_id=campaign.id, frame_id=frame.id, frame_hash="0" * 64,
                          seed="1", stratification="group", method="proportional",
                          sample_size=len({r["respondent_id"] for r in rows}),
                          software_version="test")
        s.add(draw)
        s.flush()
        empty = 0
        for group, n_pop in POPULATION.items():
            stratum = Stratum(draw_id=draw.id, code=group, group_id=groups[group], town_id=None,
                              population=n_pop, target=10)
            s.add(stratum)
            s.flush()
            free = iter(s.scalars(select(FrameContact.id).where(
                FrameContact.frame_id == frame.id, FrameContact.group_id == groups[group])
                .order_by(FrameContact.id)).all())
            mine = [r for r in rows if r["stratum"] == group]
            people = list(dict.fromkeys(r["respondent_id"] for r in mine)) + ["refusal"]
            for rid in people:
                case = SampleCase(draw_id=draw.id, contact_id=next(free), stratum_id=stratum.id,
                                  pseudo_id=new_pseudo_id(), inclusion_prob=0.01, weight=100.0,
                                  replicate=1, draw_order=0, release_state="released",
                                  released_at=AT, state="final",
                                  final_disposition="2.112" if rid == "refusal" else "1.1")
                s.add(case)
                s.flush()
                if rid == "refusal":
                    for pos, code in enumerate(("fgw", "jxj")):
                        s.add(CaseUnit(case_id=case.id, unit_id=units[code], position=pos))
                        s.add(Answer(case_id=case.id, unit_id=units[code], rating="3",
                                     channel="cati", answered_at=AT))
                    continue
                for pos, r in enumerate(x for x in mine if x["respondent_id"] == rid):
                    if r["assigned"] == "1":
                        s.add(CaseUnit(case_id=case.id, unit_id=units[r["unit"]], position=pos))
                    if r["rating"] == "":
                        empty += 1
                        if empty % 2:
                            continue  # never asked
                    s.add(Answer(case_id=case.id, unit_id=units[r["unit"]],
                                 rating=r["rating"] or None, channel="cati", answered_at=AT))
        return draw.id


def test_fixture_has_unequal_unit_weights():
    rows = [r for r in _rows() if r["assigned"] == "1"]
    n_h = {h: len({r["respondent_id"] for r in rows if r["stratum"] == h}) for h in POPULATION}
    assert n_h == {"residents": 18, "deputies": 24, "business": 16}
    n_hu = {(h, "fgw"): sum(r["stratum"] == h and r["unit"] == "fgw" for r in rows) for h in n_h}
    # n_h/n_hu = m_h/k: 3/2, 6/2, 4/2
    assert [n_h[h] / n_hu[(h, "fgw")] for h in n_h] == [1.5, 3.0, 2.0]


@pytest.mark.parametrize("unit", sorted(R_UNITS))
def test_core_matches_r_per_unit_design(unit):
    got = _score(_rows())[unit]
    n, mean, se, df, lo, hi, sat, _, slo, shi = R_UNITS[unit]
    assert (got.n, got.df) == (n, df)
    for value, ref in ((got.score, mean), (got.se, se), (got.ci_low, lo), (got.ci_high, hi),
                       (got.sat, sat), (got.sat_low, slo), (got.sat_high, shi)):
        assert value == pytest.approx(ref, abs=1e-6)


def test_database_scores_match_r(db, runner):
    load_fixture(db)
    out = runner.invoke(["score", "--json", "--min-raters", "5"])
    assert out.exit_code == 0, out.output
    got = {u["unit"]: u for u in json.loads(out.stdout)["units"]}
    assert sorted(got) == sorted(R_UNITS)  # gaj answered without assignment by a resident: not scored
    for unit, (n, mean, se, df, lo, hi, sat, _, slo, shi) in R_UNITS.items():
        u = got[unit]
        assert (u["n"], u["df"]) == (n, df), unit
        for key, ref in (("score", mean), ("se", se), ("ci_low", lo), ("ci_high", hi),
                         ("sat", sat), ("sat_low", slo), ("sat_high", shi)):
            assert u[key] == pytest.approx(ref, abs=1e-6), (unit, key)
    # "not every stratum covered": the strata whose group may rate the unit (configuration)
    # with no respondent assigned it (fixture)
    cfg = load_config()
    covered = {(r["unit"], r["stratum"]) for r in _rows() if r["assigned"] == "1"}
    for unit, u in got.items():
        eligible = [h for h in sorted(POPULATION)
                    if unit in {x.id for x in cfg.units_for_group(h)}]
        assert u["uncovered"] == [h for h in eligible if (unit, h) not in covered], unit
    assert any(u["uncovered"] for u in got.values())


def test_old_weighting_would_be_wrong(db, runner):
    """N_h/n_h for every unit (R's "old weighting" lines) gives other estimates."""
    from minping.scores import load_phone_data

    load_fixture(db)
    with db.session() as s:
        data = load_phone_data(s, load_config())
    assert data.n_h == {"residents": 18, "deputies": 24, "business": 16}
    assert data.unit_weight("business", "fgw") == pytest.approx(800 / 8)
    assert data.weight("business") == pytest.approx(800 / 16)
    out = runner.invoke(["score", "--json", "--min-raters", "5"])
    got = {u["unit"]: u["score"] for u in json.loads(out.stdout)["units"]}
    for unit in ("fgw", "gaj", "jxj", "kjj", "sfj"):  # rated by more than one stratum
        assert abs(got[unit] - R_OLD[unit]) > 1.0, unit
        assert got[unit] == pytest.approx(R_UNITS[unit][1], abs=1e-6)
    assert got["czj"] == pytest.approx(R_OLD["czj"])  # one stratum: the constant cancels
    # the core without ``assigned`` is the old weighting (the plain-file contract)
    rows = [r for r in _rows() if r["assigned"] == "1"]
    old = score_units([r["respondent_id"] for r in rows], [r["stratum"] for r in rows],
                      [r["unit"] for r in rows], [r["rating"] for r in rows], POPULATION,
                      scale=_scale())
    for unit, ref in R_OLD.items():
        assert old[unit].score == pytest.approx(ref, abs=1e-6)


def test_covariance_is_consistent():
    scores = _score(_rows())
    cov = scores.covariance
    np.testing.assert_allclose(np.diag(cov), [u.se ** 2 for u in scores], rtol=1e-12)
    np.testing.assert_allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > -1e-9
    # pairs of units share few raters (2 of m_h units per respondent): weak correlations
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert np.abs(corr[~np.eye(len(scores), dtype=bool)]).max() < 0.8


def test_everyone_assigned_is_the_whole_sample_design():
    """When every respondent is assigned every unit, n_hu = n_h: the plain design, covariance too."""
    with open(DATA / "units_small.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cols = [[r[k] for r in rows] for k in ("respondent_id", "stratum", "unit", "rating")]
    pop = {"A": 500, "B": 300, "C": 200}
    resp = sorted({(r["respondent_id"], r["stratum"]) for r in rows})
    full = {(r["respondent_id"], r["unit"]): r["rating"] for r in rows}
    units = sorted({r["unit"] for r in rows})
    long = [(i, h, u, full.get((i, u), "0")) for i, h in resp for u in units]
    a = score_units(*cols, pop)
    b = score_units(*zip(*long, strict=True), pop, assigned=[True] * len(long))
    for x, y in zip(a, b, strict=True):
        assert (x.n, x.df) == (y.n, y.df)
        for key in ("score", "se", "ci_low", "ci_high", "sat", "sat_low", "sat_high", "n_eff"):
            assert getattr(y, key) == pytest.approx(getattr(x, key), rel=1e-12), key
    np.testing.assert_allclose(b.covariance, a.covariance, rtol=1e-10, atol=1e-12)


def test_single_assigned_respondent_is_r_adjust():
    """A stratum with one respondent assigned u adds (1 − 1/N_h) z² (R lonely.psu "adjust")."""
    strata = np.array(["s"] * 4 + ["t"] * 3)
    design = StratifiedDesign(strata, {"s": 10, "t": 6})
    assigned = np.array([1, 1, 1, 0, 1, 0, 0], dtype=bool)[:, None]
    y = np.array([100.0, 60.0, 0.0, 0.0, 60.0, 0.0, 0.0])[:, None]
    m = AssignedDesign(design, assigned).domain_means(y)
    w = np.array([10 / 3] * 3 + [6.0])
    est = (w * y[assigned]).sum() / w.sum()
    z = w * (y[assigned] - est) / w.sum()
    zs = z[:3] - z[:3].mean()
    v = (1 - 3 / 10) * 3 / 2 * (zs ** 2).sum() + (1 - 1 / 6) * z[3] ** 2
    assert m.estimate[0] == pytest.approx(est)
    assert m.se[0] == pytest.approx(np.sqrt(v))


def test_raking_and_bootstrap_with_assignment():
    from scoring.units import RespondentMargin

    rows = _rows()
    ids = sorted({r["respondent_id"] for r in rows})
    half = {i: ("a" if int(i[1:]) % 2 else "b") for i in ids}
    stratum = {r["respondent_id"]: r["stratum"] for r in rows}
    plain = _score(rows)
    # one margin equal to the strata: raking changes no estimate, and no SE except where a
    # stratum has a single assigned respondent (sfj: its residual on the stratum margin is 0,
    # as in R's calibrate on the per-unit design)
    same = _score(rows, margins=[RespondentMargin("groups", stratum, POPULATION)])
    for x, y in zip(plain, same, strict=True):
        assert y.score == pytest.approx(x.score, rel=1e-9)
        if x.unit != "sfj":
            assert y.se == pytest.approx(x.se, rel=1e-6)
    assert same["sfj"].se < plain["sfj"].se
    raked = _score(rows, margins=[RespondentMargin("groups", stratum, POPULATION),
                                  RespondentMargin("half", half, {"a": 3500, "b": 2600})])
    assert any(abs(x.score - y.score) > 1e-6 for x, y in zip(plain, raked, strict=True))
    boot = _score(rows, variance="bootstrap", replicates=2000, rng=np.random.default_rng(5))
    for x, y in zip(plain, boot, strict=True):
        assert y.score == x.score
        if x.unit != "sfj":  # sfj's lonely business rater is in some replicates, not in others
            assert y.se == pytest.approx(x.se, rel=0.35)
    np.testing.assert_allclose(np.diag(boot.covariance), [u.se ** 2 for u in boot], rtol=1e-9)
