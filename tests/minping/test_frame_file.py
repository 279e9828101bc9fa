"""Frame files: encodings, headers, phone normalisation, bad rows, idempotent re-import."""

from __future__ import annotations

import csv
import hashlib

import openpyxl
import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minping.errors import InputError
from minping.frame_file import (
    PhoneNormalizer,
    detect_encoding,
    normalize_header,
    read_frame,
    write_rejects,
)

GROUPS = {
    "residents": "residents",
    "各类群众代表": "residents",
    "Residents' representatives": "residents",
    "deputies": "deputies",
    "两代表一委员": "deputies",
    "business": "business",
    "工商代表": "business",
}
TOWNS = {"chengguan": "chengguan", "城关镇": "chengguan", "xinan": "xinan", "新安镇": "xinan"}

GOOD_AND_BAD = (
    "姓名,电话,类别,乡镇,备注\n"
    "张三,13812345678,各类群众代表,城关镇,\n"  # row 2
    "李四,139 1234 5678,工商代表,新安镇,老客户\n"  # row 3
    "王五,12345,两代表一委员,城关镇,\n"  # row 4: bad phone
    "赵六,+86 150-1234-5678,农民,城关镇,\n"  # row 5: unknown group
    "钱七,0086 18612345678,deputies,东风镇,\n"  # row 6: unknown town
    "孙八,138-1234-5678,residents,xinan,\n"  # row 7: duplicate of row 2
    "周九,010-62345678,business,城关镇,\n"  # row 8: Beijing landline, valid
)


def _write(tmp_path, name, text, encoding):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def test_gb18030_csv_with_bad_rows_names_every_one(tmp_path):
    p = _write(tmp_path, "frame.csv", GOOD_AND_BAD, "gb18030")
    assert detect_encoding(p.read_bytes()) == "gb18030"
    ff = read_frame(p, known_groups=GROUPS, known_towns=TOWNS)
    assert ff.encoding == "gb18030"
    assert ff.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    got = {(pr.row, pr.field, pr.value) for pr in ff.problems}
    assert got == {
        (4, "电话", "12345"),
        (5, "类别", "农民"),
        (6, "乡镇", "东风镇"),
        (7, "电话", "138-1234-5678"),
    }
    msgs = {pr.row: pr.message for pr in ff.problems}
    assert "not a valid phone number" in msgs[4]
    # groups named as the file spells them, never by the internal ids
    assert msgs[5].startswith("unknown group; expected one of: 工商代表, 两代表一委员, 各类群众代表")
    assert msgs[6].startswith("unknown town")
    assert msgs[7] == "duplicate: +8613812345678 is already on row 2"
    assert not ff.ok
    with pytest.raises(InputError) as exc:
        ff.raise_for_problems()
    text = str(exc.value)
    assert "4 problem(s) in 4 row(s); nothing was imported" in text
    for row in (4, 5, 6, 7):
        assert f"row {row}, field" in text
    # the good rows are there for --skip-invalid
    assert ff.phones == ("+8613812345678", "+8613912345678", "+861062345678")
    assert ff.groups == ("residents", "business", "business")
    assert ff.towns == ("chengguan", "xinan", "chengguan")
    assert ff.source_rows == (2, 3, 8)
    assert ff.attributes == {"姓名": ("张三", "李四", "周九"), "备注": ("", "老客户", "")}
    assert ff.columns == {"姓名": "name", "电话": "phone", "类别": "group", "乡镇": "town"}
    second = list(ff.rows())[1]
    assert (second.row, second.phone, second.group, second.town) == (
        3,
        "+8613912345678",
        "business",
        "xinan",
    )
    assert second.attributes == {"姓名": "李四", "备注": "老客户"}


