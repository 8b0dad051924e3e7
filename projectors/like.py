"""The ``like`` read model, from ``fm.plyr.like`` records.

Likes are indexed by subject URI with no foreign key, so a like may arrive before (or
without) its track; ``track.like_count`` is recounted from these rows by the catalog.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from projectors.base import parse_datetime
from projectors.records import (
    RecordTable,
    Rows,
    event_time,
    require_record,
    valid_record,
)

__all__ = ["COLLECTION", "TABLE", "delete_by_did", "delete_likes", "insert_likes", "to_row"]

COLLECTION = "fm.plyr.like"

_COLUMNS = (
    ("uri", "text"), ("did", "text"), ("rkey", "text"), ("cid", "text"), ("rev", "text"),
    ("subject_uri", "text"), ("subject_cid", "text"), ("created_at", "timestamptz"),
    ("indexed_at", "timestamptz"),
)  # fmt: skip
TABLE = RecordTable('"like"', _COLUMNS, touched="subject_uri")


def to_row(envelope: Envelope) -> dict[str, Any]:
    """The ``like`` row (JSON-ready) for a created/updated record; :class:`InvalidEvent`."""
    uri, rev, cid, record = require_record(envelope)
    valid_record(COLLECTION, record)
    subject = record["subject"]
    return {
        "uri": uri,
        "did": envelope.did,
        "rkey": envelope.rkey,
        "cid": cid,
        "rev": rev,
        "subject_uri": subject["uri"],
        "subject_cid": subject.get("cid"),
        "created_at": parse_datetime(record["createdAt"], "createdAt").isoformat(),
        "indexed_at": event_time(envelope).isoformat(),
    }


async def insert_likes(conn: AsyncConnection, rows: Rows) -> set[str]:
    """Write likes (newest rev wins); the subject URIs whose counts changed."""
    _, subjects = await TABLE.upsert(conn, rows)
    return {str(s) for s in subjects}


async def delete_likes(conn: AsyncConnection, deletions: Rows) -> set[str]:
    """Delete likes (leaving tombstones); the subject URIs whose counts changed."""
    return {str(s) for s in await TABLE.delete(conn, deletions)}


async def delete_by_did(conn: AsyncConnection, did: str) -> set[str]:
    """Remove every like of a repo; the subject URIs whose counts changed."""
    return {str(s) for s in await TABLE.delete_by_did(conn, did)}
