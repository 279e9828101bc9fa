"""``minping serve``: the app on gunicorn (the webhooks and the CATI screens).

Log-ins cost a scrypt hash each (tens of milliseconds of CPU and 32 MB): a flood
of them must not take the workers and the CPU from the IVR webhooks, which a
caller waits on.  :class:`LoginGate` lets at most ``login_slots`` log-ins per
worker process run at once; another arriving meanwhile is answered at once with
503 and ``Retry-After: 1`` (the CATI log-in page asks to try again), before any
hashing.  Webhooks never wait behind a log-in for a thread.

With ``--ivr-bind`` the IVR webhooks get worker processes of their own: ``minping
serve`` starts a second gunicorn (``--pool ivr``) on that address, whose app answers
only ``/ivr/...`` and ``/healthz`` (:class:`IvrOnly`), and runs the rest (the CATI
screens, log-ins) at a lower CPU priority (``--web-nice``).  The reverse proxy sends
``/ivr/`` to the IVR address: a log-in flood then neither takes the webhooks'
threads nor, on a busy machine, their CPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


class IvrOnly:
    """WSGI middleware of the IVR pool: ``/ivr/...`` and ``/healthz``; 404 for the rest.

    The IVR pool's workers never hash a password or render a CATI page, whatever
    reaches them.
    """

    NOT_HERE = b"404 Not Found: this server answers the Twilio webhooks (/ivr/) only\n"

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/ivr/") or path == "/healthz":
            return self.app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain"),
                                          ("Content-Length", str(len(self.NOT_HERE)))])
        return [self.NOT_HERE]


def login_slots() -> int:
    value = os.environ.get("MINPING_LOGIN_SLOTS", "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else DEFAULT_LOGIN_SLOTS


def wsgi_app(slots: int | None = None, *, pool: str = "all"):
    """The app as ``minping serve`` runs it: :func:`minping.app.create_app` behind a
    :class:`LoginGate` (``pool="ivr"``: behind :class:`IvrOnly` instead)."""
    from minping.app import create_app

    app = create_app()
    if pool == "ivr":
        app.wsgi_app = IvrOnly(app.wsgi_app)
    else:
        app.wsgi_app = LoginGate(app.wsgi_app, slots or login_slots())
    return app


def _gunicorn_app(options: dict, pool: str = "all"):
    from gunicorn.app.base import BaseApplication

    class MinpingServer(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                if key in self.cfg.settings:  # (a setting of a newer gunicorn: skipped)
                    self.cfg.set(key, value)

        def load(self):
            # Every worker builds its own app (its own database pool).
            from minping.logs import configure_logging

            configure_logging()
            return wsgi_app(pool=pool)

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
@click.option("--ivr-bind", envvar="MINPING_IVR_BIND", default=None,
              help="host:port of a separate worker pool for the Twilio webhooks (/ivr/); "
                   "route /ivr/ there at the reverse proxy (env MINPING_IVR_BIND).")
@click.option("--ivr-workers", envvar="MINPING_IVR_WORKERS", type=click.IntRange(1), default=2,
              show_default=True, help="Worker processes of the IVR pool.")
@click.option("--ivr-threads", envvar="MINPING_IVR_THREADS", type=click.IntRange(1), default=8,
              show_default=True, help="Threads per worker of the IVR pool.")
@click.option("--web-nice", envvar="MINPING_WEB_NICE", type=click.IntRange(0, 19), default=5,
              show_default=True,
              help="With --ivr-bind: how much lower the CPU priority of the other pool is.")
@click.option("--pool", type=click.Choice(["all", "ivr"]), default="all", hidden=True)
@click.option("--check", is_flag=True, help="Only check the settings and the database, then exit.")
def serve(bind: str, workers: int, threads: int, timeout: int, ivr_bind: str | None,
          ivr_workers: int, ivr_threads: int, web_nice: int, pool: str, check: bool) -> None:
    """Serve the app with gunicorn.

    The settings are checked before any worker starts: in production a missing
    secret stops the server with a message naming it.  With ``--ivr-bind`` the
    webhooks get a pool of their own (see the module's text).
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
    ivr_pool = None
    if ivr_bind and pool == "all":
        ivr_pool = subprocess.Popen([
            sys.executable, "-c", "from minping.cli import main; main()",
            "serve", "--pool", "ivr", "--bind", ivr_bind,
            "--workers", str(ivr_workers), "--threads", str(ivr_threads),
            "--timeout", str(timeout)])
        click.echo(f"minping: IVR webhooks served by their own pool at {ivr_bind} "
                   f"(pid {ivr_pool.pid}); the rest at {bind}, nice +{web_nice}", err=True)
        if web_nice:
            os.nice(web_nice)  # inherited by this pool's workers, not by the IVR pool
    try:
        _run_pool(bind, workers, threads, timeout, pool)
    finally:
        if ivr_pool is not None and ivr_pool.poll() is None:
            ivr_pool.send_signal(signal.SIGTERM)
            try:
                ivr_pool.wait(timeout=30)
            except subprocess.TimeoutExpired:
                ivr_pool.kill()


def _run_pool(bind: str, workers: int, threads: int, timeout: int, pool: str) -> None:
    _gunicorn_app({
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": timeout,
        "graceful_timeout": 20,
        "accesslog": "-",
        "forwarded_allow_ips": os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        "proc_name": "minping-ivr" if pool == "ivr" else "minping",
        # gunicorn 27's control socket has one default path: two pools would share it
        "control_socket_disable": True,
    }, pool).run()
