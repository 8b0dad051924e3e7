"""Account deletion purges plays (projectors/plays.py ``purge_account``): the plays
projector reads ``account.changed`` from the repo topic; a deleted artist's plays and a
deleted DID listener's plays go, with every count derived from them, and a rebuild that
interleaves the two topics its own way ends where the live run ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kernel.envelope import Envelope
from kernel.log import Message
from kernel.log.postgres import PostgresLog
from kernel.plays import iso_time, play_reported
from projectors.plays import PlaysProjector
from projectors.rebuild import rebuild
from projectors.runner import apply_batch, load_offset

A = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"  # artist of T1, T2
B = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"  # artist of T3
D = "did:plc:dddddddddddddddddddddddd"  # a DID listener
T1 = f"at://{A}/fm.plyr.track/t1"
T2 = f"at://{A}/fm.plyr.track/t2"
T3 = f"at://{B}/fm.plyr.track/t3"
PLAYS, REPO = "plyr.plays", "plyr.repo"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def rep(seconds: float, play_id: str, listener: str, track: str) -> Envelope:
    return play_reported(
        play_id=play_id,
        listener=listener,
        track_uri=track,
        at=T0 + timedelta(seconds=seconds),
        duration_s=60,
    )


def account(did: str, status: str, seconds: float) -> Envelope:
    return Envelope(
        kind="account.changed",
        did=did,
        source="test",
        time=iso_time(T0 + timedelta(seconds=seconds)),
        active=status == "active",
        status=status,
    )


async def rows(pool, query, params=()):
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


async def dump(pool):
    out = {}
    for table, order in (
        ("play", "play_id"),
        ("play_hourly", "track_uri, hour"),
        ("play_track_listener_day", "track_uri, day, listener"),
        ("play_artist_listener_day", "did, day, listener"),
        ("play_track_total", "track_uri"),
        ("play_artist_total", "did"),
        ("play_purge", "did"),
    ):
        out[table] = await rows(pool, f"SELECT * FROM {table} ORDER BY {order}")
    return out


class Feed:
    """Projects envelopes as consecutive messages of partition 0 of a topic."""

    def __init__(self, pool):
        self.pool, self.offsets, self.projector = pool, {PLAYS: 0, REPO: 0}, PlaysProjector()

    async def __call__(self, topic, *envelopes):
        start = self.offsets[topic]
        messages = [
            Message(topic, 0, start + i, e.key, e.to_bytes(), 0) for i, e in enumerate(envelopes)
        ]
        self.offsets[topic] += len(messages)
        expected = await load_offset(self.pool, "plays", topic, 0)
        return await apply_batch(self.pool, self.projector, messages, expected)


async def test_deleting_an_artist_purges_their_tracks_plays_and_counts(pool):
    feed = Feed(pool)
    await feed(
        PLAYS,
        rep(0, "a1", "cookie:x", T1),
        rep(10, "a2", "cookie:y", T2),
        rep(20, "a3", A, T1),  # the artist's own play
        rep(30, "b1", "cookie:x", T3),
        rep(40, "b2", A, T3),  # the deleted artist listening to someone else
    )
    # Other repo events pass through the plays projector untouched.
    other = Envelope(kind="identity.changed", did=B, source="t", time=iso_time(T0), handle="b.x")
    await feed(REPO, other, account(A, "deleted", 3600))
    assert await rows(pool, "SELECT play_id FROM play ORDER BY 1") == [("b1",)]
    assert await rows(pool, "SELECT track_uri, plays, self_plays FROM play_track_total") == [
        (T3, 1, 0)
    ]
    assert await rows(pool, "SELECT did, plays FROM play_artist_total") == [(B, 1)]
    assert await rows(pool, "SELECT track_uri, plays FROM play_hourly") == [(T3, 1)]
    assert await rows(pool, "SELECT track_uri, listener FROM play_track_listener_day") == [
        (T3, "cookie:x")
    ]
    assert await rows(pool, "SELECT did, listener FROM play_artist_listener_day") == [
        (B, "cookie:x")
    ]


async def test_deleting_a_listener_keeps_the_artists_other_listeners(pool):
    feed = Feed(pool)
    await feed(PLAYS, rep(0, "d1", D, T3), rep(5, "x1", "cookie:x", T3), rep(9, "d2", D, T1))
    await feed(REPO, account(D, "deleted", 60))
    assert await rows(pool, "SELECT play_id FROM play") == [("x1",)]
    assert await rows(pool, "SELECT did, plays FROM play_artist_total") == [(B, 1)]
    assert await rows(pool, "SELECT listener FROM play_artist_listener_day") == [("cookie:x",)]
    # Late reports played before the deletion are refused; plays after it count.
    await feed(PLAYS, rep(30, "late", D, T2), rep(7200, "back", D, T2))
    assert await rows(pool, "SELECT play_id FROM play ORDER BY 1") == [("back",), ("x1",)]


async def test_takedown_and_deactivation_do_not_purge(pool):
    feed = Feed(pool)
    await feed(PLAYS, rep(0, "a1", "cookie:x", T1))
    await feed(REPO, account(A, "takendown", 60), account(A, "deactivated", 70))
    assert await rows(pool, "SELECT play_id FROM play") == [("a1",)]
    assert await rows(pool, "SELECT did FROM play_purge") == []


async def test_rebuild_with_deletions_equals_the_live_run(pool):
    log = PostgresLog(pool, partitions=2, topics=[PLAYS, REPO])
    await log.start()
    listeners = ["cookie:1", "cookie:2", D, A]
    tracks = [T1, T2, T3]
    plays_before = [rep(i * 97, f"p{i}", listeners[i % 4], tracks[i % 3]) for i in range(60)]
    plays_after = [
        rep(20_000 + i * 97, f"q{i}", listeners[i % 4], tracks[i % 3]) for i in range(60)
    ]
    deletions = [account(A, "deleted", 10_000), account(D, "deleted", 10_000)]
    projector = PlaysProjector()
    for topic in (PLAYS, REPO):
        for partition in range(2):
            await load_offset(pool, "plays", topic, partition)

    async def live(topic, envelopes):
        """Append, then project each new message on its own, in log order."""
        before = {p: await log.end_offset(topic, p) for p in range(2)}
        await log.append(topic, [(e.key, e.to_bytes()) for e in envelopes])
        for partition in range(2):
            messages = await log.read(
                topic, partition, before[partition], max_messages=10_000, timeout=0.1
            )
            for message in messages:
                await apply_batch(pool, projector, [message], message.offset)

    # Live: plays, then the deletions, then plays after them (and a late one before).
    await live(PLAYS, plays_before)
    await live(REPO, deletions)
    await live(PLAYS, [*plays_after, rep(500, "late", D, T3)])
    result = await dump(pool)
    kept = {r[0] for r in result["play"]}
    before_kept = {
        f"p{i}" for i in range(60) if listeners[i % 4].startswith("cookie:") and i % 3 == 2
    }
    assert {p for p in kept if not p.startswith("q")} == before_kept
    assert len(kept - before_kept) > 0
    assert {r[0] for r in result["play_purge"]} == {A, D}
    # The rebuild reads the plays topic before the repo topic: purges come last there.
    await rebuild(pool, log, projector, [PLAYS, REPO])
    assert await dump(pool) == result
    await rebuild(pool, log, projector, [REPO, PLAYS])
    assert await dump(pool) == result
