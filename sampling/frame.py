"""Reading a sampling frame from a CSV or XLSX file.

A frame file has one contact per row and a header row naming the columns.
Columns are recognised by their header, in Chinese or English (see
:data:`HEADER_ALIASES`): a phone column and a group column are required, a
town column is optional, and every other column is kept as an attribute of the
contact under its header as written.

CSV files may be UTF-8, UTF-8 with a byte-order mark (as Excel writes "CSV
UTF-8"), UTF-16 with a byte-order mark, or GB18030 — the superset of GBK and
GB2312 that Chinese spreadsheets write.  Without an explicit ``encoding`` the
reader takes the BOM's encoding if there is one, UTF-8 if the bytes are valid
UTF-8, and GB18030 otherwise.  A CSV may be comma-, semicolon- or
tab-separated (judged from the header line).

Phone numbers are parsed with :mod:`phonenumbers` in the default region
(``CN``), checked with ``is_valid_number`` and stored in E.164.  Spaces,
dashes, dots, parentheses and the ``+86``/``0086`` prefixes are accepted.  The
common 11-digit mainland mobile form takes a fast path: its validity depends
only on its first five digits (see ``PhoneMetadata`` for CN, mobile pattern),
so each five-digit prefix is checked once with ``phonenumbers`` and cached;
every other form, and every prefix that does not check out, goes through
``phonenumbers.parse``.

Nothing is stored here; :func:`read_frame` returns what it found and the
caller decides (all or nothing, or ``--skip-invalid``).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers

from minping.errors import InputError, Problem

__all__ = [
    "HEADER_ALIASES",
    "FrameFile",
    "FrameRow",
    "PhoneNormalizer",
    "SkippedRow",
    "detect_encoding",
    "normalize_header",
    "read_frame",
    "write_rejects",
]

#: Accepted headers per field (compared after :func:`normalize_header`).
HEADER_ALIASES: Mapping[str, tuple[str, ...]] = {
    "phone": (
        "电话",
        "电话号码",
        "手机",
        "手机号",
        "手机号码",
        "联系电话",
        "联系方式",
        "号码",
        "移动电话",
        "phone",
        "phonenumber",
        "mobile",
        "mobilephone",
        "telephone",
        "tel",
        "cell",
        "cellphone",
    ),
    "group": (
        "类别",
        "群体",
        "组别",
        "人员类别",
        "群体类别",
        "代表类别",
        "类型",
        "group",
        "category",
        "groupid",
    ),
    "town": ("乡镇", "镇", "乡镇街道", "镇街", "所属乡镇", "town", "township", "townid"),
    "name": ("姓名", "名字", "name", "fullname"),
}

_HEADER_FIELD = {a: f for f, aliases in HEADER_ALIASES.items() for a in aliases}

_PUNCT = re.compile(r"[\s_\-\.:：（）()\[\]【】*]+")


_NOTE = re.compile(r"[（(【\[][^）)】\]]*[）)】\]]")


def normalize_header(text: str) -> str:
    """Normalise a header for matching.

    Drops a BOM and bracketed notes (``电话（必填）`` → ``电话``), spaces,
    underscores, dashes, dots, colons and asterisks, and case-folds.
    """
    return _PUNCT.sub("", _NOTE.sub("", text.replace("\ufeff", ""))).casefold()


def detect_encoding(data: bytes) -> str:
    """Guess a CSV file's encoding: BOM, else UTF-8 if valid, else GB18030."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


# ---------------------------------------------------------------------------
# phone numbers

_CLEAN = re.compile(r"[\s\-\.()\u00a0\u3000]+")
_FAST = re.compile(r"(?:\+86|0086|86)?(1[3-9][0-9]{9})", re.ASCII)


