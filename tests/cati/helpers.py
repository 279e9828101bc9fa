"""Users and clocks for the CATI tests."""

from __future__ import annotations

from minping.users import create_user

PASSWORD = "correct-horse-9"


def add_user(db, username, role="interviewer", *, experienced=False, language="zh",
             phone=None):
    with db.transaction() as s:
        user = create_user(s, username=username, password=PASSWORD, role=role,
                           display_name=username, language=language, experienced=experienced,
                           phone=phone)
        return user.id


class Clock:
    """A settable clock for ``runtime_of(app).use(clock=...)``."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now
