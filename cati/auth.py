"""Log-in, sessions, roles and CSRF for the CATI screens.

* Passwords are scrypt hashes (:mod:`minping.users`).
* After ``CATI_MAX_FAILED_LOGINS`` (default 5) wrong passwords in a row the
  account is locked for ``CATI_LOCK_MINUTES`` (default 15); the lock is kept in
  the database (``User.locked_until``), so it holds across processes.
* A session lasts ``PERMANENT_SESSION_LIFETIME`` (the ``MINPING_SESSION_MINUTES``
  setting) from log-in; the server checks the log-in time on every request, not
  only the cookie's expiry.
* Every POST must carry the session's CSRF token, as the form field
  ``csrf_token`` or the ``X-CSRF-Token`` header (the page's fetch calls).
"""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from datetime import timedelta

from flask import abort, current_app, g, redirect, request, session, url_for
from sqlalchemy import select

from minping.db import db_session
from minping.models import AuditLog, User
from minping.users import verify_password

MAX_FAILED = 5
LOCK_MINUTES = 15


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def check_csrf() -> None:
    if request.method != "POST":
        return
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    token = session.get("csrf") or ""
    if not token or not hmac.compare_digest(sent, token):
        abort(400, description="CSRF token missing or wrong; reload the page")


def load_user() -> None:
    """Put the logged-in user (or None) in ``g.user``; end expired sessions."""
    g.user = None
    uid = session.get("uid")
    if uid is None:
        return
    lifetime: timedelta = current_app.permanent_session_lifetime
    if time.time() - session.get("at", 0) > lifetime.total_seconds():
        session.clear()
        return
    user = db_session().get(User, uid)
    if user is None or not user.active:
        session.clear()
        return
    g.user = user


def attempt_login(username: str, password: str, *, now) -> tuple[User | None, str | None]:
    """(user, None) on success; (None, reason) otherwise. Counts failures, locks accounts."""
    s = db_session()
    cfg = current_app.config
    max_failed = cfg.get("CATI_MAX_FAILED_LOGINS", MAX_FAILED)
    lock = timedelta(minutes=cfg.get("CATI_LOCK_MINUTES", LOCK_MINUTES))
    user = s.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        verify_dummy(password)
        return None, "bad"
    if user.locked_until is not None and user.locked_until > now:
        return None, "locked"
    if not verify_password(user, password):
        user.failed_logins += 1
        reason = "bad"
        if user.failed_logins >= max_failed:
            user.locked_until = now + lock
            user.failed_logins = 0
            reason = "locked"
            s.add(AuditLog(at=now, user_id=user.id, actor=f"{user.role}:{user.username}",
                           action="user.locked", entity="user", entity_id=str(user.id)))
        s.commit()
        return None, reason
    user.failed_logins = 0
    user.locked_until = None
    s.add(AuditLog(at=now, user_id=user.id, actor=f"{user.role}:{user.username}",
                   action="user.login", entity="user", entity_id=str(user.id)))
    s.commit()
    session.clear()
    session.permanent = True
    session["uid"] = user.id
    session["at"] = time.time()
    csrf_token()
    return user, None


_DUMMY = None


def verify_dummy(password: str) -> None:
    """Spend the time of a real check, so unknown names are not told apart by timing."""
    global _DUMMY
    from werkzeug.security import check_password_hash, generate_password_hash

    if _DUMMY is None:
        _DUMMY = generate_password_hash("not-a-real-password")
    check_password_hash(_DUMMY, password)


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.user is None:
            if request.accept_mimetypes.best == "application/json" or request.is_json:
                abort(401)
            return redirect(url_for("cati.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


def roles_required(*roles):
    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if g.user is None:
                return redirect(url_for("cati.login", next=request.path))
            if g.user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator
