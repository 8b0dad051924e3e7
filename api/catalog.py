"""Thin read queries over the catalog read models, shared by the REST and XRPC routers
(and the track permalink fast path): routers import these, never each other.

Each function takes a connection and a :class:`~api.visibility.Visibility`, runs one or two
statements and returns rows or presented JSON; the SQL lives here so both surfaces ask the
same questions of the database. Unknown items raise :class:`~api.errors.ApiError` 404,
hidden ones 410 (:func:`shown_row`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from api.errors import ApiError
from api.responses import encode
from api.views import TRACK_COLUMNS, TRACK_FROM, present_track
from api.visibility import Context, Visibility
from kernel.identity import INVALID_HANDLE

if TYPE_CHECKING:  # api.deps imports the track loader, which imports this module
    from api.deps import Reader

__all__ = [
    "ARTIST_COLUMNS",
    "DEFAULT_HIDDEN_TAGS",
    "album_detail",
    "album_tracks",
    "artist_by_did",
    "artist_by_handle",
    "comment_rows",
    "featured_people",
    "list_tracks",
    "people",
    "present_tracks",
    "row",
    "rows",
    "select_tracks",
    "shown_row",
    "since",
    "tag_counts",
    "tag_page",
    "top_track_rows",
    "track_detail_json",
    "track_row_visible",
    "track_rows_visible_by_id",
    "tracks_by_uris",
    "visible_track",
]

ARTIST_COLUMNS = (
    "a.did, a.handle, a.display_name, a.avatar_url, a.bio, a.pds_url, a.account_status,"
    " a.first_seen_at, a.updated_at"
)


async def rows(
    conn: AsyncConnection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> list[dict[str, Any]]:
    """All rows of a query as dicts."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql, params)
    return await cur.fetchall()


