"""Interviewer and supervisor screens (blueprint ``cati``, mounted at ``/cati``).

Routes stay thin: they check who is asking, parse the request and call
:mod:`cati.service`, :mod:`minping.scheduler` and :mod:`minping.fieldstats`.

The app's clock and Twilio client come from its runtime (:mod:`minping.runtime`;
default: the system clock), so tests and demos can move time forward and watch
appointments come due.
"""

from __future__ import annotations

from datetime import date, datetime, time

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import func, select
from werkzeug.routing import IntegerConverter

from cati import replies, service
from cati.auth import (
    Throttled,
    attempt_login,
    check_csrf,
    client_address,
    csrf_token,
    end_session,
    load_user,
    login_required,
    roles_required,
)
from cati.i18n import LANGUAGES, gettext, prompt_language
from cati.replies import error_text
from minping import calling, fieldstats
from minping.cases import CaseError, case_units
from minping.db import db_session, settings_of
from minping.dispositions import Refused, has_consent
from minping.models import (
    Answer,
    Appointment,
    FrameContact,
    SampleCase,
    SampleDraw,
    Stratum,
    User,
)
from minping.runtime import current_runtime
from minping.scheduler import ProgressCache
from minping.score_effects import interviewer_effects_by_track
from scoring.aapor import CATI_CHOICES

bp = Blueprint("cati", __name__, url_prefix="/cati", template_folder="templates",
               static_folder="static", static_url_path="/static")

SUPERVISORS = ("supervisor", "statistician")

#: Largest id a path or a form may name (the database's 32-bit integer columns).
MAX_ID = 2**31 - 1

#: Server-side length limits (characters) of every text field the screens post.
LIMITS = {"username": 64, "password": 1024, "note": 500, "reason": 200, "q": 40,
          "code": 8, "how": 16, "channel": 8, "language": 8, "key": 8, "appt_date": 10,
          "appt_time": 8, "appt_kind": 8, "conversion": 1, "next": 200}


class IdConverter(IntegerConverter):
    """``<id:case_id>``: a whole number from 1 to :data:`MAX_ID`; anything else is a 404
    (an 11-digit id would overflow PostgreSQL's integer and be a 500)."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=MAX_ID)


@bp.record_once
def _register_converter(state):
    state.app.url_map.converters.setdefault("id", IdConverter)


def field_text(name: str, default: str = "", *, source=None) -> str:
    """A posted text field within its :data:`LIMITS`; 400 naming the field otherwise."""
    raw = (request.form if source is None else source).get(name, default)
    if not isinstance(raw, str):
        abort(400, description=f"{name}: expected text")
    limit = LIMITS[name]
    if len(raw) > limit:
        abort(400, description=f"{name}: at most {limit} characters, got {len(raw)}")
    return raw


def bounded_id(name: str, raw) -> int:
    """A database id from a form or JSON field: 1..:data:`MAX_ID`, else 400 naming it."""
    try:
        value = int(raw)
    except (TypeError, ValueError):
        abort(400, description=f"{name}: expected a whole number, got {str(raw)[:20]!r}")
    if not 1 <= value <= MAX_ID:
        abort(400, description=f"{name}: {str(raw)[:20]!r} is out of range")
    return value


def now() -> datetime:
    return current_runtime().now()


def survey_config():
    return current_runtime().survey_config()


def progress_cache() -> ProgressCache:
    cache = current_app.extensions.get("cati.progress")
    if cache is None:
        cache = ProgressCache(current_app.config.get("CATI_PROGRESS_SECONDS", 10.0))
        current_app.extensions["cati.progress"] = cache
    return cache


def twilio_client():
    """The telephony gateway's client, or ``None`` for manual dialing."""
    runtime = current_runtime()
    return runtime.twilio_client() if runtime.has_telephony else None


@bp.before_app_request
def _before():
    if request.blueprint == "cati":
        load_user()
        check_csrf()


