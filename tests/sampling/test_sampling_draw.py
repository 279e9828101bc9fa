"""Stratified draw: SRSWOR properties, determinism, replicates, reserve, audit, verification."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampling.draw import (
    ALGORITHM,
    DrawAudit,
    DrawError,
    DrawnCase,
    canonical_order,
    draw,
    frame_hash,
    make_audit,
    rederive,
    software_version,
    verify_draw,
)

WHEN = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def _frame(n: int, seed: int = 0):
    """A frame of n contacts with unique phones, groups and towns, in a shuffled order."""
    rng = np.random.default_rng(seed)
    nums = rng.choice(10**8, size=n, replace=False)
    phones = [f"+86138{x:08d}" for x in nums]
    groups = [("residents", "deputies", "business")[i % 3] for i in range(n)]
    towns = [("t1", "t2")[(i // 3) % 2] for i in range(n)]
    return phones, groups, towns


def _canonical_strata(phones, groups, towns=None):
    order = canonical_order(phones)
    if towns is None:
        return [groups[i] for i in order], order
    return [(groups[i], towns[i]) for i in order], order


def test_counts_probabilities_weights():
    strata = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    d = draw(strata, {"a": 10, "b": 3, "c": 0}, rng=np.random.default_rng(1))
    assert len(d) == 13
    assert Counter(d.stratum) == {"a": 10, "b": 3}
    assert all(strata[i] == s for i, s in zip(d.index, d.stratum, strict=True))
    assert np.allclose(d.prob[np.array(d.stratum) == "a"], 10 / 50)
    assert np.allclose(d.weight[np.array(d.stratum) == "b"], 30 / 3)
    assert d.population == {"a": 50, "b": 30, "c": 20}
    # weights sum to the stratum sizes
    assert d.weight.sum() == pytest.approx(80)
    with pytest.raises(ValueError):
        d.index[0] = 5  # read-only


def test_srs_inclusion_frequencies():
    # Every contact of a stratum has inclusion probability n_h/N_h: over 4000 draws of
    # 3 out of 10, each contact is drawn about 1200 times (binomial sd about 29).
    strata = ["x"] * 10
    hits = np.zeros(10)
    rng = np.random.default_rng(7)
    for _ in range(4000):
        hits[draw(strata, {"x": 3}, rng=rng).index] += 1
    assert np.all(np.abs(hits - 1200) < 5 * 29)


def test_same_frame_and_seed_same_sample_whatever_the_storage_order():
    phones, groups, towns = _frame(500)
    s1, o1 = _canonical_strata(phones, groups, towns)
    counts = {("residents", "t1"): 7, ("deputies", "t2"): 5, ("business", "t1"): 4}
    d1 = draw(s1, counts, rng=np.random.default_rng(2026), replicates=3, reserve=2)
    perm = np.random.default_rng(99).permutation(500)
    p2 = [phones[i] for i in perm]
    g2 = [groups[i] for i in perm]
    t2 = [towns[i] for i in perm]
    s2, o2 = _canonical_strata(p2, g2, t2)
    d2 = draw(s2, counts, rng=np.random.default_rng(2026), replicates=3, reserve=2)
    assert [phones[o1[i]] for i in d1.index] == [p2[o2[i]] for i in d2.index]
    assert list(d1.cases()) == list(d2.cases())
    assert frame_hash(phones, groups, towns) == frame_hash(p2, g2, t2)
    d3 = draw(s1, counts, rng=np.random.default_rng(2027), replicates=3, reserve=2)
    assert list(d3.index) != list(d1.index)


def test_replicates_and_reserve():
    strata = ["a"] * 100 + ["b"] * 40 + ["c"] * 7
    d = draw(
        strata, {"a": 21, "b": 10, "c": 5}, rng=np.random.default_rng(3), replicates=4, reserve=3
    )
    main = ~d.reserve
    # replicate totals differ by at most one (36 cases over 4 replicates: 9 each)
    assert Counter(d.replicate[main].tolist()) == {1: 9, 2: 9, 3: 9, 4: 9}
    for s in "abc":
        in_s = main & (np.array(d.stratum) == s)
        sizes = np.bincount(d.replicate[in_s], minlength=5)[1:]
        assert sizes.max() - sizes.min() <= 1
    assert set(d.replicate[d.reserve].tolist()) == {5}
    # c has 7 contacts, 5 in the sample: the reserve is capped at 2
    assert d.reserve_counts == {"a": 3, "b": 3, "c": 2}
    # release order: sample cases first, then the reserve, within each stratum
    for s in "abc":
        rows = [c for c in d.cases() if c.stratum == s]
        assert [c.order for c in rows] == list(range(1, len(rows) + 1))
        assert [c.reserve for c in rows] == [False] * d.counts[s] + [True] * d.reserve_counts[s]
    with pytest.raises(DrawError, match="stratum 'c': 5 sample \\+ 3 reserve cases but it holds 7"):
        draw(strata, {"c": 5}, rng=np.random.default_rng(3), reserve={"c": 3})


def test_sample_is_prefix_of_sample_plus_reserve():
    # the reserve never changes which contacts form the sample
    strata = ["a"] * 60
    d0 = draw(strata, {"a": 10}, rng=np.random.default_rng(5))
    d1 = draw(strata, {"a": 10}, rng=np.random.default_rng(5), reserve=5)
    assert list(d1.index[~d1.reserve]) == list(d0.index)


@pytest.mark.parametrize(
    ("counts", "kwargs", "message"),
    [
        ({"a": 6}, {}, "stratum 'a': 6 cases asked but it holds 5"),
        ({"z": 1}, {}, "stratum 'z' has 1 cases allocated but no contacts"),
        ({"a": -1}, {}, "must be a whole number >= 0, got -1"),
        ({"a": 1}, {"replicates": 0}, "replicates must be a whole number >= 1"),
        ({"a": 1}, {"reserve": -2}, "reserve must be a whole number >= 0"),
    ],
)
def test_draw_errors(counts, kwargs, message):
    with pytest.raises(DrawError, match=message):
        draw(["a"] * 5, counts, rng=np.random.default_rng(0), **kwargs)


def test_canonical_order_rejects_duplicate_phones():
    with pytest.raises(DrawError, match="\\+8613800000001 twice"):
        canonical_order(["+8613800000002", "+8613800000001", "+8613800000001"])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from("abcd"), min_size=1, max_size=300),
    st.integers(0, 2**32 - 1),
    st.integers(1, 5),
    st.integers(0, 4),
    st.data(),
)
def test_property_no_contact_twice_and_reproducible(strata, seed, R, reserve, data):
    sizes = Counter(strata)
    counts = {s: data.draw(st.integers(0, sizes[s])) for s in sizes}
    d = draw(strata, counts, rng=np.random.default_rng(seed), replicates=R, reserve=reserve)
    assert len(set(d.index.tolist())) == len(d)
    assert Counter(s for s, r in zip(d.stratum, d.reserve, strict=True) if not r) == +Counter(
        counts
    )
    for i, s in zip(d.index, d.stratum, strict=True):
        assert strata[i] == s
    again = draw(strata, counts, rng=np.random.default_rng(seed), replicates=R, reserve=reserve)
    assert list(again.cases()) == list(d.cases())
    main = d.replicate[~d.reserve]
    if len(main):
        sizes_r = np.bincount(main, minlength=R + 1)[1:]
        assert sizes_r.max() - sizes_r.min() <= 1


# ---------------------------------------------------------------------------
# audit and verification


def _audited():
    phones, groups, towns = _frame(300, seed=4)
    strata, _ = _canonical_strata(phones, groups, towns)
    digest = frame_hash(phones, groups, towns)
    counts = {("residents", "t1"): 6, ("deputies", "t2"): 4}
    d = draw(strata, counts, rng=np.random.default_rng(8421), replicates=2, reserve=1)
    audit = make_audit(d, frame_digest=digest, seed=8421, method="proportional", timestamp=WHEN)
    return strata, digest, d, audit


def test_audit_record_round_trips_through_json():
    _, digest, d, audit = _audited()
    assert audit.frame_hash == digest and len(digest) == 64
    assert audit.seed == 8421 and audit.bit_generator == "PCG64"
    assert audit.algorithm == ALGORITHM
    assert audit.software_version == software_version() != ""
    assert audit.allocation == ((("deputies", "t2"), 4), (("residents", "t1"), 6))
    assert audit.frame_size == 300
    import json

    back = DrawAudit.from_dict(json.loads(audit.to_json()))
    assert back == audit


def test_verify_draw_matches_then_detects_tampering():
    strata, digest, d, audit = _audited()
    ok = verify_draw(d, strata, audit=audit, frame_digest=digest)
    assert ok.matches and ok.frame_hash_matches and not ok.problems
    assert len(ok.cases) == len(d)
    assert list(rederive(audit, strata).cases()) == list(d.cases())

    cases = list(d.cases())
    # swap one drawn contact for one that was not drawn, and move another to replicate 2
    not_drawn = next(i for i in range(len(strata)) if i not in set(d.index.tolist()))
    tampered = cases.copy()
    tampered[0] = DrawnCase(
        not_drawn,
        cases[0].stratum,
        cases[0].order,
        cases[0].replicate,
        cases[0].reserve,
        cases[0].prob,
        cases[0].weight,
    )
    c1 = cases[1]
    tampered[1] = DrawnCase(
        c1.index, c1.stratum, c1.order, 3 - c1.replicate, c1.reserve, c1.prob, c1.weight
    )
    v = verify_draw(tampered, strata, audit=audit, frame_digest=digest)
    assert not v.matches
    by_status = Counter(ch.status for ch in v.problems)
    assert by_status == {"not_rederived": 1, "missing": 1, "mismatch": 1}
    mismatch = next(ch for ch in v.problems if ch.status == "mismatch")
    assert mismatch.index == c1.index and mismatch.fields == ("replicate",)
    missing = next(ch for ch in v.problems if ch.status == "missing")
    assert missing.index == cases[0].index


def test_verify_draw_detects_a_changed_frame():
    strata, digest, d, audit = _audited()
    v = verify_draw(d, strata, audit=audit, frame_digest="0" * 64)
    assert not v.matches and not v.frame_hash_matches
    assert all(ch.status == "match" for ch in v.cases)


def test_frame_hash_depends_on_content():
    phones, groups, towns = _frame(20)
    h = frame_hash(phones, groups, towns)
    g2 = list(groups)
    g2[3] = "other"
    assert frame_hash(phones, g2, towns) != h
    assert frame_hash(phones, groups) != h
    # sha256 of the canonical text, written out by hand for a two-contact frame
    import hashlib

    text = "+8613800000001\tb\t\n+8613800000002\ta\tt\n"
    assert frame_hash(["+8613800000002", "+8613800000001"], ["a", "b"], ["t", None]) == (
        hashlib.sha256(text.encode()).hexdigest()
    )


def test_verify_draw_reports_a_frame_that_cannot_give_the_draw():
    strata, digest, d, audit = _audited()
    shrunk = [s for s in strata if s != ("deputies", "t2")]
    v = verify_draw(d, shrunk, audit=audit, frame_digest="f" * 64)
    assert not v.matches
    assert v.error == "stratum ('deputies', 't2') has 4 cases allocated but no contacts"
    assert {ch.status for ch in v.cases} == {"not_rederived"} and len(v.cases) == len(d)


class _FixedKeys:
    """A generator whose ``random(n)`` gives set keys (to force ties)."""

    def __init__(self, keys):
        self.keys = np.asarray(keys, dtype=float)

    def random(self, n):
        assert n == len(self.keys)
        return self.keys


def _by_full_sort(codes, keys, take):
    """The algorithm's definition: contacts sorted by (stratum, key, position); the first
    ``take[h]`` of each stratum, in that order."""
    perm = np.lexsort((np.arange(len(codes)), keys, codes))
    out = []
    for h, m in enumerate(take):
        out.extend(perm[np.asarray(codes)[perm] == h][:m].tolist())
    return out


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_selection_equals_the_full_sort_ties_included(data):
    """The draw selects without sorting the whole frame; the cases are those of the full
    sort by (stratum, key, position), also when keys tie (ties go by frame position)."""
    N = data.draw(st.integers(1, 60))
    H = data.draw(st.integers(1, 4))
    codes = np.array(data.draw(st.lists(st.integers(0, H - 1), min_size=N, max_size=N)))
    keys = np.array(data.draw(st.lists(st.sampled_from([0.1, 0.25, 0.5, 0.75]), min_size=N,
                                       max_size=N)))
    sizes = np.bincount(codes, minlength=H)
    counts = {f"s{h}": data.draw(st.integers(0, int(sizes[h]))) for h in range(H) if sizes[h]}
    labels = np.array([f"s{h}" for h in range(H)])[codes]
    result = draw(labels, counts, rng=_FixedKeys(keys))
    take = [counts.get(f"s{h}", 0) for h in range(H)]
    assert result.index.tolist() == _by_full_sort(codes, keys, take)


def test_e164_keys_order_mixed_lengths_in_chunks():
    from sampling.canonical import canonical_frame_hash, e164_keys

    rng = np.random.default_rng(12)
    phones = sorted({"+" + "".join(rng.choice(list("0123456789"), int(k)))
                     for k in rng.integers(1, 16, 400)} | {"+86", "+860", "+8600"})
    shuffled = [phones[i] for i in rng.permutation(len(phones))]
    for arr in (np.array(shuffled), np.array([p.encode() for p in shuffled])):
        keys = e164_keys(arr, chunk=7)
        assert [shuffled[i] for i in np.argsort(keys, kind="stable")] == phones
        assert (keys == e164_keys(arr)).all()
    assert [shuffled[i] for i in canonical_order(shuffled)] == phones
    for bad in (["+12", "+1a"], ["+12", "+1\u0130"], ["+12", "12"], ["+1\x002"]):
        assert e164_keys(np.array(bad)) is None
    # the streamed hash of the canonical frame is frame_hash, labels in any script
    groups = [("居民代表", "deputies")[i % 2] for i in range(len(phones))]
    towns = [(None, "城关镇", "t2")[i % 3] for i in range(len(phones))]
    from sampling.draw import CodedColumn

    gl, tl = ("deputies", "居民代表"), ("t2", "城关镇")
    g = CodedColumn(np.array([gl.index(x) for x in groups]), gl)
    t = CodedColumn(np.array([-1 if x is None else tl.index(x) for x in towns]), tl)
    digest = canonical_frame_hash(np.array([p.encode() for p in phones]), g, t, chunk=5)
    assert digest == frame_hash(phones, groups, towns)


def test_canonical_order_packed_and_wide_keys_agree_with_a_stable_argsort():
    from sampling.canonical import _sort_keys

    rng = np.random.default_rng(4)
    for high in (50, 2**62):
        keys = rng.integers(0, high, 3000)
        order, sorted_keys = _sort_keys(keys)
        assert (order == np.argsort(keys, kind="stable")).all()
        assert (sorted_keys == np.sort(keys)).all()
