"""The embedded mode experiment: configuration, seeded assignment at release, audit, routing."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from minping import cases, experiment
from minping.config import ConfigError, Experiment, load_config
from minping.draws.release import release_next, release_replicate
from minping.models import AuditLog, CallAttempt, SampleCase
from minping.resources import CAMPAIGN_TEMPLATE
from tests.builders import FIELD_START, build_field

NOW = FIELD_START


def _with(fraction: float, seed: str | None = None):
    cfg = load_config()
    return dataclasses.replace(cfg, experiment=Experiment(fraction, seed))


def test_the_template_has_the_experiment_off():
    text = CAMPAIGN_TEMPLATE.read_text(encoding="utf-8")
    assert "[experiment]\nmode_cati_first_fraction = 0.0" in text
    assert load_config().experiment == Experiment(0.0, None)


@pytest.mark.parametrize("value, message", [
    ("1.0", "must be under 1 (1 would leave no IVR-first arm to compare with), got 1"),
    ("-0.1", "must be a number between 0 and 1, got -0.1"),
    ('"a tenth"', 'must be a number between 0 and 1, got "a tenth"'),
])
def test_a_bad_fraction_is_named(tmp_path, value, message):
    text = CAMPAIGN_TEMPLATE.read_text(encoding="utf-8").replace(
        "mode_cati_first_fraction = 0.0", f"mode_cati_first_fraction = {value}\nsed = 1")
    path = tmp_path / "survey.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).splitlines()[0].startswith(str(path))
    assert sorted(err.value.problems) == [f"experiment.mode_cati_first_fraction: {message}",
                                          "experiment.sed: unknown key"]


def test_the_assignment_is_a_seeded_bernoulli_draw():
    u = [experiment.uniform("s", f"P{i}") for i in range(4000)]
    assert all(0.0 <= x < 1.0 for x in u)
    share = sum(x < 0.25 for x in u) / len(u)
    assert abs(share - 0.25) < 4 * (0.25 * 0.75 / len(u)) ** 0.5
    # the same seed and case give the same arm; another seed another draw
    assert experiment.arm_of("s", "P1", 0.25) == experiment.arm_of("s", "P1", 0.25)
    assert [experiment.uniform("s", f"P{i}") for i in range(20)] != \
        [experiment.uniform("t", f"P{i}") for i in range(20)]


def test_release_assigns_arms_audits_them_and_they_can_be_verified(db):
    field = build_field(db, n_cases=60, released=False)
    cfg = _with(0.3, seed="mode-2026")
    with db.transaction() as s:
        assert release_replicate(s, field.draw_id, 1, now=NOW, experiment=cfg.experiment) == 60
    with db.session() as s:
        arms = dict(s.execute(select(SampleCase.pseudo_id, SampleCase.mode_arm)).all())
        assert set(arms.values()) == {"ivr_first", "cati_first"}
        for pid, arm in arms.items():
            assert arm == experiment.arm_of("mode-2026", pid, 0.3)
        (log,) = s.scalars(select(AuditLog).where(AuditLog.action == "experiment.assign")).all()
        assert log.new["fraction"] == 0.3 and log.new["seed"] == "mode-2026"
        assert sorted(log.new["cati_first"]) == sorted(p for p, a in arms.items() if a == "cati_first")
        assert len(log.new["ivr_first"]) + len(log.new["cati_first"]) == 60
        check = experiment.verify_arms(s, field.draw_id)
        assert check["matches"] and check["cases"] == 60
        assert check["cati_first"] == list(arms.values()).count("cati_first")
    # a changed arm is found
    with db.transaction() as s:
        case = s.scalars(select(SampleCase).where(SampleCase.mode_arm == "cati_first")).first()
        case.mode_arm = "ivr_first"
        pid = case.pseudo_id
    with db.session() as s:
        check = experiment.verify_arms(s, field.draw_id)
        assert not check["matches"]
        assert check["problems"] == [{"case": pid, "derived": "cati_first", "logged": "cati_first",
                                      "stored": "ivr_first"}]


def test_the_default_seed_is_the_draws(db):
    field = build_field(db, n_cases=10, released=False)
    with db.transaction() as s:
        plan = release_next(s, field.draw_id, now=NOW, experiment=Experiment(0.5))
        assert plan.released == 10
    with db.session() as s:
        for pid, arm in s.execute(select(SampleCase.pseudo_id, SampleCase.mode_arm)):
            assert arm == experiment.arm_of("1", pid, 0.5)  # build_field's draw seed is "1"


def test_without_an_experiment_nothing_changes(db):
    field = build_field(db, n_cases=10, released=False)
    with db.transaction() as s:
        release_replicate(s, field.draw_id, 1, now=NOW, experiment=load_config().experiment)
    with db.session() as s:
        assert s.scalars(select(SampleCase.mode_arm)).all() == [None] * 10
        assert not s.scalars(select(AuditLog).where(AuditLog.action == "experiment.assign")).all()


def test_a_cati_first_case_waits_for_an_interviewer_before_the_dialer(db):
    field = build_field(db, n_cases=6)
    ids = field.case_ids
    with db.transaction() as s:
        for cid in ids[:3]:
            s.get(SampleCase, cid).mode_arm = "cati_first"
        s.get(SampleCase, ids[3]).mode_arm = "ivr_first"
    with db.transaction() as s:
        held = cases.hold_cases_for_ivr(s, now=NOW, limit=10, max_attempts=6)
        assert sorted(c.id for c in held) == sorted(ids[3:])
        for c in held:
            cases.release_hold(s, c)
    # an interviewer's attempt on case 0: from then on the usual rules apply to it
    with db.transaction() as s:
        case = s.get(SampleCase, ids[0])
        assert cases.try_hold(s, case.id, channel="cati", now=NOW)
        attempt = cases.start_attempt(s, case, channel="cati", now=NOW)
        cases.finish_attempt(s, case, attempt, "3.13", now=NOW, rules=field.cfg.calling,
                             max_attempts=6, next_attempt_at=NOW)
    with db.transaction() as s:
        held = cases.hold_cases_for_ivr(s, now=NOW, limit=10, max_attempts=6)
        assert sorted(c.id for c in held) == sorted([ids[0], *ids[3:]])
        assert s.scalars(select(CallAttempt.channel).where(CallAttempt.case_id == ids[0])).all() \
            == ["cati"]


def test_sample_verify_re_derives_the_arms(db, tmp_path):
    """A real draw released with the experiment on: ``sample verify`` re-derives every arm
    from the audit (seed = the draw's), and reports a changed one."""
    from minping import draws
    from minping.frames import import_frame
    from tests.minping.test_frames import write_frame

    cfg = _with(0.2)
    frame = tmp_path / "frame.csv"
    write_frame(frame, cfg, 2000, seed=3)
    with db.transaction() as s:
        import_frame(s, cfg, frame)
        drawn = draws.draw_sample(s, cfg, size=200, seed=99, replicates=2, reserve=2, now=NOW)
        draws.release_all(s, cfg, now=NOW)
    with db.session() as s:
        result = draws.verify(s, cfg)
        arms = s.execute(select(SampleCase.pseudo_id, SampleCase.mode_arm)
                         .where(SampleCase.release_state == "released")).all()
    assert result["matches"], result["problems"]
    assert result["experiment"]["cases"] == len(arms) == 200
    assert all(a == experiment.arm_of(str(drawn.seed), p, 0.2) for p, a in arms)
    assert 20 <= result["experiment"]["cati_first"] <= 60
    with db.transaction() as s:
        case = s.scalars(select(SampleCase).where(SampleCase.mode_arm == "ivr_first")).first()
        case.mode_arm = "cati_first"
    with db.session() as s:
        result = draws.verify(s, cfg)
    assert not result["matches"]
    assert [p["status"] for p in result["problems"]] == ["experiment"]
