"""The ``track`` read model, from ``fm.plyr.track`` records.

Updates are ordered by commit ``rev`` (an older rev never overwrites a newer one) and
deletes leave tombstones (see :mod:`projectors.records`), so replays, duplicates and
out-of-order delivery are harmless. ``tags`` are the record's tags by the one rule of
:mod:`kernel.tags` (search indexes the same). ``like_count``, ``comment_count`` and
``album_slug`` are derived columns: computed as a row is written, and recomputed after
every batch for the tracks whose likes or comments (the aggregates those modules own) or
albums (:mod:`projectors.album`) changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from kernel.ids import track_id
from kernel.tags import record_tags
from projectors import aggregates, comment, like
from projectors.aggregates import count_joins, derived_counts
from projectors.album import slugify
from projectors.base import parse_datetime
from projectors.records import (
    ArtistWrites,
    RecordTable,
    Rows,
    Touched,
    event_time,
    int32,
    int64,
    require_record,
    valid_record,
)

__all__ = [
    "AGGREGATES",
    "COLLECTION",
    "SHARED",
    "TABLE",
    "delete",
    "delete_by_did",
    "insert",
    "recount",
    "to_row",
    "touches",
]

COLLECTION = "fm.plyr.track"
# Likes and comments of every partition recount tracks: written in the catalog's turn.
SHARED = True

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

# The counts of the modules whose rows count towards a track (likes, comments): computed
# as a track is written (likes and comments of the batch are written first), so a new
# track row is not rewritten by the recount; likewise its album slug, when it names an
# album (the album derivation gives such a track the slug of its title).
AGGREGATES = (like.AGGREGATE, comment.AGGREGATE)
TABLE = RecordTable(
    "track",
    _COLUMNS,
    touched="uri",
    derived=derived_counts(AGGREGATES),
    joins=count_joins(AGGREGATES, "x.uri"),
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


async def insert(conn: AsyncConnection, rows: Rows) -> Touched:
    """Insert or update tracks unless stored or deleted at a newer rev.

    Written rows get their counts from the stored likes and comments (write those first),
    so they need no recount.
    """
    written, _ = await TABLE.upsert(conn, rows)
    return Touched(counted=frozenset(written))


# The artists whose tracks change have their albums derived again; a deleted track has
# nothing to count.
_WRITES = ArtistWrites(TABLE)
touches = _WRITES.touches
delete = _WRITES.delete
delete_by_did = _WRITES.delete_by_did


async def recount(conn: AsyncConnection, uris: Sequence[str]) -> None:
    """Recompute the counts (:data:`AGGREGATES`) of the tracks ``uris``."""
    await aggregates.recount(conn, "track", AGGREGATES, uris)
