"""Reading a frame for the draw: the two aggregates give the rows exactly, whatever the numbers."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from minping.draws.frame import _fixed_width_ints, _split_phones, load_frame
from minping.frames import import_frame
from minping.models import Frame, FrameContact, RespondentGroup, Town
from sampling.draw import frame_hash
from tests.minping.test_draw_pinned import FRAME_HASH, cfg, frame_file  # noqa: F401  (fixtures)

#: numbers of other lengths than a mainland mobile's (a prefix of another one included)
OTHERS = ("+12025550123", "+442079460000", "+8613", "+861390000000", "+85291234567")


def test_split_phones_fixed_and_mixed_lengths():
    same = ["+8613900000001", "+8613900000002"]
    assert _split_phones(",".join(same), 2).tolist() == [p.encode() for p in same]
    mixed = ["+1", "+8613900000001", "+44207946000"]
    assert _split_phones(",".join(mixed), 3).tolist() == [p.encode() for p in mixed]
    assert _split_phones("+1,+2", 3) is None  # not as many numbers as rows
    assert _split_phones("+1,,+2", 3) is None  # an empty one
    assert _split_phones("", 0).tolist() == []


def test_fixed_width_ints():
    assert _fixed_width_ints("         7        12", 10).tolist() == [7, 12]
    assert _fixed_width_ints("        -7", 10).tolist() == []  # never negative: refused


def test_frame_read_equals_the_rows(db, cfg, frame_file):  # noqa: F811
    with db.transaction() as s:
        import_frame(s, cfg, frame_file)
    with db.transaction() as s:
        fr = s.scalars(select(Frame)).one()
        assert load_frame(s, fr.campaign_id, fr.id).digest() == FRAME_HASH
        gid = s.scalars(select(RespondentGroup.id).order_by(RespondentGroup.id)).first()
        tid = s.scalars(select(Town.id).order_by(Town.id)).first()
        for i, phone in enumerate(OTHERS):
            s.add(FrameContact(frame_id=fr.id, phone=phone, group_id=gid,
                               town_id=None if i % 2 else tid, attributes={}))
    with db.session() as s:
        fr = s.scalars(select(Frame)).one()
        cols = load_frame(s, fr.campaign_id, fr.id)
        gcode = dict(s.execute(select(RespondentGroup.id, RespondentGroup.code)).all())
        tcode = dict(s.execute(select(Town.id, Town.code)).all())
        rows = s.execute(select(FrameContact.phone, FrameContact.group_id, FrameContact.town_id)
                         .where(FrameContact.frame_id == fr.id)).all()
    phones = [r[0] for r in rows]
    assert [p.decode() for p in cols.phones.tolist()] == sorted(phones)
    by_phone = {r[0]: r for r in rows}
    assert cols.group_at(np.arange(len(cols))) == [gcode[by_phone[p][1]] for p in sorted(phones)]
    towns = [None if r[2] is None else tcode[r[2]] for r in rows]
    assert cols.digest() == frame_hash(phones, [gcode[r[1]] for r in rows], towns)
    assert cols.positions(["+8613", "+861", "+12025550123"]).tolist()[1] == -1
