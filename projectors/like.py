"""The ``like`` read model, from ``fm.plyr.like`` records.

Likes are indexed by subject URI with no foreign key, so a like may arrive before (or
without) its track. They own ``track.like_count`` (:data:`AGGREGATE`: distinct likers),
recounted for the subjects their writes touch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from projectors.aggregates import Aggregate
from projectors.base import parse_datetime
from projectors.records import (
    Deletion,
    RecordTable,
    Rows,
    Touched,
    event_time,
    require_record,
    valid_record,
)

__all__ = [
    "AGGREGATE",
    "COLLECTION",
    "SHARED",
    "TABLE",
    "delete",
    "delete_by_did",
    "insert",
    "to_row",
    "touches",
]

COLLECTION = "fm.plyr.like"
SHARED = False
AGGREGATE = Aggregate("like_count", '"like"', "count(DISTINCT did)", "lc")

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


def touches(rows: Sequence[Mapping[str, Any]], deletions: Sequence[Deletion]) -> Touched:
    """The subjects of the likes written (their counts change)."""
    del deletions  # a delete's subject is known once the row is read
    return Touched(subjects=frozenset(str(row["subject_uri"]) for row in rows))


async def insert(conn: AsyncConnection, rows: Rows) -> Touched:
    """Write likes (newest rev wins); the subjects whose counts changed (old and new)."""
    _, subjects = await TABLE.upsert(conn, rows)
    return Touched(subjects=frozenset(str(s) for s in subjects))


async def delete(conn: AsyncConnection, deletions: Rows) -> Touched:
    """Delete likes (leaving tombstones); the subjects whose counts changed."""
    return Touched(subjects=frozenset(str(s) for s in await TABLE.delete(conn, deletions)))


async def delete_by_did(conn: AsyncConnection, did: str) -> Touched:
    """Remove every like of a repo; the subjects whose counts changed."""
    return Touched(subjects=frozenset(str(s) for s in await TABLE.delete_by_did(conn, did)))
