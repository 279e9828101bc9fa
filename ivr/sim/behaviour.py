"""Simulated respondents: who picks up, and what they press.

A :class:`BehaviourModel` holds the probabilities; :meth:`BehaviourModel.draw_persona`
draws one :class:`Persona` per phone number (kept for every later attempt); the
per-attempt and per-question choices are drawn again each time from the injected
``numpy.random.Generator``, so a run is reproducible from its seed.

A persona may be fixed for a number (``Simulator.set_persona``) to script exact key
presses in tests: ``Persona(keys=["1", "1", "2", "*", "3"])``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

#: Kinds of line a number can be.
LINES = ("human", "never-answers", "busy", "machine", "fax", "non-working")
_KEYS = "0123456789"


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_range(name: str, value: tuple[float, float]) -> None:
    low, high = value
    if not 0 <= low <= high:
        raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {value!r}")


def _check_distribution(name: str, dist: Mapping[str, float]) -> None:
    if not dist:
        raise ValueError(f"{name} is empty")
    for key, p in dist.items():
        if len(key) != 1 or key not in _KEYS + "*#":
            raise ValueError(f"{name}: {key!r} is not a keypad key")
        if p < 0:
            raise ValueError(f"{name}: probability of key {key!r} is negative ({p!r})")
    if sum(dist.values()) <= 0:
        raise ValueError(f"{name}: probabilities sum to zero")


@dataclass(frozen=True)
class Persona:
    """How one phone number behaves.

    Parameters
    ----------
    line
        One of ``human``, ``never-answers`` (rings out: no-answer), ``busy``,
        ``machine`` (an answering machine), ``fax`` or ``non-working`` (the call
        fails with SIP 404).
    answer_probability
        For a human line, the chance an attempt is answered (the rest ring out).
    answer_by_hour
        24 per-local-hour answer probabilities overriding ``answer_probability``.
    busy_probability
        For a human line, the chance an attempt finds the line busy.
    ring_seconds
        Fixed ring time before answering; ``None`` draws it from the model.
    keys
        Scripted answers, one entry per ``<Gather>`` in call order (the consent
        step included).  An entry may hold several keys (``"12#"``); ``None`` or
        ``""`` is silence.  When the script runs out the respondent stays silent.
        ``None`` (the default) lets the model choose.
    refuses
        ``None``, ``"key"`` (presses the refusal key at the consent step) or
        ``"hangup"`` (hangs up during the greeting).  Only used when ``keys`` is None.
    hangup_after_gathers
        Hang up during the prompt of the next ``<Gather>`` once this many have
        been answered (the consent step counts).
    wrong_key_rate, silence_rate, star_rate
        Per-question chances of pressing a key outside the scale (never one of the
        model's special keys), of pressing nothing, and of pressing ``*``.  Only
        used when ``keys`` is None.
    opt_out_rate, handoff_rate
        Per-question chances of pressing the model's opt-out key and its hand-over
        key (asking for an interviewer).  Only used when ``keys`` is None.
    record_seconds
        How long the respondent speaks into a ``<Record>``; ``0`` is silence;
        ``None`` draws it from the model.
    answered_by
        What answering-machine detection reports for a machine line:
        ``machine_start`` (``MachineDetection=Enable``) and ``machine_end_beep``
        (``DetectMessageEnd``) by default.
    max_call_seconds
        The line hangs up this long after answering (machines and fax lines).
    """

    line: str = "human"
    answer_probability: float = 1.0
    answer_by_hour: tuple[float, ...] | None = None
    busy_probability: float = 0.0
    ring_seconds: float | None = None
    keys: tuple[str | None, ...] | None = None
    refuses: str | None = None
    hangup_after_gathers: int | None = None
    wrong_key_rate: float = 0.0
    silence_rate: float = 0.0
    star_rate: float = 0.0
    opt_out_rate: float = 0.0
    handoff_rate: float = 0.0
    record_seconds: float | None = None
    answered_by: str | None = None
    max_call_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.line not in LINES:
            raise ValueError(f"Persona.line must be one of {LINES}, got {self.line!r}")
        for name in ("answer_probability", "busy_probability", "wrong_key_rate",
                     "silence_rate", "star_rate", "opt_out_rate", "handoff_rate"):
            _check_probability(f"Persona.{name}", getattr(self, name))
        if self.answer_by_hour is not None:
            hours = tuple(float(p) for p in self.answer_by_hour)
            if len(hours) != 24:
                raise ValueError(f"Persona.answer_by_hour needs 24 values, got {len(hours)}")
            for p in hours:
                _check_probability("Persona.answer_by_hour", p)
            object.__setattr__(self, "answer_by_hour", hours)
        if self.keys is not None:
            keys = tuple(self.keys)
            for entry in keys:
                if entry is not None and any(k not in _KEYS + "*#" for k in entry):
                    raise ValueError(f"Persona.keys: {entry!r} holds a key a keypad lacks")
            object.__setattr__(self, "keys", keys)
        if self.refuses not in (None, "key", "hangup"):
            raise ValueError(f"Persona.refuses must be None, 'key' or 'hangup', got {self.refuses!r}")
        if self.hangup_after_gathers is not None and self.hangup_after_gathers < 0:
            raise ValueError(
                f"Persona.hangup_after_gathers must be >= 0, got {self.hangup_after_gathers!r}")
        for name in ("ring_seconds", "record_seconds", "max_call_seconds"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Persona.{name} must be >= 0, got {value!r}")


#: Local-hour answer propensity: low in working hours, higher at lunch and in the evening.
DEFAULT_ANSWER_BY_HOUR = (
    0.10, 0.05, 0.05, 0.05, 0.05, 0.05, 0.15, 0.30,  # 00-07
    0.40, 0.40, 0.40, 0.45, 0.60, 0.60, 0.40, 0.40,  # 08-15
    0.45, 0.55, 0.75, 0.80, 0.75, 0.60, 0.35, 0.20,  # 16-23
)


@dataclass(frozen=True)
class BehaviourModel:
    """Probabilities from which personas and their answers are drawn.

    Line kinds are drawn with ``p_never_answers``, ``p_busy_line``, ``p_machine``,
    ``p_fax``, ``p_non_working`` (the rest are human lines).  A human line answers
    an attempt with ``answer_by_hour[local hour] * propensity`` where the
    propensity is drawn per person from ``propensity``; local time is UTC plus
    ``utc_offset_hours``.

    ``ratings`` maps a text fragment (a unit's name, say) to a distribution over
    keys; the first fragment found in what the respondent heard since the last
    ``<Gather>`` picks the distribution, else ``default_rating``.  The consent step
    is a ``<Gather>`` whose prompt holds one of ``consent_fragments``, or, if that
    tuple is empty, the first ``<Gather>`` of the call.

    At a question a respondent presses nothing (``p_silence``), ``*``
    (``p_star``), the opt-out key (``p_opt_out_key``), the hand-over key
    (``p_handoff_key``), a wrong key (``p_wrong_key``: a digit outside the rating
    scale and never one of the special keys ``refusal_key``, ``opt_out_key``,
    ``handoff_key``), else a rating.  Set the special keys to the survey's
    (``[ivr] opt_out_key``, ``handoff_key``) so that opting out and asking for an
    interviewer happen only as often as their own probabilities say.
    """

    p_never_answers: float = 0.08
    p_busy_line: float = 0.03
    p_machine: float = 0.07
    p_fax: float = 0.01
    p_non_working: float = 0.04
    p_busy_attempt: float = 0.05
    answer_by_hour: tuple[float, ...] = DEFAULT_ANSWER_BY_HOUR
    propensity: tuple[float, float] = (0.6, 1.0)
    utc_offset_hours: float = 8.0
    p_refuse_key: float = 0.06
    p_refuse_hangup: float = 0.04
    p_breakoff: float = 0.05
    breakoff_gathers: tuple[int, int] = (2, 8)
    p_wrong_key: float = 0.03
    p_silence: float = 0.03
    p_star: float = 0.01
    p_opt_out_key: float = 0.001
    p_handoff_key: float = 0.003
    ratings: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    default_rating: Mapping[str, float] = field(
        default_factory=lambda: {"1": 0.55, "2": 0.30, "3": 0.10, "0": 0.05})
    consent_key: str = "1"
    refusal_key: str = "9"
    opt_out_key: str = "9"
    handoff_key: str | None = "8"
    consent_fragments: tuple[str, ...] = ()
    ring_seconds: tuple[float, float] = (3.0, 25.0)
    answer_delay_seconds: tuple[float, float] = (0.8, 3.5)
    key_interval_seconds: float = 0.4
    record_seconds: tuple[float, float] = (3.0, 20.0)
    machine_seconds: float = 60.0
    fax_seconds: float = 8.0
    dial_talk_seconds: tuple[float, float] = (30.0, 300.0)
    say_seconds_per_cjk_char: float = 0.25
    say_seconds_per_other_char: float = 0.065
    play_seconds: float = 3.0

    def __post_init__(self) -> None:
        for name in ("p_never_answers", "p_busy_line", "p_machine", "p_fax", "p_non_working",
                     "p_busy_attempt", "p_refuse_key", "p_refuse_hangup", "p_breakoff",
                     "p_wrong_key", "p_silence", "p_star", "p_opt_out_key", "p_handoff_key"):
            _check_probability(f"BehaviourModel.{name}", getattr(self, name))
        lines = (self.p_never_answers + self.p_busy_line + self.p_machine + self.p_fax
                 + self.p_non_working)
        if lines > 1:
            raise ValueError(f"BehaviourModel: line probabilities sum to {lines!r} > 1")
        if self.p_refuse_key + self.p_refuse_hangup > 1:
            raise ValueError("BehaviourModel: p_refuse_key + p_refuse_hangup > 1")
        per_question = (self.p_wrong_key + self.p_silence + self.p_star + self.p_opt_out_key
                        + self.p_handoff_key)
        if per_question > 1:
            raise ValueError("BehaviourModel: p_wrong_key + p_silence + p_star + p_opt_out_key"
                             f" + p_handoff_key = {per_question!r} > 1")
        if len(self.answer_by_hour) != 24:
            raise ValueError(
                f"BehaviourModel.answer_by_hour needs 24 values, got {len(self.answer_by_hour)}")
        for p in self.answer_by_hour:
            _check_probability("BehaviourModel.answer_by_hour", p)
        for name in ("propensity", "ring_seconds", "answer_delay_seconds", "record_seconds",
                     "dial_talk_seconds"):
            _check_range(f"BehaviourModel.{name}", getattr(self, name))
        low, high = self.breakoff_gathers
        if not 0 <= low <= high:
            raise ValueError(f"BehaviourModel.breakoff_gathers is not a range: {(low, high)!r}")
        for fragment, dist in self.ratings.items():
            _check_distribution(f"BehaviourModel.ratings[{fragment!r}]", dist)
        _check_distribution("BehaviourModel.default_rating", self.default_rating)
        for name in ("consent_key", "refusal_key", "opt_out_key", "handoff_key"):
            key = getattr(self, name)
            if name == "handoff_key" and key is None:
                continue
            if not isinstance(key, str) or len(key) != 1 or key not in _KEYS + "*#":
                raise ValueError(f"BehaviourModel.{name} must be one keypad key, got {key!r}")
        if self.handoff_key is not None and self.handoff_key == self.opt_out_key:
            raise ValueError(f"BehaviourModel: handoff_key and opt_out_key are both "
                             f"{self.opt_out_key!r}")

    @property
    def special_keys(self) -> frozenset[str]:
        """Keys with a meaning other than a rating (never pressed as a wrong key)."""
        return frozenset(k for k in (self.refusal_key, self.opt_out_key, self.handoff_key) if k)

    # --- persona ------------------------------------------------------------------

    def draw_persona(self, rng: np.random.Generator) -> Persona:
        """Draw the persona of a new phone number."""
        u = rng.random()
        for line, p in (("never-answers", self.p_never_answers), ("busy", self.p_busy_line),
                        ("machine", self.p_machine), ("fax", self.p_fax),
                        ("non-working", self.p_non_working)):
            if u < p:
                return Persona(line=line)
            u -= p
        propensity = rng.uniform(*self.propensity)
        by_hour = tuple(min(1.0, p * propensity) for p in self.answer_by_hour)
        v = rng.random()
        refuses = ("key" if v < self.p_refuse_key
                   else "hangup" if v < self.p_refuse_key + self.p_refuse_hangup else None)
        breakoff = None
        if rng.random() < self.p_breakoff:
            breakoff = int(rng.integers(self.breakoff_gathers[0], self.breakoff_gathers[1] + 1))
        return Persona(line="human", answer_by_hour=by_hour, busy_probability=self.p_busy_attempt,
                       refuses=refuses, hangup_after_gathers=breakoff,
                       wrong_key_rate=self.p_wrong_key, silence_rate=self.p_silence,
                       star_rate=self.p_star, opt_out_rate=self.p_opt_out_key,
                       handoff_rate=self.p_handoff_key)

    # --- per attempt ----------------------------------------------------------------

    def local_hour(self, when: datetime) -> int:
        return when.astimezone(timezone(timedelta(hours=self.utc_offset_hours))).hour

    def attempt_outcome(self, persona: Persona, when: datetime,
                        rng: np.random.Generator) -> str:
        """What an outbound attempt meets: ``answer``, ``busy``, ``no-answer`` or ``failed``."""
        if persona.line == "non-working":
            return "failed"
        if persona.line == "never-answers":
            return "no-answer"
        if persona.line == "busy":
            return "busy"
        if persona.line in ("machine", "fax"):
            return "answer"
        if persona.busy_probability and rng.random() < persona.busy_probability:
            return "busy"
        p = (persona.answer_by_hour[self.local_hour(when)] if persona.answer_by_hour
             else persona.answer_probability)
        if p >= 1.0 or rng.random() < p:
            return "answer"
        return "no-answer"

    def ring_time(self, persona: Persona, rng: np.random.Generator) -> float:
        if persona.ring_seconds is not None:
            return float(persona.ring_seconds)
        return float(rng.uniform(*self.ring_seconds))

    def say_seconds(self, text: str) -> float:
        cjk = sum(1 for ch in text if "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
        seconds = cjk * self.say_seconds_per_cjk_char
        seconds += (len(text) - cjk) * self.say_seconds_per_other_char
        return max(0.5, round(seconds, 3))

    # --- per question -------------------------------------------------------------

    def rating_distribution(self, heard: str) -> Mapping[str, float]:
        for fragment, dist in self.ratings.items():
            if fragment and fragment in heard:
                return dist
        return self.default_rating

    def is_consent(self, heard: str, gather_index: int) -> bool:
        if self.consent_fragments:
            return any(f in heard for f in self.consent_fragments)
        return gather_index == 0

    def choose_keys(self, persona: Persona, *, heard: str, gather_index: int,
                    rng: np.random.Generator) -> str | None:
        """The keys a model-driven respondent presses at a ``<Gather>`` (None: silence)."""
        if self.is_consent(heard, gather_index):
            if persona.refuses == "key":
                return self.refusal_key
            return self.consent_key
        u = rng.random()
        if u < persona.silence_rate:
            return None
        u -= persona.silence_rate
        if u < persona.star_rate:
            return "*"
        u -= persona.star_rate
        if u < persona.opt_out_rate:
            return self.opt_out_key
        u -= persona.opt_out_rate
        if u < persona.handoff_rate and self.handoff_key:
            return self.handoff_key
        u -= persona.handoff_rate
        dist = self.rating_distribution(heard)
        if u < persona.wrong_key_rate:
            special = self.special_keys
            wrong = [k for k in _KEYS if k not in dist and k not in special]
            if wrong:
                return wrong[int(rng.integers(len(wrong)))]
        keys = sorted(dist)
        p = np.array([dist[k] for k in keys], dtype=float)
        return keys[int(rng.choice(len(keys), p=p / p.sum()))]

    def answer_delay(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(*self.answer_delay_seconds))

    def record_time(self, persona: Persona, rng: np.random.Generator) -> float:
        if persona.record_seconds is not None:
            return float(persona.record_seconds)
        if persona.line != "human":
            return 0.0
        return float(rng.uniform(*self.record_seconds))


def scripted_entry(persona: Persona, gather_index: int) -> tuple[bool, str | None]:
    """For a scripted persona, ``(True, keys)`` of the ``gather_index``-th Gather."""
    if persona.keys is None:
        return False, None
    if gather_index < len(persona.keys):
        entry = persona.keys[gather_index]
        return True, entry or None
    return True, None

