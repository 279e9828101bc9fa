"""Stratified simple random sampling without replacement, replicates, reserve, audit.

The draw works on the *canonical frame*: the frame's contacts sorted by their
E.164 phone number (code-point order of the strings, which for E.164 is the
numeric order within a country code).  Position ``i`` of the canonical frame
is the ``i``-th contact in that order; :func:`canonical_order` computes it.
Because the order depends only on the contacts, not on the order in which they
were imported or stored, the same frame and seed always give the same sample.

Algorithm (random sort, [1]_ §4.4; [2]_): one call ``rng.random(N)`` gives
every canonical-frame contact a key ``U(0, 1)``, in canonical order.  In each
stratum the contacts are sorted by (key, position); the first ``n_h`` form the
sample, the next ``r_h`` the reserve.  Sorting i.i.d. uniform keys is a
uniformly random permutation, so the first ``n_h`` are a simple random sample
without replacement and every contact of stratum ``h`` has inclusion
probability ``n_h / N_h``.  The rank in that sort is the release order within
the stratum.

Replicates: the sample cases of all strata, taken stratum by stratum (strata in
sorted label order) and in release order within each, are dealt round-robin to
replicates ``1..R``.  Each replicate is then itself a stratified random
subsample; within a stratum the replicate sizes differ by at most one, and so
do the replicates' totals.  Reserve cases form replicate ``R + 1`` with
``reserve=True``; a reserve case replaces an ineligible number of *its own
stratum*, in release order, and carries the stratum's sample probability and
weight (``n_h / N_h`` and ``N_h / n_h``), which is what it has once it stands in
for an ineligible case.

References
----------
.. [1] Tillé, Y. (2006). *Sampling Algorithms*. Springer.
.. [2] Sunter, A. B. (1977). List sequential sampling with equal or unequal
   probabilities without replacement. *Applied Statistics* 26(3), 261–268.
.. [3] Kish, L. (1965). *Survey Sampling*, §4.4 (replicated samples). Wiley.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sampling.canonical import (
    CodedColumn,
    DrawError,
    canonical_frame_hash,
    canonical_order,
    e164_keys,
    frame_hash,
)

__all__ = [
    "ALGORITHM",
    "Draw",
    "DrawError",
    "DrawnCase",
    "CodedColumn",
    "canonical_frame_hash",
    "canonical_order",
    "draw",
    "e164_keys",
    "frame_hash",
    "software_version",
]

#: Identifies the selection algorithm in the audit record.
ALGORITHM = "random-sort/v1"


def software_version() -> str:
    """Return minping's installed version (as ``minping.__version__`` gives it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("minping")
    except PackageNotFoundError:  # a source tree that was not installed
        return "0.0.0+source"


def _sorted_labels(labels: Iterable[Hashable]) -> list[Hashable]:
    labels = list(labels)
    try:
        return sorted(labels)
    except TypeError:
        return sorted(labels, key=repr)


@dataclass(frozen=True)
class DrawnCase:
    """One drawn contact.

    Attributes
    ----------
    index : int
        Position in the canonical frame.
    stratum : hashable
        The stratum label.
    order : int
        Release order within the stratum (1-based; reserve cases follow the
        sample cases).
    replicate : int
        ``1..R`` for sample cases, ``R + 1`` for reserve cases.
    reserve : bool
        Whether the case is in the reserve replicate.
    prob : float
        Inclusion probability ``n_h / N_h``.
    weight : float
        Design weight ``N_h / n_h``.
    """

    index: int
    stratum: Hashable
    order: int
    replicate: int
    reserve: bool
    prob: float
    weight: float


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Draw:
    """A stratified sample, column by column (one entry per drawn case).

    Cases are ordered by stratum (sorted labels), then release order.  The
    arrays are read-only.

    Attributes
    ----------
    index : numpy.ndarray of int64
        Canonical-frame positions.
    stratum : tuple
        Stratum label per case.
    order, replicate : numpy.ndarray of int64
    reserve : numpy.ndarray of bool
    prob, weight : numpy.ndarray of float64
    counts, reserve_counts, population : Mapping
        Per stratum: sample size ``n_h``, reserve size ``r_h`` and frame size
        ``N_h``.
    replicates : int
        ``R``, the number of sample replicates.
    """

    index: np.ndarray
    stratum: tuple[Hashable, ...]
    order: np.ndarray
    replicate: np.ndarray
    reserve: np.ndarray
    prob: np.ndarray
    weight: np.ndarray
    counts: Mapping[Hashable, int]
    reserve_counts: Mapping[Hashable, int]
    population: Mapping[Hashable, int]
    replicates: int

    def __len__(self) -> int:
        return len(self.index)

    def cases(self) -> Iterator[DrawnCase]:
        """Yield the drawn cases one by one."""
        for i in range(len(self.index)):
            yield DrawnCase(
                index=int(self.index[i]),
                stratum=self.stratum[i],
                order=int(self.order[i]),
                replicate=int(self.replicate[i]),
                reserve=bool(self.reserve[i]),
                prob=float(self.prob[i]),
                weight=float(self.weight[i]),
            )


