"""Reading the TOML file: :func:`load_config`, :func:`check_config`, :class:`ConfigError`."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from minping.config.calling import _calling
from minping.config.checks import (
    _Check,
)
from minping.config.model import (
    _TOML_POSITION,
    CONFIG_ENV_VAR,
    SurveyConfig,
)
from minping.config.script import _script
from minping.config.sections import (
    _campaign,
    _deductions,
    _experiment,
    _flags,
    _groups,
    _ivr,
    _prompts,
    _scale,
    _towns,
    _tracks,
)
from minping.errors import MinpingError


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
    """``$MINPING_CONFIG`` if set, else the campaign template shipped in the package."""
    env = os.environ.get(CONFIG_ENV_VAR)
    if env:
        return Path(env).expanduser()
    from minping.resources import CAMPAIGN_TEMPLATE

    return CAMPAIGN_TEMPLATE


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
            "experiment",
            "script",
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
    experiment = _experiment(check, data)
    script = _script(check, data, languages)

    parts = (campaign, towns, tracks, scale, groups, deductions, flags, calling, ivr, prompts,
             experiment, script)
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
        experiment=experiment,
        script=script,
    )
