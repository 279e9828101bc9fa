"""The survey definition: load ``config/survey.toml``, validate it, return frozen objects.

The configuration describes one campaign: the rated units grouped in tracks,
the respondent groups and which tracks they rate, the towns, the keypad rating
scale, the deductions from daily inspection, the flag rule, the calling rules
(time zone, weekday windows, holidays, attempts and retry delays, rate limits),
the IVR settings and the prompts in every language.  Nothing in it is secret.

Validation reports every problem at once, each with its key path, for example::

    config/survey.toml: 3 problems in the survey configuration
      tracks[1].units[4].id: duplicate id "fgj" (also at tracks[0].units[2].id)
      tracks[2].weights: weights must sum to 1, got 0.9
      ivr.voise: unknown key

Schema
------
Every key is required unless marked optional; a key that is not in the schema is
reported as ``unknown key`` (typos do not pass silently).  Ids ("slugs") are
lowercase ASCII letters, digits and hyphens.

``[campaign]``
    ``id`` (slug), ``name``, ``name_en``, ``polling_center``,
    ``polling_center_en``, ``start_date``, ``end_date`` (TOML dates or
    ``"YYYY-MM-DD"`` strings; inclusive; end not before start),
    ``default_language`` (a language with a ``[prompts.<lang>]`` table),
    ``sample_size`` (int >= 1), ``units_per_respondent`` (k, int >= 1; every
    group must be able to rate k units), ``min_raters`` (int >= 2; fewer raters
    in a unit's domain make its score unreliable).
``[[towns]]``
    ``id`` (slug, unique), ``name``, ``name_en``.
``[[groups]]``
    ``id`` (slug, unique), ``name``, ``name_en``, ``tracks`` (non-empty list of
    track ids).  Every track must be rated by at least one group.
``[[tracks]]``
    ``id`` (slug, unique), ``name``, ``name_en``, ``weights`` (table of
    composite-score components ``phone`` (required), ``assessment``,
    ``online``, ``onsite``; each in [0, 1], summing to 1), ``categories``
    (optional list of ``{id, name, name_en}``; every category must be used),
    ``units`` (non-empty list of ``{id, name, name_en, category}``; unit ids
    are unique across the whole campaign, names unique within a track;
    ``category`` is required when the track has categories and not allowed
    otherwise).
``[scale]``
    ``options``: list of ``{key, label, points, satisfied}``; ``key`` is a
    keypad digit ``"0"``..``"9"`` (a string, unique); ``label`` a table with a
    text for every prompt language; ``points`` (optional, 0..100): an option
    without points is outside the unit's domain ("don't know"); ``satisfied``
    (optional bool, default false) counts towards the satisfaction rate and
    needs points.  At least two options must carry points.
``[deductions]``
    ``kinds``: list of ``{id, name, name_en, per, min_points, max_points}`` with
    ``0 < min_points <= max_points <= 100``.
``[flags]``
    ``threshold`` (0..100; a unit scoring under it is flagged), ``correction``
    (``"holm"``, ``"bh"`` or ``"none"``), ``confidence`` (0 < c < 1).
``[calling]``
    ``timezone`` (IANA name), ``windows`` (table ``mon`` .. ``sun``, each a list
    of ``"HH:MM-HH:MM"`` local-time ranges, start inclusive and end exclusive,
    not overlapping; ``[]`` for no calls), ``holidays`` (list of dates inside
    the campaign period), ``max_attempts`` (1..50), ``retry_delay_minutes``
    (table outcome -> minutes >= 0; ``busy``, ``no-answer``, ``machine``,
    ``failed``, ``soft-refusal``, ``break-off`` and ``appointment-missed`` are
    required, more outcomes may be added under slug names),
    ``calls_per_second`` (> 0), ``max_concurrent_calls`` (>= 1),
    ``ring_timeout_seconds`` (5..600, Twilio's ``timeout``),
    ``call_time_limit_seconds`` (30..86400, Twilio's ``time_limit``).
``[ivr]``
    ``voices`` (table language -> Twilio ``<Say>`` voice, one per prompt
    language), ``gather_timeout_seconds`` (1..60), ``max_reasks`` (0..10),
    ``start_key``, ``repeat_key``, ``opt_out_key`` (single keypad characters
    ``0-9 * #``), ``handoff_key`` (a keypad character, or ``""`` to disable the
    hand-over to an interviewer), ``record_comment`` (bool),
    ``comment_max_seconds`` (1..600), ``sms_advance_notice`` (bool).  The
    repeat, opt-out and hand-over keys differ from each other and from every
    scale key; the start key differs from them too.
``[prompts.<lang>]``
    One table per language (``cmn-CN``, ``en`` ...), each with every prompt of
    :data:`PROMPT_KEYS`.  Prompts are ``str.format`` templates; the allowed
    placeholders are ``{center}`` and ``{campaign}`` everywhere, ``{unit}``
    (required) and ``{track}`` in ``question``, ``{seconds}`` in
    ``comment_invitation`` and ``{caller_id}`` in ``sms_advance_notice``.  The
    ``question`` must read out every scale label of its language.
``[prompts.audio.<lang>]`` (optional)
    Prompt key -> audio file or URL to ``<Play>`` instead of speaking the text.

The default file is ``$MINPING_CONFIG`` when that is set, else
``<repository>/config/survey.toml``.

References
----------
.. [1] Python Software Foundation, ``tomllib`` -- Parse TOML files,
   https://docs.python.org/3/library/tomllib.html
.. [2] TOML v1.0.0, https://toml.io/en/v1.0.0
.. [3] Twilio, TwiML ``<Say>``, ``<Gather>`` and ``<Play>``,
   https://www.twilio.com/docs/voice/twiml
"""

