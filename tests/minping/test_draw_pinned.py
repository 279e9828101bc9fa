"""The drawn sample and its audit hash for a fixed frame and seed never change.

A draw must be re-derivable by anyone from the frame and the seed, also with a
later version of minping: the cases drawn, their order, replicate and reserve
flag, the frame hash and the unit-assignment digest are pinned here for a small
frame written by the test itself (no other generator involved).  The values
were recorded with the version that introduced this test; a change that moves
any of them breaks the re-derivation of every earlier draw.
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import select

from minping import draws
from minping.config import load_config
from minping.frames import import_frame
from minping.models import FrameContact, SampleCase, SampleDraw, Stratum
from sampling.draw import canonical_order, draw, frame_hash

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
SEED = 20261126

#: sha256 of the canonical frame (``sampling.draw.frame_hash``)
FRAME_HASH = "6c728d423e2ed0a6a7205c485f765b3bb281854347bce5ad55501a76b8e2458b"
#: sha256 of the JSON list of (phone, stratum, draw order, replicate, reserve), sorted
CASES_DIGEST = {
    "group": "8a3e8382f01d9eced94f9a18cd2fbc10e4b8aaee1d5c89f82cbcf6bbccfe57ae",
    "group_town": "318b00a8d5d7f22ffd69d31e2f711d818cc23ea4b05c42634459b86dc03601ca",
}
#: ``SampleDraw.assignment["digest"]`` (units per sample case).  The assignment balances
#: units within each stratum first (every unit raters in every eligible stratum when
#: n_h·k ≥ m_h), so with group × town strata it differs from the group-only one; with
#: group strata it is the assignment of earlier versions.
ASSIGNMENT_DIGEST = {
    "group": "51995cfb91ad1dc0485982ada502cd8df16d37024f2e961f00a5769775bd0b8a",
    "group_town": "3aaa620fc025e233c44f7c1783dfd9ef8f159ca98d3917a1b6df53765dcf20ab",
}
#: first five drawn phones of the pure draw (stratum order, release order)
PURE_FIRST = ("+8613978734745,+8613931488880,+8613914231906,+8613931968320,"
              "+8613911687022")


def pinned_rows(cfg, n: int = 3000) -> list[list[str]]:
    """``n`` contacts: distinct mobile numbers, groups and towns by a fixed rule."""
    rng = np.random.default_rng(424242)
    numbers = rng.choice(10**8, size=n, replace=False)
    groups = [g.name for g in cfg.groups]
    towns = [t.name for t in cfg.towns]
    gi = rng.integers(0, len(groups), size=n)
    ti = rng.integers(0, len(towns), size=n)
    return [[f"139{int(x):08d}", groups[int(g)], towns[int(t)], f"联系人{i}"]
            for i, (x, g, t) in enumerate(zip(numbers, gi, ti, strict=True))]


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture
def frame_file(cfg, tmp_path):
    path = tmp_path / "pinned.csv"
    with open(path, "w", encoding="gb18030", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["电话", "类别", "乡镇", "姓名"])
        w.writerows(pinned_rows(cfg))
    return path


def _digest(items) -> str:
    return hashlib.sha256(json.dumps(sorted(items), ensure_ascii=False).encode()).hexdigest()


@pytest.mark.parametrize("strata", ["group", "group_town"])
def test_draw_and_hash_are_pinned(db, cfg, frame_file, strata):
    with db.transaction() as s:
        import_frame(s, cfg, frame_file)
    with db.transaction() as s:
        summary = draws.draw_sample(s, cfg, size=300, seed=SEED, strata=strata, replicates=3,
                                    reserve=2, now=NOW)
    with db.session() as s:
        rows = s.execute(
            select(FrameContact.phone, Stratum.code, SampleCase.draw_order,
                   SampleCase.replicate, SampleCase.is_reserve)
            .join(FrameContact, FrameContact.id == SampleCase.contact_id)
            .join(Stratum, Stratum.id == SampleCase.stratum_id)
            .where(SampleCase.draw_id == summary.draw_id)
        ).all()
        sd = s.get(SampleDraw, summary.draw_id)
        assignment = sd.assignment["digest"]
        assert sd.frame_hash == summary.frame_hash == sd.allocation["audit"]["frame_hash"]
    cases = [[p, c, int(o), int(r), bool(x)] for p, c, o, r, x in rows]
    assert summary.frame_hash == FRAME_HASH
    assert _digest(cases) == CASES_DIGEST[strata]
    assert assignment == ASSIGNMENT_DIGEST[strata]
    with db.session() as s:
        assert draws.verify(s, cfg)["matches"]


def test_pure_draw_is_pinned(cfg):
    rows = pinned_rows(cfg)
    label = {g.name: g.id for g in cfg.groups}
    town = {t.name: t.id for t in cfg.towns}
    phones = ["+86" + r[0] for r in rows]
    groups = [label[r[1]] for r in rows]
    towns = [town[r[2]] for r in rows]
    assert frame_hash(phones, groups, towns) == FRAME_HASH
    order = canonical_order(phones)
    strata = np.asarray(groups, dtype=str)[order]
    counts = {g: 20 for g in sorted(set(groups))}
    result = draw(strata, counts, rng=np.random.default_rng(SEED), replicates=2, reserve=1)
    first = [phones[order[i]] for i in result.index[:5].tolist()]
    assert ",".join(first) == PURE_FIRST
