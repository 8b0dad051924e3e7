"""Every catalog read model through the generic runner on a real PostgreSQL.

The required cases for each projector module (track, like, comment, list, profile, album):
replay twice = once; out-of-order arrival; duplicates; insert → delete → insert; a crash
before commit leaves the offset unmoved. Plus account effects, rebuild and dead letters.
"""

from __future__ import annotations

import pytest

from kernel.envelope import Envelope
from kernel.log import Message
from kernel.log.postgres import PostgresLog
from projectors.album import slugify
from projectors.catalog import CatalogProjector
from projectors.rebuild import RebuildProgress, list_dead_letters, rebuild, replay_dead_letters
from projectors.runner import apply_batch, load_offset
from testkit.events import catalog_event_mix
from testkit.records import (
    bsky_profile_record,
    comment_record,
    fake_cid,
    like_record,
    list_record,
    plyr_profile_record,
    track_record,
)

A = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
B = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
TOPIC = "plyr.repo"
T1 = f"at://{A}/fm.plyr.track/t1"


def rec(kind, did, collection, rkey, rev, record=None) -> Envelope:
    return Envelope(
        kind=kind,
        did=did,
        source="test",
        time=f"2026-11-01T00:00:{int(rev[-2:]) % 60:02d}Z",
        rev=f"3l{rev}",
        collection=collection,
        rkey=rkey,
        cid=fake_cid(rev),
        record=record,
    )


class Feed:
    """Appends envelopes as consecutive messages of partition 0 and projects them."""

    def __init__(self, pool):
        self.pool = pool
        self.offset = 0
        self.projector = CatalogProjector()

    async def __call__(self, *envelopes):
        messages = [
            Message(TOPIC, 0, self.offset + i, e.did.encode(), e.to_bytes(), 0)
            for i, e in enumerate(envelopes)
        ]
        self.offset += len(messages)
        expected = await load_offset(self.pool, "catalog", TOPIC, 0)
        return await apply_batch(self.pool, self.projector, messages, expected)


@pytest.fixture
def feed(pool):
    return Feed(pool)


async def rows(pool, query):
    async with pool.connection() as conn:
        cur = await conn.execute(query)
        return await cur.fetchall()


# Per read model: (create at rev, update at rev, delete at rev, observed state).
def track_ev(kind, rev, title="One", rkey="t1"):
    return rec(
        kind,
        A,
        "fm.plyr.track",
        rkey,
        rev,
        None if kind == "record.deleted" else track_record(title, album="First Light"),
    )


def like_ev(kind, rev, variant="", rkey="l1"):
    record = None if kind == "record.deleted" else like_record(T1 + variant)
    return rec(kind, B, "fm.plyr.like", rkey, rev, record)


def comment_ev(kind, rev, text="nice", rkey="c1"):
    record = None if kind == "record.deleted" else comment_record(T1, text)
    return rec(kind, B, "fm.plyr.comment", rkey, rev, record)


def list_ev(kind, rev, name="Mix", rkey="p1"):
    record = None if kind == "record.deleted" else list_record([T1, T1 + "x"], name)
    return rec(kind, A, "fm.plyr.list", rkey, rev, record)


def profile_ev(kind, rev, bio="hello", rkey="self"):
    record = None if kind == "record.deleted" else plyr_profile_record(bio)
    return rec(kind, A, "fm.plyr.actor.profile", rkey, rev, record)


def album_ev(kind, rev, name="First Light", rkey="al1"):
    record = None if kind == "record.deleted" else list_record([T1], name, "album")
    return rec(kind, A, "fm.plyr.list", rkey, rev, record)


MODELS = {
    "track": (track_ev, "SELECT uri, title, rev, like_count, album_slug FROM track"),
    "like": (like_ev, 'SELECT uri, subject_uri, rev FROM "like"'),
    "comment": (comment_ev, "SELECT uri, text, rev FROM comment"),
    "list": (
        list_ev,
        "SELECT l.uri, l.name, l.rev, array_agg(i.subject_uri ORDER BY i.position)"
        " FROM list l JOIN list_item i ON i.list_uri = l.uri GROUP BY l.uri",
    ),
    "profile": (profile_ev, "SELECT did, bio, plyr_profile_rev FROM artist WHERE bio IS NOT NULL"),
    "album": (album_ev, "SELECT did, slug, title, list_uri, track_count FROM album"),
}


