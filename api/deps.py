"""Dependencies shared by routers: the database pool, the visibility rule, the base URL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from api.visibility import Visibility

__all__ = [
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
    return configured or str(request.base_url).rstrip("/")


@dataclass(frozen=True, slots=True)
class Reader:
    """What a read route needs, as one dependency: FastAPI resolves each dependency with
    some machinery of its own, and the hot routes paid for three on every request."""

    pool: AsyncConnectionPool
    vis: Visibility
    api_base: str


async def get_reader(request: Request) -> Reader:
    """The pool, the visibility rule and the base URL of this request."""
    return reader_for(request)


def reader_for(request: Request) -> Reader:
    """:func:`get_reader` without the dependency machinery (for plain ASGI fast paths)."""
    return Reader(request.app.state.pool, _visibility(request), _api_base(request))


Pool = Annotated[AsyncConnectionPool, Depends(get_pool)]
Vis = Annotated[Visibility, Depends(get_visibility)]
ApiBase = Annotated[str, Depends(get_api_base)]
Read = Annotated[Reader, Depends(get_reader)]
