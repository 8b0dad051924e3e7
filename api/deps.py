"""Dependencies shared by routers: the database pool, the visibility rule, the base URL,
and the patterns of the DID and AT-URI parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from api.track_loader import TrackLoader
from api.visibility import Visibility

__all__ = [
    "AT_URI",
    "DID",
    "ApiBase",
    "Pool",
    "Read",
    "Reader",
    "Vis",
    "get_api_base",
    "get_pool",
    "get_reader",
    "get_visibility",
    "reader_for",
]


DID = r"^did:[a-z]+:[a-zA-Z0-9._:%-]+$"
"""Pattern of a DID path or query parameter."""
AT_URI = r"^at://[^/\s]+/[a-zA-Z0-9.-]+/[^/\s]+$"
"""Pattern of a record AT-URI query parameter."""


async def get_pool(request: Request) -> AsyncConnectionPool:
    """The read pool opened for the app."""
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


async def get_visibility(request: Request) -> Visibility:
    """The visibility rule chosen at startup (moderation predicate or fallback)."""
    return _visibility(request)


def _visibility(request: Request) -> Visibility:
    vis: Visibility = getattr(request.app.state, "visibility", None) or Visibility()
    return vis


async def get_api_base(request: Request) -> str:
    """Absolute base URL of this API (``PLYR_PUBLIC_URL`` or the request's own)."""
    return _api_base(request)


def _api_base(request: Request) -> str:
    configured: str | None = getattr(request.app.state, "public_url", None)
    return configured or _own_base_url(request)


_BASE_URLS_KEPT = 256


def _own_base_url(request: Request) -> str:
    """The request's own base URL, remembered per app for the scope fields it depends on:
    Starlette parses and validates the Host header again on every request (~7% of a
    permalink's CPU when ``PLYR_PUBLIC_URL`` is unset)."""
    scope = request.scope
    host = next((value for name, value in scope["headers"] if name == b"host"), None)
    server = scope.get("server")
    key = (scope.get("scheme"), None if server is None else tuple(server),
           scope.get("root_path"), scope.get("app_root_path"), host)  # fmt: skip
    state = request.app.state
    known: dict[Any, str] | None = getattr(state, "base_urls", None)
    if known is None:
        known = state.base_urls = {}
    base = known.get(key)
    if base is None:
        if len(known) >= _BASE_URLS_KEPT:  # Host is the client's to choose: stay bounded
            known.clear()
        base = known[key] = str(request.base_url).rstrip("/")
    return base


@dataclass(frozen=True, slots=True)
class Reader:
    """What a read route needs, as one dependency: FastAPI resolves each dependency with
    some machinery of its own, and the hot routes paid for three on every request."""

    pool: AsyncConnectionPool
    vis: Visibility
    api_base: str
    tracks: TrackLoader
    """Track lookups by id, batched with the other requests in flight."""


async def get_reader(request: Request) -> Reader:
    """The pool, the visibility rule and the base URL of this request."""
    return reader_for(request)


def reader_for(request: Request) -> Reader:
    """:func:`get_reader` without the dependency machinery (for plain ASGI fast paths)."""
    state = request.app.state
    vis = _visibility(request)
    return Reader(state.pool, vis, _api_base(request), _track_loader(request, vis))


def _track_loader(request: Request, vis: Visibility) -> TrackLoader:
    # Made on first use, in the loop that serves the requests, once pool and rule are set.
    state = request.app.state
    loader: TrackLoader | None = getattr(state, "track_loader", None)
    if loader is None:
        loader = state.track_loader = TrackLoader(state.pool, vis)
    return loader


Pool = Annotated[AsyncConnectionPool, Depends(get_pool)]
Vis = Annotated[Visibility, Depends(get_visibility)]
ApiBase = Annotated[str, Depends(get_api_base)]
Read = Annotated[Reader, Depends(get_reader)]
