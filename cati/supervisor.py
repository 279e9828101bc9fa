"""Supervisor and statistician pages, on the ``cati`` blueprint (imported by :mod:`cati.views`).

* ``/cati/release-replicate``: "release the next replicate" shows what it would release
  (cases per stratum) and asks to confirm; the confirmation names the replicate, so a
  second click (or a second supervisor) releases nothing more.  The rule is
  :func:`minping.draws.release.release_next`, as for ``minping sample release --next``.
* ``/cati/caselist``: case lists with filters (today's appointments, refusal conversions,
  hand-overs, by interviewer, stratum or disposition), paginated.
* ``/cati/statistics``: the statistician's page: balance per unit
  (:func:`minping.draws.balance.balance_report`), response rates per stratum and mode
  (:mod:`minping.fieldstats`) and live phone scores (:func:`minping.scores.score_phone`).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from flask import abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from cati import service
from cati.auth import roles_required
from cati.i18n import gettext
from cati.views import SUPERVISORS, bounded_id, bp, now, survey_config
from minping import fieldstats
from minping.cases import CaseError
from minping.db import db_session
from minping.draws.release import next_release
from minping.errors import MinpingError
from minping.models import Appointment, SampleCase, SampleDraw, Stratum, User
from scoring.dispositions import DISPOSITIONS

#: Rows per page of a case list.
PAGE_SIZE = 50


def _stratum_labels(s, lang: str) -> dict[str, str]:
    key = "label_en" if lang == "en" else "label_zh"
    return {row["stratum"]: row[key] for row in fieldstats.stratum_progress(s)}


def _latest_draw(s) -> int | None:
    return s.scalar(select(func.max(SampleDraw.id)).where(SampleDraw.practice.is_(False)))


def _draw_id_arg(s) -> int:
    raw = request.values.get("draw_id")
    draw_id = bounded_id("draw_id", raw) if raw else _latest_draw(s)
    if draw_id is None:
        raise CaseError(gettext("There is no draw yet."))
    return draw_id


# --- release the next replicate ----------------------------------------------------------


@bp.get("/release-replicate")
@roles_required("supervisor")
def release_confirm():
    """What the next release would put into the field, per stratum, with a confirm button."""
    s = db_session()
    draw_id = _draw_id_arg(s)
    plan = next_release(s, draw_id)
    labels = _stratum_labels(s, g.user.language)
    rows = [{"stratum": code, "label": labels.get(code, code), "cases": n}
            for code, n in plan.by_stratum.items()]
    return render_template("cati/release_confirm.html", plan=plan, rows=rows)


@bp.post("/release-replicate")
@roles_required("supervisor")
def release_replicate():
    s = db_session()
    draw_id = _draw_id_arg(s)
    raw = request.form.get("replicate")
    if not raw:  # no confirmation yet: show what would be released
        return redirect(url_for("cati.release_confirm", draw_id=draw_id))
    expected = bounded_id("replicate", raw)
    plan = service.release_next_replicate(s, draw_id, g.user, now=now(), expected=expected,
                                          cfg=survey_config())
    s.commit()
    if plan.released:
        flash(gettext("Replicate {r} released: {n} cases.", r=plan.replicate, n=plan.released),
              "info")
    else:  # the replicate confirmed is out already (a second click): nothing more goes
        flash(gettext("Replicate {r} was already released; nothing more was released.",
                      r=expected), "error")
    return redirect(url_for("cati.dashboard"))


# --- case lists --------------------------------------------------------------------------

#: The named filters of the case list.
VIEWS = ("all", "appointments_today", "conversions", "handovers", "assigned", "held")


def view_labels() -> dict[str, str]:
    return {"all": gettext("All cases"), "appointments_today": gettext("Today's appointments"),
            "conversions": gettext("Refusal conversions"), "handovers": gettext("Hand-overs"),
            "assigned": gettext("Assigned to an interviewer"), "held": gettext("Being worked now")}


def _day_bounds(t: datetime) -> tuple[datetime, datetime]:
    tz = survey_config().calling.tz
    local = t.astimezone(tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def case_list_query(s, *, view: str, interviewer: int | None, stratum: str | None,
                    code: str | None, t: datetime):
    """The cases a list shows (released cases, newest activity first)."""
    q = (select(SampleCase, Stratum.code)
         .join(Stratum, Stratum.id == SampleCase.stratum_id)
         .where(SampleCase.release_state == "released"))
    if view == "appointments_today":
        start, end = _day_bounds(t)
        q = q.where(SampleCase.id.in_(select(Appointment.case_id).where(
            Appointment.status == "pending", Appointment.due_at >= start,
            Appointment.due_at < end)))
    elif view == "conversions":
        q = q.where(SampleCase.current_disposition.in_(tuple(service.SOFT_REFUSALS)),
                    SampleCase.state != "final")
    elif view == "handovers":
        q = q.where(SampleCase.state == "handoff_cati")
    elif view == "assigned":
        q = q.where(SampleCase.assigned_to.is_not(None), SampleCase.state != "final")
    elif view == "held":
        q = q.where(SampleCase.lock_channel.is_not(None), SampleCase.lock_expires_at >= t)
    if interviewer is not None:
        q = q.where(SampleCase.assigned_to == interviewer)
    if stratum:
        q = q.where(Stratum.code == stratum)
    if code:
        q = q.where(func.coalesce(SampleCase.final_disposition,
                                  SampleCase.current_disposition) == code)
    return q


@bp.get("/caselist")
@roles_required(*SUPERVISORS)
def case_list():
    s = db_session()
    t = now()
    view = request.args.get("view", "all")
    if view not in VIEWS:
        abort(400, description=f"view: one of {', '.join(VIEWS)}")
    interviewer = (bounded_id("interviewer", request.args["interviewer"])
                   if request.args.get("interviewer") else None)
    stratum = (request.args.get("stratum") or "")[:40] or None
    code = (request.args.get("code") or "")[:8] or None
    page = bounded_id("page", request.args.get("page") or 1)
    q = case_list_query(s, view=view, interviewer=interviewer, stratum=stratum, code=code, t=t)
    total = s.scalar(select(func.count()).select_from(q.subquery()))
    rows = s.execute(q.order_by(SampleCase.last_attempt_at.desc().nulls_last(), SampleCase.id)
                     .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all()
    ids = [c.id for c, _ in rows]
    appts = {}
    for a in s.scalars(select(Appointment).where(Appointment.case_id.in_(ids),
                                                 Appointment.status == "pending")
                       .order_by(Appointment.due_at)):
        appts.setdefault(a.case_id, a)
    names = dict(s.execute(select(User.id, User.display_name)).all())
    lang = g.user.language
    labels = _stratum_labels(s, lang)
    tz = survey_config().calling.tz
    out = []
    for case, scode in rows:
        shown = case.final_disposition or case.current_disposition
        d = DISPOSITIONS.get(shown) if shown else None
        appt = appts.get(case.id)
        out.append({
            "case": case, "stratum": labels.get(scode, scode),
            "code": shown, "label": (d.label_en if lang == "en" else d.label_zh) if d else "",
            "assigned": names.get(case.assigned_to) if case.assigned_to else None,
            "appointment": appt.due_at.astimezone(tz).strftime("%m-%d %H:%M") if appt else None,
            "appointment_kind": appt.kind if appt else None,
            "appointment_with": names.get(appt.interviewer_id) if appt else None,
        })
    interviewers = s.execute(select(User.id, User.display_name)
                             .where(User.role == "interviewer").order_by(User.username)).all()
    used_codes = sorted({c for (c,) in s.execute(select(func.coalesce(
        SampleCase.final_disposition, SampleCase.current_disposition)).distinct()) if c},
        key=lambda c: tuple(int(p) for p in c.split(".")))
    return render_template(
        "cati/case_list.html", rows=out, total=total, page=page,
        pages=max(1, math.ceil(total / PAGE_SIZE)), view=view, views=view_labels(),
        interviewer=interviewer, stratum=stratum, code=code, interviewers=interviewers,
        strata=sorted(labels.items()),
        codes=[(c, DISPOSITIONS[c].label_en if lang == "en" else DISPOSITIONS[c].label_zh)
               for c in used_codes if c in DISPOSITIONS])


# --- the statistician's page -------------------------------------------------------------


@bp.get("/statistics")
@roles_required(*SUPERVISORS)
def statistics():
    from minping.draws.balance import balance_report
    from minping.scores import score_phone

    s = db_session()
    cfg = survey_config()
    lang = g.user.language
    labels = _stratum_labels(s, lang)
    try:
        balance = balance_report(s, cfg)
    except MinpingError as exc:
        balance, balance_error = None, gettext("No balance yet: {detail}", detail=str(exc))
    else:
        balance_error = None
    unit_names = {u.id: (u.name_en if lang == "en" else u.name) for u in cfg.units}
    holes = []
    if balance:
        for u in balance["units"]:
            counts = u["answered"] if balance["tested"] == "answered" else u["assigned"]
            expected = (u["expected_answered"] if balance["tested"] == "answered"
                        else u["expected_assigned"])
            u["holes"] = [grp for grp, n, e in zip(u["groups"], counts, expected, strict=False)
                          if n == 0 and e > 0]
            u["counts"] = list(zip(u["groups"], counts, expected, strict=False))
            u["label"] = unit_names.get(u["unit"], u["unit"])
            if u["holes"]:
                holes.append(u)
    outcomes = fieldstats.case_outcomes(s)
    rates = {
        "overall": fieldstats.rates_by(outcomes, lambda o: "all").get("all"),
        "stratum": fieldstats.rates_by(outcomes, lambda o: o.stratum_id),
        "mode": fieldstats.rates_by(outcomes, lambda o: o.mode),
    }
    stratum_code = dict(s.execute(select(Stratum.id, Stratum.code)).all())
    rates["stratum"] = sorted(((labels.get(stratum_code.get(k), str(k)), v)
                               for k, v in rates["stratum"].items()))
    try:
        _data, scores = score_phone(s, cfg)
    except MinpingError as exc:
        scores, score_error = None, gettext("No scores yet: {detail}", detail=str(exc))
    else:
        score_error = None
    score_rows = []
    if scores is not None:
        for u in scores:
            score_rows.append({
                "unit": u.unit, "label": unit_names.get(u.unit, u.unit), "n": u.n,
                "score": _fmt(u.score), "ci": (_fmt(u.ci_low), _fmt(u.ci_high)),
                "sat": _fmt(100 * u.sat) if u.sat == u.sat else "—",
                "status": u.status})
    return render_template("cati/statistics.html", balance=balance, balance_error=balance_error,
                           holes=holes, rates=rates, scores=score_rows, score_error=score_error,
                           scale=cfg.scale)


def _fmt(x: float) -> str:
    return "—" if x is None or x != x else f"{x:.1f}"
