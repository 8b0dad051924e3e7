"""Site-wide reads: ``/stats``, ``/oembed``, ``/sitemap-data`` and ``/config``."""

from __future__ import annotations

import html
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api import catalog
from api.deps import Pool, Vis
from api.errors import ApiError

__all__ = ["router"]

router = APIRouter(tags=["meta"])

_TRACK_URL = re.compile(r"/track/(\d+)")
_PLAYLIST_URL = re.compile(r"/playlist/([a-f0-9-]{36})")
_ALBUM_URL = re.compile(r"/u/([^/]+)/album/([^/?#]+)")


def _frontend(request: Request) -> str:
    url: str = request.app.state.settings.frontend_url
    return url


@router.get(
    "/stats",
    description="Totals over the tracks a permalink may show (taken-down and hidden tracks "
    "and accounts left out); ``total_plays``: their counted plays.",
)
async def stats(pool: Pool, vis: Vis) -> dict[str, int]:
    """``{total_plays, total_tracks, total_artists, total_duration_seconds}``."""
    async with pool.connection() as conn:
        found = await catalog.row(
            conn,
            "SELECT count(*) AS tracks, count(DISTINCT t.did) AS artists,"
            " coalesce(sum(t.duration), 0) AS secs, coalesce(sum(pt.plays), 0) AS plays"
            " FROM track t LEFT JOIN play_track_total pt ON pt.track_uri = t.uri"
            f" WHERE {vis.track('detail')}",
        )
    assert found is not None
    return {
        "total_plays": int(found["plays"]),
        "total_tracks": int(found["tracks"]),
        "total_artists": int(found["artists"]),
        "total_duration_seconds": int(found["secs"]),
    }


def _iframe(src: str, width: int, height: int) -> str:
    return (
        f'<iframe src="{html.escape(src)}" width="{width}" height="{height}" frameborder="0"'
        ' allow="autoplay" style="border-radius: 8px;"></iframe>'
    )


def _oembed(
    title: str, author: str, author_url: str, src: str, w: int, h: int, image: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": "1.0",
        "type": "rich",
        "provider_name": "plyr.fm",
        "provider_url": "https://plyr.fm",
        "title": title,
        "author_name": author,
        "author_url": author_url,
        "width": w,
        "height": h,
        "html": _iframe(src, w, h),
        "thumbnail_url": None,
        "thumbnail_width": None,
        "thumbnail_height": None,
    }
    if image:
        body.update(thumbnail_url=image, thumbnail_width=300, thumbnail_height=300)
    return body


