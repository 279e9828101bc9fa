"""Bad input: fuzzed frame, ballot, vote and inspection files, configuration and webhooks.

Every bad file is refused with an :class:`~minping.errors.InputError` whose
problems name the file (and, for a fault in a row, the row and the field),
and the database is exactly as it was (every table's rows compared before and
after).  Hypothesis mutates valid files: cells dropped, duplicated or garbled,
columns added or removed, huge numbers, empty lines, byte-order marks, other
encodings, random bytes, XLSX cells of the wrong type.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
import math
import re
import tomllib
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from sqlalchemy import select

from minping.config import ConfigError, load_config
from minping.demo import synthetic_frame
from minping.errors import InputError
from minping.frames import import_frame
from minping.inputs import import_input
from minping.models import Base, CallAttempt

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def snapshot(db) -> dict[str, list]:
    """Every row of every table, in a stable order."""
    out = {}
    with db.session() as s:
        for table in Base.metadata.sorted_tables:
            rows = s.execute(select(table)).all()
            out[table.name] = sorted(tuple(map(repr, r)) for r in rows)
    return out


def check_problems(exc: InputError, path: Path) -> None:
    """Each problem names the file; a problem in a row names its row and field."""
    assert exc.problems, str(exc)
    for p in exc.problems:
        assert path.name in p.file, (p, path)
        if p.row is not None:
            assert p.row >= 1, p
            assert p.field or any(w in p.message for w in WHOLE_ROW), f"a problem in row {p.row} names no field: {p}"


#: Faults of a whole row or line, which name the row but no single field: more cells
#: than the header, bytes that are not in the file's encoding, no header at all.
WHOLE_ROW = ("cells but the header has", "is not valid", "no header row")


# --- mutations --------------------------------------------------------------------------------

GARBAGE = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "9" * 40, "-1", "1e308", "NaN", "inf", "0x1F", "１３８", "+86",
                     "=1+1", "\x00", "\ufeff", "城关镇", "2026-02-30", "13/45/2026", "\u202e"]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@st.composite
def mutated_grid(draw, grid: list[list[str]]) -> list[list[str]]:
    """A copy of ``grid`` (header first) with a few random mutations."""
    rows = [list(r) for r in grid]
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["garble", "drop_cell", "dup_cell", "dup_row", "drop_row",
                                   "empty_line", "add_col", "drop_col", "extra_cell",
                                   "header", "huge"]))
        r = draw(st.integers(0, len(rows) - 1)) if rows else 0
        if not rows:
            break
        c = draw(st.integers(0, max(0, len(rows[r]) - 1)))
        if op == "garble" and rows[r]:
            rows[r][c] = draw(GARBAGE)
        elif op == "drop_cell" and rows[r]:
            del rows[r][c]
        elif op == "dup_cell" and rows[r]:
            rows[r].insert(c, rows[r][c])
        elif op == "dup_row":
            rows.insert(r, list(rows[r]))
        elif op == "drop_row":
            del rows[r]
        elif op == "empty_line":
            rows.insert(r, [])
        elif op == "add_col":
            name = draw(st.text(max_size=6))
            for i, row in enumerate(rows):
                row.append(name if i == 0 else draw(GARBAGE))
        elif op == "drop_col":
            for row in rows:
                if c < len(row):
                    del row[c]
        elif op == "extra_cell":
            rows[r].append(draw(GARBAGE))
        elif op == "header" and rows[0]:
            rows[0][c % len(rows[0])] = draw(GARBAGE)
        elif op == "huge" and r > 0 and rows[r]:
            rows[r][c] = draw(st.sampled_from(["9" * 400, "1" + "0" * 30, "-" + "9" * 25,
                                               "1e400", "99999999999999999999.5"]))
    return rows


def _xlsx_value(draw, text: str):
    kind = draw(st.sampled_from(["text", "text", "int", "float", "bool", "date", "none",
                                 "formula"]))
    if kind == "int":
        return draw(st.integers(-(2**63), 2**63))
    if kind == "float":
        return draw(st.floats(allow_nan=False, allow_infinity=False))
    if kind == "bool":
        return draw(st.booleans())
    if kind == "date":
        import datetime as dt

        return dt.datetime(2026, 11, draw(st.integers(1, 30)), 8, 30)
    if kind == "none":
        return None
    if kind == "formula":
        return "=1/0"
    return ILLEGAL_CHARACTERS_RE.sub("", text)  # characters a worksheet cannot hold


@st.composite
def mutated_file(draw, grid: list[list[str]], folder: Path, stem: str) -> Path:
    """A file made from a mutated ``grid``: CSV in some encoding, XLSX, or raw bytes."""
    rows = draw(mutated_grid(grid))
    form = draw(st.sampled_from(["utf-8", "utf-8-sig", "gb18030", "utf-16", "latin-1-ish",
                                 "xlsx", "random", "truncated", "tsv", "crlf"]))
    n = draw(st.integers(0, 10**9))
    if form == "xlsx":
        path = folder / f"{stem}-{n}.xlsx"
        book = openpyxl.Workbook()
        for i, row in enumerate(rows):
            book.active.append([ILLEGAL_CHARACTERS_RE.sub("", c) if i == 0 else _xlsx_value(draw, c)
                                for c in row])
        book.save(path)
        return path
    path = folder / f"{stem}-{n}.csv"
    buf = io.StringIO()
    csv.writer(buf, delimiter="\t" if form == "tsv" else ",",
               lineterminator="\r\n" if form == "crlf" else "\n").writerows(rows)
    text = buf.getvalue()
    if form == "random":
        data = draw(st.binary(max_size=300))
    elif form == "truncated":
        raw = text.encode("utf-8")
        data = raw[: draw(st.integers(0, len(raw)))]
    elif form == "latin-1-ish":  # bytes that are neither UTF-8 nor sensible GB18030
        data = text.encode("utf-8") + bytes([0xFF, 0xFE, 0x80, 0x81])
    elif form in ("tsv", "crlf"):
        data = text.encode("utf-8")
    else:
        data = text.encode(form, errors="replace")
    path.write_bytes(data)
    return path


# --- frame importer ---------------------------------------------------------------------------

def frame_grid(cfg, n: int = 6) -> list[list[str]]:
    contacts = synthetic_frame(cfg, n, rng=np.random.default_rng(7))
    gname = {g.id: g.name for g in cfg.groups}
    tname = {t.id: t.name for t in cfg.towns}
    return [["电话", "类别", "乡镇", "姓名"]] + [
        [c.phone.removeprefix("+86"), gname[c.group], tname[c.town], f"联系人{i}"]
        for i, c in enumerate(contacts)]


def test_fuzzed_frame_files_import_cleanly_or_are_refused_with_nothing_changed(
        db, cfg, tmp_path):
    grid = frame_grid(cfg)
    outcome = {"imported": 0, "refused": 0}

    @FUZZ
    @given(data=st.data())
    def run(data):
        path = data.draw(mutated_file(grid, tmp_path, "frame"))
        before = snapshot(db)
        try:
            with db.transaction() as s:
                import_frame(s, cfg, path)
        except InputError as exc:
            check_problems(exc, path)
            assert snapshot(db) == before, f"{path.name}: refused, yet the database changed"
            outcome["refused"] += 1
        else:
            outcome["imported"] += 1

    run()
    print(f"\nframe files: {outcome['imported']} imported, {outcome['refused']} refused "
          f"with file/row/field problems, database unchanged each time")
    assert outcome["refused"] > 0


# --- ballot, vote and inspection importers -----------------------------------------------------

SAMPLES = Path(__file__).resolve().parents[2] / "minping" / "data" / "sample-inputs"
INPUT_FILES = {"assessment": "synthetic-assessment-baisha.csv",
               "online": "synthetic-online-votes.csv",
               "inspection": "synthetic-inspections.csv"}


def sample_grid(kind: str, rows: int = 6) -> list[list[str]]:
    with open(SAMPLES / INPUT_FILES[kind], encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))[: rows + 1]


@pytest.mark.parametrize("kind", sorted(INPUT_FILES))
def test_fuzzed_input_files_import_cleanly_or_are_refused_with_nothing_changed(
        db, cfg, tmp_path, kind):
    grid = sample_grid(kind)
    outcome = {"imported": 0, "refused": 0}

    @FUZZ
    @given(data=st.data())
    def run(data):
        path = data.draw(mutated_file(grid, tmp_path, kind))
        before = snapshot(db)
        try:
            import_input(db, cfg, kind, path)
        except InputError as exc:
            check_problems(exc, path)
            assert snapshot(db) == before, f"{path.name}: refused, yet the database changed"
            outcome["refused"] += 1
        else:
            outcome["imported"] += 1

    run()
    print(f"\n{kind} files: {outcome['imported']} imported, {outcome['refused']} refused "
          f"with file/row/field problems, database unchanged each time")
    assert outcome["refused"] > 0


def test_a_refused_input_file_on_a_fresh_database_writes_nothing(db, cfg, tmp_path):
    """The campaign used to be written (committed) before the file was checked."""
    path = tmp_path / "votes.csv"
    path.write_text("unit,option\nwin-tax,1\n", encoding="utf-8")
    before = snapshot(db)
    with pytest.raises(InputError) as info:
        import_input(db, cfg, "online", path)
    assert [(p.row, p.field) for p in info.value.problems] == [(1, "count")]
    assert snapshot(db) == before
    assert not before["campaign"]


@pytest.mark.parametrize(("header", "field"), [("类别,乡镇", "phone"), ("电话,乡镇", "group")])
def test_a_frame_file_without_a_required_column_names_that_field(db, cfg, tmp_path, header,
                                                                  field):
    path = tmp_path / "frame.csv"
    path.write_text(header + "\n13812345678,城关镇\n", encoding="utf-8")
    with pytest.raises(InputError) as info, db.transaction() as s:
        import_frame(s, cfg, path)
    assert [(p.row, p.field) for p in info.value.problems] == [(1, field)]


# --- configuration ------------------------------------------------------------------------------

CONFIG = Path(__file__).resolve().parents[2] / "minping" / "data" / "survey.toml"
#: A problem starts with its key path: ``tracks[1].units[4].id: ...``, ``calling.windows.mon[0]: ...``.
KEY_PATH = re.compile(r"^[\w\-]+(\[\d+\])*(\.[\w\-]+(\[\d+\])*)*: \S")


def toml_value(v) -> str:
    """``v`` as a TOML inline value (tables inline, every key quoted)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(x)}"
                               for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_document(data: dict) -> str:
    return "".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}\n"
                   for k, v in data.items())


