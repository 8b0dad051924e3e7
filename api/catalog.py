"""Thin read queries over the catalog read models, shared by the REST and XRPC routers.

Each function takes a connection and a :class:`~api.visibility.Visibility`, runs one or two
statements and returns rows or presented JSON; the SQL lives here so both surfaces ask the
same questions of the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from api.views import TRACK_COLUMNS, TRACK_FROM, present_track
from api.visibility import Context, Visibility

__all__ = [
    "ARTIST_COLUMNS",
    "artist_by_did",
    "artist_by_handle",
    "featured_people",
    "people",
    "present_tracks",
    "select_tracks",
    "track_row",
    "track_row_visible",
    "track_rows_visible_by_id",
    "tracks_by_uris",
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


async def track_row(
    conn: AsyncConnection, *, track_id: int | None = None, uri: str | None = None
) -> tuple[dict[str, Any] | None, bool]:
    """A joined track row by id or URI, unfiltered, plus whether it exists at all."""
    key, value = ("t.id", track_id) if track_id is not None else ("t.uri", uri)
    found = await row(conn, f"SELECT {TRACK_COLUMNS} FROM {TRACK_FROM} WHERE {key} = %s", (value,))
    return found, found is not None


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


async def visible(conn: AsyncConnection, vis: Visibility, context: Context, uri: str) -> bool:
    """Whether the track ``uri`` may be shown in ``context``."""
    found = await row(
        conn,
        f"SELECT 1 AS ok FROM track t LEFT JOIN artist a ON a.did = t.did"
        f" WHERE t.uri = %s AND {vis.track(context)}",
        (uri,),
    )
    return found is not None


async def tracks_by_uris(
    conn: AsyncConnection, vis: Visibility, context: Context, uris: Sequence[str]
) -> list[dict[str, Any]]:
    """Visible tracks for ``uris``, in the given order (unknown or hidden ones skipped)."""
    if not uris:
        return []
    found = await select_tracks(conn, vis, context, where=["t.uri = ANY(%s)"], params=[list(uris)])
    by_uri = {r["uri"]: r for r in found}
    return [by_uri[u] for u in uris if u in by_uri]


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
    """The visible artist row for ``handle`` (case-insensitive; handles are)."""
    return await row(
        conn,
        f"SELECT {ARTIST_COLUMNS} FROM artist a WHERE lower(a.handle) = lower(%s)"
        f" AND {vis.actor(context)} ORDER BY a.updated_at DESC LIMIT 1",
        (handle,),
    )


def since(period: str, now: datetime) -> datetime | None:
    """Start of a ``/tracks/top`` period (``None`` for all_time)."""
    from datetime import timedelta

    days = {"day": 1, "week": 7, "month": 30}.get(period)
    return None if days is None else now - timedelta(days=days)
