"""The ``track`` read model, from ``fm.plyr.track`` records.

Updates are ordered by commit ``rev`` (an older rev never overwrites a newer one), so
replays and duplicates are harmless.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from lexicons import ValidationError, validate_record
from plyr_appview.envelope import Envelope
from projectors.base import InvalidEvent, parse_datetime, track_id

__all__ = ["COLLECTION", "delete_by_did", "delete_track", "insert_track", "to_row"]

COLLECTION = "fm.plyr.track"

_COLUMNS = (
    "uri", "id", "did", "rkey", "cid", "rev", "title", "artist", "file_type", "album",
    "duration", "audio_url", "audio_blob_cid", "audio_mime", "audio_size", "image_url",
    "description", "features", "self_labels", "support_gate", "created_at", "record",
)  # fmt: skip


def to_row(envelope: Envelope) -> dict[str, Any]:
    """The ``track`` row for a created/updated record; :class:`InvalidEvent` if invalid."""
    record = envelope.record
    uri = envelope.uri
    if record is None or uri is None or envelope.rev is None or envelope.cid is None:
        raise InvalidEvent("track event without record, uri, rev or cid")
    try:
        validate_record(COLLECTION, record)
    except ValidationError as exc:
        raise InvalidEvent(str(exc)) from None
    blob = record.get("audioBlob")
    blob_cid = blob_mime = blob_size = None
    if isinstance(blob, dict):
        ref = blob.get("ref")
        blob_cid = ref.get("$link") if isinstance(ref, dict) else None
        blob_mime = blob.get("mimeType")
        blob_size = blob.get("size")
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
        "cid": envelope.cid,
        "rev": envelope.rev,
        "title": record["title"],
        "artist": record["artist"],
        "file_type": record["fileType"],
        "album": record.get("album"),
        "duration": record.get("duration"),
        "audio_url": record.get("audioUrl"),
        "audio_blob_cid": blob_cid,
        "audio_mime": blob_mime,
        "audio_size": blob_size,
        "image_url": record.get("imageUrl"),
        "description": record.get("description"),
        "features": Jsonb([{"did": f["did"]} for f in features if isinstance(f, dict)]),
        "self_labels": Jsonb(self_labels),
        "support_gate": Jsonb(record["supportGate"]) if "supportGate" in record else None,
        "created_at": parse_datetime(record["createdAt"], "createdAt"),
        "record": Jsonb(record),
    }


_INSERT = (
    f"INSERT INTO track ({', '.join(_COLUMNS)}) VALUES ({', '.join('%s' for _ in _COLUMNS)})"
    f" ON CONFLICT (uri) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in ("uri", "id", "did", "rkey"))
    + ", indexed_at = now() WHERE track.rev <= excluded.rev"
)


async def insert_track(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Insert or update a track row unless a newer rev is already stored."""
    await conn.execute(_INSERT, tuple(row[c] for c in _COLUMNS))


async def delete_track(conn: AsyncConnection, uri: str, rev: str) -> None:
    """Delete a track, unless it was re-created at a newer rev."""
    await conn.execute("DELETE FROM track WHERE uri = %s AND rev <= %s", (uri, rev))


async def delete_by_did(conn: AsyncConnection, did: str) -> None:
    """Remove every track of a repo (account deleted)."""
    await conn.execute("DELETE FROM track WHERE did = %s", (did,))
