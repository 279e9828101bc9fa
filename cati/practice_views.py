"""Practice mode on the CATI screens (``/cati/practice``): interviewers take training cases
at any hour; they are dialled by a simulated call only and never counted
(:mod:`minping.practice`)."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, url_for
from sqlalchemy import func, select

from cati.auth import roles_required
from cati.i18n import gettext
from cati.views import bp, now
from minping.db import db_session
from minping.models import SampleCase
from minping.practice import PRACTICE, take_practice_case


@bp.get("/practice")
@roles_required("interviewer")
def practice():
    s = db_session()
    open_cases = s.scalar(select(func.count()).select_from(SampleCase).where(
        SampleCase.release_state == PRACTICE, SampleCase.state != "final")) or 0
    return render_template("cati/practice.html", open_cases=open_cases)


@bp.post("/practice/next")
@roles_required("interviewer")
def practice_next():
    s = db_session()
    case = take_practice_case(s, g.user.id, now=now())
    s.commit()
    if case is None:
        flash(gettext("No practice case is left: ask a supervisor for more."), "info")
        return redirect(url_for("cati.practice"))
    return redirect(url_for("cati.case_screen", case_id=case.id))
