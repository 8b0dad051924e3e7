"""``GET``/``HEAD /audio/{file_id}`` and ``/audio/{file_id}/url``.

``file_id`` is ``str(track.id)``. Visibility context ``audio``: unknown → 404, hidden or
taken down → 410 (as the detail route). ``supportGate`` → 401 (we have no sessions; plyr
answers 402 to signed-in non-supporters). Bytes come from the blob cache (fetched once
from the PDS and verified), served here with ranges, or — with S3 — by a 307 to a
presigned URL. Never a redirect to a PDS ``getBlob`` (it ignores ``Range``). Audio that
cannot be cached even after eviction → 503 ``cache_full`` with ``Retry-After`` (before the
download when the record's blob size says so).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from api import catalog
from api.audio import (
    AudioCache,
    AudioUnavailable,
    CachedAudio,
    CacheFull,
    RangeNotSatisfiable,
    content_type,
    parse_range,
)
from api.deps import ApiBase, Pool, Vis
from api.errors import ApiError, api_error_response

__all__ = ["IMMUTABLE", "router"]

router = APIRouter(prefix="/audio", tags=["audio"])

IMMUTABLE = "public, max-age=31536000, immutable"


def _file_id(file_id: str) -> int:
    if not file_id.isdigit() or len(file_id) > 17:
        raise ApiError(404, "not_found", "audio not found")
    return int(file_id)


async def _track(pool: Any, vis: Any, file_id: str) -> dict[str, Any]:
    async with pool.connection() as conn:
        found = await catalog.visible_track(conn, vis, "audio", track_id=_file_id(file_id))
        pds = await catalog.row(
            conn,
            "SELECT coalesce(a.pds_url, r.pds_url) AS pds_url,"
            " (SELECT audio_size FROM track WHERE id = %s) AS audio_size"
            " FROM (SELECT %s::text AS did) d"
            " LEFT JOIN artist a ON a.did = d.did LEFT JOIN repo_state r ON r.did = d.did",
            (found["id"], found["did"]),
        )
    found["resolved_pds_url"] = pds["pds_url"] if pds else None
    # The record's blob size: a track that cannot fit in the cache is refused undownloaded.
    found["audio_size"] = pds["audio_size"] if pds else None
    if found["support_gate"] is not None:
        raise ApiError(401, "not_authenticated", "this track is for supporters: sign in")
    if not found["audio_blob_cid"] and not found["audio_url"]:
        raise ApiError(404, "not_found", "track has no audio")
    return found


async def _cached(request: Request, track: dict[str, Any]) -> CachedAudio:
    cache: AudioCache | None = getattr(request.app.state, "audio", None)
    if cache is None:
        raise ApiError(503, "unavailable", "audio is not configured on this server")
    try:
        if track["audio_blob_cid"]:
            return await cache.blob(track, track["resolved_pds_url"])
        return await cache.url(track)
    except CacheFull:
        raise
    except AudioUnavailable as exc:
        raise ApiError(502, "upstream_unavailable", f"audio unavailable: {exc}") from None


def _matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or f'"{etag}"' in tags


async def get_audio(
    request: Request,
    pool: Pool,
    vis: Vis,
    file_id: Annotated[str, Path(max_length=20)],
    range_header: Annotated[str | None, Header(alias="range")] = None,
    if_range: Annotated[str | None, Header(alias="if-range")] = None,
    if_none_match: Annotated[str | None, Header(alias="if-none-match")] = None,
) -> Response:
    """The audio bytes, with ``Range``/``If-Range``, ``ETag`` = CID and immutable caching."""
    track = await _track(pool, vis, file_id)
    try:
        cached = await _cached(request, track)
    except CacheFull:
        return _cache_full()
    mime = content_type(track["file_type"], track.get("audio_mime"))
    headers = {
        "ETag": f'"{cached.etag}"',
        "Cache-Control": IMMUTABLE,
        "Accept-Ranges": "bytes",
        "Content-Type": mime,
    }
    if _matches(if_none_match, cached.etag):
        return Response(status_code=304, headers=headers)
    store = request.app.state.audio.store
    if request.method == "GET":
        presigned = store.presign(cached.key, content_type=mime, cache_control=IMMUTABLE)
        if presigned is not None:
            return RedirectResponse(
                presigned, status_code=307, headers={"Cache-Control": "no-store"}
            )
    if if_range is not None and if_range.strip() != f'"{cached.etag}"':
        range_header = None  # the client's copy is stale (or it sent a date): whole body
    try:
        span = parse_range(range_header, cached.size)
    except RangeNotSatisfiable:
        return Response(
            status_code=416, headers={**headers, "Content-Range": f"bytes */{cached.size}"}
        )
    start, end = span if span is not None else (0, cached.size - 1)
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{cached.size}"
    if request.method == "HEAD" or length == 0:
        return Response(status_code=status, headers=headers)
    try:
        body = await store.read(cached.key, start, end)
    except FileNotFoundError:
        # Evicted by another worker since it was found: fetched again (same CID, same
        # headers), once.
        try:
            cached = await _cached(request, track)
        except CacheFull:
            return _cache_full()
        body = await store.read(cached.key, start, end)
    return StreamingResponse(body, status_code=status, headers=headers, media_type=mime)


def _cache_full() -> Response:
    full = api_error_response(
        ApiError(503, "cache_full", "the audio cache is full; try again later")
    )
    full.headers["Retry-After"] = "60"
    return full


router.add_api_route(
    "/{file_id}", get_audio, methods=["GET"], response_class=Response, operation_id="get_audio"
)
router.add_api_route(
    "/{file_id}", get_audio, methods=["HEAD"], response_class=Response, operation_id="head_audio"
)


@router.get("/{file_id}/url")
async def audio_url(
    pool: Pool, vis: Vis, api_base: ApiBase, file_id: Annotated[str, Path(max_length=20)]
) -> dict[str, Any]:
    """``{url, file_id, file_type}``: where to play the track from (this API's audio route)."""
    track = await _track(pool, vis, file_id)
    return {
        "url": f"{api_base}/audio/{track['id']}",
        "file_id": str(track["id"]),
        "file_type": track["file_type"],
    }
