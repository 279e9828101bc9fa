"""Errors a user can act on.

Every error that reaches the command line names where the fault is: the file,
the row and the field (or, for the configuration, the key path).  The CLI prints
``str(error)`` to stderr and exits with status 1.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One fault in an input: where it is and why it is wrong.

    ``row`` is the 1-based line number as a spreadsheet shows it (the header is
    row 1), or ``None`` for a fault of the whole file.
    """

    file: str
    row: int | None
    field: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.field is not None:
            where += f", field {self.field!r}"
        if self.value is not None:
            return f"{where}: {self.message} (value {self.value!r})"
        return f"{where}: {self.message}"

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "row": self.row,
            "field": self.field,
            "value": self.value,
            "message": self.message,
        }


class MinpingError(Exception):
    """An error with a message meant for the user."""


class InputError(MinpingError):
    """An input file (or configuration) has one or more problems.

    Nothing has been stored when this is raised.
    """

    def __init__(self, problems: list[Problem], summary: str | None = None):
        self.problems = list(problems)
        self.summary = summary or f"{len(self.problems)} problem(s) found; nothing was stored"
        super().__init__(self.summary)

    def __str__(self) -> str:
        lines = [self.summary]
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"error": self.summary, "problems": [p.as_dict() for p in self.problems]}