def test_rejects_file(tmp_path):
    p = _write(tmp_path, "frame.csv", GOOD_AND_BAD, "gb18030")
    ff = read_frame(p, known_groups=GROUPS, known_towns=TOWNS)
    out = tmp_path / "rejects.csv"
    assert write_rejects(ff, out) == 4
    with open(out, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["row", "problems", "姓名", "电话", "类别", "乡镇", "备注"]
    assert [r[0] for r in rows[1:]] == ["4", "5", "6", "7"]
    assert rows[2][2:] == ["赵六", "+86 150-1234-5678", "农民", "城关镇", ""]
    assert rows[2][1].startswith("类别: unknown group")


def test_utf8_bom_csv_with_english_headers(tmp_path):
    text = "Phone,Group,Town,Age\n13812345678,Residents' representatives,城关镇,45\n"
    p = _write(tmp_path, "bom.csv", "\ufeff" + text, "utf-8")
    ff = read_frame(p, known_groups=GROUPS, known_towns=TOWNS)
    assert ff.encoding == "utf-8-sig"
    assert ff.ok and ff.phones == ("+8613812345678",)
    assert ff.groups == ("residents",) and ff.attributes == {"Age": ("45",)}
    assert ff.columns == {"Phone": "phone", "Group": "group", "Town": "town"}


def test_plain_utf8_tab_separated_without_town(tmp_path):
    p = _write(tmp_path, "f.txt", "手机号码\t群体\n13812345678\t工商代表\n", "utf-8")
    ff = read_frame(p, known_groups=GROUPS)
    assert ff.encoding == "utf-8"
    assert ff.towns == (None,) and ff.groups == ("business",)


def test_explicit_wrong_encoding_names_the_row(tmp_path):
    p = _write(tmp_path, "f.csv", "电话,类别\n13812345678,工商代表\n", "gb18030")
    with pytest.raises(InputError, match="not valid utf-8") as exc:
        read_frame(p, encoding="utf-8")
    assert exc.value.problems[0].row == 1
    ff = read_frame(p, encoding="gbk", known_groups=GROUPS)
    assert ff.groups == ("business",)


def test_xlsx_with_title_row_numeric_phones_and_blank_rows(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["2026年民评电话抽样框"])  # row 1: a title above the header
    ws.append(["序号", "手机", "类别", "乡镇"])  # row 2
    ws.append([1, 13812345678, "各类群众代表", "城关镇"])  # row 3: phone as a number
    ws.append([])  # row 4: blank
    ws.append([2, "1381234567", "工商代表", "新安镇"])  # row 5: ten digits
    ws.append([3, 15012345678.0, "deputies", "xinan"])  # row 6: phone as a float
    p = tmp_path / "frame.xlsx"
    wb.save(p)
    ff = read_frame(p, known_groups=GROUPS, known_towns=TOWNS)
    assert ff.encoding == "xlsx"
    assert ff.phones == ("+8613812345678", "+8615012345678")
    assert ff.source_rows == (3, 6)
    assert [(pr.row, pr.field, pr.value) for pr in ff.problems] == [(5, "手机", "1381234567")]
    assert ff.attributes == {"序号": ("1", "3")}
    assert ff.rows_read == 3


def test_reimport_is_a_no_op_and_conflicts_are_problems(tmp_path):
    text = "电话,类别,乡镇\n13812345678,工商代表,城关镇\n13912345678,residents,xinan\n"
    p = _write(tmp_path, "f.csv", text, "utf-8")
    first = read_frame(p, known_groups=GROUPS, known_towns=TOWNS)
    assert len(first) == 2
    again = read_frame(p, known_groups=GROUPS, known_towns=TOWNS, existing_phones=set(first.phones))
    assert again.ok and len(again) == 0
    assert [(s.row, s.phone) for s in again.already_in_frame] == [
        (2, "+8613812345678"),
        (3, "+8613912345678"),
    ]
    stored = {"+8613812345678": ("business", "chengguan"), "+8613912345678": ("deputies", "xinan")}
    conflict = read_frame(p, known_groups=GROUPS, known_towns=TOWNS, existing_phones=stored)
    assert len(conflict) == 0 and len(conflict.already_in_frame) == 1
    assert [(pr.row, pr.field) for pr in conflict.problems] == [(3, "电话")]
    assert "already in the frame as group '两代表一委员', town 'xinan'" in conflict.problems[0].message


def test_do_not_call_rows_are_suppressed(tmp_path):
    text = "电话,类别\n13812345678,工商代表\n13912345678,工商代表\n"
    p = _write(tmp_path, "f.csv", text, "utf-8")
    ff = read_frame(p, known_groups=GROUPS, do_not_call={"139-1234-5678"})
    assert ff.ok and ff.phones == ("+8613812345678",)
    assert [(s.row, s.phone, s.reason) for s in ff.suppressed] == [
        (3, "+8613912345678", "on the do-not-call list")
    ]


def test_file_level_errors(tmp_path):
    p = _write(tmp_path, "f.csv", "姓名,类别\n张三,工商代表\n", "utf-8")
    with pytest.raises(InputError, match="no phone column"):
        read_frame(p)
    p = _write(tmp_path, "g.csv", "电话,乡镇\n13812345678,城关镇\n", "utf-8")
    with pytest.raises(InputError, match="no group column"):
        read_frame(p)
    p = _write(tmp_path, "h.csv", "电话,手机,类别\n1,2,3\n", "utf-8")
    with pytest.raises(InputError, match="both give the phone"):
        read_frame(p)
    with pytest.raises(InputError, match="cannot read the file"):
        read_frame(tmp_path / "missing.csv")
    xls = tmp_path / "old.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    with pytest.raises(InputError, match="save it as .xlsx or CSV"):
        read_frame(xls)
    p = _write(tmp_path, "e.csv", "", "utf-8")
    with pytest.raises(InputError, match="the file has no rows"):
        read_frame(p)


def test_ragged_rows_and_empty_cells(tmp_path):
    text = "电话,类别,乡镇\n13812345678,工商代表\n13912345678,工商代表,城关镇,extra\n,工商代表,城关镇\n"
    p = _write(tmp_path, "f.csv", text, "utf-8")
    ff = read_frame(p, known_groups=GROUPS, known_towns=TOWNS)
    got = [(pr.row, pr.field, pr.message) for pr in ff.problems]
    assert got == [
        (2, "乡镇", "town is empty"),
        (3, None, "the row has 4 cells but the header has 3"),
        (4, "电话", "phone number is empty"),
    ]


def test_progress_is_reported(tmp_path):
    rows = "".join(f"138{i:08d},工商代表\n" for i in range(120_000))
    p = _write(tmp_path, "big.csv", "电话,类别\n" + rows, "utf-8")
    seen: list[int] = []
    ff = read_frame(p, known_groups=GROUPS, progress=seen.append)
    assert seen == [50_000, 100_000, 120_000]
    assert len(ff) == 120_000 and ff.ok


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13812345678", "+8613812345678"),
        ("138 1234 5678", "+8613812345678"),
        ("138-1234-5678", "+8613812345678"),
        ("+86 138 1234 5678", "+8613812345678"),
        ("0086-13812345678", "+8613812345678"),
        ("(010) 6234 5678", "+861062345678"),
        ("１３８１２３４５６７８", "+8613812345678"),  # full-width digits
        ("+1 650 253 0000", "+16502530000"),
    ],
)
def test_phone_forms(raw, e164):
    assert PhoneNormalizer().normalize(raw) == (e164, None)


