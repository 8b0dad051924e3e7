"""``/albums``: albums derived from album list records and track ``album`` titles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api import catalog
from api.deps import ApiBase, Pool, Vis
from api.errors import ApiError

__all__ = ["router"]

router = APIRouter(prefix="/albums", tags=["albums"])

_PLAYS = "``total_plays``: counted plays of the album's visible tracks."


def _count_visible(vis: Any) -> str:
    """SQL: visible tracks of album ``al`` (by slug; list-record albums count their items)."""
    return (
        "(SELECT count(*) FROM track t LEFT JOIN artist a ON a.did = t.did"
        f" WHERE {_ALBUM_TRACK} AND {vis.track('view')})"
    )


_ALBUM_TRACK = (
    "t.did = al.did AND (t.album_slug = al.slug OR t.uri IN"
    " (SELECT li.subject_uri FROM list_item li WHERE li.list_uri = al.list_uri))"
)


def _plays_visible(vis: Any) -> str:
    """SQL: counted plays of the visible tracks of album ``al`` (hidden ones add none)."""
    return (
        "(SELECT coalesce(sum(pt.plays), 0) FROM track t"
        " JOIN play_track_total pt ON pt.track_uri = t.uri"
        f" WHERE {_ALBUM_TRACK} AND {vis.track('view')})"
    )


@router.get("/", description="Albums with at least one visible track, by title.")
async def list_albums(pool: Pool, vis: Vis) -> dict[str, Any]:
    """``{albums: [{id, title, slug, artist, artist_handle, track_count}]}``."""
    async with pool.connection() as conn:
        found = await catalog.rows(
            conn,
            f"SELECT * FROM (SELECT al.id, al.title, al.slug, al.did, {_count_visible(vis)} AS n,"
            " a.handle, a.display_name FROM album al JOIN artist a ON a.did = al.did"
            f" WHERE {vis.actor('list')}) x WHERE n > 0 ORDER BY lower(title), id LIMIT 1000",
        )
    return {
        "albums": [
            {
                "id": str(r["id"]),
                "title": r["title"],
                "slug": r["slug"],
                "artist": r["display_name"] or r["handle"] or r["did"],
                "artist_handle": r["handle"] or r["did"],
                "track_count": r["n"],
            }
            for r in found
        ]
    }


@router.get("/{handle}", description=f"An artist's albums. {_PLAYS}")
async def artist_albums(pool: Pool, vis: Vis, handle: str) -> dict[str, Any]:
    """``{albums: [{id, title, slug, track_count, total_plays, image_url}]}``."""
    async with pool.connection() as conn:
        artist = await catalog.artist_by_handle(conn, vis, handle)
        if artist is None:
            raise ApiError(404, "not_found", "artist not found")
        found = await catalog.rows(
            conn,
            f"SELECT al.id, al.title, al.slug, al.image_url, {_count_visible(vis)} AS n,"
            f" {_plays_visible(vis)} AS plays FROM album al WHERE al.did = %s"
            " ORDER BY al.created_at DESC, al.slug",
            (artist["did"],),
        )
    return {
        "albums": [
            {
                "id": str(r["id"]),
                "title": r["title"],
                "slug": r["slug"],
                "track_count": r["n"],
                "total_plays": int(r["plays"]),
                "image_url": r["image_url"] or artist["avatar_url"],
            }
            for r in found
            if r["n"] > 0
        ]
    }


@router.get("/{handle}/{slug}", description=f"An album with its tracks in order. {_PLAYS}")
async def get_album(
    pool: Pool, vis: Vis, api_base: ApiBase, handle: str, slug: str
) -> dict[str, Any]:
    """``{metadata: {...}, tracks: TrackResponse[]}``."""
    async with pool.connection() as conn:
        artist = await catalog.artist_by_handle(conn, vis, handle)
        if artist is None:
            raise ApiError(404, "not_found", "album not found")
        found = await catalog.album_detail(conn, vis, artist, slug, api_base=api_base)
    if found is None:
        raise ApiError(404, "not_found", "album not found")
    return found
