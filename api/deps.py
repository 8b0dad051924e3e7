"""Dependencies shared by routers: the database pool, the visibility rule, the base URL."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from api.visibility import Visibility

__all__ = ["ApiBase", "Pool", "Vis", "get_api_base", "get_pool", "get_visibility"]


async def get_pool(request: Request) -> AsyncConnectionPool:
    """The read pool opened for the app."""
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


async def get_visibility(request: Request) -> Visibility:
    """The visibility rule chosen at startup (moderation predicate or fallback)."""
    vis: Visibility = getattr(request.app.state, "visibility", None) or Visibility()
    return vis


async def get_api_base(request: Request) -> str:
    """Absolute base URL of this API (``PLYR_PUBLIC_URL`` or the request's own)."""
    configured: str | None = getattr(request.app.state, "public_url", None)
    return configured or str(request.base_url).rstrip("/")


Pool = Annotated[AsyncConnectionPool, Depends(get_pool)]
Vis = Annotated[Visibility, Depends(get_visibility)]
ApiBase = Annotated[str, Depends(get_api_base)]
