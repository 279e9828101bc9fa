"""The configuration's result objects (frozen, hashable) and the schema's constants."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from minping.config.calling import CallingRules

#: Environment variable naming the configuration file to load by default.
CONFIG_ENV_VAR = "MINPING_CONFIG"

#: Weekday keys of ``[calling.windows]``, Monday first (index = ``date.weekday()``).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Components a track's composite score may weigh.
WEIGHT_COMPONENTS = ("phone", "assessment", "online", "onsite")

#: Attempt outcomes that must have a retry delay.
RETRY_OUTCOMES = (
    "busy",
    "no-answer",
    "machine",
    "failed",
    "soft-refusal",
    "break-off",
    "appointment-missed",
)

#: Prompts every language must define.
PROMPT_KEYS = (
    "greeting",
    "consent",
    "question",
    "invalid_key",
    "no_answer",
    "thanks",
    "comment_invitation",
    "opt_out_confirmation",
    "handoff",
    "unknown_caller",
    "sms_advance_notice",
    "callback_pending",  # a sampled caller whose case is being dialled or held
    "handoff_unavailable",  # nobody took the hand-over: the call-back offer, by key
    "handoff_callback",  # ... accepted: an interviewer will call back
    "handoff_declined",  # ... declined
    "verify_code",  # an inbound caller who was sent the SMS: enter its code
    "code_mismatch",  # ... and did not
)

CORRECTIONS = ("holm", "bh", "none")
KEYPAD = "0123456789*#"

_COMMON_FIELDS = frozenset({"center", "campaign"})
_PROMPT_FIELDS: dict[str, frozenset[str]] = {key: _COMMON_FIELDS for key in PROMPT_KEYS}
_PROMPT_FIELDS["question"] = _COMMON_FIELDS | {"unit", "track"}
_PROMPT_FIELDS["comment_invitation"] = _COMMON_FIELDS | {"seconds"}
_PROMPT_FIELDS["sms_advance_notice"] = _COMMON_FIELDS | {"caller_id", "code"}
_PROMPT_FIELDS["verify_code"] = _COMMON_FIELDS | {"digits"}
_PROMPT_FIELDS["handoff_unavailable"] = _COMMON_FIELDS | {"callback_key", "end_key"}
_PROMPT_REQUIRED = {"question": frozenset({"unit"}),
                    "handoff_unavailable": frozenset({"callback_key", "end_key"})}

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
_LANG = re.compile(r"[a-z]{2,3}(?:-[A-Z]{2})?\Z")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)\Z")
_TIME_RANGE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)\Z")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*\Z")
_CHINESE_LANGS = ("cmn", "zh", "yue")


class FrozenMap(Mapping):
    """A read-only, hashable mapping (the result objects stay immutable and hashable)."""

    __slots__ = ("_data",)

    def __init__(self, mapping: Mapping | Iterable = ()) -> None:
        self._data = dict(mapping)

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def _frozen(mapping: Mapping) -> FrozenMap:
    return FrozenMap(mapping)


def uses_chinese_names(lang: str) -> bool:
    """Whether texts in ``lang`` take the Chinese names (else the English ones)."""
    return lang.split("-")[0] in _CHINESE_LANGS


@dataclass(frozen=True)
class Campaign:
    """The campaign: who runs it, when, and the sample's size."""

    id: str
    name: str
    name_en: str
    polling_center: str
    polling_center_en: str
    start_date: date
    end_date: date
    default_language: str
    sample_size: int
    units_per_respondent: int
    min_raters: int

    def label(self, lang: str) -> str:
        """The campaign's name in ``lang`` (Chinese for cmn/zh/yue, else English)."""
        return self.name if uses_chinese_names(lang) else self.name_en

    def center(self, lang: str) -> str:
        """The polling center's name in ``lang``."""
        return self.polling_center if uses_chinese_names(lang) else self.polling_center_en


@dataclass(frozen=True)
class Town:
    """A town of the county (one in-person assessment venue each)."""

    id: str
    name: str
    name_en: str


@dataclass(frozen=True)
class Category:
    """A category of units within a track (e.g. 党群系统)."""

    id: str
    name: str
    name_en: str


@dataclass(frozen=True)
class Unit:
    """A rated unit: a department, an agency or a service window."""

    id: str
    name: str
    name_en: str
    track: str
    category: str | None = None

    def label(self, lang: str) -> str:
        """The unit's name in ``lang`` (Chinese for cmn/zh/yue, else English)."""
        return self.name if uses_chinese_names(lang) else self.name_en