@pytest.fixture(params=sorted(MODELS))
def model(request):
    return MODELS[request.param]


async def test_replay_twice_is_once(pool, feed, model):
    make, query = model
    batch = [make("record.created", "01"), make("record.updated", "02", "Two")]
    await feed(*batch)
    once = await rows(pool, query)
    assert once
    await feed(*batch)  # the same events again at later offsets
    assert await rows(pool, query) == once


async def test_update_before_create(pool, feed, model):
    make, query = model
    await feed(make("record.updated", "02", "Two"))
    await feed(make("record.created", "01"))
    reference = Feed(pool)
    # The result equals the in-order result (computed after resetting).
    got = await rows(pool, query)
    async with pool.connection() as conn:
        await conn.execute(
            'TRUNCATE track, artist, "like", comment, list_item, list, album, catalog_tombstone'
        )
        await conn.execute("DELETE FROM projector_offset")
    await reference(make("record.created", "01"), make("record.updated", "02", "Two"))
    assert got == await rows(pool, query)


async def test_duplicates(pool, feed, model):
    make, query = model
    e = make("record.created", "01")
    await feed(e, e)
    await feed(e)
    single = await rows(pool, query)
    assert len(single) == 1


async def test_insert_delete_insert(pool, feed, model):
    make, query = model
    await feed(make("record.created", "01"), make("record.deleted", "02"))
    assert await rows(pool, query) == []
    # A replay of the old create cannot resurrect it (tombstone) ...
    await feed(make("record.created", "01"))
    assert await rows(pool, query) == []
    # ... but a newer create can.
    await feed(make("record.created", "03", "Again"))
    assert len(await rows(pool, query)) == 1


async def test_crash_before_commit_leaves_offset_unmoved(pool, model):
    make, query = model

    class Crashing(CatalogProjector):
        async def write(self, conn, steps):
            await super().write(conn, steps)
            raise RuntimeError("crash before commit")

    message = Message(TOPIC, 0, 0, b"k", make("record.created", "01").to_bytes(), 0)
    with pytest.raises(RuntimeError):
        await apply_batch(pool, Crashing(), [message], await load_offset(pool, "catalog", TOPIC, 0))
    assert await load_offset(pool, "catalog", TOPIC, 0) == 0
    assert await rows(pool, query) == []


async def test_like_before_track_counts_recomputed(pool, feed):
    await feed(like_ev("record.created", "01"), comment_ev("record.created", "02"))
    await feed(
        like_ev("record.created", "03", rkey="l2"),  # same liker twice counts once
        rec("record.created", A, "fm.plyr.like", "l3", "04", like_record(T1)),
    )
    await feed(track_ev("record.created", "05"))
    assert await rows(pool, "SELECT like_count, comment_count FROM track") == [(2, 1)]
    await feed(like_ev("record.deleted", "06"), comment_ev("record.deleted", "07"))
    assert await rows(pool, "SELECT like_count, comment_count FROM track") == [(2, 0)]
    await feed(like_ev("record.deleted", "08", rkey="l2"))
    assert await rows(pool, "SELECT like_count, comment_count FROM track") == [(1, 0)]


async def test_albums_from_titles_and_lists_with_stable_slugs(pool, feed):
    await feed(
        rec(
            "record.created",
            A,
            "fm.plyr.track",
            "t1",
            "01",
            track_record("a", album="Tōkyō Nights!"),
        ),
        rec(
            "record.created",
            A,
            "fm.plyr.track",
            "t2",
            "02",
            track_record("b", album="tokyo nights"),
        ),
        rec("record.created", A, "fm.plyr.track", "t3", "03", track_record("c")),
        rec(
            "record.created",
            A,
            "fm.plyr.list",
            "al",
            "04",
            list_record([f"at://{A}/fm.plyr.track/t3"], "Live", "album"),
        ),
    )
    assert await rows(
        pool, "SELECT slug, title, track_count, list_uri IS NOT NULL FROM album ORDER BY slug"
    ) == [("live", "Live", 1, True), ("tokyo-nights", "Tōkyō Nights!", 2, False)]
    assert await rows(pool, "SELECT rkey, album_slug FROM track ORDER BY rkey") == [
        ("t1", "tokyo-nights"),
        ("t2", "tokyo-nights"),
        ("t3", "live"),
    ]
    await feed(
        rec("record.deleted", A, "fm.plyr.track", "t1", "05"),
        rec("record.deleted", A, "fm.plyr.track", "t2", "06"),
    )
    assert await rows(pool, "SELECT slug FROM album") == [("live",)]
    # The album list goes: its untitled track loses the album and the slug.
    await feed(rec("record.deleted", A, "fm.plyr.list", "al", "07"))
    assert await rows(pool, "SELECT slug FROM album") == []
    assert await rows(pool, "SELECT rkey, album_slug FROM track") == [("t3", None)]


