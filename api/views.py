"""Pure presenters: database rows → plyr-compatible JSON shapes.

Fields that only plyr.fm's own database knows (play counts before our plays log, tags,
visibility settings, copyright scans, optimisation state) are present with null or
default values, as documented in the API docs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

__all__ = ["TRACK_COLUMNS", "present_track"]

TRACK_COLUMNS = (
    "t.id, t.uri, t.cid, t.did, t.rkey, t.title, t.artist, t.file_type, t.album, t.duration,"
    " t.audio_url, t.audio_blob_cid, t.image_url, t.description, t.features, t.self_labels,"
    " t.support_gate, t.created_at, a.handle AS artist_handle, a.display_name AS"
    " artist_display_name, a.avatar_url AS artist_avatar_url, a.pds_url AS artist_pds_url"
)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def present_track(row: Mapping[str, Any], *, api_base: str = "") -> dict[str, Any]:
    """A ``TrackResponse`` (plyr.fm ``backend/schemas.py``) for one joined track row."""
    file_id = str(row["id"])
    pds = row.get("artist_pds_url")
    record_url = (
        f"{pds}/xrpc/com.atproto.repo.getRecord?"
        + urlencode({"repo": row["did"], "collection": "fm.plyr.track", "rkey": row["rkey"]})
        if pds
        else None
    )
    blob_cid = row.get("audio_blob_cid")
    has_url = bool(row.get("audio_url"))
    storage = "both" if blob_cid and has_url else "pds" if blob_cid else "r2" if has_url else None
    self_labels = list(row.get("self_labels") or [])
    gate = row.get("support_gate")
    return {
        "id": row["id"],
        "title": row["title"],
        "artist": row.get("artist_display_name") or row["artist"],
        "artist_handle": row.get("artist_handle"),
        "artist_did": row["did"],
        "artist_avatar_url": row.get("artist_avatar_url"),
        "file_id": file_id,
        "file_type": row["file_type"],
        "features": [
            {"did": f.get("did"), "handle": None, "display_name": None, "avatar_url": None}
            for f in row.get("features") or []
        ],
        "r2_url": f"{api_base}/audio/{file_id}",
        "atproto_record_uri": row["uri"],
        "atproto_record_cid": row["cid"],
        "atproto_record_url": record_url,
        "play_count": int(row.get("play_count") or 0),
        "created_at": _iso(row["created_at"]),
        "image_url": row.get("image_url"),
        "thumbnail_url": row.get("image_url"),
        "is_liked": False,
        "like_count": int(row.get("like_count") or 0),
        "comment_count": int(row.get("comment_count") or 0),
        "album": None,
        "tags": [],
        "copyright_flagged": None,
        "copyright_match": None,
        "support_gate": gate,
        "gated": gate is not None,
        "downloadable": False,
        "download_policy": None,
        "artist_support_url": None,
        "copyright_song_uri": None,
        "copyright_recording_uri": None,
        "original_file_id": None,
        "original_file_type": None,
        "description": row.get("description"),
        "audio_storage": storage,
        "pds_blob_cid": blob_cid,
        "is_optimizing": False,
        "visibility": "public",
        "unlisted": False,
        "self_labels": self_labels,
        "operator_labels": [],
        "labels": self_labels,
        "album_title": row.get("album"),
        "duration": row.get("duration"),
    }
