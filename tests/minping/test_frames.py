"""Frame import into the database: all or nothing, rejects, re-import, do-not-call (both databases)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from sqlalchemy import func, select

from minping.config import load_config
from minping.demo import synthetic_frame
from minping.errors import InputError
from minping.frames import import_frame
from minping.models import DoNotCall, FrameContact, FrameImport


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def write_frame(path, cfg, n, *, seed=1, encoding="gb18030", bad=(), extra_rows=()):
    """A frame CSV with Chinese headers and labels; ``bad`` rows are inserted after row 3."""
    contacts = synthetic_frame(cfg, n, rng=np.random.default_rng(seed))
    gname = {g.id: g.name for g in cfg.groups}
    tname = {t.id: t.name for t in cfg.towns}
    rows = [[c.phone.removeprefix("+86"), gname[c.group], tname[c.town], f"联系人{i}"]
            for i, c in enumerate(contacts)]
    rows[3:3] = [list(r) for r in bad]
    rows.extend(list(r) for r in extra_rows)
    with open(path, "w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["电话", "类别", "乡镇", "姓名"])
        w.writerows(rows)
    return contacts


def frame_count(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(FrameContact))


BAD = [
    ["1381234", "各类群众代表", "城关镇", "短号"],        # row 5: too few digits
    ["13912345678", "外星人", "城关镇", "未知类别"],       # row 6: unknown group
    ["13912345679", "工商代表", "火星镇", "未知乡镇"],     # row 7: unknown town
]


def test_gb18030_file_with_bad_rows_imports_nothing_and_names_every_row(db, cfg, tmp_path):
    good = tmp_path / "good.csv"
    write_frame(good, cfg, 200, seed=3)
    with db.transaction() as s:
        import_frame(s, cfg, good)
    before = frame_count(db)
    assert before == 200

    path = tmp_path / "frame_gbk.csv"
    write_frame(path, cfg, 300, seed=4, bad=BAD)
    assert "城关镇".encode("gb18030") in path.read_bytes()
    with pytest.raises(InputError) as info, db.transaction() as s:
        import_frame(s, cfg, path)
    problems = info.value.problems
    assert {(p.row, p.field) for p in problems} == {(5, "电话"), (6, "类别"), (7, "乡镇")}
    assert "外星人" in str(info.value) and "nothing was imported" in str(info.value)
    assert frame_count(db) == before  # the frame is unchanged
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(FrameImport)) == 1


def test_skip_invalid_imports_good_rows_and_writes_rejects(db, cfg, tmp_path):
    path = tmp_path / "frame.csv"
    write_frame(path, cfg, 300, seed=5, bad=BAD)
    rejects = tmp_path / "rejects.csv"
    with db.transaction() as s:
        result = import_frame(s, cfg, path, skip_invalid=True, rejects_path=rejects)
    assert result.imported == 300 and result.rejected_rows == 3
    assert frame_count(db) == 300
    with open(rejects, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["row", "problems", "电话", "类别", "乡镇", "姓名"]
    assert [r[0] for r in rows[1:]] == ["5", "6", "7"]
    assert "unknown group" in rows[2][1]
    with db.session() as s:
        contact = s.scalars(select(FrameContact).order_by(FrameContact.id)).first()
        assert contact.phone.startswith("+861") and contact.attributes["姓名"] == "联系人0"
        assert contact.source_row == 2


def test_reimport_is_a_no_op(db, cfg, tmp_path):
    path = tmp_path / "frame.csv"
    contacts = write_frame(path, cfg, 250, seed=6, encoding="utf-8-sig")
    with db.transaction() as s:
        first = import_frame(s, cfg, path, frame_name="county")
    with db.transaction() as s:
        again = import_frame(s, cfg, path, frame_name="county")
    assert first.imported == 250 and not first.noop
    assert again.noop and again.imported == 0 and again.frame_size == 250
    # another file with the same contacts and one new one: only the new one is imported
    other = tmp_path / "frame2.csv"
    write_frame(other, cfg, 250, seed=6, extra_rows=[["13800138000", "工商代表", "新安镇", "新"]])
    with db.transaction() as s:
        third = import_frame(s, cfg, other, frame_name="county")
    assert (third.imported, third.already_in_frame, third.frame_size) == (1, 250, 251)
    with db.session() as s:
        phones = set(s.scalars(select(FrameContact.phone)))
    assert {c.phone for c in contacts} <= phones


def test_do_not_call_numbers_are_suppressed(db, cfg, tmp_path):
    path = tmp_path / "frame.csv"
    contacts = write_frame(path, cfg, 100, seed=7)
    with db.transaction() as s:
        s.add_all([DoNotCall(phone=contacts[0].phone, source="import"),
                   DoNotCall(phone=contacts[50].phone, source="keypad")])
    with db.transaction() as s:
        result = import_frame(s, cfg, path)
    assert result.imported == 98 and result.suppressed == 2
    with db.session() as s:
        phones = set(s.scalars(select(FrameContact.phone)))
        record = s.scalars(select(FrameImport)).one()
    assert contacts[0].phone not in phones and contacts[50].phone not in phones
    assert record.rows_suppressed == 2 and record.rows_imported == 98


def test_english_labels_and_xlsx(db, cfg, tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["phone", "group", "town", "employer"])
    ws.append(["+86 138 0013 8000", "Business representatives", "Xin'an", "Acme"])
    ws.append([13900139000, "residents", "chengguan", ""])
    path = tmp_path / "frame.xlsx"
    wb.save(path)
    with db.transaction() as s:
        result = import_frame(s, cfg, path)
    assert result.imported == 2 and result.encoding == "xlsx"
    with db.session() as s:
        got = {c.phone: c.attributes for c in s.scalars(select(FrameContact))}
    assert got == {"+8613800138000": {"employer": "Acme"}, "+8613900139000": {"employer": ""}}


def _foreign_keys(db) -> set[str]:
    from sqlalchemy import inspect

    with db.session() as s:
        return {fk["name"] for fk in inspect(s.connection()).get_foreign_keys("frame_contact")}


def _indexes(db) -> set[tuple]:
    """frame_contact's indexes and unique constraints (name, columns, unique)."""
    from sqlalchemy import inspect

    with db.session() as s:
        insp = inspect(s.connection())
        out = {(i["name"], tuple(i["column_names"]), bool(i["unique"]))
               for i in insp.get_indexes("frame_contact")}
        out |= {(u["name"], tuple(u["column_names"]), True)
                for u in insp.get_unique_constraints("frame_contact")}
    return out


