"""Plain ASGI middleware of the API: the request body limit, the input guard and the
access log (which also gives every request its id: ``X-Request-Id`` as sent, or a new one,
echoed on the response and carried by every log line of the request, see
:class:`RequestIdFilter`).

Plain ASGI rather than ``@app.middleware("http")``: that wrapper runs every response
through an extra task and memory stream, which cost more than the queries themselves.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar
from urllib.parse import unquote_to_bytes

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, api_error_response, error_response

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_PATH_BYTES",
    "MAX_QUERY_BYTES",
    "REQUEST_ID",
    "AccessLog",
    "BodyLimit",
    "InputGuard",
    "RequestIdFilter",
    "input_problem",
    "request_id_of",
]

logger = logging.getLogger("api.access")

MAX_BODY_BYTES = 256 * 1024
"""Largest request body we read (the biggest legitimate one, 500 DIDs, is ~30 KB)."""


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before anything buffers them.

    A declared ``Content-Length`` is checked up front; a chunked body is counted as it
    arrives and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bodyless = scope.get("http_version") in ("1.0", "1.1")
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await _too_large(send, self.limit)
                    return
                bodyless = bodyless and int(value) == 0
            elif name == b"transfer-encoding":
                bodyless = False
        if bodyless:
            # HTTP/1.x without Content-Length or Transfer-Encoding: the body is empty by
            # definition (RFC 9112 §6.3), nothing to count (most GETs; saves two wrappers).
            await self.app(scope, receive, send)
            return
        seen = 0
        refused = False
        started = False

        async def counted_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Answer now and tell the app the client is gone: it stops reading.
                    refused = True
                    if not started:
                        await _too_large(send, self.limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not refused:  # once we answered 413, the app's own answer is dropped
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise


async def _too_large(send: Send, limit: int) -> None:
    response = ApiError(413, "payload_too_large", f"request body larger than {limit} bytes")
    await api_error_response(response)({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


MAX_PATH_BYTES = 2048
"""Longest request path we serve (percent-escaped, as sent); handles, DIDs, slugs and tag
names are far shorter."""
MAX_QUERY_BYTES = 8192
"""Longest query string we serve (percent-escaped, as sent)."""


def _text_problem(raw: bytes) -> str | None:
    """Why percent-decoded ``raw`` is no text PostgreSQL can hold, or ``None``."""
    try:
        text = raw.decode("utf-8")  # strict: invalid escapes and encoded surrogates fail
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    if "\x00" in text:
        return "contains a NUL character"
    return None


def _string_problem(text: str) -> str | None:
    """:func:`_text_problem` for text a server already decoded."""
    if text.isascii():
        return "contains a NUL character" if "\x00" in text else None
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate"
    return _text_problem(raw)


def input_problem(scope: Scope) -> tuple[int, str] | None:
    """``(status, message)`` when the request's path or query string cannot be answered
    (NUL, invalid UTF-8 or lone surrogates once decoded, or too long), else ``None``.

    PostgreSQL text cannot hold NUL, and what is not UTF-8 would reach the routes as
    replacement characters: both are the client's error, answered 4xx before any route
    runs, instead of a database error deep inside one (a 500)."""
    path: str = scope["path"]
    raw_path: bytes | None = scope.get("raw_path")
    query: bytes = scope.get("query_string", b"")
    if len(raw_path if raw_path is not None else path) > MAX_PATH_BYTES:
        return 414, f"path longer than {MAX_PATH_BYTES} bytes"
    if len(query) > MAX_QUERY_BYTES:
        return 414, f"query string longer than {MAX_QUERY_BYTES} bytes"
    problem = _string_problem(path)
    if problem is None and raw_path is not None and b"%" in raw_path:
        problem = _text_problem(unquote_to_bytes(raw_path))
    if problem is not None:
        return 400, f"path {problem}"
    if query and (b"%" in query or b"\x00" in query or not query.isascii()):
        for pair in query.replace(b"+", b" ").split(b"&"):
            name, _, value = pair.partition(b"=")
            problem = _text_problem(unquote_to_bytes(name)) or _text_problem(
                unquote_to_bytes(value)
            )
            if problem is not None:
                shown = unquote_to_bytes(name).decode("utf-8", "replace")[:40]
                return 400, f"query parameter {shown!r} {problem}"
    return None


class InputGuard:
    """Answer requests whose path or query no route can take (:func:`input_problem`) with
    400/414 in the API's envelope: XRPC's under ``/xrpc/``, REST's elsewhere."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = input_problem(scope)
            if found is not None:
                status, message = found
                code = "invalid_request" if status == 400 else "uri_too_long"
                response = error_response(scope["path"], status, code, "InvalidRequest", message)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the API request this task serves (``None`` outside a request)."""

_REQUEST_ID_OK = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,128}$")


def request_id_of(scope: Scope) -> str:
    """The client's ``X-Request-Id`` when it is a plain token (≤ 128 characters),
    else a new random one: a proxy's id joins its logs to ours, junk never reaches them."""
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _REQUEST_ID_OK.match(value):
            return str(value.decode("ascii"))
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record emitted while serving a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = REQUEST_ID.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


class AccessLog:
    """Request log line and Prometheus metrics, as plain ASGI middleware.

    Plain ASGI rather than ``@app.middleware("http")``: that wrapper runs every response
    through an extra task and memory stream, which cost more than the queries themselves.
    Timing runs until the last body byte is sent (streamed audio included).
    """

    def __init__(self, app: ASGIApp, *, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency
        self._labelled: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def _children(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        """The labelled counter and histogram: ``labels()`` takes a lock and builds its key
        on every call, so the children (the same objects it returns) are kept here."""
        key = (method, route, status)
        found = self._labelled.get(key)
        if found is None:
            found = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._labelled[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = request_id_of(scope)
        REQUEST_ID.set(request_id)
        echoed = (b"x-request-id", request_id.encode("ascii"))

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            elapsed = time.perf_counter() - started
            # The matched route's template keeps the label set small (not the raw path).
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            counter, histogram = self._children(method, route, status)
            counter.inc()
            histogram.observe(elapsed)
            logger.info(
                "request",
                extra={
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )
            # Not reset: the server serves each request in its own task, whose context
            # ends with it, and its "exception in ASGI application" line comes after us.