async def row(
    conn: AsyncConnection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> dict[str, Any] | None:
    """The first row of a query as a dict, or ``None``."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql, params)
    return await cur.fetchone()


async def select_tracks(
    conn: AsyncConnection,
    vis: Visibility,
    context: Context,
    *,
    where: Iterable[str] = (),
    params: Sequence[Any] = (),
    order: str = "t.created_at DESC, t.id DESC",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Joined track rows visible in ``context`` matching ``where`` (ANDed)."""
    clauses = [vis.track(context), *where]
    sql = f"SELECT {TRACK_COLUMNS} FROM {TRACK_FROM} WHERE {' AND '.join(clauses)} ORDER BY {order}"
    if limit is not None:
        # A literal, not a parameter: with LIMIT $n the generic plan assumes 10% of the
        # rows, looks costlier than the custom one and PostgreSQL re-plans every time
        # (~0.7 ms on /tracks/); with a literal it settles on the generic plan.
        sql += f" LIMIT {int(limit)}"
    return await rows(conn, sql, list(params))


async def track_row_visible(
    conn: AsyncConnection,
    vis: Visibility,
    context: Context,
    *,
    track_id: int | None = None,
    uri: str | None = None,
) -> tuple[dict[str, Any] | None, bool]:
    """A joined track row by id or URI (``None`` if unknown), and whether ``context`` may
    show it: the row and the visibility decision in one statement, one round trip."""
    key, value = ("t.id", track_id) if track_id is not None else ("t.uri", uri)
    found = await row(
        conn,
        f"SELECT {TRACK_COLUMNS}, {vis.track(context)} AS visible_in_context"
        f" FROM {TRACK_FROM} WHERE {key} = %s",
        (value,),
    )
    if found is None:
        return None, False
    return found, bool(found.pop("visible_in_context"))


async def track_rows_visible_by_id(
    conn: AsyncConnection, vis: Visibility, context: Context, ids: Sequence[int]
) -> dict[int, tuple[dict[str, Any], bool]]:
    """Joined track rows for ``ids`` (unknown ones absent), each with whether ``context``
    may show it: :func:`track_row_visible` for many ids in one prepared statement."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_by_id_sql(vis, context), (list(ids),), prepare=True)
    found: dict[int, tuple[dict[str, Any], bool]] = {}
    for r in await cur.fetchall():
        shown = bool(r.pop("visible_in_context"))
        found[r["id"]] = (r, shown)
    return found


@cache
def _by_id_sql(vis: Visibility, context: Context) -> str:
    # Built once per rule and context: the statement text is also psycopg's key for the
    # prepared statement. ``bigint[]``: psycopg sends small ids as a narrower array type.
    # ARRAY(SELECT unnest(...)): with a bare ANY(%s) the planner sees the array's length
    # in a custom plan, finds the generic one (guessing 10 ids) dearer than one id and
    # plans again on every execution: 0.64 ms of PostgreSQL CPU for one id instead of
    # 0.10. Behind the sub-select both plans guess alike and the generic one is kept.
    return (
        f"SELECT {TRACK_COLUMNS}, {vis.track(context)} AS visible_in_context"
        f" FROM {TRACK_FROM} WHERE t.id = ANY(ARRAY(SELECT unnest(%s::bigint[])))"
    )


async def tracks_by_uris(
    conn: AsyncConnection, vis: Visibility, context: Context, uris: Sequence[str]
) -> list[dict[str, Any]]:
    """Visible tracks for ``uris``, in the given order (unknown or hidden ones skipped)."""
    if not uris:
        return []
    found = await select_tracks(conn, vis, context, where=["t.uri = ANY(%s)"], params=[list(uris)])
    by_uri = {r["uri"]: r for r in found}
    return [by_uri[u] for u in uris if u in by_uri]


async def list_tracks(
    conn: AsyncConnection, vis: Visibility, list_uri: str
) -> list[dict[str, Any]]:
    """The visible tracks of a list record (album or playlist), in the record's order."""
    items = await rows(
        conn, "SELECT subject_uri FROM list_item WHERE list_uri = %s ORDER BY position", (list_uri,)
    )
    return await tracks_by_uris(conn, vis, "view", [i["subject_uri"] for i in items])


async def people(conn: AsyncConnection, dids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Artist rows (handle, display_name, avatar_url) for ``dids``."""
    wanted = sorted(set(dids))
    if not wanted:
        return {}
    found = await rows(
        conn,
        "SELECT did, handle, display_name, avatar_url FROM artist WHERE did = ANY(%s)",
        (wanted,),
    )
    return {r["did"]: r for r in found}


async def featured_people(
    conn: AsyncConnection, track_rows: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """:func:`people` for every artist featured on ``track_rows``, in one query."""
    return await people(
        conn,
        {
            f["did"]
            for r in track_rows
            for f in r.get("features") or []
            if isinstance(f, dict) and isinstance(f.get("did"), str)
        },
    )


async def present_tracks(
    conn: AsyncConnection, track_rows: Sequence[Mapping[str, Any]], *, api_base: str
) -> list[dict[str, Any]]:
    """``TrackResponse`` objects for rows, with featured artists resolved in one query."""
    known = await featured_people(conn, track_rows)
    return [present_track(r, api_base=api_base, people=known) for r in track_rows]


async def artist_by_did(
    conn: AsyncConnection, vis: Visibility, did: str, context: Context = "detail"
) -> dict[str, Any] | None:
    """The visible artist row for ``did``."""
    return await row(
        conn,
        f"SELECT {ARTIST_COLUMNS} FROM artist a WHERE a.did = %s AND {vis.actor(context)}",
        (did,),
    )


async def artist_by_handle(
    conn: AsyncConnection, vis: Visibility, handle: str, context: Context = "detail"
) -> dict[str, Any] | None:
    """The visible artist row for ``handle`` (case-insensitive; handles are); never for
    :data:`~kernel.identity.INVALID_HANDLE`, which many unverified artists share."""
    if handle.lower() == INVALID_HANDLE:
        return None
    return await row(
        conn,
        f"SELECT {ARTIST_COLUMNS} FROM artist a WHERE lower(a.handle) = lower(%s)"
        f" AND {vis.actor(context)} ORDER BY a.updated_at DESC LIMIT 1",
        (handle,),
    )


def since(period: str, now: datetime) -> datetime | None:
    """Start of a ``/tracks/top`` period (``None`` for all_time)."""
    days = {"day": 1, "week": 7, "month": 30}.get(period)
    return None if days is None else now - timedelta(days=days)


async def top_track_rows(
    conn: AsyncConnection, vis: Visibility, *, period: str, limit: int, by: str = "likes"
) -> list[dict[str, Any]]:
    """Rows of the top tracks for a period (REST ``/tracks/top``, XRPC ``getTopTracks``).

    ``by="likes"`` (plyr's ranking): likes created within the period, ≥ 1. ``by="plays"``:
    plays within the period (``play_hourly`` buckets from the hour the period starts in,
    so up to an hour more than the rolling window), ≥ 1; all-time from the totals. Ties go
    to the newer id; only tracks visible in lists are ranked.
    """
    start = since(period, datetime.now(UTC))
    if by == "plays":
        if start is None:
            counts = "SELECT track_uri, plays AS n FROM play_track_total WHERE plays > 0"
            params: list[Any] = []
        else:
            counts = (
                "SELECT track_uri, sum(plays) AS n FROM play_hourly"
                " WHERE hour >= date_trunc('hour', %s::timestamptz) GROUP BY track_uri"
            )
            params = [start]
        return await rows(
            conn,
            f"WITH counts AS ({counts}) SELECT {TRACK_COLUMNS} FROM {TRACK_FROM}"
            f" JOIN counts c ON c.track_uri = t.uri WHERE {vis.track('list')}"
            f" ORDER BY c.n DESC, t.id DESC LIMIT {int(limit)}",
            params,
        )
    if start is None:
        return await select_tracks(
            conn,
            vis,
            "list",
            where=["t.like_count > 0"],
            order="t.like_count DESC, t.id DESC",
            limit=limit,
        )
    # Likes in the period, counted per subject, then joined; the LIMIT applies after visibility.
    ranked = await rows(
        conn,
        'SELECT subject_uri, count(*) AS n FROM "like" WHERE created_at >= %s'
        " GROUP BY subject_uri ORDER BY n DESC, subject_uri LIMIT %s",
        (start, limit * 4 + 20),
    )
    found = await tracks_by_uris(conn, vis, "list", [r["subject_uri"] for r in ranked])
    return found[:limit]


async def visible_track(
    conn: AsyncConnection,
    vis: Visibility,
    context: Context,
    *,
    track_id: int | None = None,
    uri: str | None = None,
) -> dict[str, Any]:
    """The joined row of a track visible in ``context``: 404 unknown, 410 hidden."""
    found, shown = await track_row_visible(conn, vis, context, track_id=track_id, uri=uri)
    return shown_row(found, shown)


def shown_row(found: dict[str, Any] | None, shown: bool) -> dict[str, Any]:
    """``found`` if it may be shown; else the API's answer: 404 unknown, 410 hidden."""
    if found is None:
        raise ApiError(404, "not_found", "track not found")
    if not shown:
        raise ApiError(410, "gone", "track is not available")
    return found


async def comment_rows(
    conn: AsyncConnection, vis: Visibility, subject_uri: str
) -> list[dict[str, Any]]:
    """Visible comments on a track, by timestamp (REST and XRPC ``getComments``)."""
    return await rows(
        conn,
        "SELECT c.id, c.uri, c.did, c.text, c.timestamp_ms, c.created_at, c.updated_at,"
        " a.handle, a.display_name, a.avatar_url FROM comment c"
        " LEFT JOIN artist a ON a.did = c.did WHERE c.subject_uri = %s AND "
        + vis.record("view", uri="c.uri", did="c.did")
        + " ORDER BY c.timestamp_ms, c.created_at, c.uri LIMIT 1000",
        (subject_uri,),
    )


async def album_tracks(
    conn: AsyncConnection, vis: Visibility, did: str, slug: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The ``album`` row of ``did``'s album ``slug`` and its visible track rows in order
    (the album list record's order, then tracks naming the album by date); ``None`` if
    there is no such album."""
    album = await row(conn, "SELECT * FROM album WHERE did = %s AND slug = %s", (did, slug))
    if album is None:
        return None
    ordered: list[dict[str, Any]] = []
    if album["list_uri"]:
        ordered = await list_tracks(conn, vis, album["list_uri"])
    seen = {r["uri"] for r in ordered}
    by_title = await select_tracks(
        conn,
        vis,
        "view",
        where=["t.did = %s", "t.album_slug = %s"],
        params=[did, slug],
        order="t.created_at, t.id",
    )
    return album, ordered + [r for r in by_title if r["uri"] not in seen]


async def album_detail(
    conn: AsyncConnection, vis: Visibility, artist: dict[str, Any], slug: str, *, api_base: str
) -> dict[str, Any] | None:
    """plyr's album page body for an artist row and slug (``None``: no such album)."""
    found = await album_tracks(conn, vis, artist["did"], slug)
    if found is None:
        return None
    album, ordered = found
    tracks = await present_tracks(conn, ordered, api_base=api_base)
    return {
        "metadata": {
            "id": str(album["id"]),
            "title": album["title"],
            "slug": album["slug"],
            "description": album["description"],
            "artist": artist["display_name"] or artist["handle"] or artist["did"],
            "artist_handle": artist["handle"] or artist["did"],
            "artist_did": artist["did"],
            "track_count": len(tracks),
            "total_plays": sum(int(r["play_count"] or 0) for r in ordered),
            "image_url": album["image_url"] or artist["avatar_url"],
            "list_uri": album["list_uri"],
        },
        "tracks": tracks,
    }


async def track_detail_json(read: Reader, track_id: int) -> bytes:
    """The encoded ``TrackResponse`` of ``GET /tracks/{track_id}``; raises :class:`ApiError`
    404 (unknown) or 410 (hidden). The lookup is batched with the others in flight."""
    found = await read.tracks.load(track_id)
    row = shown_row(found.row, found.visible)
    return encode(present_track(row, api_base=read.api_base, people=found.people))


DEFAULT_HIDDEN_TAGS: tuple[str, ...] = ("ai", "ai-slop", "suno")
"""plyr's default hidden tags: discovery lists leave out tracks carrying any of them
(``filter_hidden_tags``), and ``/config`` tells clients so."""


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def tag_counts(
    conn: AsyncConnection, vis: Visibility, *, prefix: str | None, limit: int
) -> list[dict[str, Any]]:
    """``{name, track_count, total_plays}`` of the tags on tracks visible in lists, most
    played first, then most used, then by name (plyr orders by plays); ``prefix``: only
    tags starting with it (already normalised). Hidden tracks add neither tracks nor plays.
    """
    where = [vis.track("list")]
    params: list[Any] = []
    if prefix:
        where.append("tag LIKE %s")
        params.append(_escape_like(prefix) + "%")
    return await rows(
        conn,
        "SELECT tag AS name, count(*)::integer AS track_count,"
        " coalesce(sum(pt.plays), 0)::bigint AS total_plays FROM track t"
        " LEFT JOIN play_track_total pt ON pt.track_uri = t.uri CROSS JOIN unnest(t.tags) AS tag"
        f" WHERE {' AND '.join(where)} GROUP BY tag"
        f" ORDER BY total_plays DESC, track_count DESC, tag LIMIT {int(limit)}",
        params,
    )


async def tag_page(
    conn: AsyncConnection, vis: Visibility, tag: str, *, api_base: str, limit: int = 1000
) -> dict[str, Any] | None:
    """plyr's tag page for a normalised ``tag`` (``None`` when no visible track has it):
    ``{tag: {name, track_count}, tracks, created_by_handle}``, tracks newest first.

    plyr records who created a tag; the network does not, so ``created_by_handle`` is the
    artist of the oldest visible track carrying it."""
    found = await select_tracks(
        conn, vis, "list", where=["t.tags @> ARRAY[%s]::text[]"], params=[tag], limit=limit
    )
    if not found:
        return None
    first = min(found, key=lambda r: (r["created_at"], r["id"]))
    count = len(found)
    if count >= limit:  # more than the page shows: count them all
        total = await row(
            conn,
            "SELECT count(*)::integer AS n FROM track t LEFT JOIN artist a ON a.did = t.did"
            f" WHERE t.tags @> ARRAY[%s]::text[] AND {vis.track('list')}",
            (tag,),
        )
        count = total["n"] if total else count
    return {
        "tag": {"name": tag, "track_count": count},
        "tracks": await present_tracks(conn, found, api_base=api_base),
        "created_by_handle": first["artist_handle"] or first["did"],
    }
