"""How the simulator reaches the webhook application.

Two implementations of :class:`WebhookTransport`:

* :class:`HttpWebhookTransport` sends real HTTP requests (``requests``);
* :class:`WsgiWebhookTransport` calls a WSGI application in-process (the environ
  built as ``werkzeug.test.Client`` builds it): no sockets.

Both are given the *public* URL the application handed to Twilio (that is the
URL signed).  ``routes`` maps a public prefix to the address the request really
goes to, the way a reverse proxy would; a routed request carries the
``X-Forwarded-Proto``/``-Host``/``-For`` headers a proxy adds, so tests can check
an application behind a proxy (``werkzeug.middleware.proxy_fix.ProxyFix``).
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlencode, urlsplit

import requests

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

    The WSGI environ is built directly (the one werkzeug's test client would build
    for the same request: method, path, query string, host, scheme, body and
    headers) and the application is called as a WSGI server calls it; building it
    through ``werkzeug.test.Client`` cost several times the dictionary itself, once
    per webhook of a field period of tens of thousands.
    """

    def __init__(self, app, *, routes: Mapping[str, str] | None = None):
        self.app = app
        self.routes = dict(routes or {})
        self._errors = io.StringIO()

    def environ(self, method: str, url: str, body: bytes | None,
                headers: Mapping[str, str]) -> dict:
        """The WSGI environ of one request to ``url`` (absolute)."""
        parts = urlsplit(url)
        https = parts.scheme == "https"
        host = parts.netloc
        server_name, _, port = host.partition(":")
        path = unquote(parts.path or "/")
        raw_uri = parts.path or "/"
        if parts.query:
            raw_uri += "?" + parts.query
        environ = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path.encode().decode("latin-1"),
            "QUERY_STRING": parts.query,
            "REQUEST_URI": raw_uri,
            "RAW_URI": raw_uri,
            "SERVER_NAME": server_name,
            "SERVER_PORT": port or ("443" if https else "80"),
            "HTTP_HOST": host,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": parts.scheme or "http",
            "wsgi.input": io.BytesIO(body or b""),
            "wsgi.errors": self._errors,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if body is not None:
            environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
            environ["CONTENT_LENGTH"] = str(len(body))
        else:
            environ["CONTENT_LENGTH"] = "0"
        for key, value in headers.items():
            name = "HTTP_" + key.upper().replace("-", "_")
            environ[name] = f"{environ[name]}, {value}" if name in environ else value
        return environ

    def send(self, request: WebhookRequest) -> WebhookResponse:
        url, extra = route(request.url, self.routes)
        headers = dict(request.headers) | extra
        body = None
        if request.method == "GET":
            url = query_url(url, request.params)
        else:
            body = urlencode(list(request.params)).encode("ascii")
        environ = self.environ(request.method, url, body, headers)
        reply: list = []

        def start_response(status, response_headers, exc_info=None):
            reply[:] = [status, response_headers]
            return lambda _data: None

        start = time.monotonic()
        chunks = self.app(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        elapsed = time.monotonic() - start
        status, response_headers = reply
        content_type = next((v for k, v in response_headers if k.lower() == "content-type"), "")
        charset = "utf-8"
        if "charset=" in content_type:
            charset = content_type.split("charset=", 1)[1].split(";")[0].strip() or charset
        if elapsed > request.timeout:
            raise WebhookTimeout(f"{request.url} took {elapsed:.1f} s")
        return WebhookResponse(int(status.split(" ", 1)[0]), data.decode(charset, "replace"),
                               content_type, elapsed)
