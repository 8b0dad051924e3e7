"""The batch search projector agrees with the per-event one it replaced, table for table.

The same events (the catalog event mix, the edge cases below, and a replay of part of the
mix shuffled, duplicated and interleaved with deletes) go through the per-event projector
(:mod:`testkit.search_reference`) and through :class:`projectors.search.SearchProjector` in
batches of several sizes (1 included); every search table, and the dead letters, must hold
the same rows (as multisets) after each.
"""

from __future__ import annotations

from typing import Any

import pytest

from kernel.envelope import Envelope, Kind
from kernel.identity import INVALID_HANDLE
from projectors.search import SearchProjector
from testkit.agreement import Contents, account, contents, differences, perturbed, project, rec
from testkit.events import catalog_event_mix
from testkit.records import (
    TRACK,
    bsky_profile_record,
    fake_cid,
    list_record,
    plyr_profile_record,
    track_record,
)
from testkit.search_reference import PerEventSearchProjector

TOPIC = "plyr.repo"
A = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
B = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
C = "did:plc:cccccccccccccccccccccccc"
D = "did:plc:dddddddddddddddddddddddd"
E = "did:plc:eeeeeeeeeeeeeeeeeeeeeeee"
F = "did:plc:ffffffffffffffffffffffff"
BSKY = "app.bsky.actor.profile"
PLYR = "fm.plyr.actor.profile"
LIST = "fm.plyr.list"
AVATAR = fake_cid("avatar")


def ident(did: str, handle: str | None) -> Envelope:
    return Envelope(kind="identity.changed", did=did, source="test", time="t", handle=handle)


def uri(did: str, rkey: str, collection: str = TRACK) -> str:
    return f"at://{did}/{collection}/{rkey}"


