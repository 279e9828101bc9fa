"""``minping serve``: the app on gunicorn (the webhooks and the CATI screens).

Log-ins cost a scrypt hash each (tens of milliseconds of CPU and 32 MB): a flood
of them must not take the workers and the CPU from the IVR webhooks, which a
caller waits on.  :class:`LoginGate` lets at most ``login_slots`` log-ins per
worker process run at once; another arriving meanwhile is answered at once with
503 and ``Retry-After: 1`` (the CATI log-in page asks to try again), before any
hashing.  Webhooks never wait behind a log-in for a thread.
"""

from __future__ import annotations

import os
import threading

import click

#: Log-ins hashed at once per worker process (env ``MINPING_LOGIN_SLOTS``).
DEFAULT_LOGIN_SLOTS = 1
LOGIN_PATHS = frozenset({"/cati/login"})
BUSY_PAGE = ("<!doctype html><meta charset=utf-8><title>minping</title>"
             "<p>Too many log-ins at this moment. Please try again in a second.</p>"
             "<p>登录人数过多，请稍后重试。</p>").encode()


class LoginGate:
    """WSGI middleware: at most ``slots`` log-in POSTs run at once in this process."""

    def __init__(self, app, slots: int = DEFAULT_LOGIN_SLOTS):
        self.app = app
        self.slots = threading.BoundedSemaphore(slots)
        self.refused = 0

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") not in LOGIN_PATHS:
            return self.app(environ, start_response)
        if not self.slots.acquire(blocking=False):
            self.refused += 1
            start_response("503 Service Unavailable", [
                ("Content-Type", "text/html; charset=utf-8"), ("Retry-After", "1"),
                ("Content-Length", str(len(BUSY_PAGE)))])
            return [BUSY_PAGE]
        try:  # the response is built here (Flask returns it whole), so the slot ends with it
            body = self.app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                if hasattr(body, "close"):
                    body.close()
        finally:
            self.slots.release()


def login_slots() -> int:
    value = os.environ.get("MINPING_LOGIN_SLOTS", "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else DEFAULT_LOGIN_SLOTS


def wsgi_app(slots: int | None = None):
    """The app as ``minping serve`` runs it: :func:`minping.app.create_app` behind a
    :class:`LoginGate`."""
    from minping.app import create_app

    app = create_app()
    app.wsgi_app = LoginGate(app.wsgi_app, slots or login_slots())
    return app


def _gunicorn_app(options: dict):
    from gunicorn.app.base import BaseApplication

    class MinpingServer(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            # Every worker builds its own app (its own database pool).
            from minping.logs import configure_logging

            configure_logging()
            return wsgi_app()

    return MinpingServer()


@click.command("serve")
@click.option("--bind", envvar="MINPING_BIND", default="127.0.0.1:5000", show_default=True,
              help="host:port to listen on (env MINPING_BIND); put a reverse proxy in front.")
@click.option("--workers", envvar="MINPING_WORKERS", type=click.IntRange(1), default=2,
              show_default=True, help="Worker processes (env MINPING_WORKERS).")
@click.option("--threads", envvar="MINPING_THREADS", type=click.IntRange(1), default=8,
              show_default=True, help="Threads per worker (env MINPING_THREADS).")
@click.option("--timeout", type=click.IntRange(1), default=30, show_default=True,
              help="Seconds before a stuck worker is restarted (Twilio gives up after 15 s).")
@click.option("--check", is_flag=True, help="Only check the settings and the database, then exit.")
def serve(bind: str, workers: int, threads: int, timeout: int, check: bool) -> None:
    """Serve the app with gunicorn.

    The settings are checked before any worker starts: in production a missing
    secret stops the server with a message naming it.
    """
    from sqlalchemy import text

    from minping.app import create_app, database_of, settings_of

    app = create_app()  # raises SettingsError naming what is missing
    settings = settings_of(app)
    from ivr.gateway import deliverability_problems
    from minping.config import load_config
    from minping.settings import SIMULATOR_ACCOUNT_SID

    real = settings.twilio_account_sid != SIMULATOR_ACCOUNT_SID and not settings.twilio_api_url
    refused = real and deliverability_problems(load_config(settings.config_path),
                                               from_number=settings.twilio_from_number)
    if refused:  # Twilio would refuse these calls or messages: say which setting
        raise click.ClickException("Twilio would refuse: " + "; ".join(refused))
    db = database_of(app)
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        db.dispose()
    from minping.db import schema_problem

    problem = schema_problem(db.url)  # a schema never created or not upgraded: say so now
    if problem:
        raise click.ClickException(problem)
    click.echo(f"minping {settings.env}: database reachable; webhooks at "
               f"{settings.public_url}/ivr/ (signatures "
               f"{'checked' if settings.verify_signatures else 'NOT checked'})", err=True)
    if check:
        return
    _gunicorn_app({
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": timeout,
        "graceful_timeout": 20,
        "accesslog": "-",
        "forwarded_allow_ips": os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        "proc_name": "minping",
    }).run()
