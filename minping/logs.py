"""Structured logs: one JSON object per line, with the case and call ids.

Code that handles a call or a case logs with ``extra={"case_id": ..., "call_sid": ...}``
(or sets ``flask.g.log_context``); the formatter adds those fields, so a
supervisor's question "what happened to case 1234?" is one ``grep`` away.
Set ``MINPING_LOG_FORMAT=text`` for human-readable lines on a terminal.

Security events (``cati.security``) carry ``event``, ``username``, ``address``,
``role`` and ``reason``.  No line holds a phone number: both formatters replace
any run of seven or more digits (with ``+``, spaces or dashes between them) by
``[number]``, in the message and in tracebacks alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

CONTEXT_FIELDS = ("case_id", "call_sid", "attempt_id", "user", "request_id", "path", "status",
                  "event", "username", "address", "role", "reason")

#: A phone number in any form: 7+ digits, possibly split by spaces, dashes or brackets
#: (an ISO date is not one), standing on its own: digits inside an ASCII word such as a
#: Twilio SID (``CA6ca1e…0061597…``) or a hex request id are not a number.  Chinese text
#: around a number, or a URL-encoded ``+`` (``%2B86…``), does not protect it.
PHONE_LIKE = re.compile(
    r"(?:(?<=%2B)|(?<=%2b)|(?<![0-9A-Za-z_.]))(?!\d{4}-\d\d-\d\d)\+?\d(?:[ \-()]{0,2}\d){6,}(?![0-9A-Za-z_])")


def redact(text: str) -> str:
    """``text`` with every phone-number-like run of digits replaced by ``[number]``."""
    return PHONE_LIKE.sub("[number]", text)


class RedactingFormatter(logging.Formatter):
    """A text formatter that never prints a phone number."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        context = _flask_context()
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is None:
                value = context.get(key)
            if value is not None:
                data[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


#: The log context of a request answered outside Flask (the IVR webhooks' front,
#: :mod:`ivr.webhooks`), read like ``flask.g.log_context``.
REQUEST_CONTEXT: ContextVar[dict | None] = ContextVar("minping_request_context", default=None)


def _flask_context() -> dict:
    context = REQUEST_CONTEXT.get()
    if context is not None:
        return dict(context)
    try:
        from flask import g, has_app_context

        if has_app_context():
            return dict(getattr(g, "log_context", {}) or {})
    except ImportError:  # pragma: no cover
        pass
    return {}


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Send minping's logs to stderr, as JSON lines unless ``MINPING_LOG_FORMAT=text``."""
    level = (level or os.environ.get("MINPING_LOG_LEVEL", "INFO")).upper()
    fmt = fmt or os.environ.get("MINPING_LOG_FORMAT", "json")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "text":
        handler.setFormatter(
            RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    for name in ("minping", "ivr", "cati", "sampling", "scoring"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
