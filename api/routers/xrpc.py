"""``GET /xrpc/fm.plyr.appview.*``: read queries for third-party apps (see ``api.xrpc``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from api import catalog
from api.catalog import album_tracks, comment_rows, top_track_rows, visible_track
from api.charts import BY, PERIODS, chart_rows, chart_window, parse_chart_date
from api.deps import ApiBase, Pool, Vis
from api.errors import (
    ApiError,
    xrpc_error_response,
    xrpc_from_api,
    xrpc_pool_timeout_response,
)
from api.pagination import (
    decode_count_cursor,
    decode_cursor,
    decode_key_cursor,
    encode_count_cursor,
    encode_cursor,
    encode_key_cursor,
)
from api.search import search
from api.views import iso
from api.xrpc import (
    NAMESPACE,
    XrpcError,
    decode_params,
    present_actor,
    present_artist_view,
    present_track_view,
)

__all__ = ["router"]

router = APIRouter(prefix="/xrpc", tags=["xrpc"])

Handler = Callable[[Any, Any, str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def _views(conn: Any, rows: list[dict[str, Any]], api_base: str) -> list[dict[str, Any]]:
    known = await catalog.featured_people(conn, rows)
    return [present_track_view(r, known, api_base=api_base) for r in rows]


async def _actor(conn: Any, vis: Any, actor: str) -> dict[str, Any]:
    found = (
        await catalog.artist_by_did(conn, vis, actor)
        if actor.startswith("did:")
        else await catalog.artist_by_handle(conn, vis, actor)
    )
    if found is None:
        raise XrpcError(400, "NotFound", f"actor not found: {actor}")
    return found


async def get_track(conn: Any, vis: Any, api_base: str, p: dict[str, Any]) -> dict[str, Any]:
    if "uri" not in p and "id" not in p:
        raise XrpcError(400, "InvalidRequest", "uri or id is required")
    found = await visible_track(conn, vis, "detail", track_id=p.get("id"), uri=p.get("uri"))
    return {"track": (await _views(conn, [found], api_base))[0]}


async def get_tracks_by_artist(
    conn: Any, vis: Any, api_base: str, p: dict[str, Any]
) -> dict[str, Any]:
    artist = await _actor(conn, vis, p["actor"])
    limit = p.get("limit", 50)
    where, params = ["t.did = %s"], [artist["did"]]
    if "cursor" in p:
        created, item_id = decode_cursor(p["cursor"])
        where.append("(t.created_at, t.id) < (%s, %s)")
        params += [created, item_id]
    found = await catalog.select_tracks(
        conn, vis, "view", where=where, params=params, limit=limit + 1
    )
    body: dict[str, Any] = {"tracks": await _views(conn, found[:limit], api_base)}
    if len(found) > limit:
        body["cursor"] = encode_cursor(found[limit - 1]["created_at"], found[limit - 1]["id"])
    return body


async def get_top_tracks(conn: Any, vis: Any, api_base: str, p: dict[str, Any]) -> dict[str, Any]:
    period = p.get("period", "all_time")
    if period not in ("all_time", "month", "week", "day"):
        raise XrpcError(400, "InvalidRequest", "period: must be all_time, month, week or day")
    by = p.get("by", "likes")
    if by not in ("likes", "plays"):
        raise XrpcError(400, "InvalidRequest", "by: must be likes or plays")
    found = await top_track_rows(conn, vis, period=period, limit=p.get("limit", 10), by=by)
    return {"tracks": await _views(conn, found, api_base)}


async def get_track_chart(conn: Any, vis: Any, api_base: str, p: dict[str, Any]) -> dict[str, Any]:
    """``GET /charts/tracks`` for XRPC: a calendar period's tracks by plays or likes."""
    period, by = p.get("period", "week"), p.get("by", "plays")
    if period not in PERIODS:
        raise XrpcError(400, "InvalidRequest", "period: must be day, week or month")
    if by not in BY:
        raise XrpcError(400, "InvalidRequest", "by: must be plays or likes")
    window = chart_window(period, parse_chart_date(p.get("date"), datetime.now(UTC).date()))
    after = decode_count_cursor(p["cursor"]) if "cursor" in p else None
    limit = p.get("limit", 50)
    found = await chart_rows(conn, vis, window, by, limit=limit + 1, after=after)
    page = found[:limit]
    views = await _views(conn, page, api_base)
    body: dict[str, Any] = {
        "period": period,
        "by": by,
        "start": iso(window.start),
        "end": iso(window.end),
        "entries": [
            {"rank": int(r["chart_rank"]), "count": int(r["chart_count"]), "track": view}
            for r, view in zip(page, views, strict=True)
        ],
    }
    if len(found) > limit:
        body["cursor"] = encode_count_cursor(int(page[-1]["chart_count"]), page[-1]["id"])
    return body


