"""Pure presenters: database rows → plyr-compatible JSON shapes.

Fields that only plyr.fm's own database knows (play counts before our plays log,
visibility settings, copyright scans, optimisation state) are present with null or
default values, as documented in the API docs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "TRACK_COLUMNS",
    "TRACK_FROM",
    "UNKNOWN_TRACK_FIELDS",
    "iso",
    "present_album_summary",
    "present_artist",
    "present_comment",
    "present_playlist",
    "present_track",
    "present_user",
]

TRACK_COLUMNS = (
    "t.id, t.uri, t.cid, t.did, t.rkey, t.title, t.artist, t.file_type, t.album, t.duration,"
    " t.audio_url, t.audio_blob_cid, t.image_url, t.description, t.features, t.self_labels,"
    " t.support_gate, t.created_at, t.like_count, t.comment_count, t.tags,"
    " a.handle AS artist_handle, a.display_name AS"
    " artist_display_name, a.avatar_url AS artist_avatar_url, a.pds_url AS artist_pds_url,"
    " al.id AS album_id, al.slug AS album_slug, al.title AS album_row_title,"
    " al.image_url AS album_image_url, pt.plays AS play_count"
)
"""Columns :func:`present_track` reads; select them ``FROM`` :data:`TRACK_FROM`."""

TRACK_FROM = (
    "track t LEFT JOIN artist a ON a.did = t.did"
    " LEFT JOIN album al ON al.did = t.did AND al.slug = t.album_slug"
    " LEFT JOIN play_track_total pt ON pt.track_uri = t.uri"
)

UNKNOWN_TRACK_FIELDS: dict[str, str] = {
    "play_count": "plays counted here (POST /tracks/{id}/play), not plyr.fm's own count",
    "is_liked": "always false: the API has no sessions",
    "copyright_flagged": "always null: copyright scans are plyr.fm-internal",
    "copyright_match": "always null",
    "downloadable": "always false: download policies are plyr.fm preferences",
    "download_policy": "always null",
    "artist_support_url": "always null: a plyr.fm preference",
    "copyright_song_uri": "always null",
    "copyright_recording_uri": "always null",
    "original_file_id": "always null: lossless originals are plyr.fm-internal",
    "original_file_type": "always null",
    "is_optimizing": "always false",
    "visibility": "always 'public': records on the network are public",
    "unlisted": "always false",
    "operator_labels": "labels from configured labelers (moderation read model), else []",
}
"""TrackResponse fields the network cannot tell us, and what we answer instead."""


def iso(value: datetime) -> str:
    """ISO 8601 with ``Z`` for UTC, as plyr's JSON carries it."""
    return value.isoformat().replace("+00:00", "Z")


def present_album_summary(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """plyr's ``AlbumSummary`` for a track row joined to its album, or ``None``."""
    if row.get("album_id") is None:
        return None
    image = row.get("album_image_url") or row.get("artist_avatar_url")
    return {
        "id": str(row["album_id"]),
        "slug": row["album_slug"],
        "title": row["album_row_title"],
        "image_url": image,
        "thumbnail_url": image,
    }


def present_artist(row: Mapping[str, Any]) -> dict[str, Any]:
    """plyr's ``ArtistResponse`` for an ``artist`` row."""
    first_seen = row.get("first_seen_at") or row["updated_at"]
    return {
        "did": row["did"],
        "handle": row.get("handle") or row["did"],
        "display_name": row.get("display_name") or row.get("handle") or row["did"],
        "bio": row.get("bio"),
        "avatar_url": row.get("avatar_url"),
        "created_at": iso(first_seen),
        "updated_at": iso(row["updated_at"]),
        "show_liked_on_profile": False,
        "support_url": None,
    }


def present_user(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{did, handle, display_name, avatar_url}`` from columns named ``prefix + field``."""
    did = row[f"{prefix}did"]
    handle = row.get(f"{prefix}handle") or did
    return {
        "did": did,
        "handle": handle,
        "display_name": row.get(f"{prefix}display_name") or handle,
        "avatar_url": row.get(f"{prefix}avatar_url"),
    }


def present_playlist(
    row: Mapping[str, Any], *, previews: list[str] | None = None
) -> dict[str, Any]:
    """plyr's ``PlaylistResponse`` for a ``list`` row joined to its owner (``owner_*``)."""
    return {
        "id": str(row["id"]),
        "name": row.get("name") or "",
        "owner_did": row["did"],
        "owner_handle": row.get("owner_handle") or row["did"],
        "track_count": int(row.get("item_count") or 0),
        "image_url": None,
        "show_on_profile": True,
        "atproto_record_uri": row["uri"],
        "is_private": False,
        "created_at": iso(row["created_at"]),
        "preview_thumbnails": previews or [],
    }


def _feature(feature: Mapping[str, Any], people: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    did = feature.get("did")
    person = people.get(did) if isinstance(did, str) else None
    handle = (person or {}).get("handle")
    return {
        "did": did,
        "handle": handle,
        "display_name": (person or {}).get("display_name") or handle,
        "avatar_url": (person or {}).get("avatar_url"),
    }


def present_track(
    row: Mapping[str, Any],
    *,
    api_base: str = "",
    people: Mapping[str, Mapping[str, Any]] | None = None,
    play_count: int | None = None,
) -> dict[str, Any]:
    """A ``TrackResponse`` (plyr.fm ``backend/schemas.py``) for one joined track row.

    ``people`` maps featured DIDs to artist rows (handle, display_name, avatar_url).
    """
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
        "artist_handle": row.get("artist_handle") or row["did"],
        "artist_did": row["did"],
        "artist_avatar_url": row.get("artist_avatar_url"),
        "file_id": file_id,
        "file_type": row["file_type"],
        "features": [_feature(f, people or {}) for f in row.get("features") or []],
        "r2_url": f"{api_base}/audio/{file_id}",
        "atproto_record_uri": row["uri"],
        "atproto_record_cid": row["cid"],
        "atproto_record_url": record_url,
        "play_count": int(play_count if play_count is not None else row.get("play_count") or 0),
        "created_at": iso(row["created_at"]),
        "image_url": row.get("image_url"),
        "thumbnail_url": row.get("image_url"),
        "is_liked": False,
        "like_count": int(row.get("like_count") or 0),
        "comment_count": int(row.get("comment_count") or 0),
        "album": present_album_summary(row),
        "tags": list(row.get("tags") or []),
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


def present_comment(r: Mapping[str, Any]) -> dict[str, Any]:
    """plyr's comment shape."""
    return {
        "id": r["id"],
        "user_did": r["did"],
        "user_handle": r["handle"] or r["did"],
        "user_display_name": r["display_name"] or r["handle"] or r["did"],
        "user_avatar_url": r["avatar_url"],
        "text": r["text"],
        "timestamp_ms": r["timestamp_ms"],
        "created_at": iso(r["created_at"]),
        "updated_at": iso(r["updated_at"]) if r["updated_at"] else None,
    }
