"""Reading tables from CSV and XLSX files: encodings, delimiters, workbooks, row numbers.

The one reader of tabular files.  :func:`open_table` gives the rows of a
CSV or XLSX file as ``(row number, cells)`` with every cell a stripped string,
streaming (the file is not held in memory as text):

* CSV files may be UTF-8, UTF-8 with a byte-order mark (as Excel writes "CSV
  UTF-8"), UTF-16 with a byte-order mark, or GB18030 — the superset of GBK and
  GB2312 that Chinese spreadsheets write.  Without an explicit ``encoding``
  the BOM's encoding is taken if there is one, UTF-8 if the bytes are valid
  UTF-8, and GB18030 otherwise (:func:`detect_encoding`).  Bytes that do not
  decode are reported with the row they are on.  A CSV may be comma-,
  semicolon- or tab-separated (judged from the first line).
* XLSX/XLSM workbooks are read with openpyxl (first sheet unless ``sheet``);
  numbers written as whole floats lose their ``.0``.
* An old ``.xls`` workbook is refused with a message saying what to do.

Row numbers count records from 1 (the first line of a CSV, the first row of a
sheet), as a spreadsheet shows them.  Problems are
:class:`minping.errors.Problem` (file, row, column, value, why).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from minping.errors import InputError, Problem

__all__ = ["Table", "cell_text", "detect_encoding", "open_table", "sha256_of"]

_XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_CHUNK = 1 << 22
#: Bytes decoded at a time by :meth:`Table.blocks` (a CSV's text is held a block at a time).
_DECODE = 1 << 20


def detect_encoding(data: bytes, *, sample: bool = False) -> str:
    """Guess a CSV file's encoding: BOM, else UTF-8 if valid, else GB18030.

    With ``sample=True`` ``data`` is only the start of the file: a multi-byte
    character cut at its end does not count against UTF-8.
    """
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=not sample)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def cell_text(v: object) -> str:
    """A workbook cell as text, stripped: whole floats without ``.0``, dates in ISO form."""
    if v is None:
        return ""
    if isinstance(v, bool | int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time() else v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v).strip()


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _check_decodes(path: str | os.PathLike, name: str, enc: str, detected: bool) -> None:
    """Decode the whole file in chunks; raise naming the row of the first bad byte."""
    try:
        decoder = codecs.getincrementaldecoder(enc)()
    except LookupError:
        raise InputError([Problem(name, None, None, enc, "unknown encoding")]) from None
    newlines = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_CHUNK)
            state = decoder.getstate()[0]
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise _undecodable(exc, name, enc, detected, state + block,
                                   newlines - state.count(b"\n")) from None
            if not block:
                return
            newlines += block.count(b"\n")


def _undecodable(exc: UnicodeDecodeError, name: str, enc: str, detected: bool,
                 joined: bytes, rows_before: int) -> InputError:
    """The error for bytes that do not decode: the row they are on and the bytes in hex.

    ``joined`` holds the decoder's pending bytes and the block it was given (the
    error's positions are in these bytes); ``rows_before`` counts the newlines
    before them.
    """
    row = rows_before + joined[:exc.start].count(b"\n") + 1
    return InputError([Problem(
        name, row, None, joined[exc.start:exc.end].hex(" "),
        f"the file is not valid {enc}"
        + (" (it is neither UTF-8 nor GB18030 text; give --encoding)" if detected else ""),
    )])


def _delimiter(first_line: str) -> str:
    if "," not in first_line:
        if "\t" in first_line:
            return "\t"
        if ";" in first_line:
            return ";"
    return ","


def _csv_rows(path: str | os.PathLike, enc: str) -> Iterator[tuple[int, list[str]]]:
    with open(path, encoding=enc, newline="") as fh:
        first = fh.readline()
        fh.seek(0)
        reader = csv.reader(fh, delimiter=_delimiter(first.split("\n", 1)[0]))
        for rownum, cells in enumerate(reader, start=1):
            yield rownum, [c.strip() for c in cells]


def _decoded_lines(path: str | os.PathLike, name: str, enc: str, detected: bool
                   ) -> Iterator[str]:
    """The file's lines (as ``open(newline="")`` gives them), decoded once, in big blocks.

    A byte that does not decode raises :class:`InputError` naming its row, as
    :func:`_check_decodes` does, when the reading gets there.
    """
    try:
        decoder = codecs.getincrementaldecoder(enc)()
    except LookupError:
        raise InputError([Problem(name, None, None, enc, "unknown encoding")]) from None
    newlines = 0
    carry = ""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(min(_CHUNK, _DECODE))
            state = decoder.getstate()[0]
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise _undecodable(exc, name, enc, detected, state + block,
                                   newlines - state.count(b"\n")) from None
            newlines += block.count(b"\n")
            if not block:
                if carry or text:
                    yield from io.StringIO(carry + text, newline="")
                return
            # the last line may be cut (or end in \r before a \n): it waits for the next block
            lines = io.StringIO(carry + text, newline="").readlines()
            carry = lines.pop() if lines else ""
            yield from lines


def _csv_blocks(path: str | os.PathLike, name: str, enc: str, detected: bool, size: int
                ) -> Iterator[tuple[int, list[list[str]]]]:
    """``(first row number, rows)``: up to ``size`` records at a time, cells not stripped."""
    lines = _decoded_lines(path, name, enc, detected)
    first = next(lines, None)
    if first is None:
        return
    reader = csv.reader(itertools.chain((first,), lines),
                        delimiter=_delimiter(first.split("\n", 1)[0]))
    start = 1
    while True:
        rows = list(itertools.islice(reader, size))
        if not rows:
            return
        yield start, rows
        start += len(rows)


def _blocks_of(rows: Iterator[tuple[int, list[str]]], size: int
               ) -> Iterator[tuple[int, list[list[str]]]]:
    """Group ``(row number, cells)`` records (numbered 1, 2, ...) into blocks of ``size``."""
    while True:
        block = list(itertools.islice(rows, size))
        if not block:
            return
        yield block[0][0], [cells for _, cells in block]


def _xlsx_rows(path: str | os.PathLike, name: str, sheet: str | None
               ) -> Iterator[tuple[int, list[str]]]:
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        if sheet is not None:
            if sheet not in wb.sheetnames:
                raise InputError([Problem(name, None, None, sheet, f"no sheet named {sheet!r}")])
            ws = wb[sheet]
        else:
            ws = wb.worksheets[0]
        for rownum, values in enumerate(ws.iter_rows(values_only=True), start=1):
            yield rownum, [cell_text(v) for v in values]
    finally:
        wb.close()


@dataclass
class Table:
    """An opened table: its rows (an iterator, read once), encoding and SHA-256.

    Read either ``rows`` (``(row number, stripped cells)``) or :meth:`blocks`, not both.
    """

    path: str
    encoding: str
    sha256: str
    rows: Iterator[tuple[int, list[str]]]
    _blocks: Callable[[int], Iterator[tuple[int, list[list[str]]]]] | None = None

    def blocks(self, size: int = 50_000) -> Iterator[tuple[int, list[list[str]]]]:
        """The rows ``size`` at a time: ``(first row number, rows)``, rows numbered on.

        Cells are stripped only in a workbook: a CSV's cells come as the file
        has them (strip them column by column).  Faster than ``rows`` on a CSV:
        the file is decoded once, here, instead of checked first and decoded again.
        """
        if self._blocks is not None:
            return self._blocks(size)
        return _blocks_of(self.rows, size)


def open_table(path: str | os.PathLike, *, encoding: str | None = None,
               sheet: str | None = None, sha256: str | None = None,
               check_first: bool = True) -> Table:
    """Open a CSV or XLSX file for reading row by row (see the module docstring).

    ``sha256``: the file's digest when the caller has it (not computed again).
    ``check_first=False``: a CSV whose encoding is given or certain (a BOM, or
    not UTF-8 at its start, hence GB18030) is not decoded once in full before
    reading; read with :meth:`Table.blocks`, a byte that does not decode raises
    when the reading gets to it (a caller storing while reading rolls back).

    Raises
    ------
    minping.errors.InputError
        The file is missing, an old ``.xls``, a broken workbook, or does not
        decode (the row of the first bad byte is named).
    """
    p = Path(path)
    name = str(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(_CHUNK)
        digest = sha256 or sha256_of(p)
    except OSError as exc:
        raise InputError(
            [Problem(name, None, None, None, f"cannot read the file: {exc.strerror}")]
        ) from None
    if head[:8] == _XLS_MAGIC:
        raise InputError([Problem(
            name, None, None, None,
            "this is an old Excel 97-2003 (.xls) workbook; save it as .xlsx or CSV")])
    if p.suffix.lower() in (".xlsx", ".xlsm") or head[:4] == b"PK\x03\x04":
        rows = _xlsx_rows(p, name, sheet)
        try:
            first = next(rows, None)
        except InputError:
            raise
        except Exception as exc:  # openpyxl raises many kinds for a broken file
            raise InputError(
                [Problem(name, None, None, None,
                         f"cannot open the workbook (not a readable XLSX file: {exc})")]
            ) from None
        return Table(name, "xlsx", digest, _chain(first, rows))
    enc = encoding
    checked = False
    if enc is None:
        enc = detect_encoding(head, sample=True)
        if enc == "utf-8":  # valid at its start: the whole file decides (else GB18030)
            try:
                _check_decodes(p, name, "utf-8", True)
                checked = True
            except InputError:
                enc = "gb18030"
    if check_first and not checked:
        _check_decodes(p, name, enc, encoding is None)
    detected = encoding is None
    return Table(name, enc, digest, _csv_rows(p, enc),
                 lambda size: _csv_blocks(p, name, enc, detected, size))


def _chain(first, rows):
    if first is not None:
        yield first
        yield from rows