def test_slug_rule():
    assert slugify("Tōkyō Nights!") == "tokyo-nights"
    assert slugify("AC/DC — Live") == "ac-dc-live"
    assert slugify("夜の歌") == "夜の歌"
    assert slugify("!!!").startswith("album-") and slugify("!!!") == slugify("!!!")
    assert slugify("!!!") != slugify("???")


async def test_profiles_and_handles(pool, feed):
    await feed(
        Envelope(kind="identity.changed", did=A, source="t", time="t", handle="a.test"),
        rec(
            "record.created",
            A,
            "app.bsky.actor.profile",
            "self",
            "01",
            bsky_profile_record("Alice", fake_cid("avatar")),
        ),
        rec(
            "record.created", A, "fm.plyr.actor.profile", "self", "02", plyr_profile_record("bio!")
        ),
        Envelope(kind="identity.changed", did=A, source="t", time="t", handle=None),
    )
    got = await rows(pool, "SELECT handle, display_name, avatar_url, bio FROM artist")
    assert got == [
        (
            "a.test",
            "Alice",
            f"https://cdn.bsky.app/img/avatar/plain/{A}/{fake_cid('avatar')}@jpeg",
            "bio!",
        )
    ]
    await feed(
        Envelope(kind="identity.changed", did=A, source="t", time="t", handle="new.test"),
        rec(
            "record.created",
            A,
            "fm.plyr.actor.profile",
            "self",
            "03",
            plyr_profile_record("bio2", "https://img.example/a.jpg"),
        ),
    )
    assert await rows(pool, "SELECT handle, avatar_url, bio FROM artist") == [
        ("new.test", "https://img.example/a.jpg", "bio2")
    ]


async def test_account_status_hides_and_deletion_purges(pool, feed):
    await feed(
        track_ev("record.created", "01"),
        like_ev("record.created", "02"),
        rec(
            "record.created",
            A,
            "fm.plyr.like",
            "la",
            "03",
            like_record(f"at://{B}/fm.plyr.track/x"),
        ),
        rec("record.created", B, "fm.plyr.track", "x", "04", track_record("B's")),
        Envelope(
            kind="account.changed", did=A, source="t", time="t", active=False, status="takendown"
        ),
    )
    assert await rows(pool, f"SELECT account_status FROM artist WHERE did = '{A}'") == [
        ("takendown",)
    ]
    assert len(await rows(pool, "SELECT 1 FROM track")) == 2  # kept, the API hides them
    await feed(
        Envelope(
            kind="account.changed", did=A, source="t", time="t", active=False, status="deleted"
        ),
        track_ev("record.created", "09", "after deletion"),
    )
    for table in ("track", '"like"', "list", "album", "artist", "comment"):
        assert await rows(pool, f"SELECT 1 FROM {table} WHERE did = '{A}'") == []
    assert await rows(pool, "SELECT like_count FROM track") == [(0,)]  # B's track lost A's like
    await feed(Envelope(kind="account.changed", did=A, source="t", time="t", active=True))
    assert await rows(pool, f"SELECT account_status FROM artist WHERE did = '{A}'") == [("active",)]


async def dump(pool):
    tables = {
        "track": "SELECT * FROM track ORDER BY uri",
        "artist": "SELECT * FROM artist ORDER BY did",
        "like": 'SELECT * FROM "like" ORDER BY uri',
        "comment": "SELECT * FROM comment ORDER BY uri",
        "list": "SELECT * FROM list ORDER BY uri",
        "list_item": "SELECT * FROM list_item ORDER BY list_uri, position",
        "album": "SELECT * FROM album ORDER BY did, slug",
        "tombstone": "SELECT * FROM catalog_tombstone ORDER BY key",
    }
    return {name: "\n".join(map(repr, await rows(pool, q))) for name, q in tables.items()}


