"""The draw in the database: allocate, draw, assign units, release, verify, balance.

Thin adapters around :mod:`sampling`: they load the frame from the database,
call the pure core and store the result, each in the caller's transaction.

Draw
    :func:`draw_sample` counts the frame per stratum (SQL ``GROUP BY``),
    allocates (:func:`sampling.allocation.allocate`, or
    :func:`~sampling.allocation.allocate_two_way` for groups × towns), draws
    with ``numpy.random.default_rng(seed)`` over the canonical frame (contacts
    sorted by phone, :func:`sampling.draw.canonical_order`), assigns units and
    stores the audit record (:class:`~minping.models.SampleDraw`), the strata,
    the cases (held) and their units.

Stratum codes
    The group id (``residents``) or ``group/town`` (``residents/chengguan``).

Unit assignment
    ``k = cfg.campaign.units_per_respondent`` units among the tracks the case's
    group rates, by :func:`sampling.assign.assign_units` with
    ``priority="group"``: each group's rating slots are spread evenly over the
    units it may rate, so every group reaches every one of its units at the same
    subsampling rate ``k / m_g``.  The design's mix of groups within a unit is
    then known exactly (:meth:`~sampling.assign.Assignment.expected_shares`) and
    the balance test compares against it; every unit keeps raters from every
    group that may rate it.  ``priority="total"`` would even out the raw totals
    between tracks (departments are rated only by deputies and business
    representatives, a small share of the sample) by starving the groups'
    presence in the other tracks — a group mix that changes from unit to unit
    and that no stratum weight can undo.  Sample cases are assigned with
    ``default_rng([seed, 1])`` in draw order (stratum, release order); reserve
    cases separately with ``default_rng([seed, 2])``, so that the sample's own
    assignment is balanced whatever the reserve.  Both digests
    (:meth:`~sampling.assign.Assignment.digest`) are in the audit record.

Release and reserve
    Replicates ``1..R`` are released one at a time (:func:`release`).  The
    reserve replicate ``R + 1`` is never released wholesale:
    :func:`release_reserve` releases, per stratum, one reserve case (in release
    order) for every case of that stratum whose final disposition is not
    eligible (AAPOR 4.x), less the reserve cases already released there — so
    running it again releases only what new ineligible numbers call for, and an
    ineligible reserve case is itself replaced.

Verification
    :func:`verify` re-derives the draw from the frame (in the database, or an
    external copy of it) and the stored seed, compares case by case, and
    checks the stored units of every case against the assignment digest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from minping.campaign import codes, sync_campaign
from minping.cases import new_pseudo_id
from minping.cells import dict_writer
from minping.errors import MinpingError
from minping.frames import frame_labels, get_frame
from minping.models import (
    Answer,
    AuditLog,
    Campaign,
    CaseUnit,
    FrameContact,
    RespondentGroup,
    SampleCase,
    SampleDraw,
    Stratum,
    Town,
    Unit,
)
from sampling.allocation import allocate, allocate_two_way
from sampling.assign import Assignment, assign_units
from sampling.balance import kish, stratum_balance, unit_balance
from sampling.draw import (
    DrawAudit,
    DrawnCase,
    canonical_order,
    draw,
    frame_hash,
    make_audit,
    verify_draw,
)
from sampling.frame import read_frame

__all__ = [
    "ASSIGNMENT_PRIORITY",
    "DrawSummary",
    "FrameColumns",
    "balance_report",
    "current_draw",
    "draw_sample",
    "format_balance",
    "load_frame",
    "release",
    "release_all",
    "release_reserve",
    "stratum_code",
    "verify",
    "write_balance_csv",
]

#: See the module docstring for why.
ASSIGNMENT_PRIORITY = "group"
STRATIFICATIONS = ("group", "group_town")


def stratum_code(group: str, town: str | None, stratification: str) -> str:
    """``group`` or ``group/town``."""
    if stratification == "group":
        return group
    if town is None:
        raise MinpingError("the frame has contacts without a town; stratify with --strata group")
    return f"{group}/{town}"


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _campaign(session: Session, cfg) -> Campaign:
    return sync_campaign(session, cfg)


# --- the frame ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameColumns:
    """A frame in canonical order (sorted by phone), column by column."""

    contact_ids: np.ndarray
    phones: np.ndarray
    groups: tuple[str, ...]
    towns: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.phones)

    def digest(self) -> str:
        return frame_hash(self.phones, self.groups, self.towns)

    def strata(self, stratification: str) -> np.ndarray:
        if stratification == "group":
            return np.asarray(self.groups, dtype=str)
        return np.asarray(
            [stratum_code(g, t, stratification) for g, t in zip(self.groups, self.towns,
                                                                strict=True)],
            dtype=str,
        )

    def index_of(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.phones.tolist())}


def _canonical(contact_ids, phones, groups, towns) -> FrameColumns:
    order = canonical_order(phones)
    return FrameColumns(
        contact_ids=np.asarray(contact_ids, dtype=np.int64)[order],
        phones=np.asarray(phones, dtype=str)[order],
        groups=tuple(groups[i] for i in order),
        towns=tuple(towns[i] for i in order),
    )


def load_frame(session: Session, campaign_id: int, frame_id: int) -> FrameColumns:
    """Read a frame's contacts from the database, in canonical order."""
    gcode = {v: k for k, v in codes(session, RespondentGroup, campaign_id).items()}
    tcode = {v: k for k, v in codes(session, Town, campaign_id).items()}
    rows = session.execute(
        select(FrameContact.id, FrameContact.phone, FrameContact.group_id, FrameContact.town_id)
        .where(FrameContact.frame_id == frame_id)
    ).all()
    if not rows:
        raise MinpingError("the frame is empty; import contacts with `minping frame import`")
    ids, phones, gids, tids = zip(*rows, strict=True)
    groups = [gcode[g] for g in gids]
    towns = [tcode[t] if t is not None else None for t in tids]
    return _canonical(ids, phones, groups, towns)


