"""JSON answers encoded once, with orjson, for routes that declare no response model.

A route returning a ``dict`` gets a response model inferred from its annotation: FastAPI
validates the value against it and encodes it with pydantic, which cost more than the
query on the hot read routes. Those routes set ``response_model=None`` and return
:func:`json_response`; :func:`json_doc` keeps their OpenAPI ``200`` entry as it was.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Send

__all__ = ["encode", "json_doc", "json_response", "send_json"]


def json_response(body: bytes, status_code: int = 200) -> Response:
    """An ``application/json`` answer with ``body`` as it is (already encoded)."""
    return Response(body, status_code=status_code, media_type="application/json")


async def send_json(send: Send, body: bytes) -> None:
    """Send what ``json_response(body)`` sends (200, same headers in the same order),
    without building a Response first: for plain ASGI fast paths."""
    headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def encode(value: Any) -> bytes:
    """``value`` as compact JSON (UTF-8, not ASCII-escaped, as FastAPI's encoder wrote it)."""
    return orjson.dumps(value)


def json_doc(schema: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: a ``200`` JSON answer of ``schema``."""
    return {200: {"content": {"application/json": {"schema": schema}}}}