async def test_rebuild_is_byte_identical_and_dead_letters_replay(pool):
    log = PostgresLog(pool, partitions=3, topics=[TOPIC])
    await log.start()
    events = catalog_event_mix(1500)
    bad = rec("record.created", A, "fm.plyr.track", "bad", "99", track_record("x" * 300))
    await log.append(TOPIC, [(e.key, e.to_bytes()) for e in [*events, bad]])
    projector = CatalogProjector()
    # Live: small batches, partitions one after another.
    for partition in range(3):
        offset = await load_offset(pool, "catalog", TOPIC, partition)
        while messages := await log.read(TOPIC, partition, offset, max_messages=37, timeout=0.1):
            offset = await apply_batch(pool, projector, messages, offset)
    live = await dump(pool)
    assert live["track"] and live["like"] and live["album"] and live["list_item"]
    seen: list[RebuildProgress] = []
    done = await rebuild(pool, log, projector, TOPIC, batch_size=500, on_progress=seen.append)
    assert done.done == len(events) + 1 and seen[-1].done == done.done
    assert await dump(pool) == live
    letters = await list_dead_letters(pool)
    assert [(d.uri, "title" in d.reason) for d in letters] == [
        (f"at://{A}/fm.plyr.track/bad", True)
    ]
    by_name = {"catalog": projector}.__getitem__  # the wiring passes the registry's lookup
    assert await replay_dead_letters(pool, log, letters, by_name) == (0, 1)  # still invalid
    assert len(await list_dead_letters(pool)) == 1


async def test_rebuild_in_default_batches_equals_one_event_per_transaction(pool):
    log = PostgresLog(pool, partitions=2, topics=[TOPIC])
    await log.start()
    events = catalog_event_mix(700, seed=11)
    await log.append(TOPIC, [(e.key, e.to_bytes()) for e in events])
    projector = CatalogProjector()
    # The naive way: every event in its own transaction, as a live worker with no backlog.
    for partition in range(2):
        offset = await load_offset(pool, "catalog", TOPIC, partition)
        for message in await log.read(TOPIC, partition, 0, max_messages=10_000, timeout=0.1):
            offset = await apply_batch(pool, projector, [message], offset)
    one_by_one = await dump(pool)
    assert one_by_one["track"] and one_by_one["like"] and one_by_one["album"]
    done = await rebuild(pool, log, projector, TOPIC)  # one batch per partition
    assert done.done == len(events)
    assert await dump(pool) == one_by_one


async def test_rebuild_dead_letters_what_the_live_run_dead_letters(pool):
    log = PostgresLog(pool, partitions=2, topics=[TOPIC])
    await log.start()
    events = catalog_event_mix(400, seed=5)
    # Lexicon-valid, but PostgreSQL refuses a +20:00 offset: the whole batch is retried
    # one event at a time to find it.
    refused = rec("record.created", A, "fm.plyr.track", "tz", "98", track_record("Far East"))
    assert refused.record is not None
    refused.record["createdAt"] = "2026-01-01T00:00:00+20:00"
    invalid = rec("record.created", B, "fm.plyr.track", "long", "99", track_record("x" * 300))
    items = [(e.key, e.to_bytes()) for e in [*events[:200], refused, invalid, *events[200:]]]
    items.insert(100, (A.encode(), b"not json"))
    await log.append(TOPIC, items)
    projector = CatalogProjector()

    async def letters():
        found = await list_dead_letters(pool)
        return sorted((d.partition, d.offset, d.uri, d.reason) for d in found)

    for partition in range(2):
        offset = await load_offset(pool, "catalog", TOPIC, partition)
        while messages := await log.read(TOPIC, partition, offset, max_messages=50, timeout=0.1):
            offset = await apply_batch(pool, projector, messages, offset)
    live, live_letters = await dump(pool), await letters()
    reasons = [reason for *_, reason in live_letters]
    assert len(reasons) == 3
    assert any(r.startswith("rejected by the database") for r in reasons)
    assert any(r.startswith("title:") for r in reasons)
    assert any(r.startswith("not JSON") for r in reasons)
    await rebuild(pool, log, projector, TOPIC)  # prepared in the helper process
    assert await dump(pool) == live
    assert await letters() == live_letters
