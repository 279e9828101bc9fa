"""The draw: allocate, draw, assign units and store the audit record (see :mod:`minping.draws`)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from minping.campaign import codes, sync_campaign
from minping.cases import new_pseudo_id
from minping.draws.frame import STRATIFICATIONS, contact_ids, load_frame, user_errors
from minping.errors import MinpingError
from minping.frames import ProgressCallback, get_frame
from minping.models import (
    AuditLog,
    Campaign,
    CaseUnit,
    RespondentGroup,
    SampleCase,
    SampleDraw,
    Stratum,
    Town,
    Unit,
)
from sampling.allocation import allocate, allocate_two_way
from sampling.assign import Assignment, assign_units
from sampling.draw import (
    draw,
    make_audit,
)

#: See :mod:`minping.draws` for why.
ASSIGNMENT_PRIORITY = "group"


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _campaign(session: Session, cfg) -> Campaign:
    return sync_campaign(session, cfg)


def current_draw(session: Session, cfg, *, draw_id: int | None = None) -> SampleDraw:
    """The campaign's latest draw (or draw ``draw_id``); never a practice draw."""
    campaign = _campaign(session, cfg)
    q = select(SampleDraw).where(SampleDraw.campaign_id == campaign.id,
                                 SampleDraw.practice.is_(False))
    if draw_id is not None:
        q = q.where(SampleDraw.id == draw_id)
    sd = session.scalar(q.order_by(SampleDraw.id.desc()).limit(1))
    if sd is None:
        raise MinpingError("no draw yet" if draw_id is None else f"no draw {draw_id}"
                           + "; draw the sample with `minping sample draw`")
    return sd



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


@user_errors
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
    progress: ProgressCallback | None = None,
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
    progress : callable(phase, done, total), optional
        Called as each phase starts (``load``, ``draw``, ``hash``, ``assign``,
        ``store``, then ``done``) with ``done=0`` and ``total=None``.

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
    step = _Phases(progress, timings)
    campaign = _campaign(session, cfg)
    fr = get_frame(session, campaign.id, frame)
    _withdraw_earlier(session, fr, force)

    # the frame: only the columns the draw needs, in canonical order; counts per stratum
    step("load")
    cols = load_frame(session, campaign.id, fr.id)
    N = cols.counts(strata)
    total = sum(N.values())
    if size > total:
        raise MinpingError(f"--size {size} is larger than the frame {fr.name!r} ({total} contacts)")
    counts, real = _allocate(cfg, N, size, stratification=strata, method=method, S=S,
                             fixed=fixed, lower=lower, upper=upper)

    # the draw, then the frame hash (streamed)
    step("draw")
    stratum_labels = cols.strata(strata)
    result = draw(stratum_labels, {k: v for k, v in counts.items() if v > 0},
                  rng=np.random.default_rng(seed_int), replicates=replicates, reserve=reserve)
    step("hash")
    digest = cols.digest()

    # units per case: the sample in draw order with [seed, 1], the reserve with [seed, 2]
    step("assign")
    is_res = result.reserve
    case_groups = cols.group_at(result.index)
    sample_pos = np.flatnonzero(~is_res).tolist()
    reserve_pos = np.flatnonzero(is_res).tolist()
    case_strata = [stratum_labels.labels[c] for c in stratum_labels.codes[result.index].tolist()]
    main, extra = _assign(cfg, seed_int, [case_groups[p] for p in sample_pos],
                          [case_groups[p] for p in reserve_pos],
                          [case_strata[p] for p in sample_pos],
                          [case_strata[p] for p in reserve_pos])
    units_of: dict[int, tuple[str, ...]] = {}
    for p, us in zip(sample_pos, main.units, strict=True):
        units_of[p] = us  # type: ignore[assignment]
    if extra is not None:
        for p, us in zip(reserve_pos, extra.units, strict=True):
            units_of[p] = us  # type: ignore[assignment]

    step("store")
    sd = _draw_record(result, main, extra, digest=digest, seed=seed_int, method=method,
                      strata=strata, N=N, counts=counts, real=real, size=size,
                      replicates=replicates, reserve=reserve, S=S, fixed=fixed, lower=lower,
                      upper=upper, now=now, created_by=created_by)
    sd.campaign_id, sd.frame_id = campaign.id, fr.id
    session.add(sd)
    session.flush()
    _store_cases(session, cfg, campaign.id, sd.id, N, counts, result,
                 contact_ids(session, fr.id, cols.phones[result.index]), units_of)
    session.add(AuditLog(at=now, actor=created_by or "minping", action="sample.draw",
                         entity="sample_draw", entity_id=str(sd.id),
                         new={"seed": str(seed_int), "size": size, "method": method,
                              "strata": strata, "frame_hash": digest},
                         detail=f"frame {fr.name!r}"))
    session.flush()
    step(None)

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