def test_a_large_file_checks_the_keys_once_and_keeps_them(db, cfg, tmp_path, monkeypatch):
    """Files of more than one chunk are copied with frame_contact's foreign keys set aside
    (PostgreSQL) and checked in one pass at the end: the keys are there afterwards, after a
    good file and after a refused one, and a refused file still stores nothing."""
    import minping.frames

    monkeypatch.setattr(minping.frames, "BATCH", 40)  # "large" = more than 40 rows here
    keys = _foreign_keys(db)
    assert len(keys) == 4
    indexes = _indexes(db)
    assert len(indexes) >= 3
    good = tmp_path / "good.csv"
    write_frame(good, cfg, 150, seed=7)
    with db.transaction() as s:
        assert import_frame(s, cfg, good).imported == 150
    assert _foreign_keys(db) == keys and frame_count(db) == 150

    bad = tmp_path / "bad.csv"
    write_frame(bad, cfg, 150, seed=8, extra_rows=BAD)
    with pytest.raises(InputError) as info, db.transaction() as s:
        import_frame(s, cfg, bad)
    assert {p.row for p in info.value.problems} == {152, 153, 154}
    assert _foreign_keys(db) == keys and frame_count(db) == 150
    assert _indexes(db) == indexes


def test_a_large_file_with_a_bad_byte_late_stores_nothing(db, cfg, tmp_path, monkeypatch):
    """A byte that does not decode is met while storing (the file is decoded once, as it is
    read): the import stops naming its row, nothing is stored and the keys and indexes are
    back; a duplicate is still caught with the unique constraint set aside."""
    import minping.frames
    import minping.tables

    monkeypatch.setattr(minping.frames, "BATCH", 40)
    monkeypatch.setattr(minping.tables, "_CHUNK", 256)
    keys, indexes = _foreign_keys(db), _indexes(db)
    path = tmp_path / "late.csv"
    write_frame(path, cfg, 150, seed=9)
    data = path.read_bytes()
    path.write_bytes(data + b"1381234\xff5678,x,y,z\n")
    with pytest.raises(InputError, match="not valid gb18030") as info, db.transaction() as s:
        import_frame(s, cfg, path, encoding="gb18030")
    assert [p.row for p in info.value.problems] == [152]
    assert frame_count(db) == 0
    assert _foreign_keys(db) == keys and _indexes(db) == indexes

    dup = tmp_path / "dup.csv"
    contacts = write_frame(dup, cfg, 150, seed=10)
    gname = {g.id: g.name for g in cfg.groups}
    tname = {t.id: t.name for t in cfg.towns}
    c = contacts[5]
    with open(dup, "a", encoding="gb18030", newline="") as fh:
        fh.write(f"{c.phone.removeprefix('+86')},{gname[c.group]},{tname[c.town]},又一次\n")
    with pytest.raises(InputError) as info, db.transaction() as s:
        import_frame(s, cfg, dup)
    assert [(p.row, p.field) for p in info.value.problems] == [(152, "电话")]
    assert "already on row 7" in info.value.problems[0].message
    assert frame_count(db) == 0
    assert _foreign_keys(db) == keys and _indexes(db) == indexes
