"""Verification: re-derive a stored draw from the frame and its seed, case by case."""

from __future__ import annotations

import os
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from minping.draws.draw import _assign, _Phases, current_draw, units_digest
from minping.draws.frame import frame_from_file, load_frame, user_errors
from minping.experiment import verify_arms
from minping.frames import ProgressCallback
from minping.models import (
    CaseUnit,
    FrameContact,
    SampleCase,
    Stratum,
    Unit,
)
from sampling.draw import DrawAudit, DrawError, DrawnCase, rederive, verify_draw

# --- verification -------------------------------------------------------------------------


@user_errors
def verify(session: Session, cfg, *, frame_file: str | os.PathLike | None = None,
           encoding: str | None = None, draw_id: int | None = None,
           progress: ProgressCallback | None = None) -> dict:
    """Re-derive the draw from the frame and the stored seed; compare case by case.

    With ``frame_file`` the frame is read from that file instead of the
    database.  Also checks every case's stored units against the assignment
    digests, and re-derives the assignment from the re-derived draw.

    Returns a dict with ``matches`` (bool), ``frame_hash_matches``,
    ``assignment_matches``, ``cases`` (how many were compared) and
    ``problems`` (one entry per differing case).  ``progress(phase, 0, None)``
    is called as each phase starts (``load``, ``hash``, ``rederive``,
    ``compare``, ``units``, then ``done``).
    """
    timings: dict[str, float] = {}
    step = _Phases(progress, timings)
    sd = current_draw(session, cfg, draw_id=draw_id)
    audit = DrawAudit.from_dict(sd.allocation["audit"])
    stratification = sd.stratification
    step("load")
    if frame_file is not None:
        cols = frame_from_file(frame_file, cfg, encoding=encoding)
        source = str(frame_file)
    else:
        cols = load_frame(session, sd.campaign_id, sd.frame_id)
        source = "database"
    labels = cols.strata(stratification)
    step("hash")
    digest = cols.digest()
    step("rederive")
    try:
        again = rederive(audit, labels)
    except DrawError:
        again = None  # verify_draw reports why
    step("compare")
    problems, stored, case_of_index, check = _compare_cases(session, sd.id, cols, labels, audit,
                                                            digest, again)

    # the assignment: stored units against the digest, and re-derived from the draw
    step("units")
    assignment_ok, rederived_ok = _check_units(session, cfg, sd, audit, cols, labels, again,
                                               check, stored, case_of_index, problems)
    # the mode experiment's arms, re-derived from their audit entries (minping.experiment)
    arms = verify_arms(session, sd.id)
    for p in arms["problems"]:
        problems.append({"pseudo_id": p["case"], "index": None, "status": "experiment",
                         "fields": ["mode_arm"], "detail": p.get("detail") or
                         f"arm {p['stored']!r} stored, {p['derived']!r} re-derived from the audit"})
    matches = (check.matches and assignment_ok and rederived_ok is not False
               and arms["matches"]
               and not any(p["status"] == "not_in_frame" for p in problems))
    step(None)
    return {
        "draw_id": sd.id,
        "frame": source,
        "seed": sd.seed,
        "frame_hash": digest,
        "recorded_frame_hash": audit.frame_hash,
        "frame_hash_matches": check.frame_hash_matches,
        "cases": len(stored) + sum(p["status"] == "not_in_frame" for p in problems),
        "assignment_matches": assignment_ok and rederived_ok is not False,
        "experiment": {k: arms[k] for k in ("matches", "cases", "cati_first")},
        "matches": matches,
        "problems": problems,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def _compare_cases(session: Session, draw_id: int, cols, labels, audit: DrawAudit, digest: str,
                   again) -> tuple[list[dict], list[DrawnCase], dict[int, int], object]:
    """The stored cases against the re-derived draw: problems, stored cases, case id by index."""
    scode = dict(session.execute(select(Stratum.id, Stratum.code)
                                 .where(Stratum.draw_id == draw_id)).all())
    stored_rows = session.execute(
        select(SampleCase.id, SampleCase.pseudo_id, FrameContact.phone, SampleCase.stratum_id,
               SampleCase.draw_order, SampleCase.replicate, SampleCase.is_reserve,
               SampleCase.inclusion_prob, SampleCase.weight)
        .join(FrameContact, FrameContact.id == SampleCase.contact_id)
        .where(SampleCase.draw_id == draw_id)
    ).all()
    problems: list[dict] = []
    stored: list[DrawnCase] = []
    pseudo_at: dict[int, str] = {}
    at = cols.positions([r.phone for r in stored_rows]).tolist()
    case_of_index: dict[int, int] = {}
    for r, i in zip(stored_rows, at, strict=True):
        if i < 0:
            problems.append({"pseudo_id": r.pseudo_id, "index": None, "status": "not_in_frame",
                             "fields": [], "detail": "the case's number is not in the frame"})
            continue
        pseudo_at[i] = r.pseudo_id
        case_of_index[i] = r.id
        stored.append(DrawnCase(index=i, stratum=scode[r.stratum_id], order=r.draw_order,
                                replicate=r.replicate, reserve=bool(r.is_reserve),
                                prob=r.inclusion_prob, weight=r.weight))
    check = verify_draw(stored, labels, audit=audit, frame_digest=digest, again=again)
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
    return problems, stored, case_of_index, check


def _check_units(session: Session, cfg, sd, audit: DrawAudit, cols, labels, again, check,
                 stored: list[DrawnCase], case_of_index: dict[int, int], problems: list[dict]
                 ) -> tuple[bool, bool | None]:
    """Stored units against the recorded digests, and the assignment re-derived from the draw.

    Appends a problem for each mismatch; returns (stored units match, re-derived matches or
    ``None`` when the draw itself could not be re-derived).
    """
    units = stored_units(session, sd.id)
    by_index = {c.index: c for c in stored}
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
    if check.error is None and again is not None:
        groups = cols.group_at(again.index)
        res = again.reserve
        hs = [labels.labels[c] for c in labels.codes[again.index].tolist()]
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
    return assignment_ok, rederived_ok


def _case_dict(c: DrawnCase | None) -> dict | None:
    if c is None:
        return None
    return {"stratum": c.stratum, "order": c.order, "replicate": c.replicate,
            "reserve": c.reserve}


def stored_units(session: Session, draw_id: int) -> dict[int, tuple[str, ...]]:
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