def edge_cases() -> list[Envelope]:
    """Order-sensitive cases, each on its own records (revs 3m<nn>)."""

    def track(kind: Kind, did: str, rkey: str, rev: str, title: str = "Song", **extra: Any):
        return rec(kind, did, TRACK, rkey, rev, track_record(title, **extra))

    def lst(kind: Kind, did: str, rkey: str, rev: str, items: list[str], name: str, type_: str):
        return rec(kind, did, LIST, rkey, rev, list_record(items, name, type_))

    return [
        # Handles: the last identity event with one wins; unverified clears it.
        ident(A, "a.test"),
        ident(A, None),
        ident(B, INVALID_HANDLE),
        ident(B, "b.test"),
        ident(C, "c.test"),
        ident(C, INVALID_HANDLE),
        # A delete before the create it beats; an update older than the stored one.
        track("record.deleted", A, "t1", "3m05"),
        track("record.created", A, "t1", "3m03", "Lost"),
        track("record.created", A, "t2", "3m10", "Two", album="Rock!"),
        track("record.updated", A, "t2", "3m12", "Two (edit)", album="rock", tags=["Rock", "x"]),
        track("record.updated", A, "t2", "3m11", "Two (older)", album="Pop"),
        # An album list naming an untitled track, and one that comes later.
        track("record.created", A, "t3", "3m20", "Three", imageUrl="https://img/3"),
        lst("record.created", A, "l1", "3m21", [uri(A, "t3"), uri(A, "t9")], "Rock", "album"),
        track("record.created", A, "t9", "3m22", "Nine", imageUrl="https://img/9"),
        # Written, deleted, written again at the same rev: the artist string stays.
        track("record.created", E, "t4", "3m30", "Four", artist="Zed"),
        track("record.deleted", E, "t4", "3m31"),
        track("record.created", E, "t4", "3m30", "Four", artist="Zed"),
        # A write, a newer delete, a write between the two (it cannot take effect).
        track("record.created", F, "t5", "3m32", "Five", album="Late", artist="Early"),
        track("record.deleted", F, "t5", "3m36"),
        track("record.updated", F, "t5", "3m34", "Five (mid)", artist="Mid"),
        # Two tracks of one commit: the last applied gives the artist string.
        track("record.created", B, "t6", "3m77", "Six", artist="X"),
        track("record.created", B, "t7", "3m77", "Seven", artist="Y"),
        track("record.created", B, "t11", "3m77", "Eleven", artist="W"),
        track("record.created", B, "t12", "3m77", "Twelve", artist="V"),
        # Profiles: newer wins, deletes clear, a delete before an older create.
        rec("record.created", A, BSKY, "self", "3m50", bsky_profile_record("Alice", AVATAR)),
        rec("record.updated", A, BSKY, "self", "3m49", bsky_profile_record("Old")),
        rec("record.created", A, PLYR, "self", "3m51", plyr_profile_record("bio", "https://a")),
        rec("record.deleted", A, PLYR, "self", "3m52"),
        rec("record.deleted", B, BSKY, "self", "3m53"),
        rec("record.created", B, BSKY, "self", "3m51", bsky_profile_record("Bob (older)")),
        rec("record.created", B, BSKY, "other", "3m54", bsky_profile_record("Bob other")),
        rec("record.created", B, BSKY, "self", "3m55", bsky_profile_record("Bob")),
        rec("record.updated", B, BSKY, "other", "3m56", bsky_profile_record("Bob other 2")),
        # Lists: playlist, then album, then playlist again; unnamed; liked; deleted.
        lst("record.created", A, "l2", "3m60", [uri(A, "t2")], "Road", "playlist"),
        lst("record.updated", A, "l2", "3m61", [uri(A, "t2"), uri(A, "t3")], "Road", "album"),
        lst("record.updated", A, "l2", "3m62", [uri(A, "t3")], "Road", "playlist"),
        rec("record.created", A, LIST, "l3", "3m63", {**list_record([], "x"), "name": ""}),
        lst("record.created", A, "l4", "3m64", [uri(A, "t2")], "Liked", "liked"),
        lst("record.created", A, "l5", "3m65", [uri(A, "t9")], "Second", "album"),
        lst("record.deleted", A, "l5", "3m66", [], "", ""),
        lst("record.created", A, "l5", "3m67", [uri(A, "t3")], "Second", "album"),
        # Another artist's album list naming A's track: not A's album.
        lst("record.created", B, "l6", "3m68", [uri(A, "t9")], "Borrowed", "album"),
        # Tags replaced, then gone; a delete of a track that never was.
        track("record.created", B, "t8", "3m70", "Eight", tags=["Rock", "rock", " Jazz "]),
        track("record.updated", B, "t8", "3m71", "Eight", tags=["folk"]),
        track("record.created", B, "t10", "3m72", "Ten", tags=["gone"]),
        track("record.deleted", B, "t10", "3m72"),
        track("record.deleted", B, "never", "3m73"),
        # Invalid records are dead-lettered; a deactivation changes nothing here.
        track("record.created", B, "bad", "3m74", "x" * 300),
        rec("record.created", B, BSKY, "self", "3m75", {"$type": BSKY, "displayName": 5}),
        account(C, "deactivated", False),
        # A deleted account, then new events of the same repo.
        ident(D, "d.test"),
        track("record.created", D, "t1", "3m78", "Before", album="Rock", artist="Gone"),
        rec("record.created", D, BSKY, "self", "3m79", bsky_profile_record("Dee")),
        account(D, "deleted", False),
        track("record.created", D, "t1", "3m80", "After", album="Rock"),
        ident(D, "d2.test"),
        track("record.deleted", D, "t2", "3m81"),
        lst("record.created", D, "l1", "3m82", [uri(D, "t1")], "Rock", "album"),
    ]


def stream() -> list[Envelope]:
    mix = catalog_event_mix(500, artists=6)
    # Last, changes only the albums of listed untitled tracks see (nothing after repairs them).
    finale = [
        rec("record.updated", A, TRACK, "t3", "3m90", track_record(imageUrl="https://img/3b")),
        rec("record.deleted", A, TRACK, "t9", "3m91"),
    ]
    return [*mix, *edge_cases(), *perturbed(mix, seed=3), *edge_cases(), *finale]


@pytest.fixture
async def expected(pool) -> Contents:
    await project(pool, PerEventSearchProjector(), [(TOPIC, stream())], 50)
    return await contents(pool, SearchProjector())


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
async def test_batches_give_the_per_event_tables(pool, expected, size):
    assert sum(len(rows) for rows in expected.values()) > 200  # the stream projects something
    await project(pool, SearchProjector(), [(TOPIC, stream())], size)
    assert differences(expected, await contents(pool, SearchProjector())) == []


async def test_the_stream_covers_the_cases(pool, expected):
    """The per-event run has what the cases are there for (the comparison means something)."""
    rows = "\n".join(row for table in expected.values() for row in table)
    for needle in ("'album'", "'playlist'", "'b.test'", "'Bob other 2'", "'V'", "'folk'",
                   "'d2.test'", "Borrowed",
                   "'a.test'", "'Zed'", "'Early'", "'Alice'"):  # fmt: skip
        assert needle in rows, needle
    assert expected["dead_letter"]
    assert expected["search_tombstone"]
