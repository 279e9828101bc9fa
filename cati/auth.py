"""Log-in, sessions, roles and CSRF for the CATI screens.

* Passwords are scrypt hashes (:mod:`minping.users`).
* **Guesses are counted before they are checked**: a log-in first claims one of
  the account's ``CATI_MAX_FAILED_LOGINS`` (default 5) guesses with a single
  conditional ``UPDATE`` (``failed_logins = failed_logins + 1 WHERE
  failed_logins < max``), then runs the KDF.  Parallel requests cannot check
  more guesses than that; the one that used the last guess locks the account
  for ``CATI_LOCK_MINUTES`` (default 15).  ``minping user unlock`` ends a lock.
* A locked, disabled or unknown account answers exactly like a wrong password
  (same message, same status) after the same KDF work, so neither the answer nor
  its timing tells which names exist or are locked.
* The limits are set in the app's configuration or the environment
  (``MINPING_MAX_FAILED_LOGINS``, ``MINPING_LOCK_MINUTES``,
  ``MINPING_THROTTLE_ADDRESS``, ``MINPING_THROTTLE_NAME``,
  ``MINPING_THROTTLE_MAX_SECONDS``).
* **Throttling with back-off**, per client address and per user name
  (:class:`~minping.models.LoginThrottle`, shared by every process): after
  ``CATI_THROTTLE_ADDRESS`` (10) failures from one address or
  ``CATI_THROTTLE_NAME`` (3) for one name, the next attempt must wait 1 s, then
  2, 4, … up to ``CATI_THROTTLE_MAX_SECONDS`` (900); it is answered 429 with
  ``Retry-After`` without checking the password.  A successful log-in clears the
  name's count.  The client address is the last ``X-Forwarded-For`` entry when
  the request comes from a trusted proxy (``MINPING_TRUSTED_PROXIES``, default
  loopback), else the peer address.
* **Sessions live on the server** (:class:`~minping.models.UserSession`): the
  cookie carries a random token, the database its SHA-256.  Log-out ends the
  session; a new password or a disabled account ends all the user's sessions.
  A session ends after ``MINPING_SESSION_IDLE_MINUTES`` (default 30) without
  activity (each request the user makes slides it; the case screen's background
  keep-alive, marked ``X-Background: 1``, does not) and ``MINPING_SESSION_MINUTES``
  (default 720: a shift from the morning window to the evening one) after
  log-in whatever the activity.  An expired session on the case screen asks for
  the password in place (:func:`reauthenticate`), keeping what was typed.
* Every POST must carry the session's CSRF token, as the form field
  ``csrf_token`` or the ``X-CSRF-Token`` header (the page's fetch calls).  A
  missing or stale token is answered in the user's language: JSON (403,
  ``reauth``) to the page's fetch calls, and a redirect back to the page with a
  message to a form (a reload never re-posts).
* Security events (failed log-ins with name and address, lock-outs, throttling,
  CSRF and role refusals) are logged as structured lines by the
  ``cati.security`` logger; failed log-ins and lock-outs are also in the audit
  log.  No password and no phone number is ever logged.
* An anonymous request is sent to the log-in page, or answered 401 when it asks
  for JSON (the page's fetch calls); a signed-in user without the role gets 403.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
from datetime import UTC, datetime, timedelta

from flask import abort, current_app, g, redirect, request, session, url_for
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from minping.db import db_session, settings_of
from minping.models import AuditLog, LoginThrottle, User, UserSession
from minping.users import check_hash, verify_password

MAX_FAILED = 5
LOCK_MINUTES = 15
THROTTLE_ADDRESS = 10
THROTTLE_NAME = 3
THROTTLE_MAX_SECONDS = 900
#: A session's last-seen time is written at most this often (a request does not
#: always cost a write).
SEEN_EVERY = timedelta(seconds=60)

security_log = logging.getLogger("cati.security")


class CsrfRefused(Exception):
    """The POST's CSRF token is missing or stale (the session ended, or the page is old)."""


class Throttled(Exception):
    def __init__(self, seconds: int):
        super().__init__(seconds)
        self.seconds = seconds


def security_event(event: str, level: int = logging.WARNING, **fields) -> None:
    """One structured line per security event (never a password, never a number)."""
    security_log.log(level, event, extra={"event": event, **fields})


# --- clocks and addresses --------------------------------------------------------------------


def session_now() -> datetime:
    """Wall-clock time for sessions (``CATI_SESSION_CLOCK`` in tests).  Not the
    field clock (the runtime's), which simulations move by hours at a time."""
    clock = current_app.config.get("CATI_SESSION_CLOCK")
    return clock() if clock else datetime.now(UTC)


def _trusted_proxies() -> list:
    raw = current_app.config.get("CATI_TRUSTED_PROXIES") or os.environ.get(
        "MINPING_TRUSTED_PROXIES", "127.0.0.1,::1")
    return [ipaddress.ip_network(p.strip(), strict=False) for p in raw.split(",") if p.strip()]


