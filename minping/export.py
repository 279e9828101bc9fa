"""Respondent-level exports for R, SPSS and Stata.

One row per respondent with the design variables, so the estimates can be
re-run elsewhere.  Each respondent rated only the units assigned to them, so
unit u has its own design: the respondents with ``a_<unit> = 1``, stratified,
with weight N_h/n_hu (n_hu the respondents of the stratum assigned u), which
R derives from ``fpc = ~N_h`` on that subset.  In R::

    d <- read.csv("respondents.csv")
    du <- d[d$a_fgw == 1, ]                    # the respondents assigned fgw
    des <- svydesign(ids = ~1, strata = ~stratum, fpc = ~N_h, data = du)
    svymean(~I(c(100, 60, 0)[u_fgw]), subset(des, u_fgw %in% 1:3))

(add ``options(survey.lonely.psu = "adjust")`` when a stratum has a single
respondent assigned the unit, as minping does).

Columns: ``respondent_id`` (the case's pseudonymous id, never a phone number),
``stratum``, ``group``, ``town``, ``weight`` (the respondent weight N_h/n_h,
before the per-unit subsampling), ``N_h``, ``n_h``, ``disposition`` (the
AAPOR code as text, ``"1.1"``), ``disposition_n`` (the same as a labelled
number: 11, 12), one column per unit, ``u_<unit id>`` with ``-`` written
``_`` (SPSS and Stata names), holding the keypad key of the rating (``0``
"don't know" included; empty when the unit was not answered or not asked),
then one column per unit ``a_<unit id>``: 1 when the unit was assigned to the
respondent, 0 otherwise (an answer to a unit not assigned is not scored).  SPSS (``.sav``) and Stata (``.dta``) files carry the
variable labels (the unit's name and id) and value labels (the scale's
labels, the dispositions); XLSX files have a second sheet with the codebook.
``write_export`` refuses any column that looks like a phone number.

References
----------
pyreadstat (https://github.com/Roche/pyreadstat): ``write_sav``, ``write_dta``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minping.cells import safe_row, writer  # no cell is a spreadsheet formula

__all__ = ["FORMATS", "RespondentTable", "assigned_column", "unit_column", "write_export"]

FORMATS = ("csv", "xlsx", "sav", "dta")
_PHONE = re.compile(r"(\+?86)?1[3-9]\d{9}")


def unit_column(unit_id: str) -> str:
    """The column of a unit's ratings: ``u_`` and the id with ``-`` as ``_``."""
    name = "u_" + re.sub(r"[^0-9A-Za-z_]", "_", unit_id)
    return name[:32]


def assigned_column(unit_id: str) -> str:
    """The column telling whether a unit was assigned: ``a_`` and the id with ``-`` as ``_``."""
    name = "a_" + re.sub(r"[^0-9A-Za-z_]", "_", unit_id)
    return name[:32]


@dataclass(frozen=True)
class RespondentTable:
    """Columns of equal length, with labels.

    ``columns`` maps a column name to its values (``None`` for missing);
    ``variable_labels`` a column to its label; ``value_labels`` a numeric
    column to {value: label}.
    """

    columns: Mapping[str, Sequence[Any]]
    variable_labels: Mapping[str, str]
    value_labels: Mapping[str, Mapping[int, str]]

    def __post_init__(self) -> None:
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns differ in length: {sorted(lengths)}")
        for name, values in self.columns.items():
            for v in values:
                if isinstance(v, str) and _PHONE.fullmatch(v.replace(" ", "")):
                    raise ValueError(f"column {name!r} holds what looks like a phone number; "
                                     "phone numbers are never exported")

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    def frame(self):
        import pandas as pd

        return pd.DataFrame({k: list(v) for k, v in self.columns.items()})


def write_export(table: RespondentTable, path: str | Path, fmt: str) -> Path:
    """Write ``table`` to ``path`` as csv, xlsx, sav (SPSS) or dta (Stata)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(table.columns)
    if fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = writer(fh)
            w.writerow(names)
            for i in range(table.n_rows):
                w.writerow(["" if table.columns[c][i] is None else _text(table.columns[c][i])
                            for c in names])
        return path
    if fmt == "xlsx":
        import openpyxl

        book = openpyxl.Workbook()
        sheet = book.active
        sheet.title = "data"
        sheet.append(safe_row(names))
        for i in range(table.n_rows):
            sheet.append(safe_row([table.columns[c][i] for c in names]))
        book_sheet = book.create_sheet("codebook")
        book_sheet.append(["variable", "label", "values"])
        for c in names:
            values = "; ".join(f"{k} = {v}" for k, v in table.value_labels.get(c, {}).items())
            book_sheet.append(safe_row([c, table.variable_labels.get(c, ""), values]))
        book.save(path)
        return path
    import pyreadstat

    df = table.frame()
    for c in table.value_labels:
        df[c] = df[c].astype(float)
    labels = [table.variable_labels.get(c, "")[:80] for c in names]
    value_labels = {c: {int(k): str(v) for k, v in m.items()} for c, m in table.value_labels.items()}
    if fmt == "sav":
        pyreadstat.write_sav(df, str(path), column_labels=labels,
                             variable_value_labels=value_labels)
    else:
        pyreadstat.write_dta(df, str(path), column_labels=labels,
                             variable_value_labels=value_labels)
    return path


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:.1f}"
    return str(value)