class PhoneNormalizer:
    """Parse, validate and format phone numbers to E.164, with a cached fast path.

    Parameters
    ----------
    region : str, default "CN"
        Region for numbers written without a country code.

    Notes
    -----
    :meth:`normalize` returns ``(e164, None)`` or ``(None, reason)``.  Numbers
    matching ``(+86|0086|86)? 1[3-9]\\d{9}`` (after removing spaces, dashes,
    dots and parentheses) are validated by their five-digit prefix, checked
    once per prefix with ``phonenumbers``; this is exact because the CN mobile
    pattern (``1(?:610\\d|740[0-5])\\d{6}|1(?:[38]\\d|4[57]|...)\\d{8}``) is
    decided by the first five digits and the length, and these prefixes are
    not national prefixes that ``phonenumbers`` would strip.  When the prefix
    does not check out, or the region is not CN, the full parser decides.
    """

    def __init__(self, region: str = "CN"):
        self.region = region
        self._fast = region == "CN"
        self._prefix_ok: dict[str, bool] = {}

    def _slow(self, raw: str) -> tuple[str | None, str | None]:
        try:
            num = phonenumbers.parse(raw, self.region)
        except phonenumbers.NumberParseException as exc:
            return None, f"not a phone number ({_parse_reason(exc)})"
        if not phonenumbers.is_valid_number(num):
            reason = phonenumbers.is_possible_number_with_reason(num)
            if reason == phonenumbers.ValidationResult.TOO_SHORT:
                why = "too few digits"
            elif reason == phonenumbers.ValidationResult.TOO_LONG:
                why = "too many digits"
            elif reason == phonenumbers.ValidationResult.INVALID_COUNTRY_CODE:
                why = "unknown country code"
            else:
                why = "no such number range"
            return None, f"not a valid phone number for region {self.region} ({why})"
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164), None

    def normalize(self, raw: str) -> tuple[str | None, str | None]:
        """Return ``(e164, None)`` for a valid number, else ``(None, reason)``."""
        if not raw:
            return None, "phone number is empty"
        if self._fast:
            m = _FAST.fullmatch(_CLEAN.sub("", raw))
            if m:
                national = m.group(1)
                prefix = national[:5]
                ok = self._prefix_ok.get(prefix)
                if ok is None:
                    e164, _ = self._slow(prefix + "000000")
                    ok = self._prefix_ok[prefix] = e164 == "+86" + prefix + "000000"
                if ok:
                    return "+86" + national, None
        return self._slow(raw)


def _parse_reason(exc: phonenumbers.NumberParseException) -> str:
    return {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
        phonenumbers.NumberParseException.NOT_A_NUMBER: "no digits that form a number",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the 00 prefix",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too few digits",
        phonenumbers.NumberParseException.TOO_LONG: "too many digits",
    }.get(exc.error_type, str(exc))


# ---------------------------------------------------------------------------
# result


@dataclass(frozen=True, slots=True)
class SkippedRow:
    """A valid row that is not imported: on the do-not-call list, or already in the frame."""

    row: int
    phone: str
    reason: str


@dataclass(frozen=True, slots=True)
class FrameRow:
    """One contact to import (see :meth:`FrameFile.rows`)."""

    row: int
    phone: str
    group: str
    town: str | None
    attributes: Mapping[str, str]


