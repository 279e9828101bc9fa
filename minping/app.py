"""The Flask application factory.

Nothing builds an app at import time: ``create_app(config)`` reads the settings
from the environment, lets ``config`` (a mapping, as tests pass it) override
them, opens the database, registers the runtime (:mod:`minping.runtime`: the clock,
the Twilio client and the survey configuration the blueprints share), the ``cati``
blueprint and, before Flask, the ``ivr`` webhooks' WSGI front.  The request helpers
are in :mod:`minping.db`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask, g, jsonify, request
from sqlalchemy import text

from minping.db import (  # noqa: F401  (settings_of, database_of, db_session: old import path)
    Database,
    close_session,
    database_of,
    db_session,
    instance_path,
    settings_of,
)
from minping.runtime import Runtime
from minping.settings import load_settings

#: Keys of ``create_app(config)`` that override :class:`~minping.settings.Settings`.
SETTING_KEYS = {
    "DATABASE_URL": "database_url",
    "SECRET_KEY": "secret_key",
    "TWILIO_ACCOUNT_SID": "twilio_account_sid",
    "TWILIO_AUTH_TOKEN": "twilio_auth_token",
    "TWILIO_FROM_NUMBER": "twilio_from_number",
    "MINPING_PUBLIC_URL": "public_url",
    "MINPING_CONFIG": "config_path",
    "VERIFY_SIGNATURES": "verify_signatures",
    "MINPING_ENV": "env",
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask("minping", instance_path=instance_path(), instance_relative_config=True)
    config = dict(config or {})
    environ = config.pop("ENVIRON", None)
    settings = load_settings(environ, instance_path=app.instance_path)
    overrides = {SETTING_KEYS[k]: config.pop(k) for k in list(config) if k in SETTING_KEYS}
    if overrides:
        settings = settings.with_overrides(**overrides)
        if settings.is_production and not settings.verify_signatures:
            from minping.settings import SettingsError

            raise SettingsError("Twilio signature checks cannot be turned off in production")

    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_lifetime_minutes),
        MAX_CONTENT_LENGTH=1 * 1024 * 1024,
        JSON_AS_ASCII=False,
    )
    app.config.update(config)
    app.extensions["minping.settings"] = settings
    db = Database(settings.database_url)
    app.extensions["minping.db"] = db
    # One runtime (clock, Twilio client, survey configuration) for every blueprint.
    app.extensions["minping.runtime"] = Runtime(
        settings, clock=config.get("MINPING_CLOCK"),
        twilio_client=config.get("MINPING_TWILIO_CLIENT"),
        survey_config=config.get("MINPING_SURVEY_CONFIG"))

    from cati.views import bp as cati_bp
    from ivr.webhooks import mount as mount_ivr

    app.register_blueprint(cati_bp)
    mount_ivr(app)  # /ivr/...: the webhooks' WSGI front, before Flask
    __import__("minping.headers", fromlist=["init_app"]).init_app(app)

    app.teardown_appcontext(close_session)

    request_log = logging.getLogger("minping.http")

    @app.before_request
    def _log_context():
        g.log_context = {
            "path": request.path,
            "request_id": request.headers.get("I-Twilio-Idempotency-Token")
            or request.headers.get("X-Request-Id")
            or uuid.uuid4().hex[:16],
        }

    @app.after_request
    def _log_request(response):
        if request.endpoint != "static":
            context = g.get("log_context", {})
            context["status"] = response.status_code
            if "user" not in context and g.get("user") is not None:
                context["user"] = getattr(g.user, "username", None)
            request_log.info("%s %s", request.method, request.path)
        return response

    @app.get("/")
    def root():
        """The site's root leads to the CATI screens (their log-in page when logged out)."""
        from flask import redirect, url_for

        return redirect(url_for("cati.index"))

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # the database is down: not ready
            return jsonify(status="unavailable", error=type(exc).__name__), 503
        return jsonify(status="ready")

    return app