from __future__ import annotations

import json
import math
import os
import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from minping.errors import MinpingError

__all__ = [
    "CONFIG_ENV_VAR",
    "PROMPT_KEYS",
    "RETRY_OUTCOMES",
    "WEEKDAYS",
    "WEIGHT_COMPONENTS",
    "CallingRules",
    "Campaign",
    "Category",
    "ConfigError",
    "DeductionKind",
    "Flags",
    "FrozenMap",
    "Group",
    "IvrSettings",
    "Prompts",
    "Scale",
    "ScaleOption",
    "SurveyConfig",
    "TimeWindow",
    "Town",
    "Track",
    "Unit",
    "check_config",
    "default_config_path",
    "load_config",
]

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
    "handoff_unavailable",  # nobody took the hand-over within handoff_wait_seconds
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
_PROMPT_REQUIRED = {"question": frozenset({"unit"})}

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
_LANG = re.compile(r"[a-z]{2,3}(?:-[A-Z]{2})?\Z")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
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


def _uses_chinese_names(lang: str) -> bool:
    """Whether texts in ``lang`` take the Chinese names (else the English ones)."""
    return lang.split("-")[0] in _CHINESE_LANGS


# ---------------------------------------------------------------------------
# Result objects


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
        return self.name if _uses_chinese_names(lang) else self.name_en

    def center(self, lang: str) -> str:
        """The polling center's name in ``lang``."""
        return self.polling_center if _uses_chinese_names(lang) else self.polling_center_en


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
        return self.name if _uses_chinese_names(lang) else self.name_en


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
        return self.name if _uses_chinese_names(lang) else self.name_en

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
class TimeWindow:
    """A local-time range ``[start, end)`` within a day."""

    start: time
    end: time

    def __contains__(self, moment: object) -> bool:
        if not isinstance(moment, time):
            return False
        return self.start <= moment.replace(tzinfo=None) < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def _aware(when: datetime, name: str) -> datetime:
    if not isinstance(when, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(when).__name__} {when!r}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {when.isoformat()}")
    return when


@dataclass(frozen=True)
class CallingRules:
    """When respondents may be called, and how often.

    ``windows`` maps ``date.weekday()`` (Monday = 0) to that day's calling
    windows in the campaign's local time.  No call is placed before
    ``start_date``, after ``end_date`` or on a holiday.
    """

    timezone: str
    windows: Mapping[int, tuple[TimeWindow, ...]]
    holidays: frozenset[date]
    start_date: date
    end_date: date
    max_attempts: int
    retry_delays: Mapping[str, timedelta]
    calls_per_second: float
    max_concurrent_calls: int
    ring_timeout_seconds: int
    call_time_limit_seconds: int

    @property
    def tz(self) -> ZoneInfo:
        """The campaign's time zone."""
        return ZoneInfo(self.timezone)

    def windows_on(self, day: date) -> tuple[TimeWindow, ...]:
        """The calling windows of a local calendar day (empty on closed days)."""
        if day < self.start_date or day > self.end_date or day in self.holidays:
            return ()
        return self.windows.get(day.weekday(), ())

    def is_callable(self, when: datetime) -> bool:
        """Whether a call may be placed at the aware datetime ``when``.

        ``when`` is converted to the campaign time zone first, so
        ``2026-11-17 01:00 UTC`` is 09:00 in Asia/Shanghai and callable.
        """
        local = _aware(when, "when").astimezone(self.tz)
        clock = local.time()
        return any(clock in w for w in self.windows_on(local.date()))

    def next_callable(self, after: datetime) -> datetime | None:
        """The earliest callable moment at or after ``after``.

        Returns ``after`` itself (in the campaign time zone) when it is
        callable, else the start of the next window; ``None`` when no window
        is left before the end of the campaign.
        """
        tz = self.tz
        local = _aware(after, "after").astimezone(tz)
        day = max(local.date(), self.start_date)
        while day <= self.end_date:
            for window in self.windows_on(day):
                opens = datetime.combine(day, window.start, tzinfo=tz)
                closes = datetime.combine(day, window.end, tzinfo=tz)
                if closes > local:
                    return max(opens, local)
            day += timedelta(days=1)
        return None

    def window_end(self, when: datetime) -> datetime | None:
        """When the window containing ``when`` closes; ``None`` outside windows."""
        tz = self.tz
        local = _aware(when, "when").astimezone(tz)
        for window in self.windows_on(local.date()):
            if local.time() in window:
                return datetime.combine(local.date(), window.end, tzinfo=tz)
        return None

    def retry_delay(self, outcome: str) -> timedelta:
        """The wait before the next attempt after an attempt ending in ``outcome``."""
        try:
            return self.retry_delays[outcome]
        except KeyError:
            raise KeyError(
                f"no retry delay for outcome {outcome!r} "
                f"(configured: {', '.join(self.retry_delays)})"
            ) from None

    def next_attempt(self, after: datetime, outcome: str) -> datetime | None:
        """The earliest callable moment once the retry delay of ``outcome`` has passed."""
        return self.next_callable(_aware(after, "after") + self.retry_delay(outcome))


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

    def audio(self, key: str, lang: str | None = None) -> str | None:
        """The audio recorded for prompt ``key`` in ``lang``, or ``None``."""
        return self.prompts.audio_for(key, lang)


