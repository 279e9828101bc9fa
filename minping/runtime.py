"""The app's runtime: the clock, the Twilio REST client and the survey configuration.

``create_app`` registers one :class:`Runtime` per app; the IVR webhooks and the
CATI screens both read the time, the client and the configuration from it
instead of wiring their own.  Tests and the field-period simulation swap in a
virtual clock and a simulator-backed client with :meth:`Runtime.use`::

    runtime_of(app).use(clock=clock.now, twilio_client=simulator_client(sim))
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["Runtime", "current_runtime", "runtime_of", "system_clock"]


def system_clock() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


class Runtime:
    """What the blueprints share beyond the database.

    Parameters
    ----------
    settings
        The app's :class:`~minping.settings.Settings`.
    clock
        A callable returning an aware UTC datetime (default: the system clock).
    twilio_client
        A ``twilio.rest.Client`` to use (default: built once from the settings,
        see :func:`ivr.gateway.rest_client`).
    survey_config
        The :class:`~minping.config.SurveyConfig` (default: loaded once from the
        settings' path).
    """

    def __init__(self, settings, *, clock: Callable[[], datetime] | None = None,
                 twilio_client: Any = None, survey_config: Any = None):
        self.settings = settings
        self.clock = clock or system_clock
        self._twilio_client = twilio_client
        self._given_client = twilio_client is not None
        self._survey_config = survey_config
        self._lock = threading.Lock()

    def use(self, *, clock: Callable[[], datetime] | None = None, twilio_client: Any = None,
            survey_config: Any = None) -> Runtime:
        """Replace the clock, the client or the configuration (the others are kept)."""
        if clock is not None:
            self.clock = clock
        if twilio_client is not None:
            self._twilio_client = twilio_client
            self._given_client = True
        if survey_config is not None:
            self._survey_config = survey_config
        return self

    def now(self) -> datetime:
        return self.clock()

    @property
    def has_telephony(self) -> bool:
        """Whether calls can be placed: a client was given, or the settings name a gateway.

        The simulator's default credentials without ``TWILIO_API_URL`` name none;
        the CATI screens then dial by hand.
        """
        from minping.settings import SIMULATOR_ACCOUNT_SID

        return (self._given_client or bool(self.settings.twilio_api_url)
                or self.settings.twilio_account_sid != SIMULATOR_ACCOUNT_SID)

    def twilio_client(self):
        """The REST client (built once, on first use, from the settings)."""
        if self._twilio_client is None:
            with self._lock:
                if self._twilio_client is None:
                    from ivr.gateway import rest_client

                    self._twilio_client = rest_client(self.settings)
        return self._twilio_client

    def survey_config(self):
        """The survey configuration (loaded once, on first use)."""
        if self._survey_config is None:
            with self._lock:
                if self._survey_config is None:
                    from minping.config import load_config

                    self._survey_config = load_config(self.settings.config_path)
        return self._survey_config


def runtime_of(app) -> Runtime:
    """The :class:`Runtime` ``create_app`` registered for ``app``."""
    return app.extensions["minping.runtime"]


def current_runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    from flask import current_app

    return runtime_of(current_app)
