"""Integer codes for columns of labels (respondent ids, strata, units, rating keys).

Ratings arrive as Python sequences of text; turning them into codes is the
largest cost of scoring once the estimators are vectorised, so each column is
read once, in C (see ``first_seen_codes``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from itertools import count

import numpy as np

__all__ = ["factorise", "first_seen_codes", "short_text_codes"]


def first_seen_codes(values: Iterable[Hashable]) -> tuple[list, np.ndarray]:
    """Distinct values in order of first appearance, and the code of every value.

    One pass in C over the values: a ``defaultdict`` whose factory numbers a new
    value (``itertools.count``), read through ``map`` into ``numpy.fromiter``.
    """
    seq = values.tolist() if isinstance(values, np.ndarray) else values
    if not isinstance(seq, list | tuple):
        seq = list(seq)
    index: defaultdict = defaultdict(count().__next__)
    codes = np.fromiter(map(index.__getitem__, seq), dtype=np.int64, count=len(seq))
    return list(index), codes


def short_text_codes(values: Iterable[Hashable]) -> tuple[list[str], np.ndarray] | None:
    """Distinct values (sorted) and the code of every value when every value is a
    string of at most one character (keypad keys, ``""`` for none), without a
    Python step per value; ``None`` for anything else.

    The strings are joined with NUL between them and read as code points: exactly
    n − 1 NULs means no value holds one, so the character after each NUL (or
    the NUL itself, for an empty value) is the value.
    """
    seq = values.tolist() if isinstance(values, np.ndarray) else values
    if not isinstance(seq, list | tuple) or not seq:
        return None
    try:
        joined = "\0".join(seq)  # TypeError when a value is not a string
        points = (np.frombuffer(joined.encode("ascii"), dtype=np.uint8) if joined.isascii()
                  else np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32))
    except (TypeError, UnicodeEncodeError):
        return None
    n = len(seq)
    if points.size > 2 * n - 1:  # some value is longer than one character
        return None
    if points.size == 2 * n - 1:  # one character each, or a NUL among them
        key = points[::2]
        if points[1::2].any() or not key.all():
            return None
    else:
        nul = np.flatnonzero(points == 0)
        if nul.size != n - 1:
            return None
        starts = np.concatenate(([0], nul + 1))
        if (np.diff(np.concatenate((starts, [points.size + 1]))) > 2).any():
            return None
        key = np.concatenate((points, [0]))[starts]  # 0 for an empty value
    top = int(key.max())
    present = np.flatnonzero(np.bincount(key)) if top < 1 << 16 else np.unique(key)
    lookup = np.zeros(int(present[-1]) + 1, dtype=np.int64)
    lookup[present] = np.arange(present.size)
    return [chr(c) if c else "" for c in present.tolist()], lookup[key]


def factorise(values: Iterable[Hashable], *, sort: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values as strings and the code of every value, in O(n).

    With ``sort`` (the default) the labels are sorted: equal to
    ``np.unique(np.asarray(values).astype(str), return_inverse=True)``.  Without it
    they come in order of first appearance (so the codes of rows grouped by value
    rise), unless two distinct values have the same text (``1`` and ``"1"``):
    those are merged as ``str()`` does and the labels are then sorted.
    """
    distinct, codes = first_seen_codes(values)
    if not sort and set(map(type, distinct)) <= {str, np.str_}:  # distinct strings: distinct texts
        return np.array(distinct, dtype=str) if distinct else np.array([], dtype=str), codes
    names = list(map(str, distinct))  # str of a str is itself
    labels = np.array(names, dtype=str) if names else np.array([], dtype=str)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    if sorted_labels.size > 1 and (sorted_labels[1:] == sorted_labels[:-1]).any():
        # distinct values with the same text (1 and "1"): merge them as str() does
        uniq, inv = np.unique(labels, return_inverse=True)
        return uniq, inv[codes]
    if not sort:
        return labels, codes
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return sorted_labels, rank[codes] if codes.size else codes
