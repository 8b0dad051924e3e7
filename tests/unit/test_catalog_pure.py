"""The catalog's pure parts, without PostgreSQL: each module's to_row and touches, the
registry, and the reduction's order independence."""

from __future__ import annotations

import json
import random

import pytest

from kernel.envelope import Envelope
from kernel.ids import list_id, track_id
from projectors import catalog, comment, like, lists, track
from projectors.base import InvalidEvent
from projectors.records import EPOCH, Deletion, Touched
from testkit.events import catalog_event_mix
from testkit.records import comment_record, like_record, list_record, track_record

DID = "did:plc:abcdefghijklmnopqrstuvwx"
TRACK_URI = f"at://{DID}/fm.plyr.track/t1"


def env(collection: str, rkey: str, record, rev: str = "3l1") -> Envelope:
    return Envelope(
        kind="record.created",
        did=DID,
        source="test",
        time="2026-11-01T00:00:00Z",
        rev=rev,
        collection=collection,
        rkey=rkey,
        cid=f"bafy{rev}",
        record=record,
    )


def test_the_registry_holds_each_record_collection_once_tracks_last():
    assert [m.COLLECTION for m in catalog.RECORD_MODULES] == [
        "fm.plyr.like",
        "fm.plyr.comment",
        "fm.plyr.list",
        "fm.plyr.track",
    ]
    assert [m.SHARED for m in catalog.RECORD_MODULES] == [False, False, False, True]


def test_track_to_row():
    row = track.to_row(env("fm.plyr.track", "t1", track_record("One", album="Blue!", tags=["X"])))
    assert (row["uri"], row["id"], row["title"], row["album_slug"], row["tags"]) == (
        TRACK_URI,
        track_id(TRACK_URI),
        "One",
        "blue",
        ["x"],
    )
    assert track.touches([row], []) == Touched(artists=frozenset({DID}))


def test_like_and_comment_rows_touch_their_subject():
    liked = like.to_row(env("fm.plyr.like", "l1", like_record(TRACK_URI)))
    said = comment.to_row(env("fm.plyr.comment", "c1", comment_record(TRACK_URI, "hi")))
    assert (liked["subject_uri"], said["subject_uri"], said["text"]) == (TRACK_URI, TRACK_URI, "hi")
    gone = Deletion(f"at://{DID}/fm.plyr.like/l2", DID, "3l2", EPOCH)
    assert like.touches([liked], [gone]) == Touched(subjects=frozenset({TRACK_URI}))
    assert comment.touches([said], []) == Touched(subjects=frozenset({TRACK_URI}))


def test_list_row_carries_its_items():
    uri = f"at://{DID}/fm.plyr.list/p1"
    row = lists.to_row(env("fm.plyr.list", "p1", list_record([TRACK_URI], "Mix", "album")))
    assert (row["id"], row["list_type"], row["item_count"]) == (str(list_id(uri)), "album", 1)
    assert [(i["position"], i["subject_uri"]) for i in row["items"]] == [(0, TRACK_URI)]
    assert lists.touches([row], []).artists == {DID}


def test_invalid_records_are_refused():
    with pytest.raises(InvalidEvent):
        track.to_row(env("fm.plyr.track", "t1", {"$type": "fm.plyr.track", "title": 3}))


def _steps(events):
    steps, rejected = catalog.CatalogProjector().reduce(events)
    assert rejected == []
    return steps


def test_reduce_is_order_independent():
    # Record and profile events only: identity and account events are per-repo ordered
    # by the log (the last one wins), so they are not permuted here.
    events = [
        e
        for e in catalog_event_mix(600, seed=3)
        if e.kind.startswith("record.") and e.collection in catalog.COLLECTIONS
    ]
    assert len({e.collection for e in events}) >= 5
    once = _steps(events)
    assert len(once) == 1
    rng = random.Random(5)
    for _ in range(3):
        shuffled = events[:]
        rng.shuffle(shuffled)
        assert _steps(shuffled) == once
    # and duplicates change nothing
    assert _steps(events + events[::2]) == once


def test_reduce_keeps_the_newest_rev_and_a_delete_wins_a_tie():
    created = env("fm.plyr.track", "t1", track_record("Old"), rev="3l1")
    edited = env("fm.plyr.track", "t1", track_record("New"), rev="3l2")
    deleted = Envelope(
        kind="record.deleted",
        did=DID,
        source="test",
        time="t",
        rev="3l2",
        collection="fm.plyr.track",
        rkey="t1",
    )
    [writes] = _steps([edited, created])
    records = {c: (json.loads(up.json), json.loads(down.json)) for c, up, down in writes.records}
    assert [r["title"] for r in records["fm.plyr.track"][0]] == ["New"]
    [writes] = _steps([deleted, edited, created])
    records = {c: (json.loads(up.json), json.loads(down.json)) for c, up, down in writes.records}
    assert records["fm.plyr.track"] == (
        [],
        [{"uri": TRACK_URI, "did": DID, "rev": "3l2", "at": "1970-01-01T00:00:00+00:00"}],
    )