@dataclass(frozen=True)
class Track:
    """An evaluation track: its units and the weights of its composite score."""

    id: str
    name: str
    name_en: str
    weights: Mapping[str, float]
    categories: tuple[Category, ...]
    units: tuple[Unit, ...]

    def label(self, lang: str) -> str:
        """The track's name in ``lang``."""
        return self.name if uses_chinese_names(lang) else self.name_en

    def weight(self, component: str) -> float:
        """The weight of ``component`` (0.0 when the track does not use it)."""
        if component not in WEIGHT_COMPONENTS:
            raise KeyError(
                f"unknown score component {component!r}; known: {', '.join(WEIGHT_COMPONENTS)}"
            )
        return self.weights.get(component, 0.0)

    def category(self, category_id: str) -> Category:
        """The category with id ``category_id``; ``KeyError`` if there is none."""
        for cat in self.categories:
            if cat.id == category_id:
                return cat
        raise KeyError(f"track {self.id!r} has no category {category_id!r}")

    def units_in(self, category_id: str) -> tuple[Unit, ...]:
        """The units of one category, in file order."""
        self.category(category_id)
        return tuple(u for u in self.units if u.category == category_id)


@dataclass(frozen=True)
class Group:
    """A respondent group and the tracks its members rate."""

    id: str
    name: str
    name_en: str
    tracks: tuple[str, ...]


@dataclass(frozen=True)
class ScaleOption:
    """One keypad answer: its digit, labels, points and whether it counts as satisfied."""

    key: str
    labels: Mapping[str, str]
    points: float | None
    satisfied: bool

    @property
    def in_domain(self) -> bool:
        """False for "don't know": the respondent is outside the unit's domain."""
        return self.points is not None

    def label(self, lang: str) -> str:
        """The option's label in ``lang``."""
        try:
            return self.labels[lang]
        except KeyError:
            raise KeyError(f"scale option {self.key!r} has no label in {lang!r}") from None


@dataclass(frozen=True)
class Scale:
    """The keypad rating scale.

    Lookups take the key as a string or an int (``"1"`` or ``1``) and raise
    ``KeyError`` for a key that is not on the scale.
    """

    options: tuple[ScaleOption, ...]
    _by_key: Mapping[str, ScaleOption] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", _frozen({o.key: o for o in self.options}))

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys in file order."""
        return tuple(o.key for o in self.options)

    def option(self, key: str | int) -> ScaleOption:
        """The option for keypad ``key``."""
        try:
            return self._by_key[str(key)]
        except KeyError:
            raise KeyError(
                f"{str(key)!r} is not a key of the rating scale (keys: {', '.join(self.keys)})"
            ) from None

    def points(self, key: str | int) -> float | None:
        """Points for ``key``; ``None`` when the answer is outside the domain."""
        return self.option(key).points

    def in_domain(self, key: str | int) -> bool:
        """Whether an answer ``key`` puts the respondent in the unit's domain."""
        return self.option(key).in_domain

    def is_satisfied(self, key: str | int) -> bool:
        """Whether ``key`` counts as satisfied for the satisfaction rate."""
        return self.option(key).satisfied


@dataclass(frozen=True)
class DeductionKind:
    """A kind of deduction from daily inspection, in points per occurrence."""

    id: str
    name: str
    name_en: str
    per: str
    min_points: float
    max_points: float


@dataclass(frozen=True)
class Flags:
    """The rule that flags low-scoring units."""

    threshold: float
    correction: str
    confidence: float


@dataclass(frozen=True)
class Experiment:
    """The embedded mode experiment (``[experiment]``, optional; off by default).

    ``mode_cati_first_fraction`` of the released cases, chosen at random, are
    routed CATI-first instead of IVR-first (:mod:`minping.experiment`);
    ``seed`` (``None``: the draw's seed) makes the choice re-derivable.
    """

    mode_cati_first_fraction: float = 0.0
    seed: str | None = None


@dataclass(frozen=True)
class IvrSettings:
    """Keypad interview settings.  ``handoff_key`` is ``None`` when disabled."""

    voices: Mapping[str, str]
    gather_timeout_seconds: int
    max_reasks: int
    start_key: str
    repeat_key: str
    opt_out_key: str
    handoff_key: str | None
    record_comment: bool
    comment_max_seconds: int
    sms_advance_notice: bool
    # --- delivery (optional keys; defaults when absent) ---
    #: Seconds an interviewer's phone rings after the hand-over key before the caller is
    #: told nobody is free and the case goes to the top of the CATI queue.
    handoff_wait_seconds: int = 30
    #: Digits of the code the SMS advance notice carries; an inbound caller who was sent
    #: it enters the code before rating.  0: no code.
    inbound_code_digits: int = 0
    #: Country code of the numbers called (Twilio's rules for China apply to "+86").
    destination_country_code: str = "+86"
    #: Twilio BYOC trunk (``BY...``) the calls go through: a domestic carrier connection.
    byoc_trunk_sid: str = ""
    #: Twilio Messaging Service (``MG...``) the SMS advance notice is sent from.
    messaging_service_sid: str = ""

    def voice(self, lang: str) -> str:
        """The ``<Say>`` voice for ``lang``."""
        try:
            return self.voices[lang]
        except KeyError:
            raise KeyError(f"no IVR voice for language {lang!r}") from None


