"""Refusing, at the edge, text that PostgreSQL cannot store: one rule for every route.

PostgreSQL ``text`` cannot hold NUL, and a lone surrogate (from a JSON ``\\ud800``
escape) cannot be encoded as UTF-8 at all; either reached a query as a 500 with a
``DataError`` traceback in the log. :class:`InputGuard` (plain ASGI) answers 400 for a
request whose decoded path or query string holds one, before any route runs: the REST
envelope ``{detail, error: "invalid_request"}``, or XRPC's ``{error: "InvalidRequest",
message}`` under ``/xrpc/``. Invalid UTF-8 in a URL is already replaced (U+FFFD) when the
server decodes it. Request bodies are checked by the routes that read them
(:func:`storable`).
"""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["InputGuard", "storable"]


def storable(text: str) -> bool:
    """Whether PostgreSQL can store ``text``: no NUL, no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _query_ok(query: bytes) -> bool:
    return b"\x00" not in unquote_to_bytes(query)


class InputGuard:
    """400 for a path or query string holding NUL (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not (
            storable(scope["path"]) and _query_ok(scope.get("query_string", b""))
        ):
            message = "the path or query holds a NUL character or invalid Unicode"
            if scope["path"].startswith("/xrpc/"):
                body = {"error": "InvalidRequest", "message": message}
            else:
                body = {"detail": message, "error": "invalid_request"}
            data = json.dumps(body).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": data})
            return
        await self.app(scope, receive, send)