def client_address() -> str:
    peer = request.remote_addr or "unknown"
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded:
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return peer[:64]
        if any(ip in net for net in _trusted_proxies()):
            last = forwarded.split(",")[-1].strip()
            try:
                return str(ipaddress.ip_address(last))
            except ValueError:
                return peer
    return peer[:64]


# --- CSRF -----------------------------------------------------------------------------------


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
        security_event("csrf.refused", address=client_address(), path=request.path,
                       user=getattr(g.get("user"), "username", None))
        raise CsrfRefused()


# --- sessions -------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _limits() -> tuple[timedelta, timedelta]:
    settings = settings_of(current_app)
    idle = current_app.config.get("CATI_SESSION_IDLE_MINUTES", settings.session_idle_minutes)
    return timedelta(minutes=idle), current_app.permanent_session_lifetime


def load_user() -> None:
    """Put the logged-in user (or None) in ``g.user``; end expired or revoked sessions."""
    g.user = None
    token = session.get("sid")
    if not token:
        if "uid" in session:  # a cookie from before server-side sessions
            session.clear()
        return
    s = db_session()
    row = s.execute(
        select(UserSession, User).join(User, User.id == UserSession.user_id)
        .where(UserSession.id == _digest(token))
    ).first()
    t = session_now()
    if row is None:
        session.clear()
        return
    us, user = row
    idle, absolute = _limits()
    reason = None
    if us.ended_at is not None:
        reason = "ended"
    elif not user.active:
        reason = "disabled"
    elif t - us.created_at > absolute:
        reason = "absolute"
    elif t - us.seen_at > idle:
        reason = "idle"
    if reason is not None:
        if us.ended_at is None:
            s.execute(update(UserSession).where(UserSession.id == us.id,
                                                UserSession.ended_at.is_(None))
                      .values(ended_at=t, end_reason=reason))
            s.commit()
        session.clear()
        return
    if t - us.seen_at >= SEEN_EVERY and request.headers.get("X-Background") != "1":
        s.execute(update(UserSession).where(UserSession.id == us.id).values(seen_at=t))
        s.commit()
    g.user = user
    g.user_session_id = us.id


def start_session(s: Session, user: User) -> None:
    token = secrets.token_urlsafe(32)
    t = session_now()
    s.add(UserSession(id=_digest(token), user_id=user.id, created_at=t, seen_at=t,
                      address=client_address()))
    session.clear()
    session.permanent = True
    session["sid"] = token
    csrf_token()


def end_session(s: Session, reason: str = "logout") -> None:
    sid = g.get("user_session_id")
    if sid is not None:
        s.execute(update(UserSession).where(UserSession.id == sid,
                                            UserSession.ended_at.is_(None))
                  .values(ended_at=session_now(), end_reason=reason))
    session.clear()


def end_sessions_of(s: Session, user_id: int, reason: str, *, now: datetime | None = None) -> int:
    """End every open session of ``user_id`` (new password, disabled account)."""
    result = s.execute(update(UserSession).where(UserSession.user_id == user_id,
                                                 UserSession.ended_at.is_(None))
                       .values(ended_at=now or datetime.now(UTC), end_reason=reason)
                       .execution_options(synchronize_session=False))
    return result.rowcount


# --- throttling -----------------------------------------------------------------------------


def _cfg(name: str, default: int) -> int:
    """``app.config[name]``, else the environment's ``MINPING_<name without CATI_>``."""
    if name in current_app.config:
        return current_app.config[name]
    raw = os.environ.get("MINPING_" + name.removeprefix("CATI_"))
    return int(raw) if raw else default


def _throttle_keys(username: str, address: str) -> list[tuple[str, int]]:
    return [(f"addr:{address}", _cfg("CATI_THROTTLE_ADDRESS", THROTTLE_ADDRESS)),
            (f"name:{username.lower()[:100]}", _cfg("CATI_THROTTLE_NAME", THROTTLE_NAME))]


def check_throttle(s: Session, username: str, address: str, now: datetime) -> None:
    """Raise :class:`Throttled` while the address or the name is backing off."""
    keys = [k for k, _ in _throttle_keys(username, address)]
    until = s.scalar(select(LoginThrottle.blocked_until).where(
        LoginThrottle.key.in_(keys), LoginThrottle.blocked_until > now)
        .order_by(LoginThrottle.blocked_until.desc()).limit(1))
    if until is not None:
        raise Throttled(max(1, int((until - now).total_seconds() + 0.999)))


def record_failure(s: Session, username: str, address: str, now: datetime) -> None:
    """Count a failure for the address and the name (atomically) and set their back-off."""
    cap = _cfg("CATI_THROTTLE_MAX_SECONDS", THROTTLE_MAX_SECONDS)
    forget = timedelta(seconds=max(cap, 900))
    for key, limit in _throttle_keys(username, address):
        failures = _bump(s, key, now, forget)
        if failures >= limit:
            wait = min(cap, 2 ** min(failures - limit, 20))
            s.execute(update(LoginThrottle).where(LoginThrottle.key == key)
                      .values(blocked_until=now + timedelta(seconds=wait)))


