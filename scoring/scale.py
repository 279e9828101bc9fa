"""The rating scale: which keypad key is worth how many points.

The default is the county's scale: 1 满意 satisfied = 100 points, 2 基本满意
basically satisfied = 60, 3 不满意 dissatisfied = 0, 0 不了解 don't know =
outside the unit's domain.  "Satisfied" for the satisfaction rate means 1 or 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.codes import first_seen_codes, short_text_codes

__all__ = ["RatingScale"]


def _key(value: Any) -> str:
    """Keys are compared as text: ``1``, ``"1"`` and ``1.0`` are the same key."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _get(option: Any, name: str, default: Any = None) -> Any:
    if isinstance(option, Mapping):
        return option.get(name, default)
    return getattr(option, name, default)


def _label(option: Any, key: str) -> str:
    """``label`` as text, or the first of a ``labels`` mapping (language -> text)."""
    label = _get(option, "label")
    if isinstance(label, str) and label:
        return label
    if isinstance(label, Mapping) and label:
        return str(next(iter(label.values())))
    labels = _get(option, "labels")
    if isinstance(labels, Mapping) and labels:
        return str(labels.get("cmn-CN", next(iter(labels.values()))))
    return key


@dataclass(frozen=True)
class RatingScale:
    """Keys of the rating scale with their points and labels.

    Attributes
    ----------
    points : mapping key -> float or None
        Points of each key; ``None`` puts the answer outside the unit's
        domain (not counted in n, the score or the satisfaction rate).
    satisfied : frozenset of keys
        Keys counted as "satisfied" for the satisfaction rate.
    labels : mapping key -> str
        Text of each key (for reports).
    """

    points: Mapping[str, float | None]
    satisfied: frozenset[str]
    labels: Mapping[str, str]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a rating scale needs at least one key")
        for key, value in self.points.items():
            if value is not None and not np.isfinite(float(value)):
                raise ValueError(f"points of key {key!r} must be a finite number, got {value!r}")
        unknown = set(self.satisfied) - set(self.points)
        if unknown:
            raise ValueError(f"satisfied key {sorted(unknown)[0]!r} is not a key of the scale")
        outside = [k for k in self.satisfied if self.points[k] is None]
        if outside:
            raise ValueError(f"satisfied key {outside[0]!r} has no points (it is outside the domain)")

    @classmethod
    def default(cls) -> RatingScale:
        """1 → 100 satisfied, 2 → 60 satisfied, 3 → 0, 0 → outside the domain."""
        return cls(
            points={"1": 100.0, "2": 60.0, "3": 0.0, "0": None},
            satisfied=frozenset({"1", "2"}),
            labels={"1": "满意", "2": "基本满意", "3": "不满意", "0": "不了解"},
        )

    @classmethod
    def from_options(cls, options: Iterable[Any]) -> RatingScale:
        """Build from options with ``key``, ``points`` (None = outside), ``satisfied``.

        Options may be mappings or objects (such as the configuration's
        ``cfg.scale.options``); the label is ``label`` when it is text, else
        the ``cmn-CN`` (or first) entry of a ``labels``/``label`` mapping.
        """
        points: dict[str, float | None] = {}
        satisfied: set[str] = set()
        labels: dict[str, str] = {}
        for option in options:
            key = _get(option, "key")
            if key is None:
                raise ValueError(f"a scale option has no key: {option!r}")
            key = _key(key)
            if key in points:
                raise ValueError(f"scale key {key!r} appears twice")
            value = _get(option, "points")
            points[key] = None if value is None else float(value)
            if _get(option, "satisfied", False):
                satisfied.add(key)
            labels[key] = _label(option, key)
        return cls(points=points, satisfied=frozenset(satisfied), labels=labels)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.points)

    def is_key(self, value: Any) -> bool:
        return _key(value) in self.points

    def encode(self, keys: Iterable[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points, in-domain flags and satisfied flags for a sequence of keys.

        Raises ``ValueError`` naming the first key that is not on the scale.
        """
        # Each distinct value once (a ratings table has a handful of them), in one pass:
        # vectorised for keys of one character (a keypad), else one dict lookup a value.
        distinct, index = short_text_codes(keys) or first_seen_codes(keys)
        if index.size == 0:
            return np.empty(0), np.empty(0, dtype=bool), np.empty(0, dtype=bool)
        codes = dict.fromkeys(distinct)
        pts = np.empty(len(codes))
        inside = np.empty(len(codes), dtype=bool)
        sat = np.empty(len(codes), dtype=bool)
        for j, raw in enumerate(codes):
            k = _key(raw)
            if k not in self.points:
                raise ValueError(f"rating {k!r} is not on the scale (keys: {', '.join(self.keys)})")
            value = self.points[k]
            inside[j] = value is not None
            pts[j] = np.nan if value is None else value
            sat[j] = k in self.satisfied
        return pts[index], inside[index], sat[index]

    def normalise_key(self, value: Any) -> str:
        """The key as the scale spells it."""
        return _key(value)
