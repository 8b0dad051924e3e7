"""``/radio``: the station lineup and what a station airs now (see :mod:`api.radio`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api import catalog, radio
from api.deps import Read
from api.errors import ApiError

__all__ = ["router"]

router = APIRouter(prefix="/radio", tags=["radio"])

_BY_SLUG = {s.slug: s for s in radio.STATIONS}


@router.get("/stations")
async def stations() -> dict[str, Any]:
    """``{default_slug, stations: [{slug, name, description, is_default, source_url}]}``."""
    return {
        "default_slug": radio.DEFAULT_STATION,
        "stations": [
            {
                "slug": s.slug,
                "name": s.name,
                "description": s.description,
                "is_default": s.slug == radio.DEFAULT_STATION,
                "source_url": None,
            }
            for s in radio.STATIONS
        ],
    }


@router.get(
    "/state",
    description="plyr's ``RadioStateResponse``. The loop of a station is drawn per 4-hour "
    "period from the catalog as it stood when the period began and starts at the period's "
    "start, so every client hears the same track at the same instant. ``live`` is always "
    "null (no broadcasts here); ``liked`` false (no sessions).",
)
@router.get("/state.json", include_in_schema=False)
async def state(
    request: Request,
    read: Read,
    limit: Annotated[int, Query(ge=1, le=75)] = 40,
    station: Annotated[str | None, Query(max_length=64, description="slug; default: loved")] = (
        None
    ),
) -> dict[str, Any]:
    """``{station, station_slug, generated_at, loop_duration_seconds, current_index,
    current_started_at, current_ends_at, progress_seconds, current, up_next, rotation,
    live}``; 404 for an unknown station."""
    chosen = _BY_SLUG.get(station or radio.DEFAULT_STATION)
    if chosen is None:
        raise ApiError(404, "not_found", f"unknown station: {station}")
    now = datetime.now(UTC)
    start = radio.period_start(now)
    cache: radio.RotationCache = request.app.state.radio
    key = (chosen.slug, limit, start)
    async with read.pool.connection() as conn:
        uris = cache.get(key)
        if uris is None:
            period = int(start.timestamp()) // radio.PERIOD_S
            ranked = radio.rank(chosen, await radio.load_candidates(conn, read.vis, start), start)
            settled = bool(ranked)
            if not settled:  # nothing settled yet: what is indexed now, not cached (api.radio)
                current = await radio.load_candidates(conn, read.vis, start, settled=False)
                ranked = radio.rank(chosen, current, start)
            uris = [c.uri for c in radio.draw_rotation(chosen, ranked, period, limit)]
            if settled:
                cache.put(key, uris)
        found = await catalog.tracks_by_uris(conn, read.vis, "list", uris)
        found = [r for r in found if r["support_gate"] is None]
        tracks = await catalog.present_tracks(conn, found, api_base=read.api_base)
    rotation = [_radio_track(t) for t in tracks]
    at = radio.locate([t["duration"] for t in rotation], start, now)
    return {
        "station": chosen.name,
        "station_slug": chosen.slug,
        "generated_at": now.isoformat(),
        "loop_duration_seconds": sum(t["duration"] for t in rotation),
        "current_index": at.index if at else None,
        "current_started_at": at.started_at.isoformat() if at else None,
        "current_ends_at": at.ends_at.isoformat() if at else None,
        "progress_seconds": at.progress_s if at else 0,
        "current": rotation[at.index] if at else None,
        "up_next": (
            [rotation[(at.index + k) % len(rotation)] for k in range(1, min(len(rotation), 5))]
            if at
            else []
        ),
        "rotation": rotation,
        "live": None,
    }


def _radio_track(t: dict[str, Any]) -> dict[str, Any]:
    """plyr's ``RadioTrack`` from a ``TrackResponse``."""
    return {
        "id": t["id"],
        "title": t["title"],
        "artist": t["artist"],
        "artist_handle": t["artist_handle"],
        "artist_did": t["artist_did"],
        "stream_url": t["r2_url"],
        "file_type": t["file_type"],
        "duration": t["duration"] or radio.DEFAULT_SECONDS,
        "artwork_url": t["image_url"] or t["artist_avatar_url"],
        "thumbnail_url": t["thumbnail_url"],
        "atproto_record_uri": t["atproto_record_uri"],
        "atproto_record_cid": t["atproto_record_cid"],
        "created_at": t["created_at"],
        "tags": sorted(t["tags"]),
        "like_count": t["like_count"],
        "play_count": t["play_count"],
        "liked": False,
    }