@bp.app_context_processor
def _context():
    if request.blueprint != "cati":
        return {}
    return {"_": gettext, "csrf_token": csrf_token, "user": g.get("user"),
            "lang": g.user.language if g.get("user") else "zh", "LANGUAGES": LANGUAGES}


@bp.errorhandler(403)
def _forbidden(exc):
    return render_template("cati/error.html", code=403,
                           message=gettext("You are not allowed to open this page.")), 403


# --- log-in ----------------------------------------------------------------------------------


def safe_next(target: str) -> str:
    """Where to go after log-in: a path of the CATI screens, never elsewhere (no other
    host, no control characters that would split the ``Location`` header)."""
    if (len(target) > LIMITS["next"] or not target.startswith("/cati/")
            or target.startswith("//") or "\\" in target
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target)):
        return url_for("cati.index")
    return target


replies.install(bp, field_text=field_text, now=now, safe_next=safe_next)


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        try:
            user, _reason = attempt_login(field_text("username").strip(),
                                          field_text("password"), now=now())
        except Throttled as exc:
            error = gettext("Too many attempts: wait {n} seconds and try again.", n=exc.seconds)
            return (render_template("cati/login.html", error=error), 429,
                    {"Retry-After": str(exc.seconds)})
        if user is not None:
            return redirect(safe_next(request.args.get("next", "")))
        # the same answer for a wrong password, an unknown name and a locked account
        error = gettext("Wrong user name or password.")
    return render_template("cati/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
@login_required
def logout():
    s = db_session()
    service.expire_holds_of(s, g.user)
    end_session(s, "logout")
    s.commit()
    return redirect(url_for("cati.login"))


@bp.post("/language")
@login_required
def language():
    lang = field_text("language", "zh")
    if lang in LANGUAGES:
        g.user.language = lang
        db_session().commit()
    return redirect(request.referrer or url_for("cati.index"))


@bp.get("/")
@login_required
def index():
    if g.user.role == "interviewer":
        return redirect(url_for("cati.work"))
    return redirect(url_for("cati.dashboard"))


# --- interviewer ------------------------------------------------------------------------------


@bp.get("/work")
@roles_required("interviewer")
def work():
    s = db_session()
    t = now()
    current = service.held_by(s, g.user.id, now=t)
    my_appointments = s.execute(
        select(Appointment, SampleCase.pseudo_id)
        .join(SampleCase, SampleCase.id == Appointment.case_id)
        .where(Appointment.status == "pending", Appointment.interviewer_id == g.user.id)
        .order_by(Appointment.due_at).limit(20)
    ).all()
    tz = survey_config().calling.tz
    return render_template("cati/work.html", current=current, appointments=my_appointments,
                           tz=tz, now=t, callable=calling.is_allowed(survey_config().calling, t))


@bp.post("/next")
@roles_required("interviewer")
def take_next():
    s = db_session()
    t = now()
    case = service.take_next(s, g.user, now=t, cfg=survey_config(),
                             progress=progress_cache().get(s))
    s.commit()
    if case is None:
        flash(gettext("No case is available now."), "info")
        return redirect(url_for("cati.work"))
    return redirect(url_for("cati.case_screen", case_id=case.id))


def _case_context(s, case, *, for_user):
    cfg = survey_config()
    lang = prompt_language(cfg, for_user.language)
    phone = s.scalar(select(FrameContact.phone).where(FrameContact.id == case.contact_id))
    units = case_units(s, case.id)
    channels = dict(s.execute(select(Answer.unit_id, Answer.channel)
                              .where(Answer.case_id == case.id)).all())
    scale = [{"key": o.key, "label": o.label(lang)} for o in cfg.scale.options]
    name = for_user.display_name or for_user.username
    labels = {o["key"]: o["label"] for o in scale}

    def unit_name(u):
        return u.unit_name if lang != "en" else u.unit_name_en

    return {
        "case": case,
        "phone": service.shown_phone(phone, for_user),
        "introduction": cfg.render_script("introduction", lang, interviewer=name),
        "consent": cfg.render_script("consent", lang, interviewer=name),
        "closing": cfg.render_script("closing", lang, interviewer=name),
        "units": [{"unit_id": u.unit_id, "name": unit_name(u),
                   "question": cfg.render_script("question", lang, unit=unit_name(u),
                                                 interviewer=name),
                   "rating": u.rating, "answered": u.answered, "position": u.position,
                   "label": labels.get(u.rating, ""),
                   "channel": channels.get(u.unit_id)}
                  for u in units],
        "scale": scale,
        "history": service.attempt_history(s, case.id),
        "appointments": service.appointments_of(s, case.id),
        "choices": CATI_CHOICES,
        "tz": cfg.calling.tz,
        "stratum": s.get(Stratum, case.stratum_id),
    }


def _render_case(s, case, t, *, error=None, form=None, status=200):
    attempt = service.open_attempt(s, case, g.user)
    cfg = survey_config()
    slots = [{"day": day.isoformat(), "times": [f"{x:%H:%M}" for x in times]}
             for day, times in calling.appointment_slots(cfg.calling, t)]
    return render_template("cati/case.html", attempt=attempt, error=error, form=form or {},
                           consented=has_consent(s, attempt), slots=slots,
                           telephony=twilio_client() is not None and bool(g.user.phone),
                           **_case_context(s, case, for_user=g.user)), status


@bp.get("/case/<id:case_id>")
@roles_required("interviewer")
def case_screen(case_id):
    s = db_session()
    t = now()
    case = service.holding(s, case_id, g.user, now=t)
    return _render_case(s, case, t)


@bp.post("/case/<id:case_id>/dial")
@roles_required("interviewer")
def dial(case_id):
    s = db_session()
    t = now()
    case = service.holding(s, case_id, g.user, now=t)
    client = twilio_client()
    how = (field_text("how", source=request.args) or field_text("how") or "manual")
    if client is not None and g.user.phone and how != "manual" and case.release_state != "practice":
        attempt = service.dial_through_gateway(
            s, case, g.user, now=t, client=client,
            from_number=settings_of(current_app).twilio_from_number, cfg=survey_config())
    else:
        attempt = service.begin_attempt(s, case, g.user, now=t, how="manual")
    s.commit()
    return jsonify(ok=True, attempt_id=attempt.id, call_sid=attempt.call_sid)


@bp.post("/case/<id:case_id>/consent")
@roles_required("interviewer")
def consent(case_id):
    s = db_session()
    t = now()
    case = service.holding(s, case_id, g.user, now=t)
    attempt = service.open_attempt(s, case, g.user)
    if attempt is None:
        raise CaseError(gettext("Dial first."))
    service.mark_answered(s, attempt, now=t, consent=True)
    if current_app.config.get("CATI_RECORD_AFTER_CONSENT") and attempt.call_sid:
        client = twilio_client()
        if client is not None:
            service.start_recording(s, attempt, now=t, client=client)
    s.commit()
    return jsonify(ok=True)


@bp.post("/case/<id:case_id>/answer")
@roles_required("interviewer")
def answer(case_id):
    s = db_session()
    t = now()
    case = service.holding(s, case_id, g.user, now=t)
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        data = {}
    try:
        unit_id = int(data.get("unit_id"))
    except (TypeError, ValueError):
        return jsonify(ok=False, error=f"unit_id: {str(data.get('unit_id'))[:20]!r} "
                                       "is not a number"), 400
    if not 1 <= unit_id <= MAX_ID:
        return jsonify(ok=False, error="unit_id: out of range"), 400
    key = data.get("key")
    if key is not None and (not isinstance(key, str) or len(key) > LIMITS["key"]):
        return jsonify(ok=False, error="key: not one of the scale's keys"), 400
    try:
        service.save_answer(s, case, g.user, unit_id, key, now=t, cfg=survey_config())
    except KeyError:
        keys = " ".join(o.key for o in survey_config().scale.options)
        return jsonify(ok=False, error=gettext("Key {key} is not on the scale (keys: {keys}).",
                                               key=key, keys=keys)), 400
    service.keep_alive(s, case, now=t)
    s.commit()
    return jsonify(ok=True, unit_id=unit_id, key=key)


@bp.post("/case/<id:case_id>/keepalive")
@roles_required("interviewer")
def keepalive(case_id):
    s = db_session()
    t = now()
    case = service.holding(s, case_id, g.user, now=t)
    until = service.keep_alive(s, case, now=t)
    s.commit()
    return jsonify(ok=True, until=until.isoformat())


@bp.post("/case/<id:case_id>/give-back")
@roles_required("interviewer")
def give_back(case_id):
    """The interviewer gives the held case back without calling (ends the hold)."""
    s = db_session()
    t = now()
    case = service.holding(s, case_id, g.user, now=t)
    service.give_back(s, case, g.user, now=t)
    s.commit()
    return redirect(url_for("cati.work"))


def _parse_appointment(form):
    day, at = field_text("appt_date").strip(), field_text("appt_time").strip()
    if not day and not at:
        return None
    try:
        return service.AppointmentRequest(day=date.fromisoformat(day),
                                          at=time.fromisoformat(at),
                                          kind=field_text("appt_kind", "soft"))
    except ValueError:
        raise Refused("Appointment: choose the date and the time of the call-back.") from None


@bp.post("/case/<id:case_id>/close")
@roles_required("interviewer")
def close(case_id):
    """Close the attempt; a refusal shows the case screen again with the message in the
    interviewer's language and everything that was typed (422)."""
    s = db_session()
    t = now()
    case = service.holding(s, case_id, g.user, now=t)
    form = {name: field_text(name) for name in ("code", "note", "appt_date", "appt_time",
                                                 "appt_kind", "conversion")}
    code = form["code"]
    try:
        appointment = (_parse_appointment(request.form) if code == service.APPOINTMENT_CODE
                       else None)
        finish = service.close_attempt(
            s, case, g.user, code=code, now=t, cfg=survey_config(),
            note=form["note"].strip() or None, appointment=appointment,
            refusal_conversion=form["conversion"] == "1")
    except Refused as exc:
        s.rollback()
        case = service.holding(s, case_id, g.user, now=t)
        return _render_case(s, case, t, error=error_text(exc), form=form, status=422)
    s.commit()
    flash(gettext("Case {case} closed: {code}.", case=case.pseudo_id, code=finish.code), "info")
    return redirect(url_for("cati.work"), 303)


# --- supervisor and statistician -------------------------------------------------------------


@bp.get("/dashboard")
@roles_required(*SUPERVISORS)
def dashboard():
    s = db_session()
    draws = s.execute(select(SampleDraw.id, func.count(SampleCase.id))
                      .join(SampleCase, SampleCase.draw_id == SampleDraw.id)
                      .where(SampleCase.release_state == "held")
                      .group_by(SampleDraw.id)).all()
    cfg = survey_config()
    return render_template("cati/dashboard.html", held=draws,
                           refresh_ms=current_app.config.get("CATI_REFRESH_MS", 3000),
                           # interviewer effects (the _interviewer_effects.html partial)
                           interviewer_effects=interviewer_effects_by_track(s, cfg),
                           track_names={"overall": gettext("Overall"),
                                        **{t.id: t.label(g.user.language) for t in cfg.tracks}},
                           **forecast_context(s, cfg, now()))


def forecast_context(s, cfg, at) -> dict:
    """The forecast partial's context (``cati/_forecast.html``; :mod:`minping.forecast`)."""
    from minping import forecast

    cache = current_app.extensions.get("minping.forecast_cache")
    if cache is None:  # one per app: recomputed when the field moved, at most every N s
        cache = current_app.extensions.setdefault("minping.forecast_cache", forecast.ForecastCache(
            current_app.config.get("FORECAST_CACHE_SECONDS", forecast.CACHE_MIN_SECONDS)))
    return {"forecast": cache.get(s, cfg, now=at, n_sims=forecast.DEFAULT_SIMS),
            "forecast_chart": forecast.chart}


@bp.get("/dashboard.json")
@roles_required(*SUPERVISORS)
def dashboard_json():
    s = db_session()
    data = fieldstats.dashboard(s, now=now())
    return jsonify(data)


@bp.route("/cases", methods=["GET", "POST"])
@roles_required(*SUPERVISORS)
def search():
    """Find a case.  The query is posted (a GET shows the form only), so no number
    reaches an access log; only supervisors search by phone number, and each such
    search is audited."""
    s = db_session()
    q = field_text("q").strip() if request.method == "POST" else ""
    if not q:
        return render_template("cati/search.html", q="", rows=None)
    try:
        found, by_phone = service.find_cases(s, q, by_phone=g.user.role == "supervisor")
    except ValueError as exc:
        abort(400, description=str(exc))
    phones = dict(s.execute(select(FrameContact.id, FrameContact.phone).where(
        FrameContact.id.in_([c.contact_id for c in found]))).all()) if found else {}
    rows = [{"case": c, "phone": service.shown_phone(phones[c.contact_id], g.user)}
            for c in found]
    t = now()
    if by_phone:
        service.log_phone_search(s, g.user, q, [c.id for c in found], now=t,
                                 address=client_address())
    service.log_phone_view(s, g.user, [c.id for c in found], now=t)
    s.commit()
    return render_template("cati/search.html", q=q, rows=rows)


@bp.get("/cases/<id:case_id>")
@roles_required(*SUPERVISORS)
def case_detail(case_id):
    s = db_session()
    case = s.get(SampleCase, case_id)
    if case is None:
        abort(404)
    interviewers = s.scalars(select(User).where(User.role == "interviewer", User.active)
                             .order_by(User.username)).all()
    if service.log_phone_view(s, g.user, [case_id], now=now()):
        s.commit()
    return render_template("cati/case_detail.html", interviewers=interviewers,
                           dispositions=service.disposition_history(s, case_id),
                           audit=service.audit_of_case(s, case_id),
                           **_case_context(s, case, for_user=g.user))


@bp.post("/cases/<id:case_id>/answer")
@roles_required("supervisor")
def change_answer(case_id):
    s = db_session()
    case = s.get(SampleCase, case_id) or abort(404)
    key = field_text("key").strip() or None
    unit_id = _form_int("unit_id")
    try:
        service.change_answer(s, case, g.user, unit_id, key, now=now(),
                              cfg=survey_config(), reason=field_text("reason").strip())
    except KeyError:
        keys = " ".join(o.key for o in survey_config().scale.options)
        raise Refused("Key {key} is not on the scale (keys: {keys}).", key=key or "",
                      keys=keys) from None
    s.commit()
    flash(gettext("Answer changed (kept in the audit log)."), "info")
    return redirect(url_for("cati.case_detail", case_id=case_id))


def _form_int(name: str) -> int:
    """A database id from the posted form, or 400 naming the field."""
    return bounded_id(name, request.form.get(name, ""))


@bp.post("/cases/<id:case_id>/reassign")
@roles_required("supervisor")
def reassign(case_id):
    s = db_session()
    case = s.get(SampleCase, case_id) or abort(404)
    interviewer_id = _form_int("interviewer_id") if request.form.get("interviewer_id") else None
    service.reassign(s, case, g.user, interviewer_id, now=now())
    s.commit()
    flash(gettext("Case reassigned."), "info")
    return redirect(url_for("cati.case_detail", case_id=case_id))


@bp.post("/cases/<id:case_id>/handover")
@roles_required("supervisor")
def handover(case_id):
    s = db_session()
    case = s.get(SampleCase, case_id) or abort(404)
    service.hand_over(s, case, g.user, field_text("channel"), now=now())
    s.commit()
    flash(gettext("Case handed over."), "info")
    return redirect(url_for("cati.case_detail", case_id=case_id))


# Supervisor and statistician pages (release confirmation, case lists, statistician's page)
# live in cati/supervisor.py, practice mode in cati/practice_views.py, on this blueprint.
from cati import practice_views, supervisor  # noqa: E402,F401
