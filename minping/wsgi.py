"""WSGI entry point for gunicorn: ``gunicorn 'minping.wsgi:app'``.

The app is built from the environment when gunicorn imports this module (never
when minping itself is imported).
"""

from minping.app import create_app
from minping.logs import configure_logging

configure_logging()
app = create_app()
