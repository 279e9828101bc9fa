"""Phone numbers: parse, validate and write them in E.164, one by one or a column at a time.

Numbers are parsed with :mod:`phonenumbers` in the default region (``CN``),
checked with ``is_valid_number`` and written in E.164.  Spaces, dashes, dots,
parentheses and the ``+86``/``0086`` prefixes are accepted.  The common
11-digit mainland mobile form takes a fast path: its validity depends only on
its first five digits (see ``PhoneMetadata`` for CN, mobile pattern), so each
five-digit prefix is checked once with ``phonenumbers`` and cached; every other
form, and every prefix that does not check out, goes through
``phonenumbers.parse``.

:meth:`PhoneNormalizer.normalize_list` does the fast path for a whole column
at once (the 11-character cells joined into one ASCII buffer, digits checked
and converted by numpy) and hands only the other cells to
:meth:`PhoneNormalizer.normalize`.  A prefix whose test number ``parse``
reads as national digits (no international or carrier prefix at its start) is
checked with ``is_valid_number`` on those digits, without parsing.  Valid numbers come back as
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
        # numbers that ``parse`` could read otherwise than as national digits: an
        # international or a national (carrier) prefix at their start
        meta = phonenumbers.PhoneMetadata.metadata_for_region("CN")
        parts = [p for p in (meta.international_prefix, meta.national_prefix_for_parsing) if p]
        self._prefixed = re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None

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
                if self.prefix_ok(national[:5]):
                    return "+86" + national, None
        return self._slow(raw)

    def prefix_ok(self, prefix: str) -> bool:
        """Whether 11-digit mobile numbers starting with this five-digit prefix are valid."""
        ok = self._prefix_ok.get(prefix)
        if ok is None:
            number = prefix + "000000"
            if self._prefixed is None or self._prefixed.match(number):
                e164, _ = self._slow(number)
                ok = e164 == "+86" + number
            else:  # parse would give exactly these national digits: skip parsing
                ok = phonenumbers.is_valid_number(
                    phonenumbers.PhoneNumber(country_code=86, national_number=int(number)))
            self._prefix_ok[prefix] = ok
        return ok

    def normalize_column(self, column: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
        """Normalise a column of stripped cells (a numpy ``str`` array); see :meth:`normalize_list`."""
        return self.normalize_list([str(c) for c in column.tolist()])

    def normalize_list(self, cells: list[str]) -> tuple[np.ndarray, dict[int, str]]:
        """Normalise a column of stripped cells (a list of ``str``).

        Returns ``(keys, reasons)``: the integer key of each valid number
        (:func:`key_of_e164`), ``-1`` where the cell is not a valid number,
        with ``reasons[i]`` saying why.  Same results as :meth:`normalize`
        cell by cell.  The 11-character cells are checked together: joined
        into one ASCII buffer (any other character becomes ``?``, which no
        digit test passes) and read by numpy as an ``(n, 11)`` byte array.
        """
        n = len(cells)
        keys = np.full(n, -1, dtype=np.int64)
        reasons: dict[int, str] = {}
        if self._fast and n:
            at = np.flatnonzero(np.fromiter(map(len, cells), np.int64, n) == 11)
            if len(at):
                sub = cells if len(at) == n else [cells[i] for i in at.tolist()]
                buf = "".join(sub).encode("ascii", "replace")
                ok, national = _mobile_digits(np.frombuffer(buf, np.uint8).reshape(len(at), 11))
                if ok.any():
                    prefixes = national[ok] // 10**6
                    uniq = np.unique(prefixes)
                    good = np.array([self.prefix_ok(str(int(p))) for p in uniq.tolist()],
                                    dtype=bool)
                    ok[ok] = good[np.searchsorted(uniq, prefixes)]
                    keys[at[ok]] = _CN_MOBILE + national[ok]
            rest = np.flatnonzero(keys < 0)
        else:
            rest = np.arange(n)
        for i in rest.tolist():
            e164, why = self.normalize(cells[i])
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


def _mobile_digits(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(matches, national)`` of an ``(n, 11)`` array of ASCII bytes: ``1[3-9]`` + 9 digits."""
    d = v.astype(np.int64) - 0x30
    ok = ((d >= 0) & (d <= 9)).all(axis=1) & (d[:, 0] == 1) & (d[:, 1] >= 3)
    national = d @ (10 ** np.arange(10, -1, -1, dtype=np.int64))
    return ok, np.where(ok, national, 0)
