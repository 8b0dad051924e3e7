"""``/tracks``: the newest tracks, top tracks, single tracks, their likes and comments, tags.

Static paths are declared before ``/{track_id}`` so they win the match, as in plyr.fm.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from api import catalog
from api.deps import AT_URI, DID, ApiBase, Pool, Read, Vis
from api.errors import ApiError
from api.pagination import decode_cursor, encode_cursor
from api.responses import encode, json_doc, json_response
from api.views import UNKNOWN_TRACK_FIELDS, iso, present_comment
from api.visibility import Context
from kernel.tags import normalise_tag

__all__ = ["get_track", "router"]

router = APIRouter(prefix="/tracks", tags=["tracks"])

_UNKNOWN = "; ".join(f"`{k}`: {v}" for k, v in UNKNOWN_TRACK_FIELDS.items())
_TRACK_DOC = f"A plyr ``TrackResponse``. Fields the network cannot tell us: {_UNKNOWN}."
_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}


@router.get("/", description=_TRACK_DOC, response_model=None, responses=json_doc(_OBJECT))
async def list_tracks(
    read: Read,
    cursor: Annotated[str | None, Query(description="opaque cursor from next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    artist_did: Annotated[str | None, Query(pattern=DID)] = None,
    tags: Annotated[
        list[str] | None, Query(description="repeatable; tracks carrying any of these tags")
    ] = None,
    filter_hidden_tags: Annotated[
        bool | None,
        Query(
            description="leave out tracks tagged with a default hidden tag "
            f"({', '.join(catalog.DEFAULT_HIDDEN_TAGS)}); default: on for discovery, off "
            "when artist_did is given"
        ),
    ] = None,
) -> Response:
    """Tracks, newest first: ``{tracks, next_cursor, has_more}``."""
    where: list[str] = []
    params: list[Any] = []
    if artist_did is not None:
        where.append("t.did = %s")
        params.append(artist_did)
    wanted = sorted({tag for tag in map(normalise_tag, tags or ()) if tag})
    if tags and not wanted:
        return json_response(encode({"tracks": [], "next_cursor": None, "has_more": False}))
    if wanted:
        where.append("t.tags && %s::text[]")
        params.append(wanted)
    hide = artist_did is None if filter_hidden_tags is None else filter_hidden_tags
    if hide:  # plyr: on for discovery, off on an artist's own page, unless asked
        where.append("NOT (t.tags && %s::text[])")
        params.append(list(catalog.DEFAULT_HIDDEN_TAGS))
    if cursor is not None:
        created, item_id = decode_cursor(cursor)
        where.append("(t.created_at, t.id) < (%s, %s)")
        params.extend([created, item_id])
    # An artist page shows the artist's own listing (plyr's VIEW context), discovery is LIST.
    context: Context = "view" if artist_did else "list"
    async with read.pool.connection() as conn:
        rows = await catalog.select_tracks(
            conn, read.vis, context, where=where, params=params, limit=limit + 1
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
        tracks = await catalog.present_tracks(conn, rows, api_base=read.api_base)
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if has_more else None
    return json_response(
        encode({"tracks": tracks, "next_cursor": next_cursor, "has_more": has_more})
    )


@router.get(
    "/top",
    description="Ranked by likes created within the period (≥ 1 like; plyr's ranking), or "
    "with ``by=plays`` by plays counted within it (≥ 1 play). Periods are rolling windows "
    "ending now (day = 24 h, week = 7 days, month = 30 days; plays from the hour the "
    "window starts in); ``like_count`` and ``play_count`` stay all-time.",
    response_model=None,
    responses=json_doc({"type": "array", "items": _OBJECT}),
)
async def top_tracks(
    read: Read,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    period: Literal["all_time", "month", "week", "day"] = "all_time",
    by: Literal["likes", "plays"] = "likes",
) -> Response:
    """The most liked (default, as plyr) or most played tracks of the period."""
    async with read.pool.connection() as conn:
        rows = await catalog.top_track_rows(conn, read.vis, period=period, limit=limit, by=by)
        tracks = await catalog.present_tracks(conn, rows, api_base=read.api_base)
    return json_response(encode(tracks))


@router.get(
    "/tags",
    description="Tags of visible tracks (from the records' ``tags`` arrays), ordered as "
    "plyr orders them: by ``total_plays`` (counted plays of those tracks), then by track "
    "count, then name. Hidden tracks add neither tracks nor plays.",
)
async def list_tags(
    pool: Pool,
    vis: Vis,
    q: Annotated[str | None, Query(max_length=50, description="tag prefix")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[dict[str, Any]]:
    """``[{name, track_count, total_plays}]``, most played (then most used) first."""
    async with pool.connection() as conn:
        found = await catalog.tag_counts(
            conn, vis, prefix=normalise_tag(q) if q else None, limit=limit
        )
    return [{**r, "total_plays": int(r["total_plays"])} for r in found]


@router.get(
    "/tags/{tag_name:path}",
    description="``created_by_handle``: the artist of the oldest visible track with the tag "
    "(the network does not say who created a tag). Up to 1,000 tracks, newest first.",
)
async def get_tag(
    pool: Pool, vis: Vis, api_base: ApiBase, tag_name: Annotated[str, Path(max_length=200)]
) -> dict[str, Any]:
    """``{tag: {name, track_count}, tracks: TrackResponse[], created_by_handle}``;
    404 when no visible track carries the tag."""
    tag = normalise_tag(tag_name)
    found = None
    if tag:
        async with pool.connection() as conn:
            found = await catalog.tag_page(conn, vis, tag, api_base=api_base)
    if found is None:
        raise ApiError(404, "not_found", "tag not found")
    return found


@router.get("/by-uri", description=_TRACK_DOC)
async def get_track_by_uri(
    read: Read,
    uri: Annotated[str, Query(pattern=AT_URI, description="AT-URI of an fm.plyr.track")],
) -> dict[str, Any]:
    """One track by its AT-URI."""
    async with read.pool.connection() as conn:
        return await _detail(conn, read.vis, read.api_base, uri=uri)


@router.get("/{track_id}", description=_TRACK_DOC, response_model=None, responses=json_doc(_OBJECT))
async def get_track(read: Read, track_id: Annotated[int, Path(ge=0)]) -> Response:
    """One track by its integer id; 404 if unknown, 410 if taken down or hidden.

    :class:`api.fastpath.TrackDetailFastPath` answers most of these requests before the
    router sees them, with :func:`api.catalog.track_detail_json` as well; this route stays for the
    docs and for whatever the fast path leaves alone (ids it does not parse).
    """
    return json_response(await catalog.track_detail_json(read, track_id))


async def _detail(
    conn: Any, vis: Any, api_base: str, *, track_id: int | None = None, uri: str | None = None
) -> dict[str, Any]:
    found = await catalog.visible_track(conn, vis, "detail", track_id=track_id, uri=uri)
    return (await catalog.present_tracks(conn, [found], api_base=api_base))[0]


@router.post(
    "/{track_id}/ref/{code}/click",
    description="plyr's web client reports a visit through a share link (``?ref=``). Share "
    "links are plyr.fm accounts' own records, so no code is known here; plyr.fm answers an "
    "unknown code with ``{ok: true}`` too.",
)
async def share_click(
    track_id: Annotated[int, Path(ge=0)], code: Annotated[str, Path(max_length=64)]
) -> dict[str, bool]:
    """``{ok: true}``, recording nothing."""
    return {"ok": True}


@router.get("/{track_id}/likes")
async def track_likes(pool: Pool, vis: Vis, track_id: Annotated[int, Path(ge=0)]) -> dict[str, Any]:
    """``{users: [{did, handle, display_name, avatar_url, liked_at}], count}``, newest first."""
    async with pool.connection() as conn:
        found = await catalog.visible_track(conn, vis, "detail", track_id=track_id)
        likers = await catalog.rows(
            conn,
            'SELECT l.did, l.created_at, a.handle, a.display_name, a.avatar_url FROM "like" l'
            " LEFT JOIN artist a ON a.did = l.did WHERE l.subject_uri = %s AND "
            + vis.record("view", uri="l.uri", did="l.did")
            + " ORDER BY l.created_at DESC, l.uri LIMIT 1000",
            (found["uri"],),
        )
    users = [
        {
            "did": r["did"],
            "handle": r["handle"] or r["did"],
            "display_name": r["display_name"] or r["handle"] or r["did"],
            "avatar_url": r["avatar_url"],
            "liked_at": iso(r["created_at"]),
        }
        for r in likers
    ]
    return {"users": users, "count": len(users)}


@router.get(
    "/{track_id}/comments",
    description="Timed comments from fm.plyr.comment records, ordered by timestamp_ms. "
    "plyr.fm hides comments unless the artist enabled them in its own preferences, which the "
    "network does not carry; we show every visible comment record (`comments_enabled: true`).",
)
async def track_comments(
    pool: Pool, vis: Vis, track_id: Annotated[int, Path(ge=0)]
) -> dict[str, Any]:
    """``{comments: [...], count, comments_enabled}``."""
    async with pool.connection() as conn:
        found = await catalog.visible_track(conn, vis, "detail", track_id=track_id)
        found_rows = await catalog.comment_rows(conn, vis, found["uri"])
    comments = [present_comment(r) for r in found_rows]
    return {"comments": comments, "count": len(comments), "comments_enabled": True}
