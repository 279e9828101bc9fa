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


def e164_keys(phones: Sequence[str] | np.ndarray, *, chunk: int = 1 << 16
              ) -> np.ndarray | None:
    """Integer keys in the code-point order of E.164 strings, or ``None`` if some is not E.164.

    ``"+"`` followed by at most 15 digits: each digit ``d`` becomes ``d + 1``
    in base 11 and the number is padded on the right with zeros to 15 places,
    so a prefix sorts before its extensions, exactly as strings compare.
    Sorting these integers is much faster than sorting the strings.  Byte
    strings (``numpy.bytes_``, NUL-padded) are read as one ``uint8`` matrix.
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
    weight = 11 ** np.arange(_E164_DIGITS - 1, _E164_DIGITS - width, -1, dtype=np.int64)
    keys = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk):  # in chunks: the int64 matrix stays in the cache
        body = view[start:start + chunk, 1:]
        end = body == 0
        # "0".."9" -> 1..10 (anything else wraps or lands outside), the padding -> 0
        raw = body - body.dtype.type(0x2F)
        if not (end | ((raw >= 1) & (raw <= 10))).all() or (end[:, :-1] & ~end[:, 1:]).any():
            return None  # not a digit, or a digit after the end
        raw[end] = 0
        np.matmul(raw.astype(np.int64), weight, out=keys[start:start + chunk])
    return keys


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
        order, s = _sort_keys(keys)
        if len(keys) > 1:
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


def _sort_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, keys[order])`` for int64 keys >= 0, ties by position (a stable argsort).

    When the keys' range and the positions fit in 63 bits together (a frame of
    numbers that share their first digits, as a county's do), the positions
    are packed under the keys and one plain sort of those integers gives both:
    about twice as fast as an argsort.
    """
    n = len(keys)
    if n < 2:
        return np.arange(n), keys
    low = int(keys.min())
    bits = (n - 1).bit_length()
    if (int(keys.max()) - low).bit_length() + bits <= 63:
        packed = (keys - low) << bits
        packed |= np.arange(n, dtype=np.int64)
        packed.sort()
        return packed & ((1 << bits) - 1), (packed >> bits) + low
    order = np.argsort(keys, kind="stable")
    return order, keys[order]


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
    # each line is the phone's bytes, then its "\tgroup\ttown\n" from a table of them,
    # side by side in one uint8 matrix per chunk; the padding (NUL bytes) is dropped
    suffix = [f"\t{g}\t{t}\n".encode() for g in groups.labels for t in t_labels]
    width = max((len(x) for x in suffix), default=0)
    table = np.zeros((len(suffix), width), dtype=np.uint8)
    for i, x in enumerate(suffix):
        table[i, :len(x)] = np.frombuffer(x, dtype=np.uint8)
    pw = phones.dtype.itemsize
    pview = np.ascontiguousarray(phones).view(np.uint8).reshape(n, pw)
    g_codes = np.asarray(groups.codes, dtype=np.int64)
    t_codes = None if towns is None else np.asarray(towns.codes, dtype=np.int64)
    h = hashlib.sha256()
    line = np.empty((min(chunk, n), pw + width), dtype=np.uint8)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        idx = g_codes[start:stop] * T
        if t_codes is not None:
            idx += t_codes[start:stop] + 1
        out = line[:stop - start]
        out[:, :pw] = pview[start:stop]
        out[:, pw:] = table[idx]
        h.update(out[out != 0])
    return h.hexdigest()
