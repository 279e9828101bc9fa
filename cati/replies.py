"""Answers the CATI screens give when something is refused, in the user's language.

* A service's :class:`~minping.dispositions.Refused` (a disposition that does not fit
  the interview, a case no longer held, ...) is translated: JSON (409) to the page's
  fetch calls, a message on the next page otherwise.
* A missing or stale CSRF token (:class:`cati.auth.CsrfRefused`) and an ended
  session (401) never show a raw English page: fetch calls get JSON with ``reauth``
  (the case screen then asks for the password in place, keeping what was typed); a
  form goes back to its page with a message (303: a reload does not post again).
* ``/cati/session-token`` and ``/cati/reauth`` serve that in-place password prompt.
"""

from __future__ import annotations

from flask import flash, g, jsonify, redirect, render_template, request, url_for
from markupsafe import escape

from cati.auth import CsrfRefused, Throttled, attempt_login, csrf_token
from cati.i18n import gettext
from minping.cases import CaseError
from minping.dispositions import Refused

SESSION_ENDED = "Your session has ended: enter your password to go on."


def error_text(exc: Exception) -> str:
    """A service's refusal in the user's language (:class:`Refused` carries its template)."""
    if isinstance(exc, Refused):
        return gettext(exc.template, **exc.values)
    return str(exc)


def is_fetch() -> bool:
    """The page's own fetch calls (JSON body or the CSRF header) rather than a form."""
    return (request.is_json or bool(request.headers.get("X-CSRF-Token"))
            or request.accept_mimetypes.best == "application/json")


def install(bp, *, field_text, now, safe_next) -> None:
    """Register the handlers and the password prompt's routes on the ``cati`` blueprint."""

    def back_here() -> str:
        """The page a form was posted from (same site, CATI screens), else the start."""
        ref = request.referrer or ""
        host = request.host_url.rstrip("/")
        path = ref[len(host):] if ref.startswith(host + "/") else ""
        return safe_next(path) if path else url_for("cati.index")

    @bp.errorhandler(CaseError)
    def _case_error(exc):
        if is_fetch():
            return jsonify(ok=False, error=error_text(exc)), 409
        flash(error_text(exc), "error")
        return redirect(url_for("cati.work" if g.user and g.user.role == "interviewer"
                                else "cati.search"), 303)

    @bp.errorhandler(CsrfRefused)
    def _csrf_refused(exc):
        ended = g.get("user") is None and request.endpoint != "cati.login"
        text = gettext(SESSION_ENDED if ended else
                       "This page was out of date, so nothing was saved: please do it again.")
        if is_fetch():
            return jsonify(ok=False, reauth=ended, csrf=True, error=text), 403
        flash(text, "error")
        return redirect(back_here(), 303)

    @bp.errorhandler(400)
    def _bad_request(exc):
        """A field out of bounds: said in the user's language, naming the field."""
        text = gettext("The form could not be taken: {detail}", detail=exc.description)
        if is_fetch():
            return jsonify(ok=False, error=text), 400
        return render_template("cati/error.html", code=400, message=text), 400

    @bp.errorhandler(404)
    def _not_found(exc):
        text = gettext("There is no such page or case.")
        if is_fetch():
            return jsonify(ok=False, error=text), 404
        return render_template("cati/error.html", code=404, message=text), 404

    def _app_not_found(exc):
        """A 404 the router gives before any blueprint runs (an id out of range in the
        path, ``/cati/case/99999999999``): the screens' page, not werkzeug's."""
        if not (request.path == "/cati" or request.path.startswith("/cati/")):
            return exc
        text = gettext("There is no such page or case.")
        if is_fetch():
            return jsonify(ok=False, error=text), 404
        # no blueprint ran (no session, no template context): a page of its own
        back = escape(url_for("cati.work"))
        return (f'<!doctype html><html lang="zh"><meta charset="utf-8"><title>404</title>'
                f'<p>{escape(text)}</p><p><a href="{back}">{escape(gettext("Back"))}</a></p>'
                f'</html>', 404, {"Content-Type": "text/html; charset=utf-8"})

    bp.record_once(lambda state: state.app.register_error_handler(404, _app_not_found))

    @bp.errorhandler(401)
    def _unauthorised(exc):
        return jsonify(ok=False, reauth=True, error=gettext(SESSION_ENDED)), 401

    @bp.get("/session-token")
    def session_token():
        """This browser session's CSRF token (a fresh one once the session ended), for
        the password prompt; another site cannot read it (no CORS)."""
        return jsonify(ok=True, token=csrf_token(),
                       user=g.user.username if g.get("user") else None)

    @bp.post("/reauth")
    def reauth():
        """The password again, in place: the log-in page's checks and throttling; the
        page keeps what was typed and gets the new session's token."""
        data = request.get_json(silent=True)
        data = data if isinstance(data, dict) else {}
        username = field_text("username", source=data).strip()
        try:
            user, _reason = attempt_login(username, field_text("password", source=data),
                                          now=now())
        except Throttled as exc:
            return jsonify(ok=False, error=gettext(
                "Too many attempts: wait {n} seconds and try again.", n=exc.seconds)), 429
        if user is None:
            return jsonify(ok=False, error=gettext("Wrong user name or password.")), 401
        return jsonify(ok=True, token=csrf_token())
