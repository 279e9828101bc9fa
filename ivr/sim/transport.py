"""How the simulator reaches the webhook application.

Two implementations of :class:`WebhookTransport`:

* :class:`HttpWebhookTransport` sends real HTTP requests (``requests``);
* :class:`WsgiWebhookTransport` calls a WSGI application in-process through
  ``werkzeug.test.Client``: no sockets.

Both are given the *public* URL the application handed to Twilio (that is the
URL signed).  ``routes`` maps a public prefix to the address the request really
goes to, the way a reverse proxy would; a routed request carries the
``X-Forwarded-Proto``/``-Host``/``-For`` headers a proxy adds, so tests can check
an application behind a proxy (``werkzeug.middleware.proxy_fix.ProxyFix``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlencode, urlsplit

import requests
from werkzeug.test import Client as WerkzeugClient

#: Characters left unescaped in a GET query string.  werkzeug's ``request.url`` shows
#: them unescaped, so the URL a Flask application rebuilds is the URL that was signed.
QUERY_SAFE = "!\"$'()*,/:;<>?@[\\]^`{|}"


def query_url(url: str, params: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    """``url`` with ``params`` appended as its query string (how GET webhooks are sent)."""
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(list(params), safe=QUERY_SAFE)


class WebhookTimeout(Exception):
    """The application did not answer within the transport's timeout."""


class WebhookTransportError(Exception):
    """The request could not be delivered (connection refused, bad host...)."""


@dataclass(frozen=True)
class WebhookRequest:
    """One request to the application, as Twilio would send it."""

    method: str
    url: str
    params: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    timeout: float


@dataclass(frozen=True)
class WebhookResponse:
    status_code: int
    body: str
    content_type: str
    elapsed: float


@runtime_checkable
class WebhookTransport(Protocol):
    """Delivers a signed :class:`WebhookRequest` and returns the response.

    Raises :class:`WebhookTimeout` or :class:`WebhookTransportError`.
    """

    def send(self, request: WebhookRequest) -> WebhookResponse: ...


def route(url: str, routes: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Map a public URL to its transport URL and the proxy headers to add."""
    for public, internal in sorted(routes.items(), key=lambda kv: -len(kv[0])):
        public_base = public.rstrip("/")
        if url == public_base or url.startswith(public_base + "/") or url.startswith(
                public_base + "?"):
            parts = urlsplit(url)
            headers = {"X-Forwarded-Proto": parts.scheme, "X-Forwarded-Host": parts.netloc,
                       "X-Forwarded-For": "127.0.0.1"}
            return internal.rstrip("/") + url[len(public_base):], headers
    return url, {}


class HttpWebhookTransport:
    """Real HTTP to the application.

    Parameters
    ----------
    routes
        ``{public prefix: transport prefix}``, e.g.
        ``{"https://survey.example.org": "http://127.0.0.1:5000"}``.
    """

    def __init__(self, *, routes: Mapping[str, str] | None = None):
        self.routes = dict(routes or {})
        self._session = requests.Session()

    def send(self, request: WebhookRequest) -> WebhookResponse:
        url, extra = route(request.url, self.routes)
        headers = dict(request.headers) | extra
        start = time.monotonic()
        try:
            if request.method == "GET":
                response = self._session.get(query_url(url, request.params), headers=headers,
                                             timeout=request.timeout, allow_redirects=False)
            else:
                response = self._session.post(url, data=list(request.params), headers=headers,
                                              timeout=request.timeout, allow_redirects=False)
        except requests.Timeout as exc:
            raise WebhookTimeout(str(exc)) from exc
        except requests.RequestException as exc:
            raise WebhookTransportError(str(exc)) from exc
        return WebhookResponse(response.status_code, response.text,
                               response.headers.get("Content-Type", ""),
                               time.monotonic() - start)

    def close(self) -> None:
        self._session.close()


class WsgiWebhookTransport:
    """Calls a WSGI application in-process (no sockets).

    Every URL goes to ``app``.  Without ``routes`` the application sees exactly the
    public URL; with them it sees the transport address plus proxy headers.  A
    response slower than the request's timeout is reported as a timeout.  An
    exception the application lets through (Flask with ``TESTING``) propagates to
    the caller of ``run_until_idle``, so a test sees the application's bug itself.
    """

    def __init__(self, app, *, routes: Mapping[str, str] | None = None):
        self.app = app
        self.routes = dict(routes or {})
        # one client for every request (building one per request costs about a
        # millisecond); Twilio sends no cookies, so the client keeps none
        self._client = WerkzeugClient(app, use_cookies=False)

    def send(self, request: WebhookRequest) -> WebhookResponse:
        url, extra = route(request.url, self.routes)
        if request.method == "GET":
            url = query_url(url, request.params)
        parts = urlsplit(url)
        base_url = f"{parts.scheme}://{parts.netloc}"
        headers = dict(request.headers) | extra
        client = self._client
        start = time.monotonic()
        if request.method == "GET":
            response = client.open(parts.path or "/", base_url=base_url, method="GET",
                                   query_string=parts.query, headers=headers)
        else:
            response = client.open(parts.path or "/", base_url=base_url, method="POST",
                                   query_string=parts.query,
                                   data=urlencode(list(request.params)),
                                   content_type="application/x-www-form-urlencoded",
                                   headers=headers)
        elapsed = time.monotonic() - start
        try:
            body = response.get_data(as_text=True)
            status = response.status_code
            content_type = response.headers.get("Content-Type", "")
        finally:
            response.close()
        if elapsed > request.timeout:
            raise WebhookTimeout(f"{request.url} took {elapsed:.1f} s")
        return WebhookResponse(status, body, content_type, elapsed)
