"""The plays projector (embedded qualification) through the generic runner on PostgreSQL.

Required cases: replay twice = once; duplicates (same play id); out-of-order reports;
a crash before commit leaves the offset unmoved; plus the counts it maintains (hour
buckets, unique listeners per day, totals, self-plays), play.counted events, dead letters
and a rebuild from the log.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from kernel.envelope import Envelope
from kernel.log import Message
from kernel.log.postgres import PostgresLog
from kernel.plays import play_counted, play_reported
from projectors.plays import PlaysProjector
from projectors.rebuild import rebuild
from projectors.runner import apply_batch, load_offset

A = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
B = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
T1 = f"at://{A}/fm.plyr.track/t1"
T2 = f"at://{A}/fm.plyr.track/t2"
T3 = f"at://{B}/fm.plyr.track/t3"
TOPIC = "plyr.plays"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
L1, L2 = "cookie:one", "cookie:two"


def rep(
    seconds: float, play_id: str, *, listener: str = L1, track: str = T1, duration: int | None = 120
) -> Envelope:
    return play_reported(
        play_id=play_id,
        listener=listener,
        track_uri=track,
        at=T0 + timedelta(seconds=seconds),
        duration_s=duration,
    )


class Feed:
    """Appends envelopes as consecutive messages of partition 0 and projects them."""

    def __init__(self, pool, projector=None):
        self.pool = pool
        self.offset = 0
        self.projector = projector or PlaysProjector()

    async def __call__(self, *envelopes):
        messages = [
            Message(TOPIC, 0, self.offset + i, e.key, e.to_bytes(), 0)
            for i, e in enumerate(envelopes)
        ]
        self.offset += len(messages)
        expected = await load_offset(self.pool, "plays", TOPIC, 0)
        return await apply_batch(self.pool, self.projector, messages, expected)


@pytest.fixture
def feed(pool):
    return Feed(pool)


async def rows(pool, query, params=()):
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


async def counted(pool):
    return await rows(pool, "SELECT play_id FROM play ORDER BY played_at, play_id")


async def dump(pool):
    """Every plays table, ordered: equal dumps mean equal read models."""
    out = {}
    for table, order in (
        ("play", "play_id"),
        ("play_hourly", "track_uri, hour"),
        ("play_track_listener_day", "track_uri, day, listener"),
        ("play_artist_listener_day", "did, day, listener"),
        ("play_track_total", "track_uri"),
        ("play_artist_total", "did"),
    ):
        out[table] = await rows(pool, f"SELECT * FROM {table} ORDER BY {order}")
    return out


async def test_window_rule_in_order(pool, feed):
    await feed(rep(0, "a"), rep(60, "b"), rep(120, "c"), rep(121, "d"), rep(400, "e"))
    assert await counted(pool) == [("a",), ("c",), ("e",)]
    assert await rows(pool, "SELECT plays, self_plays FROM play_track_total") == [(3, 0)]


async def test_replay_twice_is_once(pool, feed):
    batch = [rep(0, "a"), rep(500, "b", listener=L2), rep(1000, "c")]
    await feed(*batch)
    once = await dump(pool)
    assert len(once["play"]) == 3
    await feed(*batch)  # the same events again at later offsets
    assert await dump(pool) == once


async def test_duplicate_play_ids_count_once(pool, feed):
    await feed(rep(0, "a"), rep(0, "a"))
    await feed(rep(0, "a"))
    # The same id reported later (a retried request replayed much later) is still one play.
    await feed(rep(5000, "a"))
    assert await counted(pool) == [("a",)]
    assert await rows(pool, "SELECT plays FROM play_artist_total") == [(1,)]


async def test_out_of_order_reports(pool, feed):
    # 1000 first, then late ones: 1050 (inside 1000's window), 500 (fits the gap before it),
    # 950 (its window would overlap 1000's), 0 (fits: 0..120 before 500).
    await feed(rep(1000, "x"))
    await feed(rep(1050, "in-window"), rep(500, "gap"), rep(950, "overlap"))
    await feed(rep(0, "first"))
    assert await counted(pool) == [("first",), ("gap",), ("x",)]


async def test_counts_buckets_listeners_and_self_plays(pool, feed):
    await feed(
        rep(0, "a1"),  # 12:00 L1 T1
        rep(4000, "a2"),  # 13:06 L1 T1
        rep(10, "b1", listener=L2),  # 12:00 L2 T1
        rep(20, "c1", track=T2),  # 12:00 L1 T2
        rep(30, "s1", listener=A),  # the artist's own play of T1
        rep(86_400, "d1"),  # next day, L1 T1
        rep(40, "e1", listener=L2, track=T3),  # B's track
    )
    hourly = await rows(
        pool, "SELECT track_uri, hour, plays, self_plays FROM play_hourly ORDER BY 1, 2"
    )
    assert hourly == [
        (T1, T0, 3, 1),
        (T1, T0 + timedelta(hours=1), 1, 0),
        (T1, T0 + timedelta(days=1), 1, 0),
        (T2, T0, 1, 0),
        (T3, T0, 1, 0),
    ]
    day = T0.date()
    assert await rows(
        pool, "SELECT track_uri, day, listeners FROM play_track_day ORDER BY 1, 2"
    ) == [
        (T1, day, 3),
        (T1, day + timedelta(days=1), 1),
        (T2, day, 1),
        (T3, day, 1),
    ]
    assert await rows(pool, "SELECT did, day, listeners FROM play_artist_day ORDER BY 1, 2") == [
        (A, day, 3),  # L1, L2 and the artist: L1's plays of two tracks count once
        (A, day + timedelta(days=1), 1),
        (B, day, 1),
    ]
    assert await rows(
        pool, "SELECT track_uri, plays, self_plays FROM play_track_total ORDER BY 1"
    ) == [
        (T1, 5, 1),
        (T2, 1, 0),
        (T3, 1, 0),
    ]
    assert await rows(pool, "SELECT did, plays, self_plays FROM play_artist_total ORDER BY 1") == [
        (A, 6, 1),
        (B, 1, 0),
    ]
    assert await rows(pool, "SELECT self_play FROM play WHERE play_id = 's1'") == [(True,)]


async def test_crash_before_commit_leaves_offset_unmoved(pool):
    class Crashing(PlaysProjector):
        async def write(self, conn, reduced):
            await super().write(conn, reduced)
            raise RuntimeError("crash before commit")

    message = Message(TOPIC, 0, 0, b"k", rep(0, "a").to_bytes(), 0)
    with pytest.raises(RuntimeError):
        await apply_batch(pool, Crashing(), [message], await load_offset(pool, "plays", TOPIC, 0))
    assert await load_offset(pool, "plays", TOPIC, 0) == 0
    assert await dump(pool) == {k: [] for k in (await dump(pool))}
    # The retry after the crash counts the play once.
    assert await apply_batch(pool, PlaysProjector(), [message], 0) == 1
    assert await counted(pool) == [("a",)]


async def test_counted_events_are_stored_idempotently(pool):
    # Kafka mode: the stream worker qualified; the projector stores play.counted as is.
    feed = Feed(pool, PlaysProjector(qualify_reports=False))
    reported = rep(0, "a")
    fact = play_counted(reported, window_end=T0 + timedelta(seconds=120), self_play=False)
    await feed(reported, fact, fact)
    await feed(fact)
    assert await counted(pool) == [("a",)]
    assert await rows(pool, "SELECT plays FROM play_track_total") == [(1,)]


async def test_bad_play_events_are_dead_lettered_and_the_offset_advances(pool, feed):
    bad = Envelope(
        kind="play.reported",
        did=A,
        source="api",
        time="yesterday",
        collection="fm.plyr.track",
        rkey="t1",
        play={"id": "p", "listener": L1},
    )
    long_duration = rep(0, "q")
    assert long_duration.play is not None
    long_duration.play["duration"] = "long"
    assert await feed(bad, long_duration, rep(0, "ok")) == 3
    reasons = await rows(pool, 'SELECT "offset", reason FROM dead_letter ORDER BY 1')
    assert [(o, r.split(":")[0]) for o, r in reasons] == [(0, "time"), (1, "play.duration")]
    assert await counted(pool) == [("ok",)]


async def test_rebuild_from_the_log_equals_the_live_run(pool):
    log = PostgresLog(pool, partitions=3, topics=[TOPIC])
    await log.start()
    listeners = [f"cookie:{i}" for i in range(7)]
    events = [
        rep((i * 37) % 900, f"p{i}", listener=listeners[i % 7], track=(T1, T2, T3)[i % 3])
        for i in range(300)
    ]
    await log.append(TOPIC, [(e.key, e.to_bytes()) for e in events])
    projector = PlaysProjector()
    for partition in range(3):
        await load_offset(pool, "plays", TOPIC, partition)
        messages = await log.read(TOPIC, partition, 0, max_messages=10_000, timeout=0.1)
        for message in messages:  # live: one event per transaction
            await apply_batch(pool, projector, [message], message.offset)
    live = await dump(pool)
    assert 0 < len(live["play"]) < 300
    await rebuild(pool, log, projector, TOPIC)
    assert await dump(pool) == live
    await rebuild(pool, log, projector, TOPIC)
    assert await dump(pool) == live


async def test_partitions_written_concurrently_share_counts_without_deadlock(pool):
    # Every partition's batches touch the same tracks, hours and artist, in different orders.
    tracks = [T1, T2, T3]
    partitions = 4
    for partition in range(partitions):
        await load_offset(pool, "plays", TOPIC, partition)

    def batch(partition, round_):
        order = tracks[partition % 3 :] + tracks[: partition % 3]
        envelopes = [
            rep(round_ * 7200 + i * 130, f"p{partition}-{round_}-{i}",
                listener=f"cookie:{partition}-{i % 5}", track=order[i % 3])
            for i in range(60)
        ]  # fmt: skip
        if partition % 2:
            envelopes.reverse()
        return [
            Message(TOPIC, partition, round_ * 60 + i, e.key, e.to_bytes(), 0)
            for i, e in enumerate(envelopes)
        ]

    projector = PlaysProjector()
    for round_ in range(4):
        await asyncio.gather(
            *(
                apply_batch(pool, projector, batch(p, round_), round_ * 60)
                for p in range(partitions)
            )
        )
    [(plays,)] = await rows(pool, "SELECT count(*) FROM play")
    assert plays > 0
    assert await rows(pool, "SELECT sum(plays) FROM play_track_total") == [(plays,)]
    assert await rows(pool, "SELECT sum(plays) FROM play_hourly") == [(plays,)]
    assert await rows(pool, "SELECT sum(plays) FROM play_artist_total") == [(plays,)]
