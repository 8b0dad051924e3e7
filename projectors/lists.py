"""The ``list`` and ``list_item`` read models, from ``fm.plyr.list`` records.

Playlists, albums and "liked" lists keep their items in record order (``position`` is the
index in ``items``), stored from the record rather than read live from the PDS. The module
is ``lists`` so it does not shadow the builtin ``list``.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from kernel.ids import list_id
from projectors.base import parse_datetime
from projectors.records import (
    ArtistWrites,
    RecordTable,
    Rows,
    Touched,
    event_time,
    require_record,
    valid_record,
)

__all__ = [
    "COLLECTION",
    "SHARED",
    "TABLE",
    "delete",
    "delete_by_did",
    "insert",
    "to_row",
    "touches",
]

COLLECTION = "fm.plyr.list"
SHARED = False

_COLUMNS = (
    ("uri", "text"), ("id", "uuid"), ("did", "text"), ("rkey", "text"), ("cid", "text"),
    ("rev", "text"), ("name", "text"), ("list_type", "text"), ("item_count", "integer"),
    ("created_at", "timestamptz"), ("updated_at", "timestamptz"),
    ("indexed_at", "timestamptz"),
)  # fmt: skip
TABLE = RecordTable("list", _COLUMNS, touched="did")


def to_row(envelope: Envelope) -> dict[str, Any]:
    """The ``list`` row of a created/updated record, its ``list_item`` rows under ``items``
    (JSON-ready); :class:`InvalidEvent` if invalid."""
    uri, rev, cid, record = require_record(envelope)
    valid_record(COLLECTION, record)
    items = record["items"]
    updated = record.get("updatedAt")
    return {
        "uri": uri,
        "id": str(list_id(uri)),
        "did": envelope.did,
        "rkey": envelope.rkey,
        "cid": cid,
        "rev": rev,
        "name": record.get("name"),
        "list_type": record.get("listType"),
        "item_count": len(items),
        "created_at": parse_datetime(record["createdAt"], "createdAt").isoformat(),
        "updated_at": (
            parse_datetime(updated, "updatedAt").isoformat() if updated is not None else None
        ),
        "indexed_at": event_time(envelope).isoformat(),
        "items": [
            {
                "position": position,
                "subject_uri": item["subject"]["uri"],
                "subject_cid": item["subject"].get("cid"),
            }
            for position, item in enumerate(items)
        ],
    }


async def insert(conn: AsyncConnection, rows: Rows) -> Touched:
    """Write lists and replace their items (newest rev wins).

    The items travel inside each row (``items``, which the ``list`` table does not read)
    and are unpacked in SQL for the lists written.
    """
    written, _ = await TABLE.upsert(conn, rows)
    if not written:
        return Touched()
    uris = sorted(written)
    await conn.execute("DELETE FROM list_item WHERE list_uri = ANY(%b::text[])", (uris,))
    await conn.execute(
        "INSERT INTO list_item (list_uri, position, subject_uri, subject_cid)"
        " SELECT x.uri, i.position, i.subject_uri, i.subject_cid"
        " FROM jsonb_to_recordset(%s::jsonb) AS x(uri text, items jsonb),"
        " jsonb_to_recordset(x.items) AS i(position integer, subject_uri text, subject_cid text)"
        " WHERE x.uri = ANY(%b::text[])",
        (rows.json, uris),
    )
    return Touched()


# Album lists make albums: the artists whose lists change have theirs derived again. A
# list's items go with it (deleted or removed with its repo).
_WRITES = ArtistWrites(TABLE)
touches = _WRITES.touches
delete = _WRITES.delete
delete_by_did = _WRITES.delete_by_did