def _labels_array(strata: Sequence[Hashable] | np.ndarray) -> tuple[np.ndarray, list]:
    """Encode stratum labels as integer codes (labels in sorted order)."""
    if isinstance(strata, CodedColumn):
        codes = np.asarray(strata.codes, dtype=np.int64)
        sizes = np.bincount(codes, minlength=len(strata.labels))
        present = [lab for lab, m in zip(strata.labels, sizes, strict=True) if m]
        labels = _sorted_labels(present)
        if labels != present or len(present) != len(strata.labels):
            pos = {lab: i for i, lab in enumerate(labels)}
            remap = np.array([pos.get(lab, -1) for lab in strata.labels], dtype=np.int64)
            codes = remap[codes]
        return codes, labels
    if isinstance(strata, np.ndarray) and strata.ndim == 2:
        strata = [tuple(row) for row in strata.tolist()]
    if isinstance(strata, np.ndarray) and strata.dtype != object:
        uniq, codes = np.unique(strata, return_inverse=True)
        return codes.astype(np.int64), [u.item() for u in uniq]
    seq = list(strata)
    labels = _sorted_labels(set(seq))
    pos = {lab: i for i, lab in enumerate(labels)}
    return np.fromiter((pos[s] for s in seq), dtype=np.int64, count=len(seq)), labels


