"""Plain ASGI middleware of the API: the request body limit and the access log.

Plain ASGI rather than ``@app.middleware("http")``: that wrapper runs every response
through an extra task and memory stream, which cost more than the queries themselves.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, api_error_response

__all__ = ["MAX_BODY_BYTES", "AccessLog", "BodyLimit"]

log = logging.getLogger("api.access")

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

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
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
            log.info(
                "request",
                extra={
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )
