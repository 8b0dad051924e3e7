"""The ``artist`` read model: one row per repo we saw, with handle and account status.

Handles come from identity events (``None`` keeps the one we had) and account statuses
from account events, the last one in log order winning (one repo's events share a
partition). The profile columns are written by :mod:`projectors.profile`;
:func:`refresh_effective` derives what the API shows from them. Wall-clock-like columns
(``first_seen_at``, ``updated_at``) come from event times, so a rebuild writes the same.
A deleted account is purged (:func:`delete_by_did`) and its DID tombstoned, so later
events of that repo do not bring the row back until an account event reactivates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg import AsyncConnection

from kernel.ids import BSKY_AVATAR_PARTS
from projectors.records import Rows

__all__ = [
    "AVATAR_URL_SQL",
    "apply_handles",
    "apply_statuses",
    "delete_by_did",
    "refresh_effective",
    "tombstone_account",
    "touch_artists",
]

# The avatar an artist shows, over a row with ``did``, ``plyr_avatar_url`` and
# ``bsky_avatar_cid`` (``artist``, ``search_artist``); parameters: BSKY_AVATAR_PARTS.
AVATAR_URL_SQL = "coalesce(plyr_avatar_url, %s || did || %s || bsky_avatar_cid || %s)"

_NOT_DELETED = "NOT EXISTS (SELECT 1 FROM catalog_tombstone d WHERE d.key = x.did AND d.rev = '')"


async def touch_artists(conn: AsyncConnection, seen: Rows) -> None:
    """Make sure every repo we have events from has a row (``first_seen_at`` = earliest).

    ``seen``: rows of ``{did, at}``, ``at`` the earliest event time of the repo.
    """
    if not seen:
        return
    await conn.execute(
        "INSERT INTO artist (did, first_seen_at, updated_at)"
        " SELECT did, at, at FROM jsonb_to_recordset(%s::jsonb) AS x(did text, at timestamptz)"
        f" WHERE {_NOT_DELETED}"
        " ON CONFLICT (did) DO UPDATE SET first_seen_at = excluded.first_seen_at"
        " WHERE artist.first_seen_at > excluded.first_seen_at",
        (seen.json,),
    )


async def apply_handles(conn: AsyncConnection, rows: Rows) -> None:
    """Apply identity events: ``rows`` of ``{did, handle, at}``, one per DID."""
    if not rows:
        return
    await conn.execute(
        "INSERT INTO artist (did, handle, first_seen_at, updated_at)"
        " SELECT did, handle, at, at FROM jsonb_to_recordset(%s::jsonb)"
        " AS x(did text, handle text, at timestamptz)"
        f" WHERE {_NOT_DELETED}"
        " ON CONFLICT (did) DO UPDATE SET handle = coalesce(excluded.handle, artist.handle),"
        " first_seen_at = LEAST(artist.first_seen_at, excluded.first_seen_at),"
        " updated_at = GREATEST(artist.updated_at, excluded.updated_at)",
        (rows.json,),
    )


async def apply_statuses(conn: AsyncConnection, rows: Rows) -> None:
    """Apply account events other than deletion: ``rows`` of ``{did, status, at}``.

    The row is kept whatever the status (the API hides non-active artists and their
    content); a reactivated account loses its deletion tombstone.
    """
    if not rows:
        return
    payload = rows.json
    await conn.execute(
        "DELETE FROM catalog_tombstone WHERE rev = '' AND key IN"
        " (SELECT did FROM jsonb_to_recordset(%s::jsonb) AS x(did text))",
        (payload,),
    )
    await conn.execute(
        "INSERT INTO artist (did, account_status, first_seen_at, updated_at)"
        " SELECT did, status, at, at FROM jsonb_to_recordset(%s::jsonb)"
        " AS x(did text, status text, at timestamptz)"
        " ON CONFLICT (did) DO UPDATE SET account_status = excluded.account_status,"
        " first_seen_at = LEAST(artist.first_seen_at, excluded.first_seen_at),"
        " updated_at = GREATEST(artist.updated_at, excluded.updated_at)",
        (payload,),
    )


async def refresh_effective(conn: AsyncConnection, dids: Sequence[str]) -> None:
    """Derive ``display_name``, ``avatar_url`` (plyr avatar, else the Bluesky CDN URL)."""
    if not dids:
        return
    await conn.execute(
        "UPDATE artist SET display_name = e.display_name, avatar_url = e.avatar_url FROM ("
        " SELECT did, bsky_display_name AS display_name,"
        f"  {AVATAR_URL_SQL} AS avatar_url"
        " FROM artist WHERE did = ANY(%b::text[])) AS e"
        " WHERE artist.did = e.did"
        " AND (artist.display_name, artist.avatar_url)"
        "  IS DISTINCT FROM (e.display_name, e.avatar_url)",
        (*BSKY_AVATAR_PARTS, sorted(dids)),
    )


async def tombstone_account(conn: AsyncConnection, did: str, at: datetime) -> None:
    """Forget the record tombstones of a purged repo and tombstone the DID itself."""
    await conn.execute("DELETE FROM catalog_tombstone WHERE did = %s", (did,))
    await conn.execute(
        "INSERT INTO catalog_tombstone (key, did, rev, deleted_at) VALUES (%s, %s, '', %s)",
        (did, did, at),
    )


async def delete_by_did(conn: AsyncConnection, did: str) -> None:
    """Remove the artist row of a deleted account."""
    await conn.execute("DELETE FROM artist WHERE did = %s", (did,))
