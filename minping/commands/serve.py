"""``minping serve``: the app on gunicorn (the webhooks and the CATI screens)."""

from __future__ import annotations

import os

import click


def _gunicorn_app(options: dict):
    from gunicorn.app.base import BaseApplication

    class MinpingServer(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            # Every worker builds its own app (its own database pool).
            from minping.app import create_app
            from minping.logs import configure_logging

            configure_logging()
            return create_app()

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