def _sample_and_reserve_sizes(labels: list, code_of: Mapping[Hashable, int], sizes: np.ndarray,
                              counts: Mapping[Hashable, int],
                              reserve: int | Mapping[Hashable, int]
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Sample and reserve cases per stratum code (``n_h``, ``r_h``), checked against the sizes."""
    H = len(labels)
    n_h = np.zeros(H, dtype=np.int64)
    r_h = np.zeros(H, dtype=np.int64)
    for lab, c in counts.items():
        if lab not in code_of:
            if c:
                raise DrawError(f"stratum {lab!r} has {c} cases allocated but no contacts")
            continue
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 0:
            raise DrawError(f"stratum {lab!r}: the count must be a whole number >= 0, got {c!r}")
        h = code_of[lab]
        if c > sizes[h]:
            raise DrawError(f"stratum {lab!r}: {c} cases asked but it holds {int(sizes[h])}")
        n_h[h] = int(c)
    if isinstance(reserve, Mapping):
        for lab, c in reserve.items():
            if lab not in code_of:
                raise DrawError(f"reserve: stratum {lab!r} has no contacts")
            h = code_of[lab]
            if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 0:
                raise DrawError(f"reserve for stratum {lab!r} must be >= 0, got {c!r}")
            if n_h[h] + c > sizes[h]:
                raise DrawError(
                    f"stratum {lab!r}: {int(n_h[h])} sample + {c} reserve cases but it holds "
                    f"{int(sizes[h])}"
                )
            r_h[h] = int(c)
    else:
        if isinstance(reserve, bool) or not isinstance(reserve, int | np.integer) or reserve < 0:
            raise DrawError(f"reserve must be a whole number >= 0, got {reserve!r}")
        for lab in counts:
            if lab in code_of:
                h = code_of[lab]
                r_h[h] = min(int(reserve), int(sizes[h] - n_h[h]))
    return n_h, r_h


def _positions_by_stratum(codes: np.ndarray, H: int) -> np.ndarray:
    """Frame positions grouped by stratum code, ascending within each stratum."""
    small = np.int16 if H < 2**15 else np.int64  # a stable sort of int16 is a radix sort
    return np.argsort(codes.astype(small, copy=False), kind="stable")


def _first_by_key(members: np.ndarray, keys: np.ndarray, m: int) -> np.ndarray:
    """The ``m`` members with the smallest keys, by key then position (``members`` ascending).

    The same as the first ``m`` of the members sorted by (key, position), without sorting
    them all: only the members whose key is at most the ``m``-th smallest are sorted
    (ties at that key included, so ties are broken by position exactly as a full sort).
    """
    k = keys[members]
    if m < len(members):
        threshold = np.partition(k, m - 1)[m - 1]
        keep = k <= threshold
        members, k = members[keep], k[keep]
    return members[np.argsort(k, kind="stable")[:m]]


def draw(
    strata: Sequence[Hashable] | np.ndarray,
    counts: Mapping[Hashable, int],
    *,
    rng: np.random.Generator,
    replicates: int = 1,
    reserve: int | Mapping[Hashable, int] = 0,
) -> Draw:
    """Draw a stratified simple random sample without replacement.

    Parameters
    ----------
    strata : array_like or CodedColumn
        Stratum label of each contact of the canonical frame (see the module
        docstring), in canonical order.
    counts : mapping stratum -> int
        Sample size per stratum (e.g. ``Allocation.as_dict()``).  Strata of
        the frame not in ``counts`` get no cases.
    rng : numpy.random.Generator
        Source of randomness, e.g. ``numpy.random.default_rng(seed)``; the
        audit record stores the seed.
    replicates : int, default 1
        Number ``R`` of replicates the sample is split into for release.
    reserve : int or mapping stratum -> int, default 0
        Reserve cases *per stratum*, drawn after the sample cases to replace
        ineligible numbers of the same stratum.  An int applies to every
        stratum in ``counts`` and is capped at what the stratum has left
        (``N_h - n_h``); a mapping must fit.

    Returns
    -------
    Draw

    Raises
    ------
    DrawError
        A count above its stratum's size or for a stratum absent from the
        frame, a negative count, ``replicates < 1``.
    """
    if not isinstance(replicates, int | np.integer) or replicates < 1:
        raise DrawError(f"replicates must be a whole number >= 1, got {replicates!r}")
    codes, labels = _labels_array(strata)
    code_of = {lab: i for i, lab in enumerate(labels)}
    sizes = np.bincount(codes, minlength=len(labels))
    n_h, r_h = _sample_and_reserve_sizes(labels, code_of, sizes, counts, reserve)
    H = len(labels)

    keys = rng.random(len(codes))
    members = _positions_by_stratum(codes, H)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])

    idx_parts, code_parts, order_parts, res_parts = [], [], [], []
    for h in range(H):
        m = int(n_h[h] + r_h[h])
        if m == 0:
            continue
        chosen = _first_by_key(members[starts[h] : starts[h] + sizes[h]], keys, m)
        idx_parts.append(chosen)
        code_parts.append(np.full(m, h, dtype=np.int64))
        order_parts.append(np.arange(1, m + 1, dtype=np.int64))
        res_parts.append(np.arange(m) >= n_h[h])

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    index = cat(idx_parts, np.int64)
    code = cat(code_parts, np.int64)
    order = cat(order_parts, np.int64)
    is_res = cat(res_parts, bool)

    replicate = np.full(len(index), replicates + 1, dtype=np.int64)
    main = np.flatnonzero(~is_res)
    replicate[main] = np.arange(len(main)) % replicates + 1

    with np.errstate(divide="ignore", invalid="ignore"):
        p_h = np.where(n_h > 0, n_h / np.maximum(sizes, 1), 0.0)
        w_h = np.where(n_h > 0, sizes / np.maximum(n_h, 1), 0.0)
    prob = p_h[code].astype(float)
    weight = w_h[code].astype(float)
    lab_of_case = tuple(labels[c] for c in code)
    return Draw(
        index=_readonly(index),
        stratum=lab_of_case,
        order=_readonly(order),
        replicate=_readonly(replicate),
        reserve=_readonly(is_res),
        prob=_readonly(prob),
        weight=_readonly(weight),
        counts={labels[h]: int(n_h[h]) for h in range(H) if n_h[h] or r_h[h]},
        reserve_counts={labels[h]: int(r_h[h]) for h in range(H) if n_h[h] or r_h[h]},
        population={labels[h]: int(sizes[h]) for h in range(H)},
        replicates=int(replicates),
    )


#: The audit record and the verification live in :mod:`sampling.audit` (they use the
#: names above); they are looked up there on first use.
_AUDIT = frozenset({"CaseCheck", "DrawAudit", "DrawVerification", "make_audit", "rederive",
                    "verify_draw"})


def __getattr__(name: str):
    if name in _AUDIT:
        from sampling import audit

        return getattr(audit, name)
    raise AttributeError(f"module 'sampling.draw' has no attribute {name!r}")
