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


def answer_for(s, case, user, code, *, now, cfg):
    """Before closing with ``code``, do what it takes on the open attempt: consent, and
    enough answers that the code is the one the interview earns (1.1 every unit, 1.2 at
    least half, 2.12 fewer); other codes need nothing more than the dial."""
    from cati import service
    from minping.cases import case_units

    if code not in ("1.1", "1.2", "2.12"):
        return
    attempt = service.open_attempt(s, case, user)
    service.mark_answered(s, attempt, now=now, consent=True)
    units = case_units(s, case.id)
    need = {"1.1": len(units), "1.2": (len(units) + 1) // 2, "2.12": 0}[code]
    have = sum(u.rating is not None for u in units)
    keys = [o.key for o in cfg.scale.options]
    for i, u in enumerate(units):
        if have >= need:
            break
        if u.rating is None:
            service.save_answer(s, case, user, u.unit_id, keys[i % len(keys)], now=now, cfg=cfg)
            have += 1
