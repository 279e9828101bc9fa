"""What the simulator's parts share: constants, the API error, small form parsers."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator, Mapping
from typing import Any

_logger = logging.getLogger("ivr.simulator")
API_VERSION = "2010-04-01"
APPLICATION_ERROR_TEXT = "We are sorry, an application error has occurred. Goodbye."
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_OTHER_ADDRESS = re.compile(r"^(client:|sip:)\S+$")

Steps = Generator[float, None, Any]


class ApiError(Exception):
    """A REST request Twilio would refuse; rendered as Twilio's JSON error."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
                "status": self.status}


class _Event:
    """A scheduled callable; a cancelled one is skipped without moving the clock."""

    __slots__ = ("fn", "cancelled")

    def __init__(self, fn: Callable[[], None]):
        self.fn = fn
        self.cancelled = False


class _Goto:
    """A verb's outcome: request this URL and play what it returns."""

    def __init__(self, url: str, method: str, params: Mapping[str, str], purpose: str):
        self.url, self.method, self.params, self.purpose = url, method, dict(params), purpose


_END = object()  # a verb's outcome: the call is over


def valid_address(number: str) -> bool:
    """E.164 phone number, or a ``client:``/``sip:`` address."""
    return bool(_E164.match(number) or _OTHER_ADDRESS.match(number))


def _last(form: Mapping[str, list[str]], name: str) -> str | None:
    """The last value of a form field (Twilio takes the last of repeated ones)."""
    values = form.get(name)
    return values[-1] if values else None


def _bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() == "true"


def _int(value: str | None, default: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        return int(float(value))
    except ValueError:
        return default
