"""kernel/ids.py: the public ids the projectors store and the API recomputes."""

from __future__ import annotations

import uuid

from kernel.ids import (
    BSKY_AVATAR_PARTS,
    album_id,
    bsky_avatar_url,
    comment_id,
    list_id,
    tag_id,
    track_id,
)

URI = "at://did:plc:abc/fm.plyr.track/3l1"


def test_integer_ids_are_53_bits_and_stable():
    # Values published by earlier releases: a rebuild must give the same ids.
    assert track_id(URI) == comment_id(URI) == 971412803140734
    assert 0 <= tag_id("ambient") < 2**53
    assert tag_id("ambient") != tag_id("Ambient")


def test_uuids():
    assert list_id(URI) == uuid.uuid5(uuid.NAMESPACE_URL, URI)
    assert album_id("did:plc:abc", "blue") == uuid.uuid5(
        uuid.NAMESPACE_URL, "at://did:plc:abc/album/blue"
    )


def test_avatar_url_and_its_sql_parts_agree():
    url = bsky_avatar_url("did:plc:abc", "bafycid")
    assert url == "https://cdn.bsky.app/img/avatar/plain/did:plc:abc/bafycid@jpeg"
    first, middle, last = BSKY_AVATAR_PARTS
    assert first + "did:plc:abc" + middle + "bafycid" + last == url
