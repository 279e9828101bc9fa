"""The survey definition: load ``survey.toml``, validate it, return frozen objects.

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
    ``call_time_limit_seconds`` (30..86400, Twilio's ``time_limit``),
    ``retry_day_parts`` (optional list of ``"HH:MM"``, strictly increasing; where
    the parts of the day a retry is spread over begin; default
    ``["12:00", "17:00"]``: morning, afternoon, evening; see :mod:`minping.calling`),
    ``retry_method`` (optional, ``"fixed"`` (default): spread over the parts of
    the day not tried yet; ``"learned"``: the part with the best contact chance
    learned from the attempts, see :mod:`minping.calltimes`),
    ``learned_prior_strength`` (optional, > 0, default 20: the beta-binomial
    prior's weight in attempts), ``learned_horizon_days`` (optional, 0..14,
    default 2: how far past the retry delay a learned retry may look).
``[ivr]``
    ``voices`` (table language -> Twilio ``<Say>`` voice, one per prompt
    language), ``gather_timeout_seconds`` (1..60), ``max_reasks`` (0..10),
    ``start_key``, ``repeat_key``, ``opt_out_key`` (single keypad characters
    ``0-9 * #``), ``handoff_key`` (a keypad character, or ``""`` to disable the
    hand-over to an interviewer), ``record_comment`` (bool),
    ``comment_max_seconds`` (1..600), ``sms_advance_notice`` (bool).  The
    repeat, opt-out and hand-over keys differ from each other and from every
    scale key; the start key differs from them too.
``[experiment]`` (optional)
    ``mode_cati_first_fraction`` (0 <= f < 1, default 0 = no experiment): the
    share of released cases routed CATI-first instead of IVR-first, chosen at
    random (:mod:`minping.experiment`); ``seed`` (optional string; default the
    draw's seed).
``[prompts.<lang>]``
    One table per language (``cmn-CN``, ``en`` ...), each with every prompt of
    :data:`PROMPT_KEYS`.  Prompts are ``str.format`` templates; the allowed
    placeholders are ``{center}`` and ``{campaign}`` everywhere, ``{unit}``
    (required) and ``{track}`` in ``question``, ``{seconds}`` in
    ``comment_invitation`` and ``{caller_id}`` in ``sms_advance_notice``.  The
    ``question`` must read out every scale label of its language.
``[prompts.audio.<lang>]`` (optional)
    Prompt key -> audio file or URL to ``<Play>`` instead of speaking the text.

The default file is ``$MINPING_CONFIG`` when that is set, else the campaign
template shipped in the package (``minping/data/survey.toml``; ``minping init``
copies it into a new campaign folder).

Modules
-------
``model``
    The result objects (:class:`SurveyConfig` and its parts) and the schema's constants.
``calling``
    The ``[calling]`` section: :class:`CallingRules`, :class:`TimeWindow` and their
    checks (the schedule they drive is :mod:`minping.calling`).
``sections``
    The checks that build every other section.
``checks``
    The problem collector and how values are quoted in messages.
``loading``
    :func:`load_config`, :func:`check_config`, :class:`ConfigError`,
    :func:`default_config_path`.

References
----------
.. [1] Python Software Foundation, ``tomllib`` -- Parse TOML files,
   https://docs.python.org/3/library/tomllib.html
.. [2] TOML v1.0.0, https://toml.io/en/v1.0.0
.. [3] Twilio, TwiML ``<Say>``, ``<Gather>`` and ``<Play>``,
   https://www.twilio.com/docs/voice/twiml
"""

from __future__ import annotations

from minping.config.calling import CallingRules, TimeWindow
from minping.config.loading import ConfigError, check_config, default_config_path, load_config
from minping.config.model import (
    CONFIG_ENV_VAR,
    PROMPT_KEYS,
    RETRY_OUTCOMES,
    WEEKDAYS,
    WEIGHT_COMPONENTS,
    Campaign,
    Category,
    DeductionKind,
    Experiment,
    Flags,
    FrozenMap,
    Group,
    IvrSettings,
    Prompts,
    Scale,
    ScaleOption,
    SurveyConfig,
    Town,
    Track,
    Unit,
)

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
    "Experiment",
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