async def search_tracks(conn: Any, vis: Any, api_base: str, p: dict[str, Any]) -> dict[str, Any]:
    """Tracks ranked by the search read model (plyr's tiers; typo and accent tolerant)."""
    found = await search(conn, p["q"], types=("tracks",), limit=p.get("limit", 20))
    ids = [hit["id"] for hit in found["results"]]
    if not ids:
        return {"tracks": []}
    rows = await catalog.select_tracks(conn, vis, "search", where=["t.id = ANY(%s)"], params=[ids])
    by_id = {r["id"]: r for r in rows}
    return {"tracks": await _views(conn, [by_id[i] for i in ids if i in by_id], api_base)}


async def get_artist(conn: Any, vis: Any, api_base: str, p: dict[str, Any]) -> dict[str, Any]:
    artist = await _actor(conn, vis, p["actor"])
    count = await catalog.row(
        conn,
        "SELECT count(*) AS n FROM track t LEFT JOIN artist a ON a.did = t.did"
        f" WHERE t.did = %s AND {vis.track('view')}",
        (artist["did"],),
    )
    return {"artist": present_artist_view(artist, int(count["n"]) if count else 0)}


async def get_album(conn: Any, vis: Any, api_base: str, p: dict[str, Any]) -> dict[str, Any]:
    artist = await _actor(conn, vis, p["actor"])
    found = await album_tracks(conn, vis, artist["did"], p["slug"])
    if found is None:
        raise XrpcError(400, "NotFound", "album not found")
    album, rows = found
    view = {
        "id": str(album["id"]),
        "slug": album["slug"],
        "title": album["title"],
        "artist": present_actor(artist),
        "trackCount": len(rows),
        "imageUrl": album["image_url"] or artist["avatar_url"],
        "description": album["description"],
        "listUri": album["list_uri"],
    }
    return {
        "album": {k: v for k, v in view.items() if v is not None},
        "tracks": await _views(conn, rows, api_base),
    }


async def get_playlist(conn: Any, vis: Any, api_base: str, p: dict[str, Any]) -> dict[str, Any]:
    found = await catalog.row(
        conn,
        "SELECT l.uri, l.id, l.did, l.name, l.list_type, l.item_count, l.created_at, a.handle,"
        " a.display_name, a.avatar_url FROM list l LEFT JOIN artist a ON a.did = l.did"
        " WHERE l.uri = %s AND " + vis.record("view", uri="l.uri", did="l.did"),
        (p["uri"],),
    )
    if found is None:
        raise XrpcError(400, "NotFound", "playlist not found")
    rows = await catalog.list_tracks(conn, vis, p["uri"])
    playlist = {
        "uri": found["uri"],
        "id": str(found["id"]),
        "name": found["name"] or "",
        "listType": found["list_type"],
        "owner": present_actor(found),
        "trackCount": int(found["item_count"]),
        "createdAt": iso(found["created_at"]),
    }
    return {
        "playlist": {k: v for k, v in playlist.items() if v is not None},
        "tracks": await _views(conn, rows, api_base),
    }