def frame_from_file(path: str | os.PathLike, cfg, *, encoding: str | None = None) -> FrameColumns:
    """Read an external copy of the frame (CSV or XLSX) in canonical order."""
    known_groups, known_towns = frame_labels(cfg)
    ff = read_frame(path, encoding=encoding, known_groups=known_groups, known_towns=known_towns)
    ff.raise_for_problems()
    return _canonical(np.full(len(ff), -1), ff.phones, ff.groups, ff.towns)


def _frame_counts(session: Session, frame_id: int, stratification: str, campaign_id: int
                  ) -> dict[str, int]:
    gcode = {v: k for k, v in codes(session, RespondentGroup, campaign_id).items()}
    tcode = {v: k for k, v in codes(session, Town, campaign_id).items()}
    out: dict[str, int] = {}
    if stratification == "group":
        q = (select(FrameContact.group_id, func.count()).where(FrameContact.frame_id == frame_id)
             .group_by(FrameContact.group_id))
        for g, n in session.execute(q):
            out[gcode[g]] = int(n)
    else:
        q = (select(FrameContact.group_id, FrameContact.town_id, func.count())
             .where(FrameContact.frame_id == frame_id)
             .group_by(FrameContact.group_id, FrameContact.town_id))
        for g, t, n in session.execute(q):
            out[stratum_code(gcode[g], tcode.get(t) if t is not None else None,
                             stratification)] = int(n)
    return dict(sorted(out.items()))


# --- allocation ---------------------------------------------------------------------------


def _check_keys(name: str, values: Mapping[str, Any] | None, strata: Mapping[str, int]) -> None:
    if values is None:
        return
    unknown = [k for k in values if k not in strata]
    if unknown:
        raise MinpingError(
            f"{name}: unknown stratum {unknown[0]!r}; the frame's strata are "
            + ", ".join(strata)
        )


def _allocate(cfg, N: dict[str, int], size: int, *, stratification: str, method: str,
              S=None, fixed=None, lower=None, upper=None) -> tuple[dict[str, int], dict[str, float]]:
    for name, values in (("--sd", S), ("--fixed", fixed), ("--lower", lower), ("--upper", upper)):
        _check_keys(name, values, N)
    if method == "neyman" and S is not None:
        missing = [k for k in N if k not in S]
        if missing:
            raise MinpingError(f"--sd: no standard deviation for stratum {missing[0]!r}")
    if method == "fixed":
        if fixed is None:
            raise MinpingError("--method fixed needs --fixed (counts per stratum)")
        missing = [k for k in N if k not in fixed]
        if missing:
            raise MinpingError(f"--fixed: no count for stratum {missing[0]!r}")
    if stratification == "group":
        a = allocate(
            N, size, method=method,  # type: ignore[arg-type]
            S=S, fixed=fixed,
            lower={k: (lower or {}).get(k, 0) for k in N} if lower else None,
            upper={k: (upper or {}).get(k, N[k]) for k in N} if upper else None,
        )
        return dict(zip(a.strata, a.counts, strict=True)), dict(zip(a.strata, a.real, strict=True))
    groups = [g.id for g in cfg.groups]
    towns = [t.id for t in cfg.towns]
    Nm = [[N.get(f"{g}/{t}", 0) for t in towns] for g in groups]

    def matrix(values, default):
        if values is None:
            return None
        return [[values.get(f"{g}/{t}", default(g, t)) for t in towns] for g in groups]

    a2 = allocate_two_way(
        Nm, size, rows=groups, cols=towns, method=method,  # type: ignore[arg-type]
        S=matrix(S, lambda g, t: 0.0), fixed=matrix(fixed, lambda g, t: 0),
        lower=matrix(lower, lambda g, t: 0),
        upper=matrix(upper, lambda g, t: N.get(f"{g}/{t}", 0)),
    )
    counts, real = {}, {}
    for i, g in enumerate(groups):
        for j, t in enumerate(towns):
            code = f"{g}/{t}"
            if code in N:
                counts[code] = a2.counts[i][j]
                real[code] = a2.real[i][j]
    return counts, real


# --- the draw -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DrawSummary:
    """What :func:`draw_sample` stored."""

    draw_id: int
    frame: str
    frame_size: int
    frame_hash: str
    seed: str
    stratification: str
    method: str
    size: int
    replicates: int
    reserve: int
    strata: tuple[dict, ...]
    cases: int
    reserve_cases: int
    k: int
    assignment_digest: str
    unit_min: int
    unit_max: int
    seconds: float
    timings: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "draw_id": self.draw_id,
            "frame": self.frame,
            "frame_size": self.frame_size,
            "frame_hash": self.frame_hash,
            "seed": self.seed,
            "stratification": self.stratification,
            "method": self.method,
            "size": self.size,
            "replicates": self.replicates,
            "reserve": self.reserve,
            "strata": list(self.strata),
            "cases": self.cases,
            "reserve_cases": self.reserve_cases,
            "units_per_respondent": self.k,
            "assignment_digest": self.assignment_digest,
            "raters_per_unit": {"min": self.unit_min, "max": self.unit_max},
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _parse_seed(seed: int | str | None) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    try:
        value = int(str(seed).strip())
    except ValueError:
        raise MinpingError(f"--seed must be a whole number >= 0, got {seed!r}") from None
    if value < 0:
        raise MinpingError(f"--seed must be a whole number >= 0, got {seed!r}")
    if len(str(value)) > 80:
        raise MinpingError("--seed has more than 80 digits")
    return value