def _find(items: Iterable[Any], item_id: str, what: str) -> Any:
    for item in items:
        if item.id == item_id:
            return item
    raise KeyError(f"unknown {what} {item_id!r}")


# ---------------------------------------------------------------------------
# Errors and entry points


class ConfigError(MinpingError):
    """The survey configuration cannot be used.

    ``problems`` lists every fault, each starting with its key path;
    ``path`` is the file.  ``str()`` names the file on the first line and
    lists the problems below it.
    """

    def __init__(self, path: str | os.PathLike[str], problems: Iterable[str]):
        self.path = str(path)
        self.problems = list(problems)
        super().__init__(self.path, self.problems)

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{self.path}: {n} problem{'' if n == 1 else 's'} in the survey configuration"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])

    def as_dict(self) -> dict:
        return {
            "error": str(self).splitlines()[0],
            "file": self.path,
            "problems": list(self.problems),
        }


def default_config_path() -> Path:
    """``$MINPING_CONFIG`` if set, else ``config/survey.toml`` of the repository."""
    env = os.environ.get(CONFIG_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "config" / "survey.toml"


def load_config(path: str | os.PathLike[str] | None = None) -> SurveyConfig:
    """Read and validate the survey configuration.

    Parameters
    ----------
    path
        The TOML file; :func:`default_config_path` when ``None``.

    Returns
    -------
    SurveyConfig
        Frozen objects for the whole survey definition.

    Raises
    ------
    ConfigError
        Listing every problem found (unreadable file, TOML syntax with line and
        column, or each invalid key with its key path).
    """
    file = Path(path) if path is not None else default_config_path()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(file, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(file, [f"byte {exc.start}: the file is not UTF-8 text"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        if match:
            where = f"line {match.group(1)}, column {match.group(2)}"
            message = f"{where}: invalid TOML: {message[: match.start()]}"
        else:
            message = f"invalid TOML: {message}"
        raise ConfigError(file, [message]) from None
    check = _Check()
    config = _build(data, file, check)
    if check.problems or config is None:
        raise ConfigError(file, check.problems or ["the configuration is empty"])
    return config


def check_config(path: str | os.PathLike[str] | None = None) -> list[str]:
    """The problems of the configuration at ``path`` (an empty list when it is fine)."""
    try:
        load_config(path)
    except ConfigError as exc:
        return list(exc.problems)
    return []


# ---------------------------------------------------------------------------
# Validation


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


def _build(data: dict, file: Path, check: _Check) -> SurveyConfig | None:
    check.unknown(
        data,
        "",
        (
            "campaign",
            "towns",
            "groups",
            "tracks",
            "scale",
            "deductions",
            "flags",
            "calling",
            "ivr",
            "prompts",
        ),
    )
    raw_prompts = data.get("prompts")
    languages: list[str] | None = None
    if isinstance(raw_prompts, dict):
        languages = [k for k, v in raw_prompts.items() if k != "audio" and isinstance(v, dict)]

    # Cross-checks use the values that are valid on their own (``facts``,
    # ``track_info``, ``scale_labels``) so that a fault in one section does not
    # hide the faults of another.
    facts: dict[str, Any] = {}
    campaign = _campaign(check, data, languages, facts)
    towns = _towns(check, data)
    tracks, track_info = _tracks(check, data)
    scale, scale_labels = _scale(check, data, languages)
    groups = _groups(check, data, track_info, facts)
    deductions = _deductions(check, data)
    flags = _flags(check, data)
    calling = _calling(check, data, facts, campaign)
    ivr = _ivr(check, data, languages, scale_labels)
    prompts = _prompts(check, data, campaign, scale_labels)

    parts = (campaign, towns, tracks, scale, groups, deductions, flags, calling, ivr, prompts)
    if check.problems or any(p is None for p in parts):
        return None
    return SurveyConfig(
        path=file,
        campaign=campaign,
        towns=towns,
        groups=groups,
        tracks=tracks,
        scale=scale,
        deductions=deductions,
        flags=flags,
        calling=calling,
        ivr=ivr,
        prompts=prompts,
    )


def _campaign(
    check: _Check, data: dict, languages: list[str] | None, facts: dict[str, Any]
) -> Campaign | None:
    t = check.table(data, "campaign", "")
    if t is None:
        return None
    mark = check.mark()
    p = "campaign"
    check.unknown(
        t,
        p,
        (
            "id",
            "name",
            "name_en",
            "polling_center",
            "polling_center_en",
            "start_date",
            "end_date",
            "default_language",
            "sample_size",
            "units_per_respondent",
            "min_raters",
        ),
    )
    cid = check.slug(t, "id", p)
    name, name_en = _names(check, t, p)
    center = check.text(t, "polling_center", p)
    center_en = check.text(t, "polling_center_en", p)
    start = check.day(t, "start_date", p)
    end = check.day(t, "end_date", p)
    if start is not None and end is not None and end < start:
        check.add(f"{p}.end_date", f"{end.isoformat()} is before start_date {start.isoformat()}")
    elif start is not None and end is not None:
        facts["start_date"], facts["end_date"] = start, end
    lang = check.text(t, "default_language", p)
    if lang is not None and languages is not None and lang not in languages:
        check.add(f"{p}.default_language", f"{_show(lang)} has no [prompts.{lang}] table")
    sample_size = check.integer(t, "sample_size", p, lo=1)
    k = check.integer(t, "units_per_respondent", p, lo=1)
    min_raters = check.integer(t, "min_raters", p, lo=2)
    if k is not None:
        facts["units_per_respondent"] = k
    if not check.clean_since(mark):
        return None
    return Campaign(
        id=cid,
        name=name,
        name_en=name_en,
        polling_center=center,
        polling_center_en=center_en,
        start_date=start,
        end_date=end,
        default_language=lang,
        sample_size=sample_size,
        units_per_respondent=k,
        min_raters=min_raters,
    )


def _towns(check: _Check, data: dict) -> tuple[Town, ...] | None:
    items = check.tables(data, "towns", "")
    if items is None:
        return None
    mark = check.mark()
    seen: dict[str, str] = {}
    towns = []
    for p, t in items:
        check.unknown(t, p, ("id", "name", "name_en"))
        tid = check.slug(t, "id", p)
        check.unique(seen, tid, f"{p}.id", "id")
        name, name_en = _names(check, t, p)
        towns.append(Town(tid, name, name_en))
    return tuple(towns) if check.clean_since(mark) else None


def _tracks(
    check: _Check, data: dict
) -> tuple[tuple[Track, ...] | None, dict[str, tuple[str, int]]]:
    """The tracks, and for every track id written (even in a faulty track) its path and size."""
    items = check.tables(data, "tracks", "")
    info: dict[str, tuple[str, int]] = {}
    if items is None:
        return None, info
    mark = check.mark()
    track_seen: dict[str, str] = {}
    unit_seen: dict[str, str] = {}
    tracks = []
    for p, t in items:
        check.unknown(t, p, ("id", "name", "name_en", "weights", "categories", "units"))
        tid = check.slug(t, "id", p)
        check.unique(track_seen, tid, f"{p}.id", "id")
        name, name_en = _names(check, t, p)
        weights = _weights(check, t, p)

        categories = []
        cat_seen: dict[str, str] = {}
        cat_items = check.tables(t, "categories", p, required=False)
        for cp, c in cat_items or ():
            check.unknown(c, cp, ("id", "name", "name_en"))
            cid = check.slug(c, "id", cp)
            check.unique(cat_seen, cid, f"{cp}.id", "category id")
            cname, cname_en = _names(check, c, cp)
            categories.append(Category(cid, cname, cname_en))
        has_categories = cat_items is not None

        units = []
        name_seen: dict[str, str] = {}
        used_categories: set[str] = set()
        for up, u in check.tables(t, "units", p) or ():
            check.unknown(u, up, ("id", "name", "name_en", "category"))
            uid = check.slug(u, "id", up)
            check.unique(unit_seen, uid, f"{up}.id", "id")
            uname, uname_en = _names(check, u, up)
            check.unique(name_seen, uname, f"{up}.name", "name")
            category = None
            if has_categories:
                category = check.text(u, "category", up)
                if category is not None and category not in cat_seen:
                    known = ", ".join(cat_seen) or "none"
                    check.add(
                        f"{up}.category",
                        f"unknown category {_show(category)} (categories: {known})",
                    )
                elif category is not None:
                    used_categories.add(category)
            elif "category" in u:
                check.add(f"{up}.category", f"track {_show(tid)} has no categories")
            units.append(Unit(uid, uname, uname_en, tid, category))
        for cid, cp in cat_seen.items():
            if cid not in used_categories:
                check.add(cp.rsplit(".", 1)[0], f"no unit is in category {_show(cid)}")
        tracks.append(Track(tid, name, name_en, weights, tuple(categories), tuple(units)))
        if tid is not None and tid not in info:
            info[tid] = (p, len(units))
    return (tuple(tracks) if check.clean_since(mark) else None), info


def _weights(check: _Check, track: dict, path: str) -> Mapping[str, float] | None:
    t = check.table(track, "weights", path)
    if t is None:
        return None
    p = f"{path}.weights"
    mark = check.mark()
    check.unknown(t, p, WEIGHT_COMPONENTS)
    if "phone" not in t:
        check.add(f"{p}.phone", "missing required key")
    weights = {}
    for key in WEIGHT_COMPONENTS:
        if key in t:
            weights[key] = check.number(t, key, p, lo=0, hi=1)
    if not check.clean_since(mark):
        return None
    total = sum(weights.values())
    if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-9):
        check.add(p, f"weights must sum to 1, got {round(total, 9):g}")
        return None
    return _frozen(weights)


def _scale(
    check: _Check, data: dict, languages: list[str] | None
) -> tuple[Scale | None, dict[str, dict]]:
    """The scale, and the labels of every option whose key is valid."""
    labels_by_key: dict[str, dict] = {}
    t = check.table(data, "scale", "")
    if t is None:
        return None, labels_by_key
    mark = check.mark()
    check.unknown(t, "scale", ("options",))
    items = check.tables(t, "options", "scale")
    if items is None:
        return None, labels_by_key
    seen: dict[str, str] = {}
    options = []
    for p, o in items:
        check.unknown(o, p, ("key", "label", "points", "satisfied"))
        key = check.text(o, "key", p)
        if key is not None and not (len(key) == 1 and key.isdigit() and key.isascii()):
            check.add(f"{p}.key", f'must be one keypad digit "0" to "9", got {_show(key)}')
            key = None
        check.unique(seen, key, f"{p}.key", "key")
        labels = check.table(o, "label", p)
        if labels is not None:
            for lang, text in labels.items():
                lp = _join(f"{p}.label", lang)
                if languages is not None and lang not in languages:
                    check.add(lp, f"no [prompts.{lang}] table for this language")
                elif not isinstance(text, str) or not text.strip():
                    check.add(lp, f"must be a non-empty string, got {_show(text)}")
            for lang in languages or ():
                if lang not in labels:
                    check.add(_join(f"{p}.label", lang), "missing required key")
        points = check.number(o, "points", p, lo=0, hi=100, required=False)
        satisfied = check.boolean(o, "satisfied", p, required=False)
        if satisfied and "points" not in o:
            check.add(f"{p}.satisfied", "an option without points cannot count as satisfied")
        options.append(ScaleOption(key, _frozen(labels or {}), points, bool(satisfied)))
        if key is not None and key not in labels_by_key:
            labels_by_key[key] = {
                k: v for k, v in (labels or {}).items() if isinstance(v, str) and v.strip()
            }
    if sum(1 for _, o in items if "points" in o) < 2:
        check.add("scale.options", "at least two options must carry points")
    return (Scale(tuple(options)) if check.clean_since(mark) else None), labels_by_key


def _groups(
    check: _Check,
    data: dict,
    track_info: dict[str, tuple[str, int]],
    facts: dict[str, Any],
) -> tuple[Group, ...] | None:
    items = check.tables(data, "groups", "")
    if items is None:
        return None
    mark = check.mark()
    seen: dict[str, str] = {}
    groups = []
    rated: set[str] = set()
    all_refs_known = True
    for p, g in items:
        check.unknown(g, p, ("id", "name", "name_en", "tracks"))
        gid = check.slug(g, "id", p)
        check.unique(seen, gid, f"{p}.id", "id")
        name, name_en = _names(check, g, p)
        refs = check.array(g, "tracks", p)
        chosen: list[str] = []
        if refs is not None:
            if not refs:
                check.add(f"{p}.tracks", "must name at least one track")
            for i, ref in enumerate(refs):
                rp = f"{p}.tracks[{i}]"
                if not isinstance(ref, str):
                    check.add(rp, f"must be a track id, got {_show(ref)}")
                elif ref not in track_info:
                    all_refs_known = False
                    known = ", ".join(track_info) or "none"
                    check.add(rp, f"unknown track {_show(ref)} (tracks: {known})")
                elif ref in chosen:
                    check.add(rp, f"track {_show(ref)} is listed twice")
                else:
                    chosen.append(ref)
        else:
            all_refs_known = False
        rated.update(chosen)
        k = facts.get("units_per_respondent")
        if k is not None and chosen:
            n_units = sum(track_info[t][1] for t in chosen)
            if n_units < k:
                check.add(
                    f"{p}.tracks",
                    f"the group can rate {n_units} units, fewer than "
                    f"campaign.units_per_respondent = {k}",
                )
        groups.append(Group(gid, name, name_en, tuple(chosen)))
    if all_refs_known:
        for track_id, (track_path, _) in track_info.items():
            if track_id not in rated:
                check.add(track_path, f"no group rates track {_show(track_id)}")
    return tuple(groups) if check.clean_since(mark) else None


def _deductions(check: _Check, data: dict) -> tuple[DeductionKind, ...] | None:
    t = check.table(data, "deductions", "")
    if t is None:
        return None
    mark = check.mark()
    check.unknown(t, "deductions", ("kinds",))
    seen: dict[str, str] = {}
    kinds = []
    for p, k in check.tables(t, "kinds", "deductions") or ():
        check.unknown(k, p, ("id", "name", "name_en", "per", "min_points", "max_points"))
        kid = check.slug(k, "id", p)
        check.unique(seen, kid, f"{p}.id", "id")
        name, name_en = _names(check, k, p)
        per = check.text(k, "per", p)
        lo = check.number(k, "min_points", p, lo=0, hi=100, lo_open=True)
        hi = check.number(k, "max_points", p, lo=0, hi=100, lo_open=True)
        if lo is not None and hi is not None and hi < lo:
            check.add(f"{p}.max_points", f"{hi:g} is less than min_points {lo:g}")
        kinds.append(DeductionKind(kid, name, name_en, per, lo, hi))
    return tuple(kinds) if check.clean_since(mark) else None


def _flags(check: _Check, data: dict) -> Flags | None:
    t = check.table(data, "flags", "")
    if t is None:
        return None
    mark = check.mark()
    check.unknown(t, "flags", ("threshold", "correction", "confidence"))
    threshold = check.number(t, "threshold", "flags", lo=0, hi=100)
    correction = check.text(t, "correction", "flags")
    if correction is not None and correction not in CORRECTIONS:
        allowed = ", ".join(f'"{c}"' for c in CORRECTIONS)
        check.add("flags.correction", f"must be one of {allowed}, got {_show(correction)}")
    confidence = check.number(t, "confidence", "flags", lo=0, hi=1, lo_open=True, hi_open=True)
    return Flags(threshold, correction, confidence) if check.clean_since(mark) else None


def _time_windows(check: _Check, ranges: list, path: str) -> tuple[TimeWindow, ...]:
    windows: list[tuple[str, TimeWindow]] = []
    for i, text in enumerate(ranges):
        wp = f"{path}[{i}]"
        match = _TIME_RANGE.match(text) if isinstance(text, str) else None
        if match is None:
            check.add(wp, f"{_show(text)} is not a time range HH:MM-HH:MM")
            continue
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        window = TimeWindow(time(h1, m1), time(h2, m2))
        if window.end <= window.start:
            check.add(wp, f"{_show(text)} does not end after it starts")
            continue
        windows.append((wp, window))
    windows.sort(key=lambda pw: pw[1].start)
    for (_, before), (wp, after) in zip(windows, windows[1:], strict=False):
        if after.start < before.end:
            check.add(wp, f'"{after}" overlaps "{before}"')
    return tuple(w for _, w in windows)


def _calling(
    check: _Check, data: dict, facts: dict[str, Any], campaign: Campaign | None
) -> CallingRules | None:
    t = check.table(data, "calling", "")
    if t is None:
        return None
    p = "calling"
    mark = check.mark()
    check.unknown(
        t,
        p,
        (
            "timezone",
            "windows",
            "holidays",
            "max_attempts",
            "retry_delay_minutes",
            "calls_per_second",
            "max_concurrent_calls",
            "ring_timeout_seconds",
            "call_time_limit_seconds",
        ),
    )
    tz_name = check.text(t, "timezone", p)
    if tz_name is not None:
        try:
            ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            check.add(
                f"{p}.timezone",
                f"{_show(tz_name)} is not a known time zone (IANA name, e.g. Asia/Shanghai)",
            )

    windows: dict[int, tuple[TimeWindow, ...]] = {}
    wt = check.table(t, "windows", p)
    if wt is not None:
        check.unknown(wt, f"{p}.windows", WEEKDAYS)
        for index, day in enumerate(WEEKDAYS):
            ranges = check.array(wt, day, f"{p}.windows")
            if ranges is not None:
                windows[index] = _time_windows(check, ranges, f"{p}.windows.{day}")
        if all(not w for w in windows.values()) and len(windows) == len(WEEKDAYS):
            check.add(f"{p}.windows", "no calling window on any day")

    holidays: set[date] = set()
    for i, value in enumerate(check.array(t, "holidays", p) or ()):
        hp = f"{p}.holidays[{i}]"
        day = check.day_value(value, hp)
        if day is None:
            continue
        if day in holidays:
            check.add(hp, f"{day.isoformat()} is listed twice")
        first, last = facts.get("start_date"), facts.get("end_date")
        if first is not None and last is not None and not first <= day <= last:
            check.add(
                hp,
                f"{day.isoformat()} is outside the campaign "
                f"({first.isoformat()} to {last.isoformat()})",
            )
        holidays.add(day)

    max_attempts = check.integer(t, "max_attempts", p, lo=1, hi=50)
    delays: dict[str, timedelta] = {}
    dt = check.table(t, "retry_delay_minutes", p)
    if dt is not None:
        dp = f"{p}.retry_delay_minutes"
        for outcome in RETRY_OUTCOMES:
            if outcome not in dt:
                check.add(_join(dp, outcome), "missing required key")
        for outcome in dt:
            if not _SLUG.match(outcome):
                check.add(_join(dp, outcome), "outcome names are lowercase words joined by hyphens")
                continue
            minutes = check.number(dt, outcome, dp, lo=0)
            if minutes is not None:
                delays[outcome] = timedelta(minutes=minutes)
    rate = check.number(t, "calls_per_second", p, lo=0, hi=100, lo_open=True)
    concurrent = check.integer(t, "max_concurrent_calls", p, lo=1)
    ring = check.integer(t, "ring_timeout_seconds", p, lo=5, hi=600)
    limit = check.integer(t, "call_time_limit_seconds", p, lo=30, hi=86400)
    if not check.clean_since(mark) or campaign is None:
        return None
    return CallingRules(
        timezone=tz_name,
        windows=_frozen(windows),
        holidays=frozenset(holidays),
        start_date=campaign.start_date,
        end_date=campaign.end_date,
        max_attempts=max_attempts,
        retry_delays=_frozen(delays),
        calls_per_second=rate,
        max_concurrent_calls=concurrent,
        ring_timeout_seconds=ring,
        call_time_limit_seconds=limit,
    )


def _ivr(
    check: _Check, data: dict, languages: list[str] | None, scale_labels: dict[str, dict]
) -> IvrSettings | None:
    t = check.table(data, "ivr", "")
    if t is None:
        return None
    p = "ivr"
    mark = check.mark()
    check.unknown(
        t,
        p,
        (
            "voices",
            "gather_timeout_seconds",
            "max_reasks",
            "start_key",
            "repeat_key",
            "opt_out_key",
            "handoff_key",
            "record_comment",
            "comment_max_seconds",
            "sms_advance_notice",
            *_IVR_DELIVERY_KEYS,
            *_IVR_DELIVERY_TEXT,
        ),
    )
    delivery = {k: check.integer(t, k, p, lo=lo, hi=hi)
                for k, (lo, hi, _) in _IVR_DELIVERY_KEYS.items() if k in t}
    for k, (pattern, example) in _IVR_DELIVERY_TEXT.items():
        if k in t:
            value = t[k]
            if isinstance(value, str) and (value == "" or re.fullmatch(pattern, value)):
                delivery[k] = value
            else:
                check.add(f"{p}.{k}", f'must be "" or like "{example}", got {_show(value)}')
    voices = check.table(t, "voices", p)
    if voices is not None:
        for lang, voice in voices.items():
            vp = _join(f"{p}.voices", lang)
            if languages is not None and lang not in languages:
                check.add(vp, f"no [prompts.{lang}] table for this language")
            elif not isinstance(voice, str) or not voice.strip():
                check.add(vp, f'must be a voice name such as "Polly.Zhiyu", got {_show(voice)}')
        for lang in languages or ():
            if lang not in voices:
                check.add(_join(f"{p}.voices", lang), "missing required key")
    gather = check.integer(t, "gather_timeout_seconds", p, lo=1, hi=60)
    reasks = check.integer(t, "max_reasks", p, lo=0, hi=10)
    start = check.key_char(t, "start_key", p)
    repeat = check.key_char(t, "repeat_key", p)
    opt_out = check.key_char(t, "opt_out_key", p)
    handoff = check.key_char(t, "handoff_key", p, allow_empty=True)
    record = check.boolean(t, "record_comment", p)
    comment_seconds = check.integer(t, "comment_max_seconds", p, lo=1, hi=600)
    sms = check.boolean(t, "sms_advance_notice", p)

    # Keys pressed while a rating question is open must not mean two things.
    in_question = [("repeat_key", repeat), ("opt_out_key", opt_out), ("handoff_key", handoff)]
    for i, (name, key) in enumerate(in_question):
        if not key:
            continue
        if key in scale_labels:
            label = next(iter(scale_labels[key].values()), "")
            what = f'scale key "{key}" ({label})' if label else f'scale key "{key}"'
            check.add(f"{p}.{name}", f'"{key}" collides with {what}')
        for other_name, other in in_question[:i]:
            if key == other:
                check.add(f"{p}.{name}", f'"{key}" collides with {other_name}')
    if start:
        for other_name, other in in_question:
            if start == other:
                check.add(f"{p}.start_key", f'"{start}" collides with {other_name}')
    if not check.clean_since(mark):
        return None
    return IvrSettings(
        voices=_frozen(voices),
        gather_timeout_seconds=gather,
        max_reasks=reasks,
        start_key=start,
        repeat_key=repeat,
        opt_out_key=opt_out,
        handoff_key=handoff or None,
        record_comment=record,
        comment_max_seconds=comment_seconds,
        sms_advance_notice=sms,
        **{k: v for k, v in delivery.items() if v is not None},
    )


#: Optional ``[ivr]`` keys of the call delivery: name -> (lowest, highest, default).
_IVR_DELIVERY_KEYS = {"handoff_wait_seconds": (5, 600, 30), "inbound_code_digits": (0, 8, 0)}
#: Optional ``[ivr]`` text keys of the call delivery: name -> (pattern, example).
_IVR_DELIVERY_TEXT = {
    "destination_country_code": (r"\+[1-9][0-9]{0,2}", "+86"),
    "byoc_trunk_sid": (r"BY[0-9a-fA-F]{32}", "BY" + "0" * 32),
    "messaging_service_sid": (r"MG[0-9a-fA-F]{32}", "MG" + "0" * 32),
}


def _template_fields(check: _Check, text: str, path: str) -> set[str] | None:
    names = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        check.add(path, f"is not a valid template ({exc}); write {{{{ and }}}} for literal braces")
        return None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        if not base:
            check.add(path, "placeholders must be named, e.g. {unit}")
            return None
        names.add(base)
    return names


def _prompts(
    check: _Check, data: dict, campaign: Campaign | None, scale_labels: dict[str, dict]
) -> Prompts | None:
    t = check.table(data, "prompts", "")
    if t is None:
        return None
    mark = check.mark()
    texts: dict[str, dict[str, str]] = {}
    audio: dict[str, dict[str, str]] = {}
    for lang, table in t.items():
        lp = _join("prompts", lang)
        if lang == "audio":
            continue
        if not _LANG.match(lang):
            check.add(lp, 'is not a language code such as "cmn-CN" or "en"')
            continue
        if not isinstance(table, dict):
            check.add(lp, f"must be a table, got {_show(table)}")
            continue
        check.unknown(table, lp, PROMPT_KEYS)
        texts[lang] = {}
        for key in PROMPT_KEYS:
            text = check.text(table, key, lp)
            if text is None:
                continue
            kp = _join(lp, key)
            used = _template_fields(check, text, kp)
            if used is None:
                continue
            for name in sorted(used - _PROMPT_FIELDS[key]):
                allowed = ", ".join(f"{{{f}}}" for f in sorted(_PROMPT_FIELDS[key]))
                check.add(kp, f"unknown placeholder {{{name}}} (allowed: {allowed})")
            for name in sorted(_PROMPT_REQUIRED.get(key, frozenset()) - used):
                check.add(kp, f"must contain the placeholder {{{name}}}")
            if key == "question":
                for option_key, labels in scale_labels.items():
                    label = labels.get(lang)
                    if label and label.casefold() not in text.casefold():
                        check.add(kp, f'does not read out scale option "{option_key}" ({label})')
            texts[lang][key] = text
    if not texts:
        check.add("prompts", "needs at least one language table, e.g. [prompts.cmn-CN]")

    raw_audio = check.table(t, "audio", "prompts", required=False)
    for lang, table in (raw_audio or {}).items():
        ap = _join("prompts.audio", lang)
        if lang not in texts:
            check.add(ap, f"no [prompts.{lang}] table for this language")
            continue
        if not isinstance(table, dict):
            check.add(ap, f"must be a table, got {_show(table)}")
            continue
        check.unknown(table, ap, PROMPT_KEYS)
        audio[lang] = {}
        for key in PROMPT_KEYS:
            if key in table:
                value = check.text(table, key, ap)
                if value is not None:
                    audio[lang][key] = value
    if not check.clean_since(mark) or campaign is None:
        return None
    return Prompts(
        default_language=campaign.default_language,
        texts=_frozen({lang: _frozen(v) for lang, v in texts.items()}),
        audio=_frozen({lang: _frozen(v) for lang, v in audio.items()}),
    )
