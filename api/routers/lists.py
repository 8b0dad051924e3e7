"""``/lists``: playlists (items stored from the list record) and the list URI resolver."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api import catalog
from api.deps import AT_URI, DID, ApiBase, Pool, Vis
from api.errors import ApiError
from api.views import present_playlist

__all__ = ["playlist_body", "router"]

router = APIRouter(prefix="/lists", tags=["lists"])

_DOC = (
    "plyr's ``PlaylistResponse``. ``image_url`` is null (covers are plyr.fm uploads; clients "
    "compose ``preview_thumbnails``), ``show_on_profile`` is true and ``is_private`` false "
    "(records on the network are public)."
)

_LIST_COLUMNS = "l.id, l.uri, l.did, l.name, l.list_type, l.item_count, l.created_at,"
_LIST_FROM = " a.handle AS owner_handle FROM list l LEFT JOIN artist a ON a.did = l.did"


async def _playlist(conn: Any, vis: Any, where: str, value: Any) -> dict[str, Any]:
    found = await catalog.row(
        conn,
        f"SELECT {_LIST_COLUMNS}{_LIST_FROM} WHERE {where} = %s AND "
        + vis.record("view", uri="l.uri", did="l.did"),
        (value,),
    )
    if found is None:
        raise ApiError(404, "not_found", "playlist not found")
    return found


async def playlist_body(
    conn: Any, vis: Any, found: dict[str, Any], *, api_base: str, with_tracks: bool
) -> dict[str, Any]:
    """``PlaylistResponse`` (+ ``tracks``) for a list row."""
    track_rows = await catalog.list_tracks(conn, vis, found["uri"])
    previews: list[str] = []
    for r in track_rows:
        if r["image_url"] and r["image_url"] not in previews and len(previews) < 4:
            previews.append(r["image_url"])
    body = present_playlist(found, previews=previews)
    if with_tracks:
        body["tracks"] = await catalog.present_tracks(conn, track_rows, api_base=api_base)
    return body


@router.get("/by-uri")
async def resolve_list(
    pool: Pool, vis: Vis, uri: Annotated[str, Query(pattern=AT_URI)]
) -> dict[str, Any]:
    """``{type: album|playlist, id, handle?, slug?}`` for a list AT-URI."""
    async with pool.connection() as conn:
        album = await catalog.row(
            conn,
            "SELECT al.id, al.slug, a.handle FROM album al LEFT JOIN artist a ON a.did = al.did"
            f" WHERE al.list_uri = %s AND {vis.actor('view')}",
            (uri,),
        )
        if album is not None:
            return {"type": "album", "id": str(album["id"]), "handle": album["handle"],
                    "slug": album["slug"]}  # fmt: skip
        found = await _playlist(conn, vis, "l.uri", uri)
    return {"type": "playlist", "id": str(found["id"]), "handle": None, "slug": None}


@router.get("/playlists/by-uri", description=_DOC)
async def playlist_by_uri(
    pool: Pool, vis: Vis, api_base: ApiBase, uri: Annotated[str, Query(pattern=AT_URI)]
) -> dict[str, Any]:
    """A playlist with its tracks, by AT-URI."""
    async with pool.connection() as conn:
        found = await _playlist(conn, vis, "l.uri", uri)
        return await playlist_body(conn, vis, found, api_base=api_base, with_tracks=True)


@router.get("/playlists/by-artist/{artist_did}", description=_DOC)
async def playlists_by_artist(
    pool: Pool, vis: Vis, artist_did: Annotated[str, Path(pattern=DID)]
) -> list[dict[str, Any]]:
    """An artist's playlists, newest first."""
    async with pool.connection() as conn:
        found = await catalog.rows(
            conn,
            f"SELECT {_LIST_COLUMNS}{_LIST_FROM} WHERE l.did = %s AND l.list_type = 'playlist'"
            f" AND {vis.record('list', uri='l.uri', did='l.did')}"
            " ORDER BY l.created_at DESC, l.uri LIMIT 200",
            (artist_did,),
        )
        return [await playlist_body(conn, vis, r, api_base="", with_tracks=False) for r in found]


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(404, "not_found", "playlist not found") from None


@router.get("/playlists/{playlist_id}/meta", description=_DOC)
async def playlist_meta(pool: Pool, vis: Vis, playlist_id: str) -> dict[str, Any]:
    """A playlist without its tracks (link previews)."""
    async with pool.connection() as conn:
        found = await _playlist(conn, vis, "l.id", _uuid(playlist_id))
        return await playlist_body(conn, vis, found, api_base="", with_tracks=False)


@router.get("/playlists/{playlist_id}", description=_DOC)
async def get_playlist(pool: Pool, vis: Vis, api_base: ApiBase, playlist_id: str) -> dict[str, Any]:
    """A playlist with its tracks in record order (unknown or hidden tracks skipped)."""
    async with pool.connection() as conn:
        found = await _playlist(conn, vis, "l.id", _uuid(playlist_id))
        return await playlist_body(conn, vis, found, api_base=api_base, with_tracks=True)
