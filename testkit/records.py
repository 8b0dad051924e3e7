"""Records of every kind we index (and a Bluesky post), as their repos hold them."""

from __future__ import annotations

from typing import Any

from testkit.car import block
from testkit.identity import FIXED_TIME

TRACK = "fm.plyr.track"


def track_record(title: str = "Song", **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "$type": TRACK,
        "title": title,
        "artist": "Some Artist",
        "fileType": "mp3",
        "createdAt": "2026-11-01T12:00:00.000Z",
    }
    record.update(extra)
    return record


def post_record(n: int) -> dict[str, Any]:
    """An ``app.bsky.feed.post`` of typical size."""
    return {
        "$type": "app.bsky.feed.post",
        "text": f"post number {n}: " + "lorem ipsum dolor sit amet " * 4,
        "langs": ["en"],
        "createdAt": FIXED_TIME,
    }


# --- catalog event mixes (projector tests and bench) -------------------------------------


def fake_cid(seed: object) -> str:
    """A syntactically valid CID (of a tiny DAG-CBOR block) that differs per ``seed``."""
    return block({"seed": str(seed)})[0].encode()


SUBJECT_CID = fake_cid("subject")


def like_record(subject_uri: str, **extra: Any) -> dict[str, Any]:
    """An ``fm.plyr.like`` record."""
    record: dict[str, Any] = {
        "$type": "fm.plyr.like",
        "subject": {"uri": subject_uri, "cid": SUBJECT_CID},
        "createdAt": "2026-11-02T12:00:00.000Z",
    }
    record.update(extra)
    return record


def comment_record(subject_uri: str, text: str = "nice", **extra: Any) -> dict[str, Any]:
    """An ``fm.plyr.comment`` record."""
    record: dict[str, Any] = {
        "$type": "fm.plyr.comment",
        "subject": {"uri": subject_uri, "cid": SUBJECT_CID},
        "text": text,
        "timestampMs": 1000,
        "createdAt": "2026-11-02T12:00:00.000Z",
    }
    record.update(extra)
    return record


def list_record(items: list[str], name: str = "Mix", list_type: str = "playlist") -> dict[str, Any]:
    """An ``fm.plyr.list`` record over the given subject URIs."""
    return {
        "$type": "fm.plyr.list",
        "name": name,
        "listType": list_type,
        "items": [{"subject": {"uri": u, "cid": SUBJECT_CID}} for u in items],
        "createdAt": "2026-11-03T12:00:00.000Z",
    }


def bsky_profile_record(display_name: str, avatar_cid: str | None = None) -> dict[str, Any]:
    """An ``app.bsky.actor.profile`` record."""
    record: dict[str, Any] = {"$type": "app.bsky.actor.profile", "displayName": display_name}
    if avatar_cid is not None:
        record["avatar"] = {
            "$type": "blob",
            "ref": {"$link": avatar_cid},
            "mimeType": "image/jpeg",
            "size": 1000,
        }
    return record


def plyr_profile_record(bio: str, avatar: str | None = None) -> dict[str, Any]:
    """An ``fm.plyr.actor.profile`` record."""
    record: dict[str, Any] = {
        "$type": "fm.plyr.actor.profile",
        "bio": bio,
        "createdAt": "2026-11-01T12:00:00.000Z",
    }
    if avatar is not None:
        record["avatar"] = avatar
    return record
