"""The ``comment`` read model, from ``fm.plyr.comment`` records (timed comments).

Indexed by subject URI with no foreign key, so a comment may arrive before its track;
``track.comment_count`` is recounted from these rows by the catalog.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from kernel.ids import comment_id
from projectors.base import parse_datetime
from projectors.records import (
    RecordTable,
    Rows,
    event_time,
    int64,
    require_record,
    valid_record,
)

__all__ = [
    "COLLECTION",
    "TABLE",
    "delete_by_did",
    "delete_comments",
    "insert_comments",
    "to_row",
]

COLLECTION = "fm.plyr.comment"

_COLUMNS = (
    ("uri", "text"), ("id", "bigint"), ("did", "text"), ("rkey", "text"), ("cid", "text"),
    ("rev", "text"), ("subject_uri", "text"), ("text", "text"), ("timestamp_ms", "bigint"),
    ("created_at", "timestamptz"), ("updated_at", "timestamptz"),
    ("indexed_at", "timestamptz"),
)  # fmt: skip
TABLE = RecordTable("comment", _COLUMNS, touched="subject_uri")


def to_row(envelope: Envelope) -> dict[str, Any]:
    """The ``comment`` row (JSON-ready) for a created/updated record; :class:`InvalidEvent`."""
    uri, rev, cid, record = require_record(envelope)
    valid_record(COLLECTION, record)
    updated = record.get("updatedAt")
    return {
        "uri": uri,
        "id": comment_id(uri),
        "did": envelope.did,
        "rkey": envelope.rkey,
        "cid": cid,
        "rev": rev,
        "subject_uri": record["subject"]["uri"],
        "text": record["text"],
        "timestamp_ms": int64(record["timestampMs"], "timestampMs"),
        "created_at": parse_datetime(record["createdAt"], "createdAt").isoformat(),
        "updated_at": (
            parse_datetime(updated, "updatedAt").isoformat() if updated is not None else None
        ),
        "indexed_at": event_time(envelope).isoformat(),
    }


async def insert_comments(conn: AsyncConnection, rows: Rows) -> set[str]:
    """Write comments (newest rev wins); the subject URIs whose counts changed."""
    _, subjects = await TABLE.upsert(conn, rows)
    return {str(s) for s in subjects}


async def delete_comments(conn: AsyncConnection, deletions: Rows) -> set[str]:
    """Delete comments (leaving tombstones); the subject URIs whose counts changed."""
    return {str(s) for s in await TABLE.delete(conn, deletions)}


async def delete_by_did(conn: AsyncConnection, did: str) -> set[str]:
    """Remove every comment of a repo; the subject URIs whose counts changed."""
    return {str(s) for s in await TABLE.delete_by_did(conn, did)}
