"""WSGI entry point of the IVR benchmark: the minping app plus a bare endpoint.

``gunicorn 'bench.ivr_wsgi:app'`` serves the application as ``minping serve``
builds it (:func:`minping.commands.serve.wsgi_app`: settings from the environment,
log-ins gated) and, on the same server, ``POST /bench/bare``: a bare Flask view
that returns the same TwiML as a question without checking a signature or
touching the database -- the baseline of ``bench/ivr.py``.
"""

from __future__ import annotations

from flask import Response

from ivr import flow
from minping.config import load_config

try:
    from minping.commands.serve import wsgi_app
except ImportError:  # a version without the log-in gate (a baseline run)
    from minping.app import create_app as wsgi_app

app = wsgi_app()
_cfg = load_config()
_lang = _cfg.campaign.default_language
_BARE = flow.question(_cfg, _lang, unit=_cfg.units[1].name, track=_cfg.tracks[0].label(_lang),
                      action="https://bench.invalid/ivr/answer?attempt=1&pos=1&try=0")


@app.post("/bench/bare")
def bare() -> Response:
    return Response(_BARE, mimetype="text/xml")