def _draw_record(result, main: Assignment, extra: Assignment | None, *, digest: str, seed: int,
                 method: str, strata: str, N, counts, real, size: int, replicates: int,
                 reserve: int, S, fixed, lower, upper, now: datetime,
                 created_by: str | None) -> SampleDraw:
    """The draw's audit record: allocation, audit (seed, algorithm, frame hash), assignment."""
    audit = make_audit(
        result, frame_digest=digest, seed=seed, method=method, timestamp=now,
        extra={
            "stratification": strata,
            "assignment_digest": main.digest(),
            "reserve_assignment_digest": extra.digest() if extra else "",
            "assignment_rng": "numpy.random.default_rng([seed, 1]); reserve [seed, 2]",
            "assignment_priority": ASSIGNMENT_PRIORITY,
        },
    )
    sd = SampleDraw(
        frame_hash=digest, seed=str(seed),
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
            "seed": str(seed),
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
    return sd


class _Phases:
    """Times the phases of a long step and reports each start to ``progress(phase, 0, None)``."""

    def __init__(self, progress: ProgressCallback | None, timings: dict[str, float]):
        self.progress = progress
        self.timings = timings
        self.current: str | None = None
        self.started = time.perf_counter()

    def __call__(self, phase: str | None) -> None:
        t = time.perf_counter()
        if self.current is not None:
            self.timings[self.current] = self.timings.get(self.current, 0.0) + t - self.started
        self.current, self.started = phase, t
        if self.progress is not None:
            self.progress(phase or "done", 0, None)


def _withdraw_earlier(session: Session, fr, force: bool) -> None:
    """Refuse a second draw on the frame unless ``force``; then withdraw the earlier held cases."""
    earlier = session.scalars(
        select(SampleDraw).where(SampleDraw.frame_id == fr.id).order_by(SampleDraw.id)
    ).all()
    if not earlier:
        return
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


def _store_cases(session: Session, cfg, campaign_id: int, draw_id: int, N: Mapping[str, int],
                 counts: Mapping[str, int], result, contact_ids: np.ndarray,
                 units_of: Mapping[int, tuple[str, ...]]) -> None:
    """Store the strata, the cases (held) and their units (Core inserts, no ORM objects)."""
    gids = codes(session, RespondentGroup, campaign_id)
    tids = codes(session, Town, campaign_id)
    uids = codes(session, Unit, campaign_id)
    conn = session.connection()
    stratum_ids: dict[str, int] = {}
    for code, n_h in N.items():
        g, _, t = code.partition("/")
        stratum_ids[code] = conn.execute(
            insert(Stratum.__table__).returning(Stratum.__table__.c.id),
            {"draw_id": draw_id, "code": code, "group_id": gids[g],
             "town_id": tids[t] if t else None, "population": n_h,
             "target": int(counts[code])}).scalar_one()
    prob, weight = result.prob.tolist(), result.weight.tolist()
    rep, order, res = result.replicate.tolist(), result.order.tolist(), result.reserve.tolist()
    cids = contact_ids.tolist()
    rows = [{
        "draw_id": draw_id, "contact_id": cids[p], "stratum_id": stratum_ids[result.stratum[p]],
        "pseudo_id": new_pseudo_id(), "inclusion_prob": prob[p], "weight": weight[p],
        "replicate": rep[p], "is_reserve": res[p], "draw_order": order[p],
        "release_state": "held",
    } for p in range(len(cids))]
    table = SampleCase.__table__
    _bulk_insert(conn, table, rows)
    case_id = dict(conn.execute(
        select(table.c.contact_id, table.c.id).where(table.c.draw_id == draw_id)).all())
    cu_rows = [{"case_id": case_id[cids[p]], "unit_id": uids[u], "position": pos}
               for p in range(len(cids)) for pos, u in enumerate(units_of[p], start=1)]
    _bulk_insert(conn, CaseUnit.__table__, cu_rows)


def _bulk_insert(conn, table, rows: list[dict]) -> None:
    """Insert rows: ``COPY`` on PostgreSQL (one stream), ``executemany`` elsewhere.

    Columns left out of the rows get their scalar Python defaults, as with an
    ORM or Core insert.
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), rows)
        return
    cols = list(rows[0])
    defaults = {c.name: c.default.arg for c in table.columns
                if c.name not in cols and c.default is not None and c.default.is_scalar}
    names = [*cols, *defaults]
    tail = list(defaults.values())
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(
            f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row([*(r[c] for c in cols), *tail])
