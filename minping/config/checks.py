"""Validation helpers: the problem collector (``_Check``) and how values are quoted."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time

from minping.config.model import (
    _BARE_KEY,
    _SLUG,
    KEYPAD,
)


def _show(value: object) -> str:
    """A value as the message quotes it: strings in double quotes, TOML-like otherwise."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    name = key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)
    return f"{path}.{name}" if path else name


def _number_range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" between {lo:g} and {hi:g}"
    if lo is not None:
        return f" of at least {lo:g}"
    if hi is not None:
        return f" of at most {hi:g}"
    return ""


class _Check:
    """Collects problems; typed getters return ``None`` after reporting one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mark(self) -> int:
        return len(self.problems)

    def clean_since(self, mark: int) -> bool:
        return len(self.problems) == mark

    def unknown(self, table: Mapping, path: str, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for key in table:
            if key not in allowed:
                self.add(_join(path, key), "unknown key")

    def _present(self, table: Mapping, key: str, path: str, required: bool) -> bool:
        if key in table:
            return True
        if required:
            self.add(_join(path, key), "missing required key")
        return False

    def table(self, table: Mapping, key: str, path: str, *, required: bool = True) -> dict | None:
        if not self._present(table, key, path, required):
            return None
        value = table[key]
        if not isinstance(value, dict):
            self.add(_join(path, key), f"must be a table, got {_show(value)}")
            return None
        return value

    def array(self, table: Mapping, key: str, path: str, *, required: bool = True) -> list | None:
        if not self._present(table, key, path, required):
            return None
        value = table[key]
        if not isinstance(value, list):
            self.add(_join(path, key), f"must be an array, got {_show(value)}")
            return None
        return value

    def tables(
        self, table: Mapping, key: str, path: str, *, required: bool = True, non_empty: bool = True
    ) -> list[tuple[str, dict]] | None:
        """An array of tables, as ``(path, table)`` pairs (bad elements reported and dropped)."""
        items = self.array(table, key, path, required=required)
        if items is None:
            return None
        here = _join(path, key)
        if non_empty and not items:
            self.add(here, "must not be empty")
        out = []
        for i, item in enumerate(items):
            if isinstance(item, dict):
                out.append((_join(here, i), item))
            else:
                self.add(_join(here, i), f"must be a table, got {_show(item)}")
        return out

    def text(
        self,
        table: Mapping,
        key: str,
        path: str,
        *,
        required: bool = True,
        allow_empty: bool = False,
    ) -> str | None:
        if not self._present(table, key, path, required):
            return None
        value = table[key]
        if not isinstance(value, str):
            self.add(_join(path, key), f"must be a string, got {_show(value)}")
            return None
        if not allow_empty and not value.strip():
            self.add(_join(path, key), "must not be empty")
            return None
        return value

    def slug(self, table: Mapping, key: str, path: str) -> str | None:
        value = self.text(table, key, path)
        if value is None:
            return None
        if not _SLUG.match(value) or len(value) > 40:
            self.add(
                _join(path, key),
                f"{_show(value)} is not an id (lowercase ASCII letters, digits and hyphens, "
                "at most 40 characters)",
            )
            return None
        return value

    def key_char(
        self, table: Mapping, key: str, path: str, *, allow_empty: bool = False
    ) -> str | None:
        value = self.text(table, key, path, allow_empty=True)
        if value is None:
            return None
        if value == "" and allow_empty:
            return value
        if len(value) != 1 or value not in KEYPAD:
            extra = ' or "" to disable' if allow_empty else ""
            self.add(
                _join(path, key), f"must be one keypad key (0-9, *, #){extra}, got {_show(value)}"
            )
            return None
        return value

    def boolean(self, table: Mapping, key: str, path: str, *, required: bool = True) -> bool | None:
        if not self._present(table, key, path, required):
            return None
        value = table[key]
        if not isinstance(value, bool):
            self.add(_join(path, key), f"must be true or false, got {_show(value)}")
            return None
        return value

    def integer(
        self,
        table: Mapping,
        key: str,
        path: str,
        *,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int | None:
        if not self._present(table, key, path, True):
            return None
        value = table[key]
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and (lo is None or value >= lo) and (hi is None or value <= hi):
            return value
        self.add(_join(path, key), f"must be an integer{_number_range(lo, hi)}, got {_show(value)}")
        return None

    def number(
        self,
        table: Mapping,
        key: str,
        path: str,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        hi_open: bool = False,
        required: bool = True,
    ) -> float | None:
        if not self._present(table, key, path, required):
            return None
        value = table[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            above = lo is None or (value > lo if lo_open else value >= lo)
            below = hi is None or (value < hi if hi_open else value <= hi)
            if above and below:
                return float(value)
        if lo_open or hi_open:
            bounds = f" strictly between {lo:g} and {hi:g}"
        else:
            bounds = _number_range(lo, hi)
        self.add(_join(path, key), f"must be a number{bounds}, got {_show(value)}")
        return None

    def day_value(self, value: object, path: str) -> date | None:
        if isinstance(value, datetime):
            self.add(path, f"must be a date without a time of day, got {_show(value)}")
            return None
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                    return date.fromisoformat(value)
            except ValueError:
                pass
            self.add(path, f"{_show(value)} is not a date YYYY-MM-DD")
            return None
        self.add(path, f"must be a date YYYY-MM-DD, got {_show(value)}")
        return None

    def day(self, table: Mapping, key: str, path: str) -> date | None:
        if not self._present(table, key, path, True):
            return None
        return self.day_value(table[key], _join(path, key))

    def unique(self, seen: dict[str, str], value: str | None, path: str, what: str) -> None:
        """Report ``value`` if it was seen before; remember where it was first."""
        if value is None:
            return
        if value in seen:
            self.add(path, f"duplicate {what} {_show(value)} (also at {seen[value]})")
        else:
            seen[value] = path


def _names(check: _Check, table: Mapping, path: str) -> tuple[str | None, str | None]:
    return check.text(table, "name", path), check.text(table, "name_en", path)
