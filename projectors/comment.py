"""The ``comment`` read model, from ``fm.plyr.comment`` records (timed comments).

Indexed by subject URI with no foreign key, so a comment may arrive before its track.
Comments own ``track.comment_count`` (:data:`AGGREGATE`), recounted for the subjects
their writes touch.
"""

from __future__ import annotations

from typing import Any

from kernel.envelope import Envelope
from kernel.ids import comment_id
from projectors.aggregates import Aggregate
from projectors.base import parse_datetime
from projectors.records import (
    RecordTable,
    SubjectWrites,
    event_time,
    int64,
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

COLLECTION = "fm.plyr.comment"
SHARED = False
AGGREGATE = Aggregate("comment_count", "comment", "count(*)", "cc")

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


_WRITES = SubjectWrites(TABLE)
touches = _WRITES.touches
insert = _WRITES.insert
delete = _WRITES.delete
delete_by_did = _WRITES.delete_by_did