def _bump(s: Session, key: str, now: datetime, forget: timedelta) -> int:
    """``failures + 1`` for ``key`` in one statement (a fresh count after ``forget``)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    from sqlalchemy import case

    stmt = insert(LoginThrottle).values(key=key, failures=1, last_at=now, blocked_until=None)
    stale = LoginThrottle.last_at < now - forget
    stmt = stmt.on_conflict_do_update(
        index_elements=[LoginThrottle.key],
        set_={"failures": case((stale, 1), else_=LoginThrottle.failures + 1),
              "last_at": now},
    ).returning(LoginThrottle.failures)
    return s.execute(stmt).scalar_one()


def clear_name(s: Session, username: str) -> None:
    s.execute(delete(LoginThrottle).where(LoginThrottle.key == f"name:{username.lower()[:100]}"))


# --- log-in ---------------------------------------------------------------------------------


def _claim_guess(s: Session, user_id: int, now: datetime, max_failed: int) -> int | None:
    """Claim one guess for the account: the new count, or ``None`` when it is locked."""
    row = s.execute(
        update(User)
        .where(User.id == user_id, User.active.is_(True), User.failed_logins < max_failed,
               (User.locked_until.is_(None)) | (User.locked_until <= now))
        .values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)
        .execution_options(synchronize_session=False)
    ).first()
    return None if row is None else row[0]


def _failed(s: Session, username: str, address: str, now: datetime, *, user: User | None,
            reason: str) -> None:
    record_failure(s, username, address, now)
    s.add(AuditLog(at=now, user_id=user.id if user else None,
                   actor=f"{user.role}:{user.username}" if user else "anonymous",
                   action="user.login_failed", entity="user",
                   entity_id=str(user.id) if user else None,
                   new={"username": username[:64], "address": address, "reason": reason}))
    s.commit()
    security_event("login.failed", username=username[:64], address=address, reason=reason)


def attempt_login(username: str, password: str, *, now) -> tuple[User | None, str | None]:
    """(user, None) on success; (None, "bad") otherwise, whatever the reason.

    Raises :class:`Throttled` while the address or the name is backing off.
    """
    s = db_session()
    max_failed = _cfg("CATI_MAX_FAILED_LOGINS", MAX_FAILED)
    lock = timedelta(minutes=_cfg("CATI_LOCK_MINUTES", LOCK_MINUTES))
    address = client_address()
    try:
        check_throttle(s, username, address, now)
    except Throttled as exc:
        s.rollback()
        security_event("login.throttled", username=username[:64], address=address,
                       reason=f"retry after {exc.seconds} s")
        raise
    user = s.scalar(select(User).where(User.username == username)) if username else None
    claimed = None
    if user is not None and user.active:
        claimed = _claim_guess(s, user.id, now, max_failed)
        s.commit()  # the guess is counted before the (slow) check
    if claimed is None:
        verify_dummy(password)  # the same work as a real check
        why = "unknown" if user is None else ("disabled" if not user.active else "locked")
        _failed(s, username, address, now, user=user, reason=why)
        return None, "bad"
    if not verify_password(user, password):
        reason = "password"
        if claimed >= max_failed:
            s.execute(update(User).where(User.id == user.id)
                      .values(locked_until=now + lock, failed_logins=0)
                      .execution_options(synchronize_session=False))
            s.add(AuditLog(at=now, user_id=user.id, actor=f"{user.role}:{user.username}",
                           action="user.locked", entity="user", entity_id=str(user.id)))
            security_event("login.locked", username=user.username, address=address,
                           reason=f"{max_failed} wrong passwords")
        _failed(s, username, address, now, user=user, reason=reason)
        return None, "bad"
    s.execute(update(User).where(User.id == user.id).values(failed_logins=0, locked_until=None)
              .execution_options(synchronize_session=False))
    clear_name(s, username)
    s.add(AuditLog(at=now, user_id=user.id, actor=f"{user.role}:{user.username}",
                   action="user.login", entity="user", entity_id=str(user.id)))
    start_session(s, user)
    s.commit()
    s.refresh(user)
    security_event("login.ok", logging.INFO, username=user.username, address=address)
    return user, None


_DUMMY = None


def verify_dummy(password: str) -> None:
    """Spend the time of a real check, so unknown names are not told apart by timing."""
    global _DUMMY
    from werkzeug.security import generate_password_hash

    if _DUMMY is None:
        _DUMMY = generate_password_hash("not-a-real-password")
    check_hash(_DUMMY, password)


# --- who may open what ------------------------------------------------------------------------


def _wants_json() -> bool:
    return (request.is_json or request.accept_mimetypes.best == "application/json"
            or bool(request.headers.get("X-CSRF-Token")))


def _anonymous():
    """401 for the page's fetch calls (JSON), the log-in page for a browser."""
    if _wants_json():
        abort(401)
    return redirect(url_for("cati.login", next=request.path))


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.user is None:
            return _anonymous()
        return view(*args, **kwargs)

    return wrapped


def roles_required(*roles):
    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if g.user is None:
                return _anonymous()
            if g.user.role not in roles:
                security_event("role.refused", user=g.user.username, role=g.user.role,
                               address=client_address(), path=request.path)
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator
