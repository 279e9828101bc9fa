"""Cells written to CSV and XLSX files, safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
is a formula to Excel and LibreOffice (CSV/formula injection: a frame row
holding ``=HYPERLINK(...)`` would run when the rejects file is opened).  Every
CSV and XLSX minping writes passes its cells through :func:`safe_cell`, which
puts a ``'`` in front of such text; numbers, text that is just a number
(``-1.5``) and a telephone number as written (``+86 150-1234-5678``: digits and
separators only, nothing a formula could call) are left as they are, so a rejects
file can be fixed and imported again.

Standard library only, so the sampling and scoring writers can use it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
PHONE_AS_WRITTEN = re.compile(r"^\+\d[\d \-().]*\d$")


def safe_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START) \
            and not PLAIN_NUMBER.match(value) and not PHONE_AS_WRITTEN.match(value):
        return "'" + value
    return value


def safe_row(values: Iterable[Any]) -> list[Any]:
    return [safe_cell(v) for v in values]


class _SafeWriter:
    def __init__(self, writer):
        self._writer = writer

    def writerow(self, row):
        if isinstance(row, dict):
            return self._writer.writerow({k: safe_cell(v) for k, v in row.items()})
        return self._writer.writerow(safe_row(row))

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)

    def writeheader(self):
        return self._writer.writeheader()


def writer(fh, **kwargs) -> _SafeWriter:
    """``csv.writer(fh)`` whose rows pass through :func:`safe_cell`."""
    return _SafeWriter(csv.writer(fh, **kwargs))


def dict_writer(fh, fieldnames, **kwargs) -> _SafeWriter:
    """``csv.DictWriter(fh, fieldnames)`` whose values pass through :func:`safe_cell`."""
    return _SafeWriter(csv.DictWriter(fh, fieldnames=fieldnames, **kwargs))
