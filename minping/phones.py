"""Phone numbers: parse, validate and write them in E.164, one by one or a column at a time.

Numbers are parsed with :mod:`phonenumbers` in the default region (``CN``),
checked with ``is_valid_number`` and written in E.164.  Spaces, dashes, dots,
parentheses and the ``+86``/``0086`` prefixes are accepted.  The common
11-digit mainland mobile form takes a fast path: its validity depends only on
its first five digits (see ``PhoneMetadata`` for CN, mobile pattern), so each
five-digit prefix is checked once with ``phonenumbers`` and cached; every other
form, and every prefix that does not check out, goes through
``phonenumbers.parse``.

:meth:`PhoneNormalizer.normalize_column` does the fast path for a whole numpy
column at once (digits checked and converted by numpy) and hands only the
other cells to :meth:`PhoneNormalizer.normalize`.  Valid numbers come back as
integer keys: the E.164 digits without the ``+`` (E.164 has at most 15 digits
and no leading zero, so ``"+" + str(key)`` gives the number back).
"""

from __future__ import annotations

import re

import numpy as np
import phonenumbers

__all__ = ["PhoneNormalizer", "e164_of_key", "key_of_e164"]

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

    def prefix_ok(self, prefix: str) -> bool:
        """Whether 11-digit mobile numbers starting with this five-digit prefix are valid."""
        ok = self._prefix_ok.get(prefix)
        if ok is None:
            e164, _ = self._slow(prefix + "000000")
            ok = self._prefix_ok[prefix] = e164 == "+86" + prefix + "000000"
        return ok

    def normalize_column(self, column: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
        """Normalise a column of stripped cells (a numpy ``str`` array).

        Returns ``(keys, reasons)``: the integer key of each valid number
        (:func:`key_of_e164`), ``-1`` where the cell is not a valid number,
        with ``reasons[i]`` saying why.  Same results as :meth:`normalize`
        cell by cell.
        """
        n = len(column)
        keys = np.full(n, -1, dtype=np.int64)
        reasons: dict[int, str] = {}
        if self._fast:
            ok, national = _mobile_keys(column)
            if ok.any():
                prefixes = national[ok] // 10**6
                uniq = np.unique(prefixes)
                good = np.array([self.prefix_ok(str(int(p))) for p in uniq], dtype=bool)
                ok[ok] = good[np.searchsorted(uniq, prefixes)]
                keys[ok] = _CN_MOBILE + national[ok]
            rest = np.flatnonzero(~ok)
        else:
            rest = np.arange(n)
        for i in rest.tolist():
            e164, why = self.normalize(str(column[i]))
            if e164 is None:
                reasons[i] = why or "invalid"
            else:
                keys[i] = key_of_e164(e164)
        return keys, reasons


def _parse_reason(exc: phonenumbers.NumberParseException) -> str:
    return {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
        phonenumbers.NumberParseException.NOT_A_NUMBER: "no digits that form a number",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the 00 prefix",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too few digits",
        phonenumbers.NumberParseException.TOO_LONG: "too many digits",
    }.get(exc.error_type, str(exc))


def key_of_e164(e164: str) -> int:
    """The integer key of an E.164 number (its digits)."""
    return int(e164[1:])


def e164_of_key(key: int) -> str:
    """The E.164 number of an integer key."""
    return "+" + str(key)


_CN_MOBILE = 86 * 10**11


def _mobile_keys(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(matches, national)``: cells that are exactly ``1[3-9]`` + 9 digits, and their value."""
    n = len(column)
    width = column.dtype.itemsize // 4
    if n == 0 or width < 11:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    v = np.ascontiguousarray(column).view(np.uint32).reshape(n, width)
    ok = (v[:, 0] == 0x31) & (v[:, 1] >= 0x33) & (v[:, 1] <= 0x39)
    if width > 11:
        ok &= v[:, 11] == 0
    national = np.zeros(n, dtype=np.int64)
    for j in range(11):
        d = v[:, j].astype(np.int64) - 0x30
        ok &= (d >= 0) & (d <= 9)
        national = national * 10 + d
    return ok, np.where(ok, national, 0)