@dataclass(frozen=True)
class Prompts:
    """Prompt templates per language, and optional recorded audio."""

    default_language: str
    texts: Mapping[str, Mapping[str, str]]
    audio: Mapping[str, Mapping[str, str]]

    @property
    def languages(self) -> tuple[str, ...]:
        """The prompt languages, in file order."""
        return tuple(self.texts)

    def text(self, key: str, lang: str | None = None) -> str:
        """The template of prompt ``key`` in ``lang`` (default language if None)."""
        lang = lang or self.default_language
        if lang not in self.texts:
            raise KeyError(f"no prompts in language {lang!r} (languages: {', '.join(self.texts)})")
        if key not in self.texts[lang]:
            raise KeyError(f"unknown prompt {key!r} (prompts: {', '.join(PROMPT_KEYS)})")
        return self.texts[lang][key]

    def audio_for(self, key: str, lang: str | None = None) -> str | None:
        """The audio file or URL recorded for prompt ``key``, or ``None``."""
        self.text(key, lang)
        return self.audio.get(lang or self.default_language, {}).get(key)


@dataclass(frozen=True)
class SurveyConfig:
    """The whole validated survey definition."""

    path: Path
    campaign: Campaign
    towns: tuple[Town, ...]
    groups: tuple[Group, ...]
    tracks: tuple[Track, ...]
    scale: Scale
    deductions: tuple[DeductionKind, ...]
    flags: Flags
    calling: CallingRules
    ivr: IvrSettings
    prompts: Prompts
    experiment: Experiment = field(default_factory=Experiment)
    #: The interviewer's script per language (``[script.<lang>]``, :mod:`minping.config.script`).
    script: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    _units: Mapping[str, Unit] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        units = {u.id: u for t in self.tracks for u in t.units}
        object.__setattr__(self, "_units", _frozen(units))

    @property
    def units(self) -> tuple[Unit, ...]:
        """All units, track by track, in file order."""
        return tuple(self._units.values())

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages the survey can be conducted in."""
        return self.prompts.languages

    def unit(self, unit_id: str) -> Unit:
        """The unit with id ``unit_id``; ``KeyError`` naming the id otherwise."""
        try:
            return self._units[unit_id]
        except KeyError:
            raise KeyError(f"unknown unit {unit_id!r}") from None

    def track(self, track_id: str) -> Track:
        """The track with id ``track_id``."""
        return _find(self.tracks, track_id, "track")

    def group(self, group_id: str) -> Group:
        """The respondent group with id ``group_id``."""
        return _find(self.groups, group_id, "group")

    def town(self, town_id: str) -> Town:
        """The town with id ``town_id``."""
        return _find(self.towns, town_id, "town")

    def deduction(self, kind_id: str) -> DeductionKind:
        """The deduction kind with id ``kind_id``."""
        return _find(self.deductions, kind_id, "deduction kind")

    def tracks_for_group(self, group_id: str) -> tuple[Track, ...]:
        """The tracks members of ``group_id`` rate, in the group's order."""
        return tuple(self.track(t) for t in self.group(group_id).tracks)

    def units_for_group(self, group_id: str) -> tuple[Unit, ...]:
        """The units members of ``group_id`` may be assigned to rate."""
        return tuple(u for t in self.tracks_for_group(group_id) for u in t.units)

    def prompt(self, key: str, lang: str | None = None) -> str:
        """The template of prompt ``key`` in ``lang`` (the default language if None)."""
        return self.prompts.text(key, lang)

    def render_prompt(self, key: str, lang: str | None = None, **values: object) -> str:
        """Prompt ``key`` in ``lang`` with its placeholders filled in.

        ``{center}``, ``{campaign}`` and ``{seconds}`` are filled from the
        configuration unless given; ``{unit}``, ``{track}`` and ``{caller_id}``
        must be passed by the caller.
        """
        lang = lang or self.campaign.default_language
        template = self.prompts.text(key, lang)
        fields: dict[str, object] = {
            "center": self.campaign.center(lang),
            "campaign": self.campaign.label(lang),
            "seconds": self.ivr.comment_max_seconds,
        }
        fields.update(values)
        try:
            return template.format_map(fields)
        except KeyError as exc:
            raise KeyError(f"prompt {key!r} needs a value for {{{exc.args[0]}}}") from None

    def render_script(self, key: str, lang: str | None = None, **values: object) -> str:
        """The interviewer's script line ``key`` in ``lang``, placeholders filled.

        ``{options}`` (in ``question``) is the scale's labels in ``lang``, in order.
        """
        lang = lang or self.campaign.default_language
        table = self.script.get(lang) or self.script.get(self.campaign.default_language) or {}
        template = table.get(key, "")
        sep = ", " if lang == "en" else "、"
        fields: dict[str, object] = {
            "center": self.campaign.center(lang),
            "campaign": self.campaign.label(lang),
            "options": sep.join(o.label(lang) for o in self.scale.options),
            "interviewer": "", "unit": "", "track": "",
        }
        fields.update(values)
        return template.format_map(fields)

    def audio(self, key: str, lang: str | None = None) -> str | None:
        """The audio recorded for prompt ``key`` in ``lang``, or ``None``."""
        return self.prompts.audio_for(key, lang)


def _find(items: Iterable[Any], item_id: str, what: str) -> Any:
    for item in items:
        if item.id == item_id:
            return item
    raise KeyError(f"unknown {what} {item_id!r}")
