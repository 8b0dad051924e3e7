"""Profile columns of ``artist``, from ``app.bsky.actor.profile`` and ``fm.plyr.actor.profile``.

From the Bluesky profile: ``displayName`` and the avatar blob CID (shown through the
Bluesky CDN, as plyr does); from the plyr profile: the avatar URL and ``bio``. Each source
keeps its own commit rev (``bsky_profile_rev``, ``plyr_profile_rev``): an older rev never
overwrites a newer one, and a deleted profile record clears its columns at its rev.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from kernel.revs import rev_sql
from projectors.records import (
    Deletion,
    Rows,
    event_time,
    require_record,
    valid_record,
)

__all__ = [
    "BSKY",
    "COLLECTIONS",
    "PLYR",
    "delete_by_did",
    "deletion_row",
    "insert_profiles",
    "to_row",
]

BSKY = "app.bsky.actor.profile"
PLYR = "fm.plyr.actor.profile"
COLLECTIONS = (BSKY, PLYR)

# Per source: (rev column, {row key: column}).
_SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    BSKY: ("bsky_profile_rev", {"display_name": "bsky_display_name", "avatar": "bsky_avatar_cid"}),
    PLYR: ("plyr_profile_rev", {"avatar": "plyr_avatar_url", "bio": "bio"}),
}


def to_row(envelope: Envelope) -> dict[str, Any]:
    """``{did, rev, at, ...fields}`` for a created/updated profile; :class:`InvalidEvent`."""
    _, rev, _, record = require_record(envelope)
    assert envelope.collection is not None
    valid_record(envelope.collection, record)
    row: dict[str, Any] = {"did": envelope.did, "rev": rev, "at": event_time(envelope).isoformat()}
    if envelope.collection == BSKY:
        avatar = record.get("avatar")
        ref = avatar.get("ref") if isinstance(avatar, dict) else None
        row["display_name"] = record.get("displayName") or None
        row["avatar"] = ref.get("$link") if isinstance(ref, dict) else None
    else:
        row["avatar"] = record.get("avatar") or None
        row["bio"] = record.get("bio")
    return row


def deletion_row(deletion: Deletion) -> dict[str, Any]:
    """The row :func:`insert_profiles` writes for a deleted profile: its fields NULL."""
    return {"did": deletion.did, "rev": deletion.rev, "at": deletion.at.isoformat()}


async def insert_profiles(conn: AsyncConnection, collection: str, rows: Rows) -> None:
    """Write one source's profile fields (one row per DID), newest rev winning.

    A deleted profile is a row of :func:`deletion_row`: it clears the fields at the
    delete's rev (unless newer data is stored).
    """
    if not rows:
        return
    rev_column, fields = _SOURCES[collection]
    spec = ", ".join(f"{key} text" for key in fields)
    columns = ", ".join(fields.values())
    await conn.execute(
        f"INSERT INTO artist (did, {rev_column}, {columns}, first_seen_at, updated_at)"
        f" SELECT did, rev, {', '.join(fields)}, at, at FROM jsonb_to_recordset(%s::jsonb)"
        f" AS x(did text, rev text, at timestamptz, {spec})"
        " WHERE NOT EXISTS (SELECT 1 FROM catalog_tombstone d WHERE d.key = x.did AND d.rev = '')"
        f" ON CONFLICT (did) DO UPDATE SET {rev_column} = excluded.{rev_column}, "
        + ", ".join(f"{c} = excluded.{c}" for c in fields.values())
        + ", first_seen_at = LEAST(artist.first_seen_at, excluded.first_seen_at),"
        " updated_at = GREATEST(artist.updated_at, excluded.updated_at)"
        f" WHERE artist.{rev_column} IS NULL OR "
        + rev_sql(f"artist.{rev_column}", "<=", f"excluded.{rev_column}"),
        (rows.json,),
    )


async def delete_by_did(conn: AsyncConnection, did: str) -> None:
    """Profiles live on the artist row, which :func:`projectors.artist.delete_by_did` removes."""
    del conn, did
