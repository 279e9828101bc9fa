"""The audit record of a draw, its re-derivation and the case-by-case check (see :mod:`sampling.draw`).

Split from :mod:`sampling.draw`, which re-exports everything here.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from sampling.draw import (
    ALGORITHM,
    Draw,
    DrawError,
    DrawnCase,
    _sorted_labels,
    draw,
    software_version,
)

__all__ = ["CaseCheck", "DrawAudit", "DrawVerification", "make_audit", "rederive", "verify_draw"]


def _label_json(label: Hashable) -> object:
    if isinstance(label, tuple):
        return [_label_json(x) for x in label]
    if isinstance(label, np.generic):
        return label.item()
    return label


def _label_from_json(v: object) -> Hashable:
    if isinstance(v, list):
        return tuple(_label_from_json(x) for x in v)
    return v  # type: ignore[return-value]


@dataclass(frozen=True)
class DrawAudit:
    """What is needed to re-derive and check a draw.

    Attributes
    ----------
    frame_hash : str
        :func:`frame_hash` of the frame the draw was made from.
    frame_size : int
        Number of contacts in that frame.
    seed : int
        Seed of the generator (``numpy.random.Generator(bit_generator(seed))``).
    bit_generator : str
        Name of the numpy bit generator (``"PCG64"`` for ``default_rng``).
    method : str
        Allocation method (see :mod:`sampling.allocation`).
    allocation : tuple of (stratum, int)
        Sample size per stratum.
    reserve : tuple of (stratum, int)
        Reserve size per stratum.
    replicates : int
    software_version : str
    algorithm : str
        :data:`ALGORITHM`.
    timestamp : datetime
        When the draw was made (given by the caller).
    extra : tuple of (str, str)
        Free-form additions, e.g. the unit-assignment digest and seed.
    """

    frame_hash: str
    frame_size: int
    seed: int
    bit_generator: str
    method: str
    allocation: tuple[tuple[Hashable, int], ...]
    reserve: tuple[tuple[Hashable, int], ...]
    replicates: int
    software_version: str
    algorithm: str
    timestamp: datetime
    extra: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuple stratum labels become lists)."""
        return {
            "frame_hash": self.frame_hash,
            "frame_size": self.frame_size,
            "seed": self.seed,
            "bit_generator": self.bit_generator,
            "method": self.method,
            "allocation": [[_label_json(k), v] for k, v in self.allocation],
            "reserve": [[_label_json(k), v] for k, v in self.reserve],
            "replicates": self.replicates,
            "software_version": self.software_version,
            "algorithm": self.algorithm,
            "timestamp": self.timestamp.isoformat(),
            "extra": {k: v for k, v in self.extra},
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> DrawAudit:
        """Inverse of :meth:`to_dict`."""
        return cls(
            frame_hash=d["frame_hash"],
            frame_size=int(d["frame_size"]),
            seed=int(d["seed"]),
            bit_generator=d["bit_generator"],
            method=d["method"],
            allocation=tuple((_label_from_json(k), int(v)) for k, v in d["allocation"]),
            reserve=tuple((_label_from_json(k), int(v)) for k, v in d["reserve"]),
            replicates=int(d["replicates"]),
            software_version=d["software_version"],
            algorithm=d["algorithm"],
            timestamp=datetime.fromisoformat(d["timestamp"]),
            extra=tuple(sorted(d.get("extra", {}).items())),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)


def make_audit(
    result: Draw,
    *,
    frame_digest: str,
    seed: int,
    method: str,
    timestamp: datetime,
    bit_generator: str = "PCG64",
    extra: Mapping[str, str] | None = None,
) -> DrawAudit:
    """Build the audit record of a draw made with ``Generator(bit_generator(seed))``."""
    strata = _sorted_labels(result.counts)
    return DrawAudit(
        frame_hash=frame_digest,
        frame_size=int(sum(result.population.values())),
        seed=int(seed),
        bit_generator=bit_generator,
        method=method,
        allocation=tuple((s, int(result.counts[s])) for s in strata),
        reserve=tuple((s, int(result.reserve_counts[s])) for s in strata),
        replicates=result.replicates,
        software_version=software_version(),
        algorithm=ALGORITHM,
        timestamp=timestamp,
        extra=tuple(sorted((extra or {}).items())),
    )


def rederive(audit: DrawAudit, strata: Sequence[Hashable] | np.ndarray) -> Draw:
    """Draw again from the canonical frame's strata and the audit record."""
    if audit.algorithm != ALGORITHM:
        raise DrawError(
            f"the draw was made with algorithm {audit.algorithm!r}; this version has {ALGORITHM!r}"
        )
    try:
        bitgen = getattr(np.random, audit.bit_generator)
    except AttributeError:
        raise DrawError(f"unknown bit generator {audit.bit_generator!r}") from None
    rng = np.random.Generator(bitgen(audit.seed))
    return draw(
        strata,
        dict(audit.allocation),
        rng=rng,
        replicates=audit.replicates,
        reserve=dict(audit.reserve),
    )


@dataclass(frozen=True)
class CaseCheck:
    """The verification of one case.

    ``status`` is ``"match"``, ``"mismatch"`` (the contact was drawn again,
    but some of stratum/order/replicate/reserve differ — listed in
    ``fields``), ``"not_rederived"`` (stored but not in the re-derivation) or
    ``"missing"`` (in the re-derivation but not stored).
    """

    index: int
    status: str
    fields: tuple[str, ...] = ()
    stored: DrawnCase | None = None
    expected: DrawnCase | None = None


@dataclass(frozen=True)
class DrawVerification:
    """Result of :func:`verify_draw`.

    Attributes
    ----------
    matches : bool
        True when the frame hash matches and every case matches.
    frame_hash_matches : bool
    cases : tuple of CaseCheck
        One per stored or re-derived case, in canonical-frame order.
    error : str or None
        Why the draw could not be re-derived at all (e.g. a stratum of the
        audit record has too few contacts in the current frame); every stored
        case is then ``"not_rederived"``.
    """

    matches: bool
    frame_hash_matches: bool
    cases: tuple[CaseCheck, ...]
    error: str | None = None

    @property
    def problems(self) -> tuple[CaseCheck, ...]:
        """The cases that do not match."""
        return tuple(c for c in self.cases if c.status != "match")


_COMPARED = ("stratum", "order", "replicate", "reserve")


def verify_draw(
    stored: Iterable[DrawnCase] | Draw,
    strata: Sequence[Hashable] | np.ndarray,
    *,
    audit: DrawAudit,
    frame_digest: str,
    again: Draw | None = None,
) -> DrawVerification:
    """Re-derive a draw from the frame and the audit record, and compare case by case.

    Parameters
    ----------
    stored : Draw or iterable of DrawnCase
        The cases as stored (``index`` = canonical-frame position).
    strata : array_like
        Stratum of each contact of the *current* canonical frame.
    audit : DrawAudit
        The stored audit record.
    frame_digest : str
        :func:`frame_hash` of the current frame.
    again : Draw, optional
        ``rederive(audit, strata)`` when the caller has it already.

    Returns
    -------
    DrawVerification
    """
    hash_ok = frame_digest == audit.frame_hash
    cases = list(stored.cases() if isinstance(stored, Draw) else stored)
    try:
        if again is None:
            again = rederive(audit, strata)
    except DrawError as exc:
        checks = tuple(
            CaseCheck(c.index, "not_rederived", (), c, None)
            for c in sorted(cases, key=lambda c: c.index)
        )
        return DrawVerification(False, hash_ok, checks, error=str(exc))
    expected = {c.index: c for c in again.cases()}
    got: dict[int, DrawnCase] = {}
    checks: list[CaseCheck] = []
    for c in cases:
        if c.index in got:
            checks.append(CaseCheck(c.index, "mismatch", ("index",), c, expected.get(c.index)))
            continue
        got[c.index] = c
        e = expected.get(c.index)
        if e is None:
            checks.append(CaseCheck(c.index, "not_rederived", (), c, None))
            continue
        diff = tuple(f for f in _COMPARED if getattr(c, f) != getattr(e, f))
        checks.append(CaseCheck(c.index, "mismatch" if diff else "match", diff, c, e))
    for i, e in expected.items():
        if i not in got:
            checks.append(CaseCheck(i, "missing", (), None, e))
    checks.sort(key=lambda ch: ch.index)
    ok = hash_ok and all(ch.status == "match" for ch in checks)
    return DrawVerification(matches=ok, frame_hash_matches=hash_ok, cases=tuple(checks))
