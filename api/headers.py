"""Security headers on every response, and no traceback in any 500.

:class:`SecurityHeaders` is plain ASGI middleware wrapping the whole app:

- ``X-Content-Type-Options: nosniff`` on every response (JSON, audio, errors);
- a ``Content-Security-Policy`` on every HTML response (the ``/docs`` and ``/redoc``
  pages, which load their scripts from the jsDelivr CDN and run one inline script);
- an exception that escapes the app before it answered becomes the JSON error envelope
  ``{"detail": "internal error", "error": "internal"}`` with status 500 (the exception
  still propagates, so the server logs it): the body never carries a traceback.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HTML_CSP", "SecurityHeaders"]

HTML_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "font-src https://fonts.gstatic.com; connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
"""What the API's HTML pages (Swagger UI, ReDoc) need, and nothing else."""

_INTERNAL = json.dumps({"detail": "internal error", "error": "internal"}).encode()


class SecurityHeaders:
    """Adds the headers above to every HTTP response; answers 500 for an escaped error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k != b"x-content-type-options"
                ]
                headers.append((b"x-content-type-options", b"nosniff"))
                content_type = next((v for k, v in headers if k == b"content-type"), b"")
                if content_type.startswith(b"text/html"):
                    headers.append((b"content-security-policy", HTML_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except Exception:
            if not started:
                await with_headers(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(_INTERNAL)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _INTERNAL})
            raise
