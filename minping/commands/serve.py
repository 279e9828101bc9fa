"""``minping serve``: the app on gunicorn (the webhooks and the CATI screens).

Log-ins cost a scrypt hash each (about 0.1 s of CPU and 32 MB): a flood of them
must not take the workers and the CPU from the IVR webhooks, which a caller waits
on.  Two things bound them:

* :class:`LoginGate` lets at most ``MINPING_LOGIN_SLOTS`` (default 1) log-ins per
  worker process be checked at once and ``MINPING_LOGIN_QUEUE`` (default 2) more wait
  for their turn; another arriving meanwhile is answered at once with 503 and
  ``Retry-After: 1`` before any work (the log-in page then says to try again and
  comes back by itself; the case screen's password prompt shows the same message).
  Webhooks never wait behind a log-in for a thread.
* the hashes run in helper processes at the lowest CPU priority
  (``MINPING_LOGIN_PRIORITY``: ``idle`` = ``SCHED_IDLE``, the default; ``low`` = nice
  19; ``normal`` = in the request's thread, as before): they take only CPU that
  nothing else wants (:func:`minping.users.check_hashes_at_low_priority`).

With ``--ivr-bind`` the IVR webhooks get worker processes of their own: ``minping
serve`` starts a second gunicorn (``--pool ivr``) on that address, whose app answers
only ``/ivr/...`` and ``/healthz`` (:class:`IvrOnly`), and runs the rest (the CATI
screens, log-ins) at a lower CPU priority (``--web-nice``).  The reverse proxy sends
``/ivr/`` to the IVR address: a log-in flood then neither takes the webhooks'
threads nor, on a busy machine, their CPU.
"""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
import threading

import click

#: Log-ins checked at once per worker process (env ``MINPING_LOGIN_SLOTS``), and how
#: many more may wait for their turn (env ``MINPING_LOGIN_QUEUE``).
DEFAULT_LOGIN_SLOTS = 1
DEFAULT_LOGIN_QUEUE = 2
#: The log-in form and the case screen's password prompt (both check a password).
LOGIN_PATHS = frozenset({"/cati/login", "/cati/reauth"})
BUSY_TEXT = ("Too many log-ins at this moment: please try again in a second.",
             "登录人数过多，请稍后重试。")


class LoginGate:
    """WSGI middleware: at most ``slots`` log-in POSTs in this process at once (the
    ones checked and the ones waiting for the hashing process); the next is answered
    503 with ``Retry-After`` before any work."""

    RETRY_AFTER = 1

    def __init__(self, app, slots: int = DEFAULT_LOGIN_SLOTS):
        self.app = app
        self.slots = threading.BoundedSemaphore(slots)
        self.refused = 0

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") not in LOGIN_PATHS:
            return self.app(environ, start_response)
        if not self.slots.acquire(blocking=False):
            self.refused += 1
            return self.busy(environ, start_response)
        try:  # the response is built here (Flask returns it whole), so the slot ends with it
            body = self.app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                if hasattr(body, "close"):
                    body.close()
        finally:
            self.slots.release()

    def busy(self, environ, start_response):
        """503 at once: JSON for the case screen's password prompt (it shows ``error``),
        else a page that says to try again and brings the log-in form back."""
        accept = environ.get("HTTP_ACCEPT", "")
        if ("json" in environ.get("CONTENT_TYPE", "") or "json" in accept
                or environ.get("HTTP_X_CSRF_TOKEN")):
            kind = "application/json"
            body = json.dumps({"ok": False, "busy": True, "error": " ".join(BUSY_TEXT[::-1])},
                              ensure_ascii=False).encode()
        else:
            kind = "text/html; charset=utf-8"
            query = environ.get("QUERY_STRING", "")
            again = html.escape(environ.get("SCRIPT_NAME", "") + environ["PATH_INFO"]
                                + ("?" + query if query else ""))
            body = (f'<!doctype html><meta charset=utf-8><title>minping</title>'
                    f'<meta http-equiv="refresh" content="{self.RETRY_AFTER + 1};url={again}">'
                    f'<p>{BUSY_TEXT[1]}</p><p>{BUSY_TEXT[0]}</p>'
                    f'<p><a href="{again}">登录 / Log in</a></p>').encode()
        start_response("503 Service Unavailable", [
            ("Content-Type", kind), ("Retry-After", str(self.RETRY_AFTER)),
            ("Cache-Control", "no-store"), ("Content-Length", str(len(body)))])
        return [body]


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


def _positive_env(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else default


def login_slots() -> int:
    """Log-ins checked at once per worker process (``MINPING_LOGIN_SLOTS``)."""
    return _positive_env("MINPING_LOGIN_SLOTS", DEFAULT_LOGIN_SLOTS)


def login_queue() -> int:
    """Log-ins waiting for their turn per worker process (``MINPING_LOGIN_QUEUE``; 0
    refuses every log-in that finds the slots taken)."""
    value = os.environ.get("MINPING_LOGIN_QUEUE", "").strip()
    return int(value) if value.isdigit() else DEFAULT_LOGIN_QUEUE


def wsgi_app(slots: int | None = None, *, pool: str = "all"):
    """The app as ``minping serve`` runs it: :func:`minping.app.create_app` behind a
    :class:`LoginGate`, its password checks at the lowest CPU priority
    (``pool="ivr"``: behind :class:`IvrOnly` instead)."""
    from minping.app import create_app
    from minping.users import check_hashes_at_low_priority

    app = create_app()
    if pool == "ivr":
        app.wsgi_app = IvrOnly(app.wsgi_app)
    else:
        slots = slots or login_slots()
        check_hashes_at_low_priority(slots, os.environ.get("MINPING_LOGIN_PRIORITY", "idle"))
        app.wsgi_app = LoginGate(app.wsgi_app, slots + login_queue())
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
    from minping.users import LOGIN_PRIORITIES

    priority = os.environ.get("MINPING_LOGIN_PRIORITY", "idle")
    if priority not in LOGIN_PRIORITIES:
        raise click.ClickException(f"MINPING_LOGIN_PRIORITY: one of "
                                   f"{', '.join(LOGIN_PRIORITIES)}, got {priority!r}")
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
