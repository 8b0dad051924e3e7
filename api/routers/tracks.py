"""``/tracks``: the newest tracks (keyset pagination) and single tracks by id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from psycopg.rows import dict_row

from api.deps import Pool
from api.errors import ApiError
from api.pagination import decode_cursor, encode_cursor
from api.views import TRACK_COLUMNS, present_track

__all__ = ["router"]

router = APIRouter(prefix="/tracks", tags=["tracks"])

_VISIBLE = "coalesce(a.account_status, 'active') = 'active'"


@router.get("/")
async def list_tracks(
    pool: Pool,
    cursor: Annotated[str | None, Query(description="opaque cursor from next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    artist_did: Annotated[str | None, Query(pattern=r"^did:[a-z]+:[a-zA-Z0-9._:%-]+$")] = None,
) -> dict[str, Any]:
    """Tracks, newest first: ``{tracks, next_cursor, has_more}``."""
    where = [_VISIBLE]
    params: list[Any] = []
    if artist_did is not None:
        where.append("t.did = %s")
        params.append(artist_did)
    if cursor is not None:
        created, item_id = decode_cursor(cursor)
        where.append("(t.created_at, t.id) < (%s, %s)")
        params.extend([created, item_id])
    sql = (
        f"SELECT {TRACK_COLUMNS} FROM track t LEFT JOIN artist a ON a.did = t.did"
        f" WHERE {' AND '.join(where)} ORDER BY t.created_at DESC, t.id DESC LIMIT %s"
    )
    params.append(limit + 1)
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql, params)
        rows = await cur.fetchall()
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if has_more else None
    return {
        "tracks": [present_track(r) for r in rows],
        "next_cursor": next_cursor,
        "has_more": has_more,
    }


@router.get("/{track_id}")
async def get_track(pool: Pool, track_id: int) -> dict[str, Any]:
    """One track by its integer id (permalinks resolve regardless of list visibility)."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"SELECT {TRACK_COLUMNS} FROM track t LEFT JOIN artist a ON a.did = t.did"
            f" WHERE t.id = %s AND {_VISIBLE}",
            (track_id,),
        )
        row = await cur.fetchone()
    if row is None:
        raise ApiError(404, "not_found", "track not found")
    return present_track(row)