def _places(node, path=()):
    """Every (container, key) in the document, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for k, v in items:
        yield node, k, path + (k,)
        if isinstance(v, dict | list):
            yield from _places(v, path + (k,))


BAD_VALUES = st.one_of(
    st.sampled_from(["", "x", "25:00", "08:60", "2026-02-30", "mon", "周一", "-1", "1e400",
                     "a b", "../etc", "\x00", "ag-xwb", "dup"]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 10**9, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.just([]), st.just({}), st.just([1, "a"]), st.just({"x": 1}),
    st.just(dt.date(2026, 13 - 1, 31)), st.just(dt.time(3, 0)),
)


@st.composite
def mutated_config(draw, base: dict) -> dict:
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        places = list(_places(data))
        node, key, _ = draw(st.sampled_from(places))
        op = draw(st.sampled_from(["value", "value", "delete", "unknown", "swap"]))
        if op == "value":
            node[key] = draw(BAD_VALUES)
        elif op == "delete":
            del node[key]
        elif op == "unknown":
            target = node[key] if isinstance(node[key], dict) else node
            if isinstance(target, dict):
                target[draw(st.from_regex(r"[a-z_]{1,10}", fullmatch=True))] = draw(BAD_VALUES)
        elif op == "swap" and isinstance(node, list) and len(node) > 1:
            node.append(copy.deepcopy(node[key]))  # a duplicated entry (same id twice)
    return data


def test_fuzzed_configuration_loads_or_names_the_key_path_of_every_problem(tmp_path):
    base = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    path = tmp_path / "survey.toml"
    path.write_text(toml_document(base), encoding="utf-8")
    load_config(path)  # the writer keeps a valid configuration valid
    seen = {"loaded": 0, "refused": 0, "problems": 0}

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(data=mutated_config(base))
    def run(data):
        path.write_text(toml_document(data), encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert KEY_PATH.match(problem), f"no key path: {problem!r}"
            seen["refused"] += 1
            seen["problems"] += len(exc.problems)
        else:
            seen["loaded"] += 1

    run()
    print(f"\nconfigurations: {seen['loaded']} loaded, {seen['refused']} refused with "
          f"{seen['problems']} problems, each starting with its key path")
    assert seen["refused"] > 0


# --- webhooks -----------------------------------------------------------------------------------

ROUTES = ("voice", "inbound", "consent", "answer", "comment", "status", "amd")
BAD_DIGITS = st.one_of(
    st.sampled_from(["", " ", "7", "9", "99", "12", "00", "#", "a", "１", "٣", "😀", "1" * 100,
                     "-1", "1.0", "\x00", "3 3", "0x2"]),
    st.text(max_size=40).filter(lambda t: t.strip() not in {"0", "1", "2", "3", "*"}),
)


def _webhook_rig(app, db):
    from ivr.simulator import Persona
    from tests.ivr.conftest import Rig, signed_post

    rig = Rig(app, db)
    rig.sim.set_persona(rig.phone(), Persona(keys=["1", "1", "1", "1"], ring_seconds=5))
    rig.dialer.step()  # the call rings; nothing answered yet
    with db.session() as s:
        attempt = s.scalars(select(CallAttempt)).one()
    client = app.test_client()
    r = signed_post(client, rig.public_url, f"/ivr/voice?attempt={attempt.id}",
                    {"CallSid": attempt.call_sid, "CallStatus": "in-progress"})
    assert r.status_code == 200  # answered: the survey is under way
    # answering-machine detection said "human" (keys pressed on the call would say so too:
    # a key proves a person), so a key in a bad request below changes no attempt column
    r = signed_post(client, rig.public_url, f"/ivr/amd?attempt={attempt.id}",
                    {"CallSid": attempt.call_sid, "AnsweredBy": "human"})
    assert r.status_code in (200, 204)
    return rig, attempt, client


@st.composite
def bad_webhook(draw, attempt_id: int, call_sid: str):
    """(method, path, form, how): a valid request with one defect Twilio would never send."""
    route = draw(st.sampled_from(ROUTES))
    defect = draw(st.sampled_from(
        ["no_sid", "unknown_sid", "unknown_attempt", "bad_attempt", "bad_pos", "bad_value",
         "no_value", "json", "multipart", "get", "oversized", "unsigned"]))
    if route == "inbound" and defect in ("unknown_sid", "unknown_attempt", "bad_attempt",
                                         "bad_pos", "bad_value"):
        defect = "no_sid"  # /ivr/inbound reads no query and answers any new CallSid
    attempt, pos, sid = str(attempt_id), "0", call_sid
    form = {"CallSid": sid}
    if route in ("consent", "answer"):
        form["Digits"] = "1"
    elif route == "status":
        form |= {"CallStatus": "completed", "CallDuration": "30"}
    elif route == "amd":
        form["AnsweredBy"] = "human"
    elif route == "inbound":
        form["From"] = "+8613800000000"
    if defect == "no_sid":
        del form["CallSid"]
    elif defect == "unknown_sid":
        form["CallSid"] = draw(st.sampled_from(["CA" + "f" * 32, "😀", "x" * 300, " "]))
        attempt = ""  # found by CallSid alone, as for an inbound call
    elif defect == "unknown_attempt":
        attempt = draw(st.sampled_from(["999999", "0", str(attempt_id + 1)]))
    elif defect == "bad_attempt":
        attempt = draw(st.sampled_from(["-1", "x", "99999999999", "1.5", "١"]))
    elif defect == "bad_pos":
        pos = draw(st.sampled_from(["x", "-1", "99999999999", ""]))
    elif defect == "bad_value" and route in ("consent", "answer"):
        form["Digits"] = draw(BAD_DIGITS)
    elif defect == "bad_value" and route == "amd":
        form["AnsweredBy"] = draw(st.sampled_from(["bogus", "😀", "x" * 500]))
    elif defect == "no_value":
        for key in ("Digits", "CallStatus", "AnsweredBy", "From"):
            form.pop(key, None)
    if ((route in ("voice", "comment", "inbound") and defect in ("bad_value", "no_value"))
            or (route != "answer" and defect == "bad_pos")):
        form.pop("CallSid", None)  # the route reads no such value: the CallSid goes instead
    if route == "status" and defect == "bad_value":
        form["CallStatus"] = draw(st.sampled_from(["", "😀", "x" * 500]))
    path = f"/ivr/{route}?attempt={attempt}&pos={pos}&try=0"
    if defect == "multipart":
        form.pop("CallSid")  # a form as multipart is still a form: make it a bad one
    how = defect if defect in ("json", "multipart", "get", "oversized", "unsigned") else "form"
    # keys pressed on a live call (none, or ones off the scale) are what a respondent
    # does: the call's event log may record them; nothing else may change
    logged = defect in ("bad_value", "no_value") and "CallSid" in form
    return "GET" if how == "get" else "POST", path, form, how, logged


def test_bad_webhook_requests_get_twiml_or_4xx_and_change_nothing(app, db):
    from twilio.request_validator import RequestValidator

    from minping.settings import SIMULATOR_AUTH_TOKEN

    rig, attempt, client = _webhook_rig(app, db)
    limit = app.config["MAX_CONTENT_LENGTH"]
    statuses: dict[int, int] = {}
    seen = {"logged": 0}

    def signature(path, form):
        return RequestValidator(SIMULATOR_AUTH_TOKEN).compute_signature(rig.public_url + path,
                                                                        form)

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(request=bad_webhook(attempt.id, attempt.call_sid))
    def run(request):
        method, path, form, how, logged = request
        before = snapshot(db)
        if how == "get":
            r = client.get(path, query_string=None,
                           headers={"X-Twilio-Signature": signature(path, {})})
        elif how == "json":
            r = client.post(path, json=form, headers={"X-Twilio-Signature": signature(path, {})})
        elif how == "multipart":
            r = client.post(path, data=form | {"file": (io.BytesIO(b"x" * 100), "a.bin")},
                            content_type="multipart/form-data",
                            headers={"X-Twilio-Signature": signature(path, form)})
        elif how == "oversized":
            big = form | {"Pad": "x" * (limit + 1)}
            r = client.post(path, data=big, headers={"X-Twilio-Signature": signature(path, big)})
        elif how == "unsigned":
            r = client.post(path, data=form)
        else:
            r = client.post(path, data=form, headers={"X-Twilio-Signature": signature(path, form)})
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (method, path, form, how, r.get_data(as_text=True)[:500])
        if r.status_code == 200:
            assert r.mimetype in ("application/xml", "text/xml"), r.mimetype
            assert r.get_data(as_text=True).lstrip().startswith("<?xml"), r.get_data()[:200]
        else:
            assert 400 <= r.status_code < 500, (path, how, r.status_code)
        after = snapshot(db)
        if logged:
            events = before.pop("attempt_event"), after.pop("attempt_event")
            assert set(events[0]) <= set(events[1]), (path, form, "an event was changed")
            seen["logged"] += len(events[1]) - len(events[0])
        assert after == before, (method, path, form, how, r.status_code)

    run()
    print(f"\nbad webhook requests by answer status: {dict(sorted(statuses.items()))}; "
          f"no 5xx, database unchanged after each (but {seen['logged']} keypress events "
          f"logged on the live call)")
