"""Settings from the environment.

Secrets (the session key, Twilio credentials) only ever come from the
environment.  Three environments:

``development`` (default)
    Safe defaults: a SQLite file under the instance folder, a session key kept in
    the instance folder (created on first use, never committed), Twilio
    credentials that only the local simulator accepts.  Signature checks may be
    turned off explicitly with ``MINPING_VERIFY_SIGNATURES=0``.
``testing``
    Like development; tests pass their own values.
``production``
    Every secret is required; a missing one is a start-up error that names it.
    Signature checks cannot be turned off.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from minping.errors import MinpingError

ENVIRONMENTS = ("development", "testing", "production")

#: Credentials the local Twilio simulator accepts; never valid at Twilio.
SIMULATOR_ACCOUNT_SID = "AC" + "0" * 32
SIMULATOR_AUTH_TOKEN = "simulator-auth-token"
#: The simulated account's caller ID: not a +86 number, which Twilio presents on calls
#: to mainland China only through a BYOC trunk (README, "Twilio in mainland China");
#: the simulator applies that rule (:func:`ivr.gateway.twilio_refusal`).
SIMULATOR_FROM_NUMBER = "+85230010000"
#: The simulated account's Messaging Service (SMS to mainland China go through one).
SIMULATOR_MESSAGING_SERVICE_SID = "MG" + "0" * 32

REQUIRED_IN_PRODUCTION = (
    ("MINPING_SECRET_KEY", "secret_key"),
    ("DATABASE_URL", "database_url"),
    ("TWILIO_ACCOUNT_SID", "twilio_account_sid"),
    ("TWILIO_AUTH_TOKEN", "twilio_auth_token"),
    ("TWILIO_FROM_NUMBER", "twilio_from_number"),
    ("MINPING_PUBLIC_URL", "public_url"),
)


class SettingsError(MinpingError):
    """The environment does not give what this environment needs."""


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    secret_key: str
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_from_number: str
    public_url: str
    twilio_api_url: str | None
    config_path: str | None
    verify_signatures: bool
    instance_path: str
    session_lifetime_minutes: int = 480
    session_idle_minutes: int = 30

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def with_overrides(self, **changes) -> Settings:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)


def default_sqlite_url(instance_path: str | os.PathLike) -> str:
    return f"sqlite:///{Path(instance_path) / 'minping.sqlite'}"


def _dev_secret_key(instance_path: Path) -> str:
    """A per-installation key kept in the instance folder (development only)."""
    path = instance_path / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        instance_path.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        path.write_text(key)
        path.chmod(0o600)
        return key


def _flag(value: str, name: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected 1/0, true/false, yes/no or on/off, got {value!r}")


def load_settings(
    environ: Mapping[str, str] | None = None, *, instance_path: str | os.PathLike
) -> Settings:
    """Read the settings from ``environ`` (default ``os.environ``).

    Raises
    ------
    SettingsError
        In production when a required variable is missing, or when a value is
        malformed; the message names every variable at fault.
    """
    env_vars = os.environ if environ is None else environ
    instance = Path(instance_path)
    env = env_vars.get("MINPING_ENV", "development").strip().lower()
    if env not in ENVIRONMENTS:
        raise SettingsError(f"MINPING_ENV: must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")
    production = env == "production"

    if production:
        missing = [name for name, _ in REQUIRED_IN_PRODUCTION if not env_vars.get(name, "").strip()]
        if missing:
            raise SettingsError(
                "production needs these environment variables, which are not set: "
                + ", ".join(missing)
            )

    verify = True
    if "MINPING_VERIFY_SIGNATURES" in env_vars:
        verify = _flag(env_vars["MINPING_VERIFY_SIGNATURES"], "MINPING_VERIFY_SIGNATURES")
        if production and not verify:
            raise SettingsError(
                "MINPING_VERIFY_SIGNATURES: Twilio signature checks cannot be turned off in production"
            )

    lifetime = _minutes(env_vars, "MINPING_SESSION_MINUTES", 720)
    idle = _minutes(env_vars, "MINPING_SESSION_IDLE_MINUTES", 30)

    secret = env_vars.get("MINPING_SECRET_KEY") or (
        "" if production else _dev_secret_key(instance)
    )
    settings = Settings(
        env=env,
        database_url=normalise_database_url(
            env_vars.get("DATABASE_URL") or default_sqlite_url(instance)
        ),
        secret_key=secret,
        twilio_account_sid=env_vars.get("TWILIO_ACCOUNT_SID") or SIMULATOR_ACCOUNT_SID,
        twilio_auth_token=env_vars.get("TWILIO_AUTH_TOKEN") or SIMULATOR_AUTH_TOKEN,
        twilio_from_number=env_vars.get("TWILIO_FROM_NUMBER") or SIMULATOR_FROM_NUMBER,
        public_url=(env_vars.get("MINPING_PUBLIC_URL") or "http://127.0.0.1:5000").rstrip("/"),
        twilio_api_url=env_vars.get("TWILIO_API_URL") or None,
        config_path=env_vars.get("MINPING_CONFIG") or None,
        verify_signatures=verify,
        instance_path=str(instance),
        session_lifetime_minutes=lifetime,
        session_idle_minutes=idle,
    )
    if production:
        check_production(settings)
    return settings


#: Shortest ``MINPING_SECRET_KEY`` production accepts (``secrets.token_hex(32)`` has 64).
MIN_SECRET_KEY = 32


def check_production(settings: Settings) -> None:
    """Refuse weak production settings: a short session key, a public URL without https
    (the session cookie's Secure flag follows the URL's scheme)."""
    problems = []
    if len(settings.secret_key) < MIN_SECRET_KEY:
        problems.append(f"MINPING_SECRET_KEY: must have at least {MIN_SECRET_KEY} characters, "
                        f"got {len(settings.secret_key)} (make one with "
                        "`python -c 'import secrets; print(secrets.token_hex(32))'`)")
    if not settings.public_url.startswith("https://"):
        problems.append(f"MINPING_PUBLIC_URL: must start with https:// in production, got "
                        f"{settings.public_url!r}")
    if problems:
        raise SettingsError("weak production settings: " + "; ".join(problems))


def _minutes(env_vars: Mapping[str, str], name: str, default: int) -> int:
    raw = env_vars.get(name, str(default))
    try:
        value = int(raw)
        if value <= 0:
            raise ValueError
    except ValueError:
        raise SettingsError(f"{name}: must be a positive whole number, got {raw!r}") from None
    return value


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
