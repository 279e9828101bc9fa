"""Reading a sampling frame from a CSV or XLSX file, streaming and a column at a time.

A frame file has one contact per row and a header row naming the columns.
Columns are recognised by their header, in Chinese or English (see
:data:`HEADER_ALIASES`): a phone column and a group column are required, a
town column is optional, and every other column is kept as an attribute of the
contact under its header as written.  The file itself (encodings, delimiters,
workbooks, row numbers) is read by :mod:`minping.tables`; phone numbers are
checked by :mod:`minping.phones` (E.164, with a vectorised fast path for
mainland mobile numbers).

:class:`FrameReader` reads the file in chunks of rows and checks each chunk
with numpy: phone numbers, groups and towns (each distinct label is looked up
once), duplicates within the file, numbers already in the frame and the
do-not-call list.  It yields the good contacts chunk by chunk
(:class:`FrameChunk`) and collects every problem, so a caller can store while
reading and still name every bad row.  :func:`read_frame` gathers everything
into one :class:`FrameFile`.

Nothing is stored here; the caller decides (all or nothing, or
``--skip-invalid``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from minping.errors import InputError, Problem
from minping.phones import PhoneNormalizer
from minping.tables import detect_encoding

__all__ = [
    "HEADER_ALIASES",
    "FrameChunk",
    "FrameFile",
    "FrameReader",
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


def write_rejects(frame: FrameFile | FrameReader, path: str | os.PathLike) -> int:
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


# the reader lives in its own module (it needs the names above)
from minping.frame_reader import FrameChunk, FrameReader, read_frame  # noqa: E402, F401
