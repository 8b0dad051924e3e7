"""``/artists`` and ``/users``: profiles, batches, analytics and public likes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path

from api import catalog
from api.deps import DID, ApiBase, Pool, Vis
from api.errors import ApiError
from api.views import TRACK_COLUMNS, TRACK_FROM, present_artist, present_user

__all__ = ["router", "users_router"]

router = APIRouter(prefix="/artists", tags=["artists"])
users_router = APIRouter(prefix="/users", tags=["users"])

_ARTIST_DOC = (
    "plyr's ``ArtistResponse``. ``created_at`` is when we first saw the DID; "
    "``show_liked_on_profile`` (false) and ``support_url`` (null) are plyr.fm preferences."
)


@router.post("/batch", description=_ARTIST_DOC)
async def artists_batch(
    pool: Pool, vis: Vis, dids: Annotated[list[str], Body(max_length=500)]
) -> dict[str, dict[str, Any]]:
    """``{did: ArtistResponse}`` for the known, visible DIDs among ``dids``."""
    if not dids:
        return {}
    async with pool.connection() as conn:
        found = await catalog.rows(
            conn,
            f"SELECT {catalog.ARTIST_COLUMNS} FROM artist a WHERE a.did = ANY(%s)"
            f" AND {vis.actor('view')}",
            (list(set(dids)),),
        )
    return {r["did"]: present_artist(r) for r in found}


@router.get("/by-handle/{handle}", description=_ARTIST_DOC)
async def artist_by_handle(pool: Pool, vis: Vis, handle: str) -> dict[str, Any]:
    """An artist by handle."""
    async with pool.connection() as conn:
        found = await catalog.artist_by_handle(conn, vis, handle)
    if found is None:
        raise ApiError(404, "not_found", "artist not found")
    return present_artist(found)


@router.get("/{did}", description=_ARTIST_DOC)
async def artist_by_did(
    pool: Pool, vis: Vis, did: Annotated[str, Path(pattern=DID)]
) -> dict[str, Any]:
    """An artist by DID."""
    async with pool.connection() as conn:
        found = await catalog.artist_by_did(conn, vis, did)
    if found is None:
        raise ApiError(404, "not_found", "artist not found")
    return present_artist(found)


@router.get(
    "/{artist_did}/analytics",
    description="``total_plays`` and play ``rank`` need the plays read model (0 / null "
    "until it exists); ``top_liked.play_count`` carries the like count, as in plyr.",
)
async def artist_analytics(
    pool: Pool, vis: Vis, artist_did: Annotated[str, Path(pattern=DID)]
) -> dict[str, Any]:
    """``{total_plays, total_items, total_duration_seconds, top_item, top_liked, rank}``."""
    async with pool.connection() as conn:
        totals = await catalog.row(
            conn,
            "SELECT count(*) AS n, coalesce(sum(t.duration), 0) AS secs FROM track t"
            f" LEFT JOIN artist a ON a.did = t.did WHERE t.did = %s AND {vis.track('view')}",
            (artist_did,),
        )
        liked = await catalog.row(
            conn,
            "SELECT t.id, t.title, t.like_count FROM track t LEFT JOIN artist a ON a.did = t.did"
            f" WHERE t.did = %s AND t.like_count > 0 AND {vis.track('view')}"
            " ORDER BY t.like_count DESC, t.id DESC LIMIT 1",
            (artist_did,),
        )
    return {
        "total_plays": 0,
        "total_items": int(totals["n"]) if totals else 0,
        "total_duration_seconds": int(totals["secs"]) if totals else 0,
        "top_item": None,
        "top_liked": (
            {"id": liked["id"], "title": liked["title"], "play_count": liked["like_count"]}
            if liked
            else None
        ),
        "rank": None,
    }


@users_router.get("/{handle}/likes")
async def user_likes(pool: Pool, vis: Vis, api_base: ApiBase, handle: str) -> dict[str, Any]:
    """``{user, tracks, count}``: the visible tracks a user liked, newest like first."""
    async with pool.connection() as conn:
        user = await catalog.artist_by_handle(conn, vis, handle)
        if user is None:
            raise ApiError(404, "not_found", "user not found")
        found = await liked_track_rows(conn, vis, user["did"], limit=500)
        tracks = await catalog.present_tracks(conn, found, api_base=api_base)
    return {"user": present_user(user), "tracks": tracks, "count": len(tracks)}


async def liked_track_rows(conn: Any, vis: Any, did: str, *, limit: int) -> list[dict[str, Any]]:
    """Visible tracks liked by ``did``, newest like first."""
    return await catalog.rows(
        conn,
        f'SELECT {TRACK_COLUMNS}, l.created_at AS liked_at FROM "like" l'
        f" JOIN {TRACK_FROM} ON t.uri = l.subject_uri"
        f" WHERE l.did = %s AND {vis.track('view')}"
        " ORDER BY l.created_at DESC, l.uri LIMIT %s",
        (did, limit),
    )
