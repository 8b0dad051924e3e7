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


@router.post(
    "/{did}/refresh-avatar",
    description="plyr's web client calls this when an avatar image fails to load; plyr.fm "
    "then asks Bluesky again. Avatars here follow the profile records on the firehose, so "
    "the answer is the newest one we have (null when none).",
)
async def refresh_avatar(
    pool: Pool, vis: Vis, did: Annotated[str, Path(pattern=DID)]
) -> dict[str, str | None]:
    """``{avatar_url}``; 404 for an unknown artist."""
    async with pool.connection() as conn:
        found = await catalog.artist_by_did(conn, vis, did)
    if found is None:
        raise ApiError(404, "not_found", "artist not found")
    return {"avatar_url": present_artist(found)["avatar_url"]}


LEADERBOARD = 10
"""Artists ranked in the play leaderboard (plyr's top 10)."""


@router.get(
    "/{artist_did}/analytics",
    description="Plays of the artist's tracks visible on their page (taken-down or hidden "
    "tracks count for nothing). ``top_item``: the most played track (ties: newer id); "
    f"``rank``: 1-{LEADERBOARD} in the leaderboard of artists by those plays (ties: by "
    "DID), else null; ``top_liked.play_count`` carries the like count, as in plyr.",
)
async def artist_analytics(
    pool: Pool, vis: Vis, artist_did: Annotated[str, Path(pattern=DID)]
) -> dict[str, Any]:
    """``{total_plays, total_items, total_duration_seconds, top_item, top_liked, rank}``."""
    shown = vis.track("view")
    async with pool.connection() as conn:
        totals = await catalog.row(
            conn,
            "SELECT count(*) AS n, coalesce(sum(t.duration), 0) AS secs,"
            " coalesce(sum(pt.plays), 0) AS plays FROM track t"
            " LEFT JOIN play_track_total pt ON pt.track_uri = t.uri"
            f" WHERE t.did = %s AND {shown}",
            (artist_did,),
        )
        played = await catalog.row(
            conn,
            "SELECT t.id, t.title, pt.plays FROM track t"
            " JOIN play_track_total pt ON pt.track_uri = t.uri"
            f" WHERE t.did = %s AND pt.plays > 0 AND {shown}"
            " ORDER BY pt.plays DESC, t.id DESC LIMIT 1",
            (artist_did,),
        )
        liked = await catalog.row(
            conn,
            "SELECT t.id, t.title, t.like_count FROM track t"
            f" WHERE t.did = %s AND t.like_count > 0 AND {shown}"
            " ORDER BY t.like_count DESC, t.id DESC LIMIT 1",
            (artist_did,),
        )
        board = await catalog.rows(
            conn,
            "SELECT t.did, sum(pt.plays) AS plays FROM play_track_total pt"
            f" JOIN track t ON t.uri = pt.track_uri WHERE pt.plays > 0 AND {shown}"
            f" GROUP BY t.did ORDER BY plays DESC, t.did LIMIT {LEADERBOARD}",
        )
    ranks = {r["did"]: place for place, r in enumerate(board, start=1)}
    return {
        "total_plays": int(totals["plays"]) if totals else 0,
        "total_items": int(totals["n"]) if totals else 0,
        "total_duration_seconds": int(totals["secs"]) if totals else 0,
        "top_item": (
            {"id": played["id"], "title": played["title"], "play_count": int(played["plays"])}
            if played
            else None
        ),
        "top_liked": (
            {"id": liked["id"], "title": liked["title"], "play_count": liked["like_count"]}
            if liked
            else None
        ),
        "rank": ranks.get(artist_did),
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