@dataclass(frozen=True)
class FrameFile:
    """What :func:`read_frame` found in a frame file.

    The contacts to import are stored column by column: entry ``i`` of
    ``phones``, ``groups``, ``towns``, ``source_rows`` and of every
    ``attributes`` column describe the same contact.  They exclude rows with
    problems, do-not-call numbers and numbers already in the frame.

    Attributes
    ----------
    path : str
        The file as given (used in the problems).
    encoding : str
        Encoding used (``"xlsx"`` for a workbook).
    sha256 : str
        SHA-256 of the file's bytes.
    header : tuple of str
        The header row as written.
    columns : Mapping[str, str]
        Header → field (``phone``, ``group``, ``town``, ``name``) for the
        recognised columns; other headers are attributes.
    phones : tuple of str
        E.164 numbers.
    groups : tuple of str
        Group ids.
    towns : tuple of (str or None)
        Town ids (``None`` when the file has no town column).
    source_rows : tuple of int
        Row number in the file (the header is row 1 in a file whose header is
        on the first line).
    attributes : Mapping[str, tuple of str]
        Every other column, including ``name``, keyed by header.
    problems : tuple of Problem
        Every bad row (row number, column, value, why).
    suppressed : tuple of SkippedRow
        Valid rows whose number is on the do-not-call list.
    already_in_frame : tuple of SkippedRow
        Valid rows whose number is already in the frame with the same group
        and town (so re-importing a file changes nothing).
    rejected_cells : Mapping[int, tuple of str]
        The cells of each row with a problem, by row number (for the rejects
        file).
    rows_read : int
        Non-empty data rows read.
    """

    path: str
    encoding: str
    sha256: str
    header: tuple[str, ...]
    columns: Mapping[str, str]
    phones: tuple[str, ...]
    groups: tuple[str, ...]
    towns: tuple[str | None, ...]
    source_rows: tuple[int, ...]
    attributes: Mapping[str, tuple[str, ...]]
    problems: tuple[Problem, ...]
    suppressed: tuple[SkippedRow, ...]
    already_in_frame: tuple[SkippedRow, ...]
    rejected_cells: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    rows_read: int = 0

    def __len__(self) -> int:
        return len(self.phones)

    def rows(self) -> Iterator[FrameRow]:
        """Yield the contacts to import one by one (row-wise view of the columns)."""
        names = list(self.attributes)
        cols = [self.attributes[k] for k in names]
        for i in range(len(self.phones)):
            yield FrameRow(
                row=self.source_rows[i],
                phone=self.phones[i],
                group=self.groups[i],
                town=self.towns[i],
                attributes={k: c[i] for k, c in zip(names, cols, strict=True)},
            )

    @property
    def ok(self) -> bool:
        """True when no row has a problem."""
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise :class:`~minping.errors.InputError` listing every problem, if any."""
        if self.problems:
            rows = len({p.row for p in self.problems})
            raise InputError(
                list(self.problems),
                f"{self.path}: {len(self.problems)} problem(s) in {rows} row(s); "
                "nothing was imported",
            )


# ---------------------------------------------------------------------------
# reading


def _cell_text(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v).strip()


def _csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    first = text.split("\n", 1)[0]
    delim = ","
    if "," not in first:
        if "\t" in first:
            delim = "\t"
        elif ";" in first:
            delim = ";"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    for rownum, cells in enumerate(reader, start=1):
        yield rownum, [c.strip() for c in cells]


def _xlsx_rows(path: str | os.PathLike, sheet: str | None) -> Iterator[tuple[int, list[str]]]:
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        if sheet is not None:
            if sheet not in wb.sheetnames:
                raise InputError(
                    [Problem(str(path), None, None, sheet, f"no sheet named {sheet!r}")]
                )
            ws = wb[sheet]
        else:
            ws = wb.worksheets[0]
        for rownum, values in enumerate(ws.iter_rows(values_only=True), start=1):
            yield rownum, [_cell_text(v) for v in values]
    finally:
        wb.close()


def _decode(data: bytes, path: str, encoding: str | None) -> tuple[str, str]:
    enc = encoding or detect_encoding(data)
    try:
        return data.decode(enc), enc
    except LookupError:
        raise InputError([Problem(path, None, None, enc, "unknown encoding")]) from None
    except UnicodeDecodeError as exc:
        row = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            [
                Problem(
                    path,
                    row,
                    None,
                    data[exc.start : exc.end].hex(" "),
                    f"the file is not valid {enc}"
                    + ("" if encoding else " (tried UTF-8 and GB18030; give --encoding)"),
                )
            ]
        ) from None


def _label_lookup(mapping: Mapping[str, str] | None) -> dict[str, str] | None:
    if mapping is None:
        return None
    out: dict[str, str] = {}
    for label, ident in mapping.items():
        out[str(label).strip().casefold()] = ident
    for label, ident in mapping.items():
        out[str(label).strip()] = ident
    return out


def _label(raw: str, lookup: Mapping[str, str] | None, what: str, known_ids: Collection[str],
           column: str, file: str, rownum: int, problems: list[Problem]) -> str | None:
    """The id a group or town cell names (ids, names, any case), or ``None`` with a problem."""
    if not raw:
        problems.append(Problem(file, rownum, column, raw, f"{what} is empty"))
        return None
    if lookup is None:
        return raw
    found = lookup.get(raw) or lookup.get(raw.casefold())
    if found is None:
        problems.append(Problem(file, rownum, column, raw,
                                f"unknown {what}; known {what}s: " + ", ".join(known_ids)))
    return found


def read_frame(
    path: str | os.PathLike,
    *,
    encoding: str | None = None,
    region: str = "CN",
    known_groups: Mapping[str, str] | None = None,
    known_towns: Mapping[str, str] | None = None,
    do_not_call: Collection[str] = frozenset(),
    existing_phones: Collection[str] | Mapping[str, tuple[str, str | None]] = frozenset(),
    sheet: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> FrameFile:
    """Read, validate and normalise a frame file (CSV or XLSX).

    Parameters
    ----------
    path : path-like
        A ``.xlsx``/``.xlsm`` workbook (first sheet unless ``sheet``) or a CSV file.
    encoding : str, optional
        The CSV's encoding; detected when omitted (see :func:`detect_encoding`).
    region : str, default "CN"
        Region for numbers written without a country code.
    known_groups, known_towns : mapping label -> id, optional
        Every accepted label (id, Chinese name, English name, ...) mapped to
        the id; matching ignores case and surrounding spaces.  ``None``
        accepts any non-empty value as the id.
    do_not_call : collection of str
        Numbers never to call (E.164 or any form :class:`PhoneNormalizer`
        accepts); rows with them are listed in ``suppressed``.
    existing_phones : collection of str, or mapping E.164 -> (group, town)
        Numbers already in the frame.  A row whose number is there is listed
        in ``already_in_frame`` and not imported — so re-importing a file is a
        no-op.  With a mapping, a row whose group or town differs from the
        stored contact's is a problem instead.
    sheet : str, optional
        Worksheet name for a workbook.
    progress : callable, optional
        Called with the number of data rows processed so far, every 50,000
        rows and once at the end.

    Returns
    -------
    FrameFile

    Raises
    ------
    minping.errors.InputError
        When the file cannot be read at all: missing, undecodable, no header,
        no phone or group column, a field given by two columns.  Row-level
        problems do not raise; they are in ``FrameFile.problems``.
    """
    p = Path(path)
    name = str(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(
            [Problem(name, None, None, None, f"cannot read file: {exc.strerror}")]
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise InputError(
            [
                Problem(
                    name,
                    None,
                    None,
                    None,
                    "this is an old Excel 97-2003 (.xls) workbook; save it as .xlsx or CSV",
                )
            ]
        )
    is_xlsx = p.suffix.lower() in (".xlsx", ".xlsm") or data[:4] == b"PK\x03\x04"
    if is_xlsx:
        used_enc = "xlsx"
        try:
            rows: Iterator[tuple[int, list[str]]] = _xlsx_rows(p, sheet)
            first = next(rows, None)
        except InputError:
            raise
        except Exception as exc:  # openpyxl raises many kinds for a broken file
            raise InputError(
                [Problem(name, None, None, None, f"cannot open the workbook: {exc}")]
            ) from None
    else:
        text, used_enc = _decode(data, name, encoding)
        del data
        rows = _csv_rows(text)
        first = next(rows, None)

    # header: the first row (within the first 10 non-empty rows) naming a phone column
    header_row: tuple[int, list[str]] | None = None
    skipped: list[tuple[int, list[str]]] = []
    candidate = first
    while candidate is not None and len(skipped) < 10:
        rn, cells = candidate
        if any(cells):
            if any(_HEADER_FIELD.get(normalize_header(c)) == "phone" for c in cells):
                header_row = candidate
                break
            skipped.append(candidate)
        candidate = next(rows, None)
    if header_row is None:
        first_nonempty = skipped[0] if skipped else None
        if first_nonempty is None:
            raise InputError([Problem(name, None, None, None, "the file has no rows")])
        phone_names = "/".join(HEADER_ALIASES["phone"][:4] + ("phone", "mobile"))
        raise InputError(
            [
                Problem(
                    name,
                    first_nonempty[0],
                    "phone",
                    ",".join(first_nonempty[1]),
                    f"no phone column in the header (expected one of {phone_names})",
                )
            ]
        )
    header_num, header = header_row
    header = [h.replace("\ufeff", "").strip() for h in header]

    # map columns
    col_of: dict[str, int] = {}
    attr_cols: list[tuple[str, int]] = []
    header_problems: list[Problem] = []
    columns: dict[str, str] = {}
    for j, h in enumerate(header):
        f = _HEADER_FIELD.get(normalize_header(h)) if h else None
        if f in ("phone", "group", "town"):
            if f in col_of:
                header_problems.append(
                    Problem(
                        name,
                        header_num,
                        h,
                        h,
                        f"column {h!r} and column {header[col_of[f]]!r} both give the {f}",
                    )
                )
                continue
            col_of[f] = j
            columns[h] = f
        else:
            label = h or f"column {j + 1}"
            if f == "name":
                columns[h] = "name"
            attr_cols.append((label, j))
    if "group" not in col_of:
        header_problems.append(
            Problem(
                name,
                header_num,
                "group",
                ",".join(header),
                "no group column in the header (expected one of 类别/群体/组别/group/category)",
            )
        )
    if header_problems:
        raise InputError(header_problems)

    groups_lookup = _label_lookup(known_groups)
    towns_lookup = _label_lookup(known_towns)
    known_group_ids = sorted(set(known_groups.values())) if known_groups else []
    known_town_ids = sorted(set(known_towns.values())) if known_towns else []
    normalizer = PhoneNormalizer(region)
    dnc: set[str] = set()
    for d in do_not_call:
        e, _ = normalizer.normalize(str(d).strip())
        dnc.add(e if e is not None else str(d).strip())
    existing_map = existing_phones if isinstance(existing_phones, Mapping) else None
    existing_set: Collection[str]
    if existing_map is not None:
        existing_set = existing_map.keys()
    elif isinstance(existing_phones, set | frozenset):
        existing_set = existing_phones
    else:
        existing_set = set(existing_phones)

    pj = col_of["phone"]
    gj = col_of["group"]
    tj = col_of.get("town")
    ph_name = header[pj]
    gr_name = header[gj]
    tw_name = header[tj] if tj is not None else None
    ncols = len(header)

    phones: list[str] = []
    groups: list[str] = []
    towns: list[str | None] = []
    source_rows: list[int] = []
    attrs: dict[str, list[str]] = {label: [] for label, _ in attr_cols}
    problems: list[Problem] = []
    suppressed: list[SkippedRow] = []
    already: list[SkippedRow] = []
    rejected: dict[int, tuple[str, ...]] = {}
    first_row_of: dict[str, int] = {}
    rows_read = 0

    for rownum, cells in rows:
        if not any(cells):
            continue
        rows_read += 1
        if progress is not None and rows_read % 50_000 == 0:
            progress(rows_read)
        row_problems: list[Problem] = []
        if len(cells) < ncols:
            cells = cells + [""] * (ncols - len(cells))
        elif len(cells) > ncols and any(cells[ncols:]):
            row_problems.append(
                Problem(
                    name,
                    rownum,
                    None,
                    ",".join(c for c in cells[ncols:] if c),
                    f"the row has {len(cells)} cells but the header has {ncols}",
                )
            )
        raw_phone = cells[pj]
        e164, why = normalizer.normalize(raw_phone)
        if e164 is None:
            row_problems.append(Problem(name, rownum, ph_name, raw_phone, why or "invalid"))
        group = _label(cells[gj], groups_lookup, "group", known_group_ids, gr_name, name,
                       rownum, row_problems)
        town = None
        if tj is not None:
            town = _label(cells[tj], towns_lookup, "town", known_town_ids, tw_name, name,
                          rownum, row_problems)
        if e164 is not None:
            earlier = first_row_of.get(e164)
            if earlier is not None:
                row_problems.append(
                    Problem(
                        name,
                        rownum,
                        ph_name,
                        raw_phone,
                        f"duplicate: {e164} is already on row {earlier}",
                    )
                )
            else:
                first_row_of[e164] = rownum
        if not row_problems and e164 in existing_set:
            if existing_map is not None:
                g0, t0 = existing_map[e164]
                if g0 != group or (tj is not None and t0 != town):
                    row_problems.append(
                        Problem(
                            name,
                            rownum,
                            ph_name,
                            raw_phone,
                            f"{e164} is already in the frame as group {g0!r}, town {t0!r}",
                        )
                    )
            if not row_problems:
                already.append(SkippedRow(rownum, e164, "already in the frame"))
                continue
        if row_problems:
            problems.extend(row_problems)
            rejected[rownum] = tuple(cells)
            continue
        if e164 in dnc:
            suppressed.append(SkippedRow(rownum, e164, "on the do-not-call list"))
            continue
        phones.append(e164)  # type: ignore[arg-type]
        groups.append(group)  # type: ignore[arg-type]
        towns.append(town)
        source_rows.append(rownum)
        for label, j in attr_cols:
            attrs[label].append(cells[j])
    if progress is not None:
        progress(rows_read)

    return FrameFile(
        path=name,
        encoding=used_enc,
        sha256=digest,
        header=tuple(header),
        columns=columns,
        phones=tuple(phones),
        groups=tuple(groups),
        towns=tuple(towns),
        source_rows=tuple(source_rows),
        attributes={k: tuple(v) for k, v in attrs.items()},
        problems=tuple(problems),
        suppressed=tuple(suppressed),
        already_in_frame=tuple(already),
        rejected_cells=rejected,
        rows_read=rows_read,
    )


def write_rejects(frame: FrameFile, path: str | os.PathLike) -> int:
    """Write the rows with problems to a CSV (UTF-8 with BOM, so Excel opens it).

    Columns: ``row`` (in the original file), ``problems`` (every reason, joined
    by ``"; "``), then the original columns, so the file can be fixed and
    imported again.

    Returns
    -------
    int
        Number of rows written.
    """
    by_row: dict[int, list[str]] = {}
    for p in frame.problems:
        if p.row is not None and p.row in frame.rejected_cells:
            by_row.setdefault(p.row, []).append(f"{p.field}: {p.message}" if p.field else p.message)
    from minping.cells import writer  # cells starting = + - @ are not formulas

    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = writer(fh)
        w.writerow(["row", "problems", *frame.header])
        for row in sorted(by_row):
            cells = list(frame.rejected_cells[row])[: len(frame.header)]
            w.writerow([row, "; ".join(by_row[row]), *cells])
    return len(by_row)
