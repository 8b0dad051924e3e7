"""The ``like`` read model, from ``fm.plyr.like`` records.

Likes are indexed by subject URI with no foreign key, so a like may arrive before (or
without) its track. They own ``track.like_count`` (:data:`AGGREGATE`: distinct likers),
recounted for the subjects their writes touch.
"""

from __future__ import annotations

from typing import Any

from kernel.envelope import Envelope
from projectors.aggregates import Aggregate
from projectors.base import parse_datetime
from projectors.records import (
    RecordTable,
    SubjectWrites,
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


_WRITES = SubjectWrites(TABLE)
touches = _WRITES.touches
insert = _WRITES.insert
delete = _WRITES.delete
delete_by_did = _WRITES.delete_by_did
