"""Security headers on every page (registered by :func:`minping.app.create_app`).

* ``Content-Security-Policy``: scripts, styles and connections only from the
  app itself; the few inline ``<script>`` blocks carry the request's nonce
  (``csp_nonce()`` in templates); no framing (``frame-ancestors 'none'``), no
  plugins, forms post only to the app;
* ``X-Frame-Options: DENY`` (older browsers), ``X-Content-Type-Options:
  nosniff``, ``Referrer-Policy: same-origin``;
* ``Strict-Transport-Security`` when the public URL is https;
* ``Cache-Control: no-store`` on every CATI page and JSON answer (they show
  names, numbers and answers); static files keep their caching.

The Twilio webhooks (``/ivr``) never reach these hooks: their WSGI front
(:mod:`ivr.webhooks`) answers before Flask and sends only ``nosniff``, since their
TwiML is read by Twilio, not a browser, and their path is the hot one.
"""

from __future__ import annotations

import secrets

from flask import Flask, g, request

HSTS = "max-age=31536000; includeSubDomains"


def csp_nonce() -> str:
    nonce = g.get("csp_nonce")
    if nonce is None:
        nonce = g.csp_nonce = secrets.token_urlsafe(16)
    return nonce


def policy(nonce: str) -> str:
    return ("default-src 'self'; "
            f"script-src 'self' 'nonce-{nonce}'; "
            "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def init_app(app: Flask) -> None:
    https = app.extensions["minping.settings"].public_url.startswith("https://")

    @app.context_processor
    def _nonce():
        return {"csp_nonce": csp_nonce}

    @app.after_request
    def _headers(response):
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Content-Security-Policy", policy(csp_nonce()))
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        if https:
            h.setdefault("Strict-Transport-Security", HSTS)
        if request.blueprint == "cati" and request.endpoint != "cati.static":
            h["Cache-Control"] = "no-store"
            h["Pragma"] = "no-cache"
        return response
