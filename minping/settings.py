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
SIMULATOR_FROM_NUMBER = "+8657100000000"

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

    lifetime_raw = env_vars.get("MINPING_SESSION_MINUTES", "480")
    try:
        lifetime = int(lifetime_raw)
        if lifetime <= 0:
            raise ValueError
    except ValueError:
        raise SettingsError(
            f"MINPING_SESSION_MINUTES: must be a positive whole number, got {lifetime_raw!r}"
        ) from None

    secret = env_vars.get("MINPING_SECRET_KEY") or (
        "" if production else _dev_secret_key(instance)
    )
    return Settings(
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
    )


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