@pytest.mark.parametrize("raw", ["12345", "abc", "1381234567", "138123456789", "10012345678"])
def test_bad_phones(raw):
    e164, why = PhoneNormalizer().normalize(raw)
    assert e164 is None and why


def _slow(raw: str) -> str | None:
    try:
        num = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def test_fast_path_agrees_with_phonenumbers_on_every_prefix():
    norm = PhoneNormalizer()
    for prefix in range(13000, 20000):
        for suffix in ("000000", "583921", "999999"):
            raw = f"{prefix}{suffix}"
            assert norm.normalize(raw)[0] == _slow(raw), raw
            assert norm.normalize("+86" + raw)[0] == _slow("+86" + raw), raw


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"\A(\+86 ?|0086|86)?1[0-9]{2}[ -]?[0-9]{4}[ -]?[0-9]{4}\Z", fullmatch=True))
def test_property_fast_path_equals_phonenumbers(raw):
    assert PhoneNormalizer().normalize(raw)[0] == _slow(raw)


def test_normalize_header():
    assert normalize_header(" Phone_Number ") == "phonenumber"
    assert normalize_header("手机号码（必填）") == "手机号码"
    assert normalize_header("*类别 (group)") == "类别"


def test_a_column_is_normalised_as_each_cell_alone():
    cells = ["13812345678", "１３８１２３４５６７８", "1381234567８", "138 1234 5678", "17951000000",
             "12345678901", "19999999999", "+8613812345678", "", "abc", "138123456789",
             "1381234567a", "世界你好世界你好世界你", "010-62345678", "\x00" * 11, "16100000000"]
    norm = PhoneNormalizer()
    keys, reasons = norm.normalize_list(cells)
    for i, raw in enumerate(cells):
        e164, why = PhoneNormalizer().normalize(raw)
        assert (keys[i] if keys[i] >= 0 else None) == (int(e164[1:]) if e164 else None), raw
        assert reasons.get(i) == why, raw


def test_blocks_give_the_rows_as_the_csv_module_reads_them(tmp_path, monkeypatch):
    """Decoded in small blocks: CRLF cut between blocks, quoted newlines, CR-only lines."""
    import minping.tables
    from minping.tables import open_table

    text = ("电话,类别,备注\r\n13812345678,工商代表,\"两行\r\n的备注\"\r\n"
            + "".join(f"1391234{i:04d},各类群众代表, 备注{i} \r\n" for i in range(300))
            + "\r\n13712345678,工商代表,cr only\r13712345679,工商代表,末行")
    p = _write(tmp_path, "blocks.csv", text, "gb18030")
    expected = list(open_table(p).rows)
    for chunk in (7, 64, 1 << 22):
        monkeypatch.setattr(minping.tables, "_CHUNK", chunk)
        for size in (1, 50, 1000):
            got = [(start + k, [c.strip() for c in row])
                   for start, rows in open_table(p, check_first=False).blocks(size)
                   for k, row in enumerate(rows)]
            assert got == expected, (chunk, size)


def test_a_bad_byte_far_into_the_file_is_named_by_its_row(tmp_path, monkeypatch):
    import minping.tables

    monkeypatch.setattr(minping.tables, "_CHUNK", 64)
    body = "".join(f"1391234{i:04d},工商代表\n" for i in range(50)).encode("gb18030")
    p = tmp_path / "late.csv"
    p.write_bytes("电话,类别\n".encode("gb18030") + body + b"1381234\xff5678,x\n")
    with pytest.raises(InputError, match="not valid gb18030") as exc:
        read_frame(p, encoding="gb18030", known_groups=GROUPS)
    assert exc.value.problems[0].row == 52
