"""Users of the CATI screens: interviewers, supervisors, statisticians.

Passwords are hashed with scrypt (werkzeug's default: a memory-hard KDF).
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from minping.errors import MinpingError
from minping.models import ROLES, AuditLog, User

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")
MIN_PASSWORD = 8


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
    if len(password) < MIN_PASSWORD:
        raise MinpingError(f"password: must have at least {MIN_PASSWORD} characters")
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
    return check_password_hash(user.password_hash, password)