def _units_by_group(cfg) -> dict[str, list[str]]:
    return {g.id: [u.id for u in cfg.units_for_group(g.id)] for g in cfg.groups}


def _assign(cfg, seed: int, sample_groups: list[str], reserve_groups: list[str],
            sample_strata: list[str], reserve_strata: list[str]
            ) -> tuple[Assignment, Assignment | None]:
    ubg = _units_by_group(cfg)
    k = cfg.campaign.units_per_respondent
    main = assign_units(sample_groups, ubg, k, rng=np.random.default_rng([seed, 1]),
                        priority=ASSIGNMENT_PRIORITY, strata=sample_strata)
    extra = None
    if reserve_groups:
        extra = assign_units(reserve_groups, ubg, k, rng=np.random.default_rng([seed, 2]),
                             priority=ASSIGNMENT_PRIORITY, strata=reserve_strata)
    return main, extra


def units_digest(units: list[tuple[str, ...]]) -> str:
    """The digest :meth:`sampling.assign.Assignment.digest` gives for these units per case."""
    payload = json.dumps([[repr(u) for u in us] for us in units], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def draw_sample(
    session: Session,
    cfg,
    *,
    size: int | None = None,
    seed: int | str | None = None,
    strata: str = "group",
    method: str = "proportional",
    S: Mapping[str, float] | None = None,
    fixed: Mapping[str, int] | None = None,
    lower: Mapping[str, int] | None = None,
    upper: Mapping[str, int] | None = None,
    replicates: int = 1,
    reserve: int = 0,
    frame: str | None = None,
    force: bool = False,
    created_by: str | None = None,
    now: datetime | None = None,
) -> DrawSummary:
    """Draw the sample, assign units, store everything (the caller commits).

    Parameters
    ----------
    session : Session
    cfg : SurveyConfig
    size : int, optional
        Sample size; default ``cfg.campaign.sample_size`` (2,020).
    seed : int or str, optional
        Seed of ``numpy.random.default_rng``; a fresh random one when omitted
        (stored and reported).
    strata : {"group", "group_town"}
    method : {"proportional", "equal", "neyman", "fixed"}
    S, fixed, lower, upper : mapping stratum code -> number, optional
        Prior standard deviations (Neyman), fixed counts, bounds.
    replicates : int
        Number of sample replicates, released one at a time.
    reserve : int
        Reserve cases per stratum (capped at what the stratum has left).
    frame : str, optional
        Frame name; default the campaign's only frame.
    force : bool
        Allow a new draw on a frame that already has one: the earlier draw's
        held cases are withdrawn.  Refused when the earlier draw has cases in
        the field (their numbers could be drawn again).

    Returns
    -------
    DrawSummary
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if strata not in STRATIFICATIONS:
        raise MinpingError(f"--strata must be one of {', '.join(STRATIFICATIONS)}, got {strata!r}")
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise MinpingError(f"--replicates must be a whole number >= 1, got {replicates!r}")
    if isinstance(reserve, bool) or not isinstance(reserve, int) or reserve < 0:
        raise MinpingError(f"--reserve must be a whole number >= 0, got {reserve!r}")
    size = cfg.campaign.sample_size if size is None else size
    seed_int = _parse_seed(seed)
    now = _now(now)
    campaign = _campaign(session, cfg)
    fr = get_frame(session, campaign.id, frame)

    earlier = session.scalars(
        select(SampleDraw).where(SampleDraw.frame_id == fr.id).order_by(SampleDraw.id)
    ).all()
    if earlier:
        last = earlier[-1]
        if not force:
            raise MinpingError(
                f"frame {fr.name!r} already has a draw (draw {last.id}, seed {last.seed}, "
                f"{last.created_at:%Y-%m-%d %H:%M} UTC); give --force to draw again"
            )
        in_field = session.scalar(
            select(func.count()).select_from(SampleCase).where(
                SampleCase.draw_id.in_([d.id for d in earlier]),
                SampleCase.release_state == "released")
        )
        if in_field:
            raise MinpingError(
                f"frame {fr.name!r}: {in_field} cases of an earlier draw are released into the "
                "field; a new draw could call their numbers again, so it is refused"
            )
        session.execute(
            update(SampleCase)
            .where(SampleCase.draw_id.in_([d.id for d in earlier]),
                   SampleCase.release_state == "held")
            .values(release_state="withdrawn")
            .execution_options(synchronize_session=False)
        )

    N = _frame_counts(session, fr.id, strata, campaign.id)
    timings["count"] = time.perf_counter() - t0
    total = sum(N.values())
    if size > total:
        raise MinpingError(f"--size {size} is larger than the frame {fr.name!r} ({total} contacts)")
    counts, real = _allocate(cfg, N, size, stratification=strata, method=method, S=S,
                             fixed=fixed, lower=lower, upper=upper)
    t1 = time.perf_counter()
    cols = load_frame(session, campaign.id, fr.id)
    labels = cols.strata(strata)
    timings["load"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    result = draw(labels, {k: v for k, v in counts.items() if v > 0},
                  rng=np.random.default_rng(seed_int), replicates=replicates, reserve=reserve)
    timings["draw"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    digest = cols.digest()
    timings["hash"] = time.perf_counter() - t3

    idx = result.index
    is_res = result.reserve
    case_groups = [cols.groups[i] for i in idx.tolist()]
    sample_pos = np.flatnonzero(~is_res).tolist()
    reserve_pos = np.flatnonzero(is_res).tolist()
    case_strata = [str(labels[i]) for i in idx.tolist()]
    main, extra = _assign(cfg, seed_int, [case_groups[p] for p in sample_pos],
                          [case_groups[p] for p in reserve_pos],
                          [case_strata[p] for p in sample_pos], [case_strata[p] for p in reserve_pos])
    units_of: dict[int, tuple[str, ...]] = {}
    for p, us in zip(sample_pos, main.units, strict=True):
        units_of[p] = us  # type: ignore[assignment]
    if extra is not None:
        for p, us in zip(reserve_pos, extra.units, strict=True):
            units_of[p] = us  # type: ignore[assignment]

    audit = make_audit(
        result, frame_digest=digest, seed=seed_int, method=method, timestamp=now,
        extra={
            "stratification": strata,
            "assignment_digest": main.digest(),
            "reserve_assignment_digest": extra.digest() if extra else "",
            "assignment_rng": "numpy.random.default_rng([seed, 1]); reserve [seed, 2]",
            "assignment_priority": ASSIGNMENT_PRIORITY,
        },
    )
    sd = SampleDraw(
        campaign_id=campaign.id, frame_id=fr.id, frame_hash=digest, seed=str(seed_int),
        stratification=strata, method=method, sample_size=size, replicates=replicates,
        reserve=reserve,
        allocation={
            "strata": {k: {"N": N[k], "n": int(counts[k]), "real": float(real[k]),
                           "reserve": int(result.reserve_counts.get(k, 0))} for k in N},
            "bounds": {"lower": dict(lower or {}), "upper": dict(upper or {})},
            "S": dict(S or {}), "fixed": dict(fixed or {}),
            "audit": audit.to_dict(),
        },
        assignment={
            "k": main.k,
            "priority": ASSIGNMENT_PRIORITY,
            "seed": str(seed_int),
            "rng": "numpy.random.default_rng([seed, 1]) for the sample in draw order; "
                   "[seed, 2] for the reserve",
            "digest": main.digest(),
            "reserve_digest": extra.digest() if extra else None,
            "group_sizes": dict(main.group_sizes),
            "eligible": {g: list(us) for g, us in main.eligible.items()},
            "unit_counts": dict(main.unit_counts),
        },
        software_version=audit.software_version, created_at=now, created_by=created_by,
    )
    session.add(sd)
    session.flush()

    gids = codes(session, RespondentGroup, campaign.id)
    tids = codes(session, Town, campaign.id)
    uids = codes(session, Unit, campaign.id)
    stratum_ids: dict[str, int] = {}
    for code, n_h in N.items():
        g, _, t = code.partition("/")
        st = Stratum(draw_id=sd.id, code=code, group_id=gids[g], town_id=tids[t] if t else None,
                     population=n_h, target=int(counts[code]))
        session.add(st)
        session.flush()
        stratum_ids[code] = st.id

    rows = []
    for p in range(len(idx)):
        rows.append({
            "draw_id": sd.id,
            "contact_id": int(cols.contact_ids[idx[p]]),
            "stratum_id": stratum_ids[result.stratum[p]],
            "pseudo_id": new_pseudo_id(),
            "inclusion_prob": float(result.prob[p]),
            "weight": float(result.weight[p]),
            "replicate": int(result.replicate[p]),
            "is_reserve": bool(is_res[p]),
            "draw_order": int(result.order[p]),
            "release_state": "held",
        })
    for start in range(0, len(rows), 5_000):
        session.execute(insert(SampleCase), rows[start:start + 5_000])
    case_id = dict(session.execute(
        select(SampleCase.contact_id, SampleCase.id).where(SampleCase.draw_id == sd.id)
    ).all())
    cu_rows = []
    for p in range(len(idx)):
        cid = case_id[int(cols.contact_ids[idx[p]])]
        for pos, u in enumerate(units_of[p], start=1):
            cu_rows.append({"case_id": cid, "unit_id": uids[u], "position": pos})
    for start in range(0, len(cu_rows), 10_000):
        session.execute(insert(CaseUnit), cu_rows[start:start + 10_000])
    session.add(AuditLog(at=now, actor=created_by or "minping", action="sample.draw",
                         entity="sample_draw", entity_id=str(sd.id),
                         new={"seed": str(seed_int), "size": size, "method": method,
                              "strata": strata, "frame_hash": digest},
                         detail=f"frame {fr.name!r}"))
    session.flush()

    strata_out = tuple(
        {"stratum": k, "N": N[k], "real": round(float(real[k]), 6), "n": int(counts[k]),
         "reserve": int(result.reserve_counts.get(k, 0)),
         "prob": (counts[k] / N[k]) if N[k] else 0.0,
         "weight": (N[k] / counts[k]) if counts[k] else None}
        for k in N
    )
    uc = list(main.unit_counts.values())
    return DrawSummary(
        draw_id=sd.id, frame=fr.name, frame_size=len(cols), frame_hash=digest,
        seed=str(seed_int), stratification=strata, method=method, size=size,
        replicates=replicates, reserve=reserve, strata=strata_out,
        cases=int((~is_res).sum()), reserve_cases=int(is_res.sum()), k=main.k,
        assignment_digest=main.digest(), unit_min=min(uc) if uc else 0,
        unit_max=max(uc) if uc else 0, seconds=time.perf_counter() - t0, timings=timings,
    )


# --- release ------------------------------------------------------------------------------


def current_draw(session: Session, cfg, *, draw_id: int | None = None) -> SampleDraw:
    """The campaign's latest draw (or draw ``draw_id``)."""
    campaign = _campaign(session, cfg)
    q = select(SampleDraw).where(SampleDraw.campaign_id == campaign.id)
    if draw_id is not None:
        q = q.where(SampleDraw.id == draw_id)
    sd = session.scalar(q.order_by(SampleDraw.id.desc()).limit(1))
    if sd is None:
        raise MinpingError("no draw yet" if draw_id is None else f"no draw {draw_id}"
                           + "; draw the sample with `minping sample draw`")
    return sd


def _held_by_replicate(session: Session, draw_id: int) -> dict[int, int]:
    return {int(r): int(n) for r, n in session.execute(
        select(SampleCase.replicate, func.count()).where(
            SampleCase.draw_id == draw_id, SampleCase.release_state == "held",
            SampleCase.is_reserve.is_(False))
        .group_by(SampleCase.replicate))}


def _release_log(session, sd, now, actor, detail, n):
    session.add(AuditLog(at=now, actor=actor, action="sample.release", entity="sample_draw",
                         entity_id=str(sd.id), new={"released": n}, detail=detail))


def release(session: Session, cfg, *, replicate: int | None = None, next_: bool = False,
            now: datetime | None = None, actor: str = "minping") -> dict:
    """Release one replicate (``replicate``, or with ``next_`` the lowest still held).

    Returns ``{"draw_id", "replicate", "released", "held_replicates"}``.
    """
    now = _now(now)
    sd = current_draw(session, cfg)
    if (replicate is None) == (not next_):
        raise MinpingError("give either --replicate N or --next")
    held = _held_by_replicate(session, sd.id)
    if next_:
        if not held:
            raise MinpingError(f"draw {sd.id}: every replicate is already released")
        replicate = min(held)
    assert replicate is not None
    if replicate == sd.replicates + 1 and sd.reserve:
        raise MinpingError(
            f"replicate {replicate} is the reserve; it replaces ineligible numbers one by one: "
            "use `minping sample release --reserve-for-ineligible`")
    if not 1 <= replicate <= sd.replicates:
        raise MinpingError(f"draw {sd.id} has replicates 1 to {sd.replicates}, not {replicate}")
    from minping.cases import release_replicate

    n = release_replicate(session, sd.id, replicate, now=now)
    _release_log(session, sd, now, actor, f"replicate {replicate}", n)
    held.pop(replicate, None)
    return {"draw_id": sd.id, "replicate": replicate, "released": n,
            "held_replicates": sorted(held)}


def release_all(session: Session, cfg, *, now: datetime | None = None,
                actor: str = "minping") -> dict:
    """Release every sample replicate still held (not the reserve)."""
    now = _now(now)
    sd = current_draw(session, cfg)
    from minping.cases import release_replicate

    out = {}
    for r in sorted(_held_by_replicate(session, sd.id)):
        out[r] = release_replicate(session, sd.id, r, now=now)
    _release_log(session, sd, now, actor, "all replicates", sum(out.values()))
    return {"draw_id": sd.id, "released": sum(out.values()),
            "by_replicate": {str(k): v for k, v in out.items()}}


def release_reserve(session: Session, cfg, *, now: datetime | None = None,
                    actor: str = "minping") -> dict:
    """Release reserve cases to replace ineligible (AAPOR 4.x) numbers, stratum by stratum.

    In each stratum: ``to_release = ineligible − reserve already released``,
    where ``ineligible`` counts the stratum's released cases (reserve cases
    included) whose final disposition is 4.x; the held reserve cases are
    released in release order.  A stratum whose reserve runs out is reported
    in ``short``.
    """
    now = _now(now)
    sd = current_draw(session, cfg)
    strata = dict(session.execute(
        select(Stratum.id, Stratum.code).where(Stratum.draw_id == sd.id)).all())
    inelig = Counter(dict(session.execute(
        select(SampleCase.stratum_id, func.count()).where(
            SampleCase.draw_id == sd.id, SampleCase.release_state == "released",
            SampleCase.final_disposition.like("4.%"))
        .group_by(SampleCase.stratum_id)).all()))
    used = Counter(dict(session.execute(
        select(SampleCase.stratum_id, func.count()).where(
            SampleCase.draw_id == sd.id, SampleCase.release_state == "released",
            SampleCase.is_reserve.is_(True))
        .group_by(SampleCase.stratum_id)).all()))
    released: dict[str, int] = {}
    short: dict[str, int] = {}
    for sid, code in sorted(strata.items(), key=lambda kv: kv[1]):
        need = inelig[sid] - used[sid]
        if need <= 0:
            continue
        ids = session.scalars(
            select(SampleCase.id).where(
                SampleCase.draw_id == sd.id, SampleCase.stratum_id == sid,
                SampleCase.is_reserve.is_(True), SampleCase.release_state == "held")
            .order_by(SampleCase.draw_order).limit(need)).all()
        if ids:
            session.execute(
                update(SampleCase).where(SampleCase.id.in_(ids))
                .values(release_state="released", released_at=now)
                .execution_options(synchronize_session=False))
            released[code] = len(ids)
        if len(ids) < need:
            short[code] = need - len(ids)
    total = sum(released.values())
    _release_log(session, sd, now, actor, "reserve for ineligible numbers", total)
    return {"draw_id": sd.id, "released": total, "by_stratum": released, "short": short,
            "ineligible": {strata[s]: n for s, n in inelig.items()}}


# --- verification -------------------------------------------------------------------------


def verify(session: Session, cfg, *, frame_file: str | os.PathLike | None = None,
           encoding: str | None = None, draw_id: int | None = None) -> dict:
    """Re-derive the draw from the frame and the stored seed; compare case by case.

    With ``frame_file`` the frame is read from that file instead of the
    database.  Also checks every case's stored units against the assignment
    digests, and re-derives the assignment from the re-derived draw.

    Returns a dict with ``matches`` (bool), ``frame_hash_matches``,
    ``assignment_matches``, ``cases`` (how many were compared) and
    ``problems`` (one entry per differing case).
    """
    sd = current_draw(session, cfg, draw_id=draw_id)
    audit = DrawAudit.from_dict(sd.allocation["audit"])
    stratification = sd.stratification
    if frame_file is not None:
        cols = frame_from_file(frame_file, cfg, encoding=encoding)
        source = str(frame_file)
    else:
        cols = load_frame(session, sd.campaign_id, sd.frame_id)
        source = "database"
    labels = cols.strata(stratification)
    digest = cols.digest()
    pos = cols.index_of()
    scode = dict(session.execute(select(Stratum.id, Stratum.code)
                                 .where(Stratum.draw_id == sd.id)).all())
    stored_rows = session.execute(
        select(SampleCase.id, SampleCase.pseudo_id, FrameContact.phone, SampleCase.stratum_id,
               SampleCase.draw_order, SampleCase.replicate, SampleCase.is_reserve,
               SampleCase.inclusion_prob, SampleCase.weight)
        .join(FrameContact, FrameContact.id == SampleCase.contact_id)
        .where(SampleCase.draw_id == sd.id)
    ).all()
    problems: list[dict] = []
    stored: list[DrawnCase] = []
    pseudo_at: dict[int, str] = {}
    for r in stored_rows:
        i = pos.get(r.phone)
        if i is None:
            problems.append({"pseudo_id": r.pseudo_id, "index": None, "status": "not_in_frame",
                             "fields": [], "detail": "the case's number is not in the frame"})
            continue
        pseudo_at[i] = r.pseudo_id
        stored.append(DrawnCase(index=i, stratum=scode[r.stratum_id], order=r.draw_order,
                                replicate=r.replicate, reserve=bool(r.is_reserve),
                                prob=r.inclusion_prob, weight=r.weight))
    check = verify_draw(stored, labels, audit=audit, frame_digest=digest)
    for c in check.problems:
        ref = c.stored or c.expected
        problems.append({
            "pseudo_id": pseudo_at.get(c.index), "index": c.index, "status": c.status,
            "fields": list(c.fields),
            "stored": _case_dict(c.stored), "expected": _case_dict(c.expected),
            "stratum": ref.stratum if ref else None,
        })
    if check.error:
        problems.insert(0, {"pseudo_id": None, "index": None, "status": "error",
                            "fields": [], "detail": check.error})

    # the assignment: stored units against the digest, and re-derived from the draw
    units = _stored_units(session, sd.id)
    by_index = {c.index: c for c in stored}
    case_of_index = {pos[r.phone]: r.id for r in stored_rows if r.phone in pos}
    order_key = sorted(by_index, key=lambda i: (by_index[i].stratum, by_index[i].order))
    sample_idx = [i for i in order_key if not by_index[i].reserve]
    reserve_idx = [i for i in order_key if by_index[i].reserve]
    stored_digest = units_digest([units.get(case_of_index[i], ()) for i in sample_idx])
    stored_rdigest = (units_digest([units.get(case_of_index[i], ()) for i in reserve_idx])
                      if reserve_idx else None)
    want = sd.assignment.get("digest")
    want_r = sd.assignment.get("reserve_digest")
    assignment_ok = stored_digest == want and stored_rdigest == want_r
    rederived_ok = None
    if check.error is None:
        from sampling.draw import rederive

        again = rederive(audit, labels)
        groups = [cols.groups[i] for i in again.index.tolist()]
        res = again.reserve
        hs = [str(labels[i]) for i in again.index.tolist()]
        main, extra = _assign(cfg, audit.seed,
                              [g for g, r in zip(groups, res, strict=True) if not r],
                              [g for g, r in zip(groups, res, strict=True) if r],
                              [h for h, r in zip(hs, res, strict=True) if not r],
                              [h for h, r in zip(hs, res, strict=True) if r])
        rederived_ok = main.digest() == want and (extra.digest() if extra else None) == want_r
    if not assignment_ok:
        problems.append({"pseudo_id": None, "index": None, "status": "assignment",
                         "fields": ["units"],
                         "detail": "the units stored for the cases do not give the recorded "
                                   "assignment digest"})
    if rederived_ok is False:
        problems.append({"pseudo_id": None, "index": None, "status": "assignment",
                         "fields": ["units"],
                         "detail": "re-deriving the assignment does not give the recorded digest "
                                   "(configuration changed since the draw?)"})
    matches = (check.matches and assignment_ok and rederived_ok is not False
               and not any(p["status"] == "not_in_frame" for p in problems))
    return {
        "draw_id": sd.id,
        "frame": source,
        "seed": sd.seed,
        "frame_hash": digest,
        "recorded_frame_hash": audit.frame_hash,
        "frame_hash_matches": check.frame_hash_matches,
        "cases": len(stored_rows),
        "assignment_matches": assignment_ok and rederived_ok is not False,
        "matches": matches,
        "problems": problems,
    }


def _case_dict(c: DrawnCase | None) -> dict | None:
    if c is None:
        return None
    return {"stratum": c.stratum, "order": c.order, "replicate": c.replicate,
            "reserve": c.reserve}


def _stored_units(session: Session, draw_id: int) -> dict[int, tuple[str, ...]]:
    rows = session.execute(
        select(CaseUnit.case_id, Unit.code)
        .join(Unit, Unit.id == CaseUnit.unit_id)
        .join(SampleCase, SampleCase.id == CaseUnit.case_id)
        .where(SampleCase.draw_id == draw_id)
        .order_by(CaseUnit.case_id, CaseUnit.position)
    ).all()
    out: dict[int, list[str]] = defaultdict(list)
    for cid, code in rows:
        out[cid].append(code)
    return {k: tuple(v) for k, v in out.items()}


# --- balance ------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 6) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), digits)


def balance_report(session: Session, cfg, *, draw_id: int | None = None,
                   alpha: float = 0.01, max_dissimilarity: float = 0.1) -> dict:
    """Per stratum and per unit balance of the current draw, and the Kish design effect.

    Strata: frame size, target, drawn (sample cases), reserve, released,
    completed (final disposition 1.1), gap and relative gap (completed vs
    target).  Units: raters assigned (cases in the sample, plus reserve cases
    released) and raters who answered (a rating saved), by group, against the
    design's group mix (``Assignment.expected_shares``); the chi-square test
    and dissimilarity index are on the answered counts once there are any,
    else on the assigned; failing units first.  Kish's deff and effective
    sample size for the weights of the completed cases (or the sample, before
    fieldwork), overall and per unit.
    """
    sd = current_draw(session, cfg, draw_id=draw_id)
    strata = session.scalars(select(Stratum).where(Stratum.draw_id == sd.id)
                             .order_by(Stratum.code)).all()
    code_of = {s.id: s.code for s in strata}
    cases = session.execute(
        select(SampleCase.id, SampleCase.stratum_id, SampleCase.is_reserve,
               SampleCase.release_state, SampleCase.final_disposition, SampleCase.weight)
        .where(SampleCase.draw_id == sd.id)
    ).all()
    drawn, reserve, released, completed = Counter(), Counter(), Counter(), Counter()
    active: dict[int, Any] = {}
    for c in cases:
        code = code_of[c.stratum_id]
        if c.release_state == "withdrawn":
            continue
        if c.is_reserve:
            reserve[code] += 1
        else:
            drawn[code] += 1
        if c.release_state == "released":
            released[code] += 1
        if c.final_disposition == "1.1":
            completed[code] += 1
        if not c.is_reserve or c.release_state == "released":
            active[c.id] = c
    rows = stratum_balance(
        frame_size={s.code: s.population for s in strata},
        target={s.code: s.target for s in strata},
        drawn=dict(drawn), released=dict(released), completed=dict(completed),
    )
    group_of_stratum = {s.code: s.code.partition("/")[0] for s in strata}

    units = _stored_units(session, sd.id)
    answered_rows = session.execute(
        select(Answer.case_id, Unit.code)
        .join(Unit, Unit.id == Answer.unit_id)
        .join(SampleCase, SampleCase.id == Answer.case_id)
        .where(SampleCase.draw_id == sd.id, Answer.rating.is_not(None))
    ).all()
    assigned: dict[str, Counter] = defaultdict(Counter)
    answered: dict[str, Counter] = defaultdict(Counter)
    w_assigned: dict[str, list[float]] = defaultdict(list)
    w_answered: dict[str, list[float]] = defaultdict(list)
    for cid, us in units.items():
        c = active.get(cid)
        if c is None:
            continue
        g = group_of_stratum[code_of[c.stratum_id]]
        for u in us:
            assigned[u][g] += 1
            w_assigned[u].append(c.weight)
    for cid, u in answered_rows:
        c = active.get(cid)
        if c is None:
            continue
        g = group_of_stratum[code_of[c.stratum_id]]
        answered[u][g] += 1
        w_answered[u].append(c.weight)
    has_answers = bool(answered_rows)
    a = sd.assignment
    eligible = {g: tuple(us) for g, us in a.get("eligible", {}).items()}
    shell = Assignment(
        k=int(a.get("k", cfg.campaign.units_per_respondent)), units=(), unit_counts={},
        unit_group_counts={u: {g: 0 for g in eligible if u in eligible[g]}
                           for u in {u for us in eligible.values() for u in us}},
        group_sizes=dict(a.get("group_sizes", {})), eligible=eligible,
        priority=a.get("priority", ASSIGNMENT_PRIORITY),
    )
    shares = shell.expected_shares()
    all_units = [u.id for u in cfg.units if u.id in shares]
    full_assigned = {u: {g: assigned[u].get(g, 0) for g in shares[u]} for u in all_units}
    ub = unit_balance(
        full_assigned,
        answered=({u: dict(answered[u]) for u in all_units} if has_answers else None),
        shares={u: shares[u] for u in all_units},
        weights={u: (w_answered[u] if has_answers else w_assigned[u]) for u in all_units},
        alpha=alpha, max_dissimilarity=max_dissimilarity,
    )
    unit_name = {u.id: u.name for u in cfg.units}
    unit_track = {u.id: u.track for u in cfg.units}
    complete_w = [c.weight for c in active.values() if c.final_disposition == "1.1"]
    sample_w = [c.weight for c in active.values()]
    k_sample, k_complete = kish(sample_w), kish(complete_w)
    return {
        "draw_id": sd.id,
        "seed": sd.seed,
        "stratification": sd.stratification,
        "method": sd.method,
        "tested": "answered" if has_answers else "assigned",
        "alpha": alpha,
        "max_dissimilarity": max_dissimilarity,
        "strata": [
            {"stratum": r.stratum, "frame_size": r.frame_size, "target": r.target,
             "drawn": r.drawn, "reserve": reserve.get(r.stratum, 0), "released": r.released,
             "completed": r.completed, "gap": r.gap, "relative_gap": _num(r.relative_gap)}
            for r in rows
        ],
        "totals": {
            "frame_size": sum(r.frame_size for r in rows), "target": sum(r.target for r in rows),
            "drawn": sum(r.drawn for r in rows), "released": sum(r.released for r in rows),
            "completed": sum(r.completed for r in rows),
        },
        "units": [
            {"unit": b.unit, "name": unit_name.get(b.unit), "track": unit_track.get(b.unit),
             "groups": list(b.groups), "assigned": list(b.assigned),
             "expected_assigned": [round(x, 3) for x in b.expected_assigned],
             "answered": list(b.answered),
             "expected_answered": [round(x, 3) for x in b.expected_answered],
             "tested": b.tested, "chi2": _num(b.chi2), "p_value": _num(b.p_value),
             "dissimilarity": _num(b.dissimilarity), "passed": b.passed, "reason": b.reason,
             "deff": _num(b.kish.deff) if b.kish else None,
             "n_eff": _num(b.kish.n_eff) if b.kish else None}
            for b in ub
        ],
        "failing_units": sum(not b.passed for b in ub),
        "kish": {
            "sample": {"n": k_sample.n, "deff": _num(k_sample.deff), "n_eff": _num(k_sample.n_eff)},
            "completed": {"n": k_complete.n, "deff": _num(k_complete.deff),
                          "n_eff": _num(k_complete.n_eff)},
        },
    }


def _fmt(x: Any, spec: str = "") -> str:
    if x is None:
        return "—"
    return format(x, spec)


def format_balance(report: dict, *, max_units: int | None = None) -> list[str]:
    """The balance report as text tables (strata, then units with failing ones first)."""
    lines = [f"draw {report['draw_id']} (seed {report['seed']}, {report['stratification']}, "
             f"{report['method']})", ""]
    head = ("stratum", "frame", "target", "drawn", "reserve", "released", "completed", "gap",
            "rel.gap")
    body = [(r["stratum"], f"{r['frame_size']:,}", str(r["target"]), str(r["drawn"]),
             str(r["reserve"]), str(r["released"]), str(r["completed"]), str(r["gap"]),
             _fmt(r["relative_gap"], ".1%")) for r in report["strata"]]
    t = report["totals"]
    body.append(("total", f"{t['frame_size']:,}", str(t["target"]), str(t["drawn"]), "",
                 str(t["released"]), str(t["completed"]), str(t["completed"] - t["target"]), ""))
    lines += _table(head, body)
    lines.append("")
    units = report["units"]
    shown = units if max_units is None else units[:max_units]
    head = ("unit", "track", "raters by group (observed/expected)", "p", "D", "deff", "")
    body = []
    for u in shown:
        obs = u["answered"] if u["tested"] == "answered" else u["assigned"]
        exp = u["expected_answered"] if u["tested"] == "answered" else u["expected_assigned"]
        mix = " ".join(f"{g} {o}/{e:.1f}" for g, o, e in zip(u["groups"], obs, exp, strict=True))
        body.append((u["unit"], u["track"] or "", mix, _fmt(u["p_value"], ".3f"),
                     _fmt(u["dissimilarity"], ".3f"), _fmt(u["deff"], ".3f"),
                     "" if u["passed"] else "FAIL: " + u["reason"]))
    lines += _table(head, body)
    if len(shown) < len(units):
        lines.append(f"... {len(units) - len(shown)} more units (all pass)"
                     if all(u["passed"] for u in units[len(shown):])
                     else f"... {len(units) - len(shown)} more units")
    ks, kc = report["kish"]["sample"], report["kish"]["completed"]
    lines.append("")
    lines.append(f"{len(units)} units, {report['failing_units']} failing "
                 f"(tested on {report['tested']} raters; p < {report['alpha']:g} or D > "
                 f"{report['max_dissimilarity']:g} fails)")
    lines.append(f"Kish deff sample {_fmt(ks['deff'], '.3f')} (n {ks['n']}, effective "
                 f"{_fmt(ks['n_eff'], '.1f')}); completed {_fmt(kc['deff'], '.3f')} "
                 f"(n {kc['n']}, effective {_fmt(kc['n_eff'], '.1f')})")
    return lines


def _table(head: tuple[str, ...], body: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def fmt(row):
        return "  ".join(c.ljust(w) if i in (0, 1, 2) and not c[:1].isdigit() else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    return [fmt(head), "  ".join("-" * w for w in widths), *[fmt(r) for r in body]]


BALANCE_CSV_COLUMNS = (
    "kind", "key", "group", "frame_size", "target", "drawn", "reserve", "released", "completed",
    "gap", "relative_gap", "assigned", "expected_assigned", "answered", "expected_answered",
    "p_value", "dissimilarity", "passed", "reason", "deff", "n_eff",
)


def write_balance_csv(report: dict, path: str | os.PathLike) -> int:
    """Write the report as one long CSV (UTF-8 with BOM): a row per stratum, per unit × group."""
    n = 0
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = dict_writer(fh, BALANCE_CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in report["strata"]:
            w.writerow({"kind": "stratum", "key": r["stratum"], **r})
            n += 1
        for u in report["units"]:
            for i, g in enumerate(u["groups"]):
                w.writerow({
                    "kind": "unit", "key": u["unit"], "group": g,
                    "assigned": u["assigned"][i], "expected_assigned": u["expected_assigned"][i],
                    "answered": u["answered"][i], "expected_answered": u["expected_answered"][i],
                    "p_value": u["p_value"], "dissimilarity": u["dissimilarity"],
                    "passed": u["passed"], "reason": u["reason"], "deff": u["deff"],
                    "n_eff": u["n_eff"],
                })
                n += 1
    return n

