"""The ``list`` and ``list_item`` read models, from ``fm.plyr.list`` records.

Playlists, albums and "liked" lists keep their items in record order (``position`` is the
index in ``items``), stored from the record rather than read live from the PDS. The module
is ``lists`` so it does not shadow the builtin ``list``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from kernel.ids import list_id
from projectors.base import parse_datetime
from projectors.records import (
    RecordTable,
    Rows,
    event_time,
    require_record,
    to_json,
    valid_record,
)

__all__ = [
    "COLLECTION",
    "TABLE",
    "ListRow",
    "delete_by_did",
    "delete_lists",
    "encode_items",
    "insert_lists",
    "to_row",
]

COLLECTION = "fm.plyr.list"

_COLUMNS = (
    ("uri", "text"), ("id", "uuid"), ("did", "text"), ("rkey", "text"), ("cid", "text"),
    ("rev", "text"), ("name", "text"), ("list_type", "text"), ("item_count", "integer"),
    ("created_at", "timestamptz"), ("updated_at", "timestamptz"),
    ("indexed_at", "timestamptz"),
)  # fmt: skip
TABLE = RecordTable("list", _COLUMNS, touched="did")


@dataclass(frozen=True, slots=True)
class ListRow:
    """A ``list`` row and its ``list_item`` rows (JSON-ready)."""

    row: dict[str, Any]
    items: list[dict[str, Any]]


def to_row(envelope: Envelope) -> ListRow:
    """The rows for a created/updated list record; :class:`InvalidEvent` if invalid."""
    uri, rev, cid, record = require_record(envelope)
    valid_record(COLLECTION, record)
    items = record["items"]
    updated = record.get("updatedAt")
    return ListRow(
        row={
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
        },
        items=[
            {
                "list_uri": uri,
                "position": position,
                "subject_uri": item["subject"]["uri"],
                "subject_cid": item["subject"].get("cid"),
            }
            for position, item in enumerate(items)
        ],
    )


def encode_items(lists: Sequence[ListRow]) -> dict[str, str]:
    """Each list's items as the inside of a JSON array (no brackets), for
    :func:`insert_lists`; lists without items are left out."""
    return {entry.row["uri"]: to_json(entry.items)[1:-1] for entry in lists if entry.items}


async def insert_lists(conn: AsyncConnection, rows: Rows, items: Mapping[str, str]) -> set[str]:
    """Write lists and replace their items (newest rev wins); the URIs written.

    ``items`` is :func:`encode_items` of the lists: the items of the lists written are
    joined into one array.
    """
    written, _ = await TABLE.upsert(conn, rows)
    if not written:
        return written
    await conn.execute("DELETE FROM list_item WHERE list_uri = ANY(%b::text[])", (sorted(written),))
    kept = [items[uri] for uri in sorted(written) if uri in items]
    if kept:
        await conn.execute(
            "INSERT INTO list_item (list_uri, position, subject_uri, subject_cid)"
            " SELECT list_uri, position, subject_uri, subject_cid FROM jsonb_to_recordset("
            "%s::jsonb) AS x(list_uri text, position integer, subject_uri text, subject_cid text)",
            ("[" + ",".join(kept) + "]",),
        )
    return written


async def delete_lists(conn: AsyncConnection, deletions: Rows) -> None:
    """Delete lists and their items (leaving tombstones)."""
    await TABLE.delete(conn, deletions)


async def delete_by_did(conn: AsyncConnection, did: str) -> None:
    """Remove every list of a repo (items go with them)."""
    await TABLE.delete_by_did(conn, did)
