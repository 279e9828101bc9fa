"""Users of the CATI screens: interviewers, supervisors, statisticians.

Passwords are hashed with scrypt (werkzeug's default: a memory-hard KDF; about 0.1 s
of CPU and 32 MB a check).  :func:`check_hash` checks one in the calling thread, or --
once :func:`check_hashes_at_low_priority` was called (``minping serve`` does) -- in
helper processes at the lowest CPU priority, so that log-ins use the CPU the IVR
webhooks leave (a check that waited :data:`IDLE_WAIT_SECONDS` for it is made in the
request's thread: log-ins are delayed on a saturated machine, never kept out).
:func:`check_password_strength` refuses short, common and name-derived
passwords; the command line reads them from a prompt or ``MINPING_NEW_PASSWORD``
only, never from its arguments (they would be in the shell history and ``ps``).
"""

from __future__ import annotations

import re
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from minping.errors import MinpingError
from minping.models import ROLES, AuditLog, User

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024

#: Passwords found at the top of every leaked-password list (and their Chinese
#: favourites), compared case-insensitively after removing spaces.
_COMMON = """
12345678 123456789 1234567890 0123456789 87654321 11111111 00000000 88888888 66666666
12341234 11223344 password password1 password123 passw0rd p@ssw0rd iloveyou qwertyui
qwertyuiop qwerty123 1qaz2wsx 1q2w3e4r 1q2w3e4r5t zaq12wsx abcd1234 abc12345 abcdefgh
aaaaaaaa asdfghjk asdfasdf zxcvbnm1 letmein1 welcome1 admin123 administrator changeme
sunshine football baseball princess dragon123 monkey12 trustno1 superman iloveyou1
woaini1314 woaini520 5201314 wangyiwen a1234567 a12345678 aa123456 qq123456 1234qwer
minping minping1 minping123 survey123 interviewer supervisor statistician
"""
COMMON_PASSWORDS = frozenset(_COMMON.split())


def check_password_strength(password: str, *, username: str = "",
                            display_name: str = "") -> None:
    """Raise :class:`MinpingError` (naming the field) for a weak password: fewer than
    :data:`MIN_PASSWORD` characters, only spaces, a single repeated character, a
    common password, or one made from the user's own name."""
    if len(password) < MIN_PASSWORD:
        raise MinpingError(f"password: must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise MinpingError(f"password: at most {MAX_PASSWORD} characters")
    squeezed = re.sub(r"\s+", "", password).lower()
    if not squeezed:
        raise MinpingError("password: must not be only spaces")
    if len(set(squeezed)) <= 2:
        raise MinpingError("password: too few different characters")
    stripped = squeezed.rstrip("0123456789!@#.$_-")
    if squeezed in COMMON_PASSWORDS or stripped in COMMON_PASSWORDS:
        raise MinpingError("password: a common password; choose another")
    bare = re.sub(r"[\s._-]+", "", squeezed)
    bare_stripped = bare.rstrip("0123456789!@#$")
    for name in (username, display_name):
        base = re.sub(r"[\s._-]+", "", (name or "").lower())
        if len(base) >= 3 and (base in bare or base[::-1] in bare
                               or (len(bare_stripped) >= 3 and bare_stripped in base)):
            raise MinpingError("password: must not contain the user's name")


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: str,
    display_name: str | None = None,
    language: str = "zh",
    phone: str | None = None,
    experienced: bool = False,
    actor: str = "cli",
) -> User:
    """Create a user; the error names the field at fault."""
    if not USERNAME.match(username):
        raise MinpingError(
            f"username: {username!r} must be 2-64 letters, digits, '.', '_' or '-'"
        )
    if role not in ROLES:
        raise MinpingError(f"role: must be one of {', '.join(ROLES)}, got {role!r}")
    check_password_strength(password, username=username, display_name=display_name or "")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise MinpingError(f"username: {username!r} already exists")
    user = User(
        username=username,
        display_name=display_name or username,
        password_hash=generate_password_hash(password),
        role=role,
        language=language,
        phone=phone,
        experienced=experienced,
    )
    session.add(user)
    session.flush()
    session.add(AuditLog(user_id=None, actor=actor, action="user.create", entity="user",
                         entity_id=str(user.id), new={"username": username, "role": role}))
    return user


def verify_password(user: User, password: str) -> bool:
    return check_hash(user.password_hash, password)


# --- where the password checks run -----------------------------------------------------------

#: How log-in hashes are run (``MINPING_LOGIN_PRIORITY``): ``idle`` in helper processes
#: under ``SCHED_IDLE`` (CPU no other process wants), ``low`` in helper processes at nice
#: 19, ``normal`` in the request's thread.
LOGIN_PRIORITIES = ("idle", "low", "normal")
#: How long a log-in waits for its check at the lowest priority before it is made in
#: the request's thread instead (a machine with no idle CPU for that long does not keep
#: interviewers out; the log-in gate still bounds how many are checked at once).
IDLE_WAIT_SECONDS = 3.0
_checker: Executor | None = None
_checker_args: tuple[int, str] | None = None


