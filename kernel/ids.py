"""Public ids and derived names, computed from AT-URIs and DIDs alone.

Deterministic, so rebuilds, replicas, the projectors that store them and the API that
recomputes them all agree:

- tracks and comments: 53 bits of the SHA-256 of the AT-URI (:func:`track_id`; 53 bits
  stay exact in JavaScript); tags: the same of the tag (:func:`tag_id`);
- lists: uuid5 (URL namespace) of the AT-URI (:func:`list_id`); albums, which have no
  record of their own: uuid5 of ``at://{did}/album/{slug}`` (:func:`album_id`);
- a Bluesky avatar blob is shown through the Bluesky CDN (:func:`bsky_avatar_url`;
  SQL that builds it from columns concatenates :data:`BSKY_AVATAR_PARTS`).
"""

from __future__ import annotations

import hashlib
import uuid

__all__ = [
    "BSKY_AVATAR_PARTS",
    "BSKY_AVATAR_URL",
    "album_id",
    "bsky_avatar_url",
    "comment_id",
    "list_id",
    "tag_id",
    "track_id",
]

BSKY_AVATAR_URL = "https://cdn.bsky.app/img/avatar/plain/{did}/{cid}@jpeg"
_BEFORE_DID, _, _AFTER_DID = BSKY_AVATAR_URL.partition("{did}")
_BETWEEN, _, _AFTER_CID = _AFTER_DID.partition("{cid}")
BSKY_AVATAR_PARTS = (_BEFORE_DID, _BETWEEN, _AFTER_CID)
"""The template split for SQL: ``parts[0] || did || parts[1] || cid || parts[2]``."""


def _int53(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 11


def track_id(uri: str) -> int:
    """The public integer id of a track, from its AT-URI."""
    return _int53(uri)


def comment_id(uri: str) -> int:
    """The public integer id of a comment, from its AT-URI (the track rule)."""
    return _int53(uri)


def tag_id(name: str) -> int:
    """The public integer id of a tag, from its (normalised) name."""
    return _int53(name)


def list_id(uri: str) -> uuid.UUID:
    """The public id of a list (playlist, album list), from its AT-URI."""
    return uuid.uuid5(uuid.NAMESPACE_URL, uri)


def album_id(did: str, slug: str) -> uuid.UUID:
    """The public id of an artist's album, from the artist's DID and the album's slug."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"at://{did}/album/{slug}")


def bsky_avatar_url(did: str, cid: str) -> str:
    """The Bluesky CDN URL of a profile's avatar blob."""
    return BSKY_AVATAR_URL.format(did=did, cid=cid)
