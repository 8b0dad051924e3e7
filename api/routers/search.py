"""``/search/``: plyr's unified keyword search (parameters and JSON shape as plyr.fm)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import Pool
from api.search import TYPES, search

__all__ = ["router"]

router = APIRouter(prefix="/search", tags=["search"])


@router.get("/")
async def unified_search(
    pool: Pool,
    q: Annotated[str, Query(min_length=2, max_length=100, description="search query")],
    type: Annotated[
        str | None,
        Query(description="tracks, artists, albums, tags, playlists (comma-separated)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=50, description="max results per type")] = 20,
) -> dict[str, Any]:
    """Tracks, artists, albums, tags and playlists matching ``q``, best first.

    ``{results: [...], counts: {tracks, artists, albums, tags, playlists}}``; typo
    tolerant, accent and punctuation insensitive, prefix-as-you-type; a DID or AT-URI is
    looked up directly. Hidden (moderated, inactive) items never appear.
    """
    types = {t.strip().lower() for t in type.split(",")} if type else set(TYPES)
    async with pool.connection() as conn:
        return await search(conn, q, types=types, limit=limit)
