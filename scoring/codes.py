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

__all__ = ["factorise", "first_seen_codes"]


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


def factorise(values: Iterable[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values as strings and the code of every value, in O(n).

    Equal to ``np.unique(np.asarray(values).astype(str), return_inverse=True)``.
    """
    distinct, codes = first_seen_codes(values)
    names = list(map(str, distinct))  # str of a str is itself
    labels = np.array(names, dtype=str) if names else np.array([], dtype=str)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    if sorted_labels.size > 1 and (sorted_labels[1:] == sorted_labels[:-1]).any():
        # distinct values with the same text (1 and "1"): merge them as str() does
        uniq, inv = np.unique(labels, return_inverse=True)
        return uniq, inv[codes]
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return sorted_labels, rank[codes] if codes.size else codes
