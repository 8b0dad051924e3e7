"""The ``track`` read model, from ``fm.plyr.track`` records.

Updates are ordered by commit ``rev`` (an older rev never overwrites a newer one) and
deletes leave tombstones (see :mod:`projectors.records`), so replays, duplicates and
out-of-order delivery are harmless. ``like_count``, ``comment_count`` and ``album_slug``
are derived columns, recomputed by :mod:`projectors.catalog` after every batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from plyr_appview.envelope import Envelope
from projectors.base import parse_datetime, track_id
from projectors.records import (
    Deletion,
    RecordTable,
    event_time,
    int32,
    int64,
    require_record,
    valid_record,
)

__all__ = [
    "COLLECTION",
    "TABLE",
    "delete_by_did",
    "delete_tracks",
    "insert_tracks",
    "recount",
    "to_row",
]

COLLECTION = "fm.plyr.track"

_COLUMNS = (
    ("uri", "text"), ("id", "bigint"), ("did", "text"), ("rkey", "text"), ("cid", "text"),
    ("rev", "text"), ("title", "text"), ("artist", "text"), ("file_type", "text"),
    ("album", "text"), ("duration", "integer"), ("audio_url", "text"),
    ("audio_blob_cid", "text"), ("audio_mime", "text"), ("audio_size", "bigint"),
    ("image_url", "text"), ("description", "text"), ("features", "jsonb"),
    ("self_labels", "jsonb"), ("support_gate", "jsonb"), ("created_at", "timestamptz"),
    ("indexed_at", "timestamptz"), ("record", "jsonb"),
)  # fmt: skip
TABLE = RecordTable("track", _COLUMNS, touched="uri")


def to_row(envelope: Envelope) -> dict[str, Any]:
    """The ``track`` row (JSON-ready) for a created/updated record; :class:`InvalidEvent`."""
    uri, rev, cid, record = require_record(envelope)
    valid_record(COLLECTION, record)
    blob = record.get("audioBlob")
    blob_cid = blob_mime = blob_size = None
    if isinstance(blob, dict):
        ref = blob.get("ref")
        blob_cid = ref.get("$link") if isinstance(ref, dict) else None
        blob_mime = blob.get("mimeType")
        blob_size = int64(blob.get("size"), "audioBlob.size")
    labels = record.get("labels")
    self_labels = (
        [v.get("val") for v in labels.get("values", []) if isinstance(v, dict)]
        if isinstance(labels, dict)
        else []
    )
    features = record.get("features") or []
    return {
        "uri": uri,
        "id": track_id(uri),
        "did": envelope.did,
        "rkey": envelope.rkey,
        "cid": cid,
        "rev": rev,
        "title": record["title"],
        "artist": record["artist"],
        "file_type": record["fileType"],
        "album": record.get("album") or None,
        "duration": int32(record.get("duration"), "duration"),
        "audio_url": record.get("audioUrl"),
        "audio_blob_cid": blob_cid,
        "audio_mime": blob_mime,
        "audio_size": blob_size,
        "image_url": record.get("imageUrl"),
        "description": record.get("description"),
        "features": [{"did": f["did"]} for f in features if isinstance(f, dict)],
        "self_labels": self_labels,
        "support_gate": record.get("supportGate"),
        "created_at": parse_datetime(record["createdAt"], "createdAt").isoformat(),
        "indexed_at": event_time(envelope).isoformat(),
        "record": record,
    }


async def insert_tracks(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert or update tracks unless stored or deleted at a newer rev; the URIs written."""
    written, _ = await TABLE.upsert(conn, rows)
    return written


async def delete_tracks(conn: AsyncConnection, deletions: Sequence[Deletion]) -> set[str]:
    """Delete tracks (unless re-created at a newer rev); the URIs removed."""
    return {str(uri) for uri in await TABLE.delete(conn, deletions)}


async def delete_by_did(conn: AsyncConnection, did: str) -> None:
    """Remove every track of a repo (account deleted)."""
    await TABLE.delete_by_did(conn, did)


async def recount(conn: AsyncConnection, uris: Sequence[str]) -> None:
    """Recompute ``like_count`` (distinct likers) and ``comment_count`` from the rows."""
    if not uris:
        return
    # One aggregate per table over all the URIs (a bitmap scan each) rather than a
    # correlated count per URI: ten times less work for a batch of thousands.
    uris = sorted(uris)
    await conn.execute(
        "UPDATE track SET like_count = c.likes, comment_count = c.comments FROM ("
        " SELECT u.uri, coalesce(l.n, 0) AS likes, coalesce(m.n, 0) AS comments"
        " FROM unnest(%(u)s::text[]) AS u(uri)"
        ' LEFT JOIN (SELECT subject_uri, count(DISTINCT did) AS n FROM "like"'
        "  WHERE subject_uri = ANY(%(u)s) GROUP BY subject_uri) l ON l.subject_uri = u.uri"
        " LEFT JOIN (SELECT subject_uri, count(*) AS n FROM comment"
        "  WHERE subject_uri = ANY(%(u)s) GROUP BY subject_uri) m ON m.subject_uri = u.uri"
        " ) AS c"
        " WHERE track.uri = c.uri AND track.uri = ANY(%(u)s)"
        " AND (track.like_count, track.comment_count) IS DISTINCT FROM (c.likes, c.comments)",
        {"u": uris},
    )
