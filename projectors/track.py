"""The ``track`` read model, from ``fm.plyr.track`` records.

Updates are ordered by commit ``rev`` (an older rev never overwrites a newer one) and
deletes leave tombstones (see :mod:`projectors.records`), so replays, duplicates and
out-of-order delivery are harmless. ``tags`` are the record's tags by the one rule of
:mod:`kernel.tags` (search indexes the same). ``like_count``, ``comment_count`` and
``album_slug`` are derived columns: computed as a row is written, and recomputed by
:mod:`projectors.catalog` after every batch for the tracks whose likes, comments or
albums changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from kernel.ids import track_id
from kernel.tags import record_tags
from projectors.album import slugify
from projectors.base import parse_datetime
from projectors.records import (
    RecordTable,
    Rows,
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
    ("indexed_at", "timestamptz"), ("record", "jsonb"), ("album_slug", "text"),
    ("tags", "text[]"),
)  # fmt: skip

# Likes (distinct likers) and comments per subject, for the URIs in %(uris)s: one
# aggregate per table over all of them (a bitmap scan each), not a count per URI. The
# array goes through ARRAY(SELECT unnest(...)) so the planner does not estimate each of
# its thousands of URIs against the column's most common values: that took 20-40 ms of
# planning per 10,000-event batch, as long as running the statement.
_URIS = "ARRAY(SELECT unnest(%(uris)b::text[]))"
_COUNTS = (
    ' LEFT JOIN (SELECT subject_uri, count(DISTINCT did) AS n FROM "like"'
    f"  WHERE subject_uri = ANY({_URIS}) GROUP BY subject_uri) lc ON lc.subject_uri = {{uri}}"
    " LEFT JOIN (SELECT subject_uri, count(*) AS n FROM comment"
    f"  WHERE subject_uri = ANY({_URIS}) GROUP BY subject_uri) cc ON cc.subject_uri = {{uri}}"
)

# A track is written with its counts (likes and comments of the batch are written first),
# so a new track row is not rewritten by the recount; likewise its album slug, when it
# names an album (the album derivation gives such a track the slug of its title).
TABLE = RecordTable(
    "track",
    _COLUMNS,
    touched="uri",
    derived=(("like_count", "coalesce(lc.n, 0)"), ("comment_count", "coalesce(cc.n, 0)")),
    joins=_COUNTS.format(uri="x.uri"),
)


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
    album = record.get("album") or None
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
        "album": album,
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
        "album_slug": slugify(album) if album else None,
        "tags": list(record_tags(record)),
    }


async def insert_tracks(conn: AsyncConnection, rows: Rows) -> set[str]:
    """Insert or update tracks unless stored or deleted at a newer rev; the URIs written.

    Written rows get ``like_count`` and ``comment_count`` recounted from the stored likes
    and comments: write those first.
    """
    written, _ = await TABLE.upsert(conn, rows)
    return written


async def delete_tracks(conn: AsyncConnection, deletions: Rows) -> set[str]:
    """Delete tracks (unless re-created at a newer rev); the URIs removed."""
    return {str(uri) for uri in await TABLE.delete(conn, deletions)}


async def delete_by_did(conn: AsyncConnection, did: str) -> None:
    """Remove every track of a repo (account deleted)."""
    await TABLE.delete_by_did(conn, did)


async def recount(conn: AsyncConnection, uris: Sequence[str]) -> None:
    """Recompute ``like_count`` (distinct likers) and ``comment_count`` from the rows."""
    if not uris:
        return
    uris = sorted(uris)
    await conn.execute(
        "UPDATE track SET like_count = c.likes, comment_count = c.comments FROM ("
        " SELECT u.uri, coalesce(lc.n, 0) AS likes, coalesce(cc.n, 0) AS comments"
        " FROM unnest(%(uris)b::text[]) AS u(uri)" + _COUNTS.format(uri="u.uri") + ") AS c"
        " WHERE track.uri = c.uri AND track.uri = ANY(%(uris)b::text[])"
        " AND (track.like_count, track.comment_count) IS DISTINCT FROM (c.likes, c.comments)",
        {"uris": uris},
    )
