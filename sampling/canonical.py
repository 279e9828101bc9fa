"""The canonical frame: contacts sorted by their E.164 number, and the frame's hash.

Split from :mod:`sampling.draw`, which re-exports everything here.  See that
module's docstring for why the order depends only on the numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from sampling.errors import SamplingError

__all__ = [
    "CodedColumn",
    "DrawError",
    "canonical_frame_hash",
    "canonical_order",
    "e164_keys",
    "frame_hash",
]


class DrawError(SamplingError):
    """The draw cannot be made or verified with these inputs."""



_E164_DIGITS = 15


def e164_keys(phones: Sequence[str] | np.ndarray) -> np.ndarray | None:
    """Integer keys in the code-point order of E.164 strings, or ``None`` if some is not E.164.

    ``"+"`` followed by at most 15 digits: each digit ``d`` becomes ``d + 1``
    in base 11 and the number is padded on the right with zeros to 15 places,
    so a prefix sorts before its extensions, exactly as strings compare.
    Sorting these integers is much faster than sorting the strings.
    """
    arr = np.asarray(phones)
    if arr.dtype.kind not in "US" or arr.ndim != 1:
        return None
    if arr.dtype.kind == "U":
        width = arr.dtype.itemsize // 4
        view = np.ascontiguousarray(arr).view(np.uint32)
    else:
        width = arr.dtype.itemsize
        view = np.ascontiguousarray(arr).view(np.uint8)
    n = len(arr)
    if n == 0 or width < 1 or width > _E164_DIGITS + 1:
        return None
    view = view.reshape(n, width)
    if not (view[:, 0] == 0x2B).all():  # "+"
        return None
    key = np.zeros(n, dtype=np.int64)
    ended = np.zeros(n, dtype=bool)
    for j in range(1, width):
        c = view[:, j].astype(np.int64)
        end = c == 0
        digit = (c >= 0x30) & (c <= 0x39)
        if not (end | digit).all() or (ended & ~end).any():
            return None
        ended |= end
        key = key * 11 + np.where(end, 0, c - 0x2F)
    return key * 11 ** (_E164_DIGITS + 1 - width)


def canonical_order(phones: Sequence[str]) -> np.ndarray:
    """Return the permutation that sorts a frame into canonical order.

    Parameters
    ----------
    phones : sequence of str
        E.164 numbers of the frame's contacts, in any order; must be unique.

    Returns
    -------
    numpy.ndarray of intp
        ``order`` such that ``[phones[i] for i in order]`` is sorted; position
        ``p`` of the canonical frame is contact ``order[p]``.

    Notes
    -----
    E.164 numbers are sorted through :func:`e164_keys`; anything else as
    strings.  Both give the same order (the numbers are unique).
    """
    arr = phones if isinstance(phones, np.ndarray) else np.asarray(phones, dtype=str)
    keys = e164_keys(arr)
    if keys is not None:
        order = np.argsort(keys, kind="stable")
        if len(keys) > 1:
            s = keys[order]
            dup = np.flatnonzero(s[1:] == s[:-1])
            if dup.size:
                raise DrawError(f"the frame holds phone number {_text(arr[order[dup[0]]])} twice")
        return order
    arr = np.asarray(arr, dtype=str)
    order = np.argsort(arr, kind="stable")
    if len(arr) > 1:
        s = arr[order]
        dup = np.flatnonzero(s[1:] == s[:-1])
        if dup.size:
            raise DrawError(f"the frame holds phone number {s[dup[0]]} twice")
    return order


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes | np.bytes_) else str(v)


@dataclass(frozen=True)
class CodedColumn:
    """A column of labels as integer codes: row ``i`` is ``labels[codes[i]]`` (``-1``: none)."""

    codes: np.ndarray
    labels: tuple[Hashable, ...]

    def __len__(self) -> int:
        return len(self.codes)


def frame_hash(
    phones: Sequence[str], groups: Sequence[str], towns: Sequence[str | None] | None = None
) -> str:
    """SHA-256 of the canonical frame.

    The frame is sorted by phone and written one contact per line as
    ``phone TAB group TAB town LF`` in UTF-8 (an empty town for ``None``);
    the hash of those bytes is returned in hex.  It does not depend on the
    order of the inputs.

    Parameters
    ----------
    phones, groups, towns : sequence
        Parallel columns of the frame (``towns`` may be omitted).
    """
    n = len(phones)
    if len(groups) != n or (towns is not None and len(towns) != n):
        raise DrawError("frame_hash: phones, groups and towns must have the same length")
    order = canonical_order(phones)
    h = hashlib.sha256()
    chunk: list[str] = []
    for i in order:
        t = "" if towns is None or towns[i] is None else str(towns[i])
        chunk.append(f"{phones[i]}\t{groups[i]}\t{t}\n")
        if len(chunk) >= 65536:
            h.update("".join(chunk).encode("utf-8"))
            chunk.clear()
    h.update("".join(chunk).encode("utf-8"))
    return h.hexdigest()


def canonical_frame_hash(phones: np.ndarray, groups: CodedColumn, towns: CodedColumn | None = None,
                         *, chunk: int = 1 << 17) -> str:
    """:func:`frame_hash` of a frame already in canonical order, streamed in chunks.

    ``phones`` is a byte-string array (``numpy.bytes_``, E.164 in ASCII) in
    canonical order; ``groups`` and ``towns`` give each row's labels as codes.
    The bytes hashed are the same as :func:`frame_hash`'s: each line is built
    by numpy as a fixed-width byte string and the padding (NUL bytes, which
    never occur in the text) is dropped before hashing.
    """
    phones = np.asarray(phones)
    if phones.dtype.kind != "S":
        phones = np.char.encode(np.asarray(phones, dtype=str), "ascii")
    n = len(phones)
    if len(groups) != n or (towns is not None and len(towns) != n):
        raise DrawError("frame_hash: phones, groups and towns must have the same length")
    t_labels = ("",) if towns is None else ("", *("" if t is None else str(t)
                                                  for t in towns.labels))
    T = len(t_labels)
    suffix = np.array([f"\t{g}\t{t}\n".encode() for g in groups.labels for t in t_labels],
                      dtype=bytes)
    g_codes = np.asarray(groups.codes, dtype=np.int64)
    t_codes = None if towns is None else np.asarray(towns.codes, dtype=np.int64)
    h = hashlib.sha256()
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        idx = g_codes[start:stop] * T
        if t_codes is not None:
            idx = idx + t_codes[start:stop] + 1
        lines = np.strings.add(phones[start:stop], suffix[idx])
        h.update(lines.tobytes().replace(b"\x00", b""))
    return h.hexdigest()