async def get_likes(conn: Any, vis: Any, api_base: str, p: dict[str, Any]) -> dict[str, Any]:
    track = await visible_track(conn, vis, "detail", uri=p["uri"])
    limit = p.get("limit", 50)
    where, params = ["l.subject_uri = %s"], [track["uri"]]
    if "cursor" in p:
        created, key = decode_key_cursor(p["cursor"])
        where.append("(l.created_at, l.uri) < (%s, %s)")
        params += [created, key]
    found = await catalog.rows(
        conn,
        'SELECT l.uri, l.did, l.created_at, a.handle, a.display_name, a.avatar_url FROM "like" l'
        f" LEFT JOIN artist a ON a.did = l.did WHERE {' AND '.join(where)} AND "
        + vis.record("view", uri="l.uri", did="l.did")
        + " ORDER BY l.created_at DESC, l.uri DESC LIMIT %s",
        [*params, limit + 1],
    )
    body: dict[str, Any] = {
        "uri": track["uri"],
        "likes": [
            {"actor": present_actor(r), "createdAt": iso(r["created_at"])} for r in found[:limit]
        ],
    }
    if len(found) > limit:
        last = found[limit - 1]
        body["cursor"] = encode_key_cursor(last["created_at"], last["uri"])
    return body


async def get_comments(conn: Any, vis: Any, api_base: str, p: dict[str, Any]) -> dict[str, Any]:
    track = await visible_track(conn, vis, "detail", uri=p["uri"])
    found = await comment_rows(conn, vis, track["uri"])
    comments = []
    for r in found:
        view = {
            "uri": r["uri"],
            "author": present_actor(r),
            "text": r["text"],
            "timestampMs": r["timestamp_ms"],
            "createdAt": iso(r["created_at"]),
        }
        if r["updated_at"]:
            view["updatedAt"] = iso(r["updated_at"])
        comments.append(view)
    return {"uri": track["uri"], "comments": comments}


async def get_play_counts(conn: Any, vis: Any, api_base: str, p: dict[str, Any]) -> dict[str, Any]:
    found = await catalog.rows(
        conn,
        "SELECT t.uri, coalesce(pt.plays, 0) AS plays FROM track t"
        " LEFT JOIN play_track_total pt ON pt.track_uri = t.uri"
        f" WHERE t.uri = ANY(%s) AND {vis.track('detail')}",
        (list(p["uris"]),),
    )
    known = {r["uri"]: int(r["plays"]) for r in found}
    return {"counts": [{"uri": u, "playCount": known[u]} for u in p["uris"] if u in known]}


HANDLERS: dict[str, Handler] = {
    f"{NAMESPACE}.getTrack": get_track,
    f"{NAMESPACE}.getTracksByArtist": get_tracks_by_artist,
    f"{NAMESPACE}.getTopTracks": get_top_tracks,
    f"{NAMESPACE}.getTrackChart": get_track_chart,
    f"{NAMESPACE}.searchTracks": search_tracks,
    f"{NAMESPACE}.getArtist": get_artist,
    f"{NAMESPACE}.getAlbum": get_album,
    f"{NAMESPACE}.getPlaylist": get_playlist,
    f"{NAMESPACE}.getLikes": get_likes,
    f"{NAMESPACE}.getComments": get_comments,
    f"{NAMESPACE}.getPlayCounts": get_play_counts,
}


@router.get(
    "/{nsid}",
    description="Queries: " + ", ".join(sorted(HANDLERS)) + ". Lexicons: lexicons/schemas/.",
)
async def xrpc_query(
    request: Request, nsid: str, pool: Pool, vis: Vis, api_base: ApiBase
) -> JSONResponse:
    """Dispatch an ``fm.plyr.appview`` query; errors are ``{error, message}``."""
    try:
        handler = HANDLERS.get(nsid)
        if handler is None:
            raise XrpcError(501, "MethodNotImplemented", f"method not implemented: {nsid}")
        params = decode_params(nsid, request.query_params)
        async with pool.connection() as conn:
            body = await handler(conn, vis, api_base, params)
    except XrpcError as exc:
        return xrpc_error_response(exc)
    except ApiError as exc:
        return xrpc_error_response(xrpc_from_api(exc))
    except PoolTimeout:
        return xrpc_pool_timeout_response()
    return JSONResponse(body)