@router.get("/oembed")
async def oembed(
    request: Request,
    pool: Pool,
    vis: Vis,
    url: Annotated[str, Query(max_length=2000, description="a track, playlist or album URL")],
    maxwidth: Annotated[int | None, Query(ge=1)] = None,
    maxheight: Annotated[int | None, Query(ge=1)] = None,
    format: str = "json",
) -> dict[str, Any]:
    """Rich oEmbed for ``/track/{id}``, ``/playlist/{uuid}`` and ``/u/{handle}/album/{slug}``."""
    if format != "json":
        raise ApiError(501, "not_implemented", "only json format is supported")
    front = _frontend(request)
    async with pool.connection() as conn:
        if m := _TRACK_URL.search(url):
            t = (await catalog.select_tracks(conn, vis, "detail", where=["t.id = %s"],
                                             params=[int(m.group(1))]))  # fmt: skip
            if not t:
                raise ApiError(404, "not_found", "track not found")
            row = t[0]
            name = row["artist_display_name"] or row["artist"]
            w, h = min(maxwidth or 400, 800), min(maxheight or 165, 165)
            return _oembed(
                f"{row['title']} - {name}", name, f"{front}/u/{row['artist_handle']}",
                f"{front}/embed/track/{row['id']}", w, h, row["image_url"],
            )  # fmt: skip
        w, h = min(maxwidth or 400, 800), min(maxheight or 380, 600)
        if m := _PLAYLIST_URL.search(url):
            p = await catalog.row(
                conn,
                "SELECT l.id, l.name, a.handle, a.display_name FROM list l"
                " LEFT JOIN artist a ON a.did = l.did WHERE l.id::text = %s AND "
                + vis.record("view", uri="l.uri", did="l.did"),
                (m.group(1),),
            )
            if p is None:
                raise ApiError(404, "not_found", "playlist not found")
            owner = p["display_name"] or p["handle"]
            return _oembed(
                f'"{p["name"]}" by {owner}', owner, f"{front}/u/{p['handle']}",
                f"{front}/embed/playlist/{p['id']}", w, h, None,
            )  # fmt: skip
        if m := _ALBUM_URL.search(url):
            handle, slug = m.group(1), m.group(2)
            al = await catalog.row(
                conn,
                "SELECT al.title, al.image_url, a.handle, a.display_name FROM album al"
                " JOIN artist a ON a.did = al.did WHERE lower(a.handle) = lower(%s)"
                f" AND al.slug = %s AND {vis.actor('view')}",
                (handle, slug),
            )
            if al is None:
                raise ApiError(404, "not_found", "album not found")
            owner = al["display_name"] or al["handle"]
            return _oembed(
                f'"{al["title"]}" by {owner}', owner, f"{front}/u/{al['handle']}",
                f"{front}/embed/album/{handle}/{slug}", w, h, al["image_url"],
            )  # fmt: skip
    raise ApiError(404, "not_found", "unsupported URL format")


@router.get("/sitemap-data")
async def sitemap_data(pool: Pool, vis: Vis) -> dict[str, list[dict[str, Any]]]:
    """``{tracks: [{id, updated}], artists: [{handle, updated}], albums: [...]}``."""
    async with pool.connection() as conn:
        tracks = await catalog.rows(
            conn,
            "SELECT t.id, t.created_at FROM track t LEFT JOIN artist a ON a.did = t.did"
            f" WHERE {vis.track('list')} ORDER BY t.created_at DESC LIMIT 50000",
        )
        artists = await catalog.rows(
            conn,
            "SELECT a.handle, a.updated_at FROM artist a WHERE a.handle IS NOT NULL"
            f" AND {vis.actor('list')} AND EXISTS (SELECT 1 FROM track t WHERE t.did = a.did)"
            " ORDER BY a.handle LIMIT 50000",
        )
        albums = await catalog.rows(
            conn,
            "SELECT a.handle, al.slug, al.updated_at FROM album al JOIN artist a ON a.did = al.did"
            f" WHERE a.handle IS NOT NULL AND al.track_count > 0 AND {vis.actor('list')}"
            " ORDER BY a.handle, al.slug LIMIT 50000",
        )
    return {
        "tracks": [
            {"id": r["id"], "updated": r["created_at"].strftime("%Y-%m-%d")} for r in tracks
        ],
        "artists": [
            {"handle": r["handle"], "updated": r["updated_at"].strftime("%Y-%m-%d")}
            for r in artists
        ],
        "albums": [
            {
                "handle": r["handle"],
                "slug": r["slug"],
                "updated": r["updated_at"].strftime("%Y-%m-%d"),
            }
            for r in albums
        ],
    }


@router.get("/config", description="Public client configuration, plyr.fm's keys.")
async def public_config(request: Request) -> dict[str, Any]:
    """Upload limits (we accept no uploads), default hidden tags, contact addresses."""
    contact: str = request.app.state.settings.contact_email
    return {
        "max_upload_size_mb": 0,
        "max_image_size_mb": 0,
        "browser_observability": False,
        "default_hidden_tags": list(catalog.DEFAULT_HIDDEN_TAGS),
        "bufo_exclude_patterns": [],
        "bufo_include_patterns": [],
        "contact_email": contact,
        "privacy_email": contact,
        "dmca_email": contact,
        "dmca_registration_number": "",
        "terms_last_updated": "2026-01-01",
    }
