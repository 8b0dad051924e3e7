"""``/activity``: the network-wide feed of likes, uploads, comments, joins and lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import catalog
from api.deps import Pool, Vis
from api.pagination import decode_key_cursor, encode_key_cursor
from api.views import present_user

__all__ = ["router"]

router = APIRouter(prefix="/activity", tags=["activity"])

# One branch per event source, each newest-first with its own LIMIT so each can use its
# created_at index; columns: type, actor, created_at, key (tie-breaker), track, text, list.
_BRANCHES = (
    """(SELECT 'like' AS type, l.did AS actor, l.created_at, l.uri AS key,
        l.subject_uri AS track_uri, NULL AS text, NULL AS list_uri FROM "like" l
        WHERE l.created_at <= %(before)s ORDER BY l.created_at DESC LIMIT %(n)s)""",
    """(SELECT 'track', t.did, t.created_at, t.uri, t.uri, NULL, NULL FROM track t
        WHERE t.created_at <= %(before)s ORDER BY t.created_at DESC LIMIT %(n)s)""",
    """(SELECT 'comment', c.did, c.created_at, c.uri, c.subject_uri, c.text, NULL FROM comment c
        WHERE c.created_at <= %(before)s ORDER BY c.created_at DESC LIMIT %(n)s)""",
    """(SELECT 'join', a.did, a.first_seen_at, a.did, NULL, NULL, NULL FROM artist a
        WHERE a.first_seen_at <= %(before)s AND EXISTS (SELECT 1 FROM track t WHERE t.did = a.did)
        ORDER BY a.first_seen_at DESC LIMIT %(n)s)""",
    """(SELECT CASE WHEN l.list_type = 'album' THEN 'album_release' ELSE 'playlist_create' END,
        l.did, l.created_at, l.uri, NULL, NULL, l.uri FROM list l
        WHERE l.list_type IN ('album', 'playlist') AND l.created_at <= %(before)s
        ORDER BY l.created_at DESC LIMIT %(n)s)""",
)


@router.get("/")
async def activity_feed(
    pool: Pool,
    vis: Vis,
    cursor: Annotated[str | None, Query(description="opaque cursor from next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """``{events: [{type, actor, track?, comment_text?, collection?, created_at}], ...}``."""
    before, after_key = (
        decode_key_cursor(cursor) if cursor else (datetime.now(UTC) + timedelta(days=3650), "")
    )
    sql = (
        "SELECT * FROM (" + " UNION ALL ".join(_BRANCHES) + ") e"
        " WHERE (e.created_at, e.key) < (%(before)s, %(key)s) OR %(first)s"
        " ORDER BY e.created_at DESC, e.key DESC LIMIT %(n)s"
    )
    events: list[dict[str, Any]] = []
    async with pool.connection() as conn:
        found = await catalog.rows(
            conn,
            sql,
            {"before": before, "key": after_key, "first": cursor is None, "n": limit + 1},
        )
        has_more = len(found) > limit
        found = found[:limit]
        actors = await catalog.rows(
            conn,
            f"SELECT {catalog.ARTIST_COLUMNS} FROM artist a WHERE a.did = ANY(%s)"
            f" AND {vis.actor('list')}",
            (list({r["actor"] for r in found}),),
        )
        by_did = {a["did"]: a for a in actors}
        tracks = await catalog.tracks_by_uris(
            conn, vis, "list", [r["track_uri"] for r in found if r["track_uri"]]
        )
        by_uri = {t["uri"]: t for t in tracks}
        lists = await catalog.rows(
            conn,
            "SELECT l.uri, l.id, l.name, l.list_type, a.handle, al.id AS album_id, al.slug,"
            " al.image_url FROM list l LEFT JOIN artist a ON a.did = l.did"
            " LEFT JOIN album al ON al.list_uri = l.uri WHERE l.uri = ANY(%s)",
            ([r["list_uri"] for r in found if r["list_uri"]],),
        )
        by_list = {x["uri"]: x for x in lists}
    for r in found:
        actor = by_did.get(r["actor"])
        if actor is None:
            continue
        event: dict[str, Any] = {
            "type": r["type"],
            "actor": present_user(actor),
            "track": None,
            "comment_text": r["text"],
            "collection": None,
            "created_at": r["created_at"].isoformat().replace("+00:00", "Z"),
        }
        if r["track_uri"]:
            t = by_uri.get(r["track_uri"])
            if t is None:
                continue
            event["track"] = {
                "id": t["id"],
                "title": t["title"],
                "artist_handle": t["artist_handle"] or t["did"],
                "image_url": t["image_url"],
                "thumbnail_url": t["image_url"],
                "artist_avatar_url": t["artist_avatar_url"],
            }
        if r["list_uri"]:
            x = by_list.get(r["list_uri"])
            if x is None:
                continue
            album = x["list_type"] == "album" and x["album_id"] is not None
            event["collection"] = {
                "type": "album" if album else "playlist",
                "id": str(x["album_id"] if album else x["id"]),
                "name": x["name"] or "",
                "image_url": x["image_url"],
                "owner_handle": x["handle"] or r["actor"],
                "slug": x["slug"] if album else None,
            }
        events.append(event)
    next_cursor = encode_key_cursor(found[-1]["created_at"], found[-1]["key"]) if has_more else None
    return {"events": events, "next_cursor": next_cursor, "has_more": has_more}


@router.get("/histogram")
async def activity_histogram(
    pool: Pool, days: Annotated[int, Query(ge=1, le=30)] = 7
) -> dict[str, Any]:
    """``{buckets: [{date, count}]}``: likes, uploads and comments per UTC day, oldest first."""
    today = datetime.now(UTC).date()
    start = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), UTC)
    async with pool.connection() as conn:
        found = await catalog.rows(
            conn,
            "SELECT d::date AS day, count(*) AS n FROM ("
            " SELECT (created_at AT TIME ZONE 'UTC')::date AS d FROM \"like\""
            " WHERE created_at >= %s"
            " UNION ALL SELECT (created_at AT TIME ZONE 'UTC')::date FROM track"
            " WHERE created_at >= %s UNION ALL SELECT (created_at AT TIME ZONE 'UTC')::date"
            " FROM comment WHERE created_at >= %s) e GROUP BY d",
            (start, start, start),
        )
    counts = {r["day"]: int(r["n"]) for r in found}
    buckets = []
    for i in range(days):
        day = today - timedelta(days=days - 1 - i)
        buckets.append({"date": day.isoformat(), "count": counts.get(day, 0)})
    return {"buckets": buckets}