#: What a checking process runs first (source text for the builtin ``exec``: the spawned
#: process then imports nothing of minping, only werkzeug to check).
_LOWEST_PRIORITY = {
    "idle": "import os\ntry:\n    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
            "except (AttributeError, OSError):\n    os.nice(19)\n",
    "low": "import os\nos.nice(19)\n",
}


def check_hashes_at_low_priority(processes: int = 1, policy: str = "idle") -> None:
    """Check passwords from now on in ``processes`` helper processes at the lowest CPU
    priority (``policy`` one of :data:`LOGIN_PRIORITIES`; ``normal``: in the caller's
    thread).  The processes start at the first check (spawned: nothing of the caller's
    state is copied)."""
    global _checker, _checker_args
    if policy not in LOGIN_PRIORITIES:
        raise MinpingError(f"MINPING_LOGIN_PRIORITY: one of {', '.join(LOGIN_PRIORITIES)}, "
                           f"got {policy!r}")
    if _checker is not None:
        _checker.shutdown(wait=False, cancel_futures=True)
    _checker, _checker_args = None, None
    if policy != "normal":
        import multiprocessing

        _checker_args = (processes, policy)
        _checker = ProcessPoolExecutor(processes, multiprocessing.get_context("spawn"),
                                       initializer=exec, initargs=(_LOWEST_PRIORITY[policy],))


def check_hash(pwhash: str, password: str) -> bool:
    """Whether ``password`` matches ``pwhash`` (a werkzeug hash), checked where
    :func:`check_hashes_at_low_priority` said.  A check that has not ended after
    :data:`IDLE_WAIT_SECONDS` is made in the caller's thread; a checking process that
    died is replaced and the check made again (in the caller's thread when that fails
    too)."""
    for _ in range(2):
        checker = _checker
        if checker is None:
            break
        try:
            future = checker.submit(check_password_hash, pwhash, password)
            try:
                return future.result(timeout=IDLE_WAIT_SECONDS)
            except TimeoutError:  # no idle CPU for that long: check it here after all
                future.cancel()
                break
        except BrokenProcessPool:
            if _checker is checker:  # (another thread may have replaced it already)
                check_hashes_at_low_priority(*_checker_args)
    return check_password_hash(pwhash, password)


# --- administration (``minping user list|unlock|disable|reset-password``) -----------------


def find_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise MinpingError(f"username: no user {username!r}")
    return user


def list_users(session: Session, *, now: datetime | None = None) -> list[dict]:
    now = now or datetime.now(UTC)
    return [{"id": u.id, "username": u.username, "role": u.role, "active": u.active,
             "locked_until": u.locked_until.isoformat() if u.locked_until and
             u.locked_until > now else None, "failed_logins": u.failed_logins}
            for u in session.scalars(select(User).order_by(User.username))]


def _audit(session: Session, user: User, action: str, actor: str, now: datetime) -> None:
    session.add(AuditLog(at=now, user_id=None, actor=actor, action=action, entity="user",
                         entity_id=str(user.id), new={"username": user.username}))


def unlock_user(session: Session, username: str, *, actor: str = "cli",
                now: datetime | None = None) -> User:
    """End a lock-out and forget the failed log-ins (and the name's back-off)."""
    from minping.models import LoginThrottle

    now = now or datetime.now(UTC)
    user = find_user(session, username)
    session.execute(update(User).where(User.id == user.id)
                    .values(locked_until=None, failed_logins=0))
    session.execute(LoginThrottle.__table__.delete().where(
        LoginThrottle.key == f"name:{username.lower()[:100]}"))
    _audit(session, user, "user.unlock", actor, now)
    return user


def end_sessions(session: Session, user_id: int, reason: str, now: datetime) -> int:
    from minping.models import UserSession

    return session.execute(
        update(UserSession).where(UserSession.user_id == user_id,
                                  UserSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
        .execution_options(synchronize_session=False)).rowcount


def disable_user(session: Session, username: str, *, actor: str = "cli",
                 now: datetime | None = None) -> int:
    """Disable the account and end its open sessions (returns how many)."""
    now = now or datetime.now(UTC)
    user = find_user(session, username)
    user.active = False
    ended = end_sessions(session, user.id, "disabled", now)
    _audit(session, user, "user.disable", actor, now)
    return ended


def reset_password(session: Session, username: str, password: str, *, actor: str = "cli",
                   now: datetime | None = None) -> int:
    """Set a new password (same rules as at creation), lift any lock and end the user's
    open sessions (returns how many)."""
    now = now or datetime.now(UTC)
    user = find_user(session, username)
    check_password_strength(password, username=user.username, display_name=user.display_name)
    user.password_hash = generate_password_hash(password)
    user.failed_logins = 0
    user.locked_until = None
    ended = end_sessions(session, user.id, "password", now)
    _audit(session, user, "user.reset_password", actor, now)
    return ended
