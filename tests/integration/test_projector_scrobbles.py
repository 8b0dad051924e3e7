"""Network scrobbles through the plays projector on PostgreSQL: matched against catalog rows,
counted with source ``network`` by the same qualification, removed by the record's delete;
unmatched and ambiguous ones counted, not stored; bad ones dead-lettered."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kernel.envelope import Envelope
from kernel.ids import track_id
from kernel.log import Message
from kernel.log.postgres import PostgresLog
from kernel.plays import scrobble_envelope
from projectors.plays import PlaysProjector
from projectors.plays_scrobble import scrobble_status
from projectors.rebuild import rebuild
from projectors.runner import apply_batch, load_offset

ARTIST = "did:plc:artist0000000000000000000"
OTHER_ARTIST = "did:plc:other00000000000000000000"
L1 = "did:plc:listener1000000000000000000"
L2 = "did:plc:listener2000000000000000000"
T1 = f"at://{ARTIST}/fm.plyr.track/t1"
T2 = f"at://{ARTIST}/fm.plyr.track/t2"
T3 = f"at://{OTHER_ARTIST}/fm.plyr.track/t3"
TOPIC = "plyr.plays"
FRONT = "https://plyr.example"


async def add_track(pool, uri: str, title: str, artist: str, duration: int | None = 180) -> None:
    did, _, rkey = uri[len("at://") :].split("/")
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO track (uri, id, did, rkey, cid, rev, title, artist, file_type,"
            " duration, created_at, record) VALUES (%s, %s, %s, %s, 'bafy', '3k', %s, %s,"
            " 'mp3', %s, now(), '{}')",
            (uri, track_id(uri), did, rkey, title, artist, duration),
        )


@pytest.fixture
async def catalog(pool):
    await add_track(pool, T1, "Night Drive", "Luna Park")
    await add_track(pool, T2, "Echoes", "Luna Park")
    await add_track(pool, T3, "Echoes", "Luna Park")  # same title and artist name: ambiguous
    return pool


def scrobble(
    listener: str,
    rkey: str,
    *,
    kind: str = "record.created",
    name: str = "Night Drive",
    artist: str = "Luna Park",
    origin: str | None = None,
    played: str = "2026-11-20T10:00:00Z",
    rev: str = "3k0",
) -> Envelope:
    record: dict[str, Any] | None = None
    if kind != "record.deleted":
        record = {
            "$type": "fm.teal.feed.play",
            "trackName": name,
            "artists": [{"artistName": artist}],
            "playedTime": played,
        }
        if origin is not None:
            record["originUri"] = origin
    return scrobble_envelope(
        kind=kind,  # type: ignore[arg-type]
        listener=listener,
        collection="fm.teal.feed.play",
        rkey=rkey,
        source="firehose:test",
        time="2026-11-20T10:05:00Z",
        rev=rev,
        cid=None if record is None else "bafyscrobble",
        record=record,
    )


class Feed:
    def __init__(self, pool) -> None:
        self.pool = pool
        self.offset = 0
        self.projector = PlaysProjector(frontend_url=FRONT)

    async def __call__(self, *envelopes: Envelope) -> None:
        messages = [
            Message(TOPIC, 0, self.offset + i, e.key, e.to_bytes(), 0)
            for i, e in enumerate(envelopes)
        ]
        self.offset += len(messages)
        expected = await load_offset(self.pool, "plays", TOPIC, 0)
        await apply_batch(self.pool, self.projector, messages, expected)


@pytest.fixture
def feed(pool):
    return Feed(pool)


async def rows(pool, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        return list(await cur.fetchall())


async def counters(pool) -> dict[str, int]:
    return dict(await rows(pool, "SELECT name, value FROM play_scrobble_counter"))


async def totals(pool) -> list[tuple[Any, ...]]:
    return await rows(pool, "SELECT track_uri, plays FROM play_track_total ORDER BY 1")


def uri_of(listener: str, rkey: str) -> str:
    return f"at://{listener}/fm.teal.feed.play/{rkey}"


async def test_origin_uri_match_counts_with_network_provenance_and_delete_removes_it(catalog, feed):
    origin = f"{FRONT}/track/{track_id(T2)}?ref=x"
    await feed(scrobble(L1, "a", name="whatever", artist="nobody", origin=origin))
    assert await rows(catalog, "SELECT play_id, listener, track_uri, source FROM play") == [
        (uri_of(L1, "a"), L1, T2, "network")
    ]
    assert await totals(catalog) == [(T2, 1)]
    assert await rows(catalog, "SELECT count(*) FROM play_track_listener_day") == [(1,)]
    await feed(scrobble(L1, "a", kind="record.deleted", rev="3k1"))
    assert await rows(catalog, "SELECT count(*) FROM play") == [(0,)]
    assert await totals(catalog) == []
    assert await rows(catalog, "SELECT count(*) FROM play_hourly") == [(0,)]
    assert await rows(catalog, "SELECT count(*) FROM play_track_listener_day") == [(0,)]
    assert await rows(catalog, "SELECT count(*) FROM play_artist_listener_day") == [(0,)]
    assert await rows(catalog, "SELECT count(*) FROM play_artist_total") == [(0,)]
    assert await counters(catalog) == {"matched": 1, "removed": 1}


async def test_name_match_ambiguous_and_unmatched(catalog, feed):
    await feed(
        scrobble(L1, "a"),  # Night Drive / Luna Park: one track
        scrobble(L1, "b", name="Echoes"),  # two visible tracks: ambiguous
        scrobble(L1, "c", name="Unknown Song"),
        scrobble(L1, "d", artist="Someone Else"),
        scrobble(L2, "e", name="night DRIVE", artist="LUNA park"),
    )
    assert await totals(catalog) == [(T1, 2)]
    assert await counters(catalog) == {"matched": 2, "unmatched": 3}
    async with catalog.connection() as conn:
        assert "unmatched=3" in await scrobble_status(conn)


async def test_hidden_tracks_are_not_matched(catalog, feed):
    async with catalog.connection() as conn:
        await conn.execute(
            "INSERT INTO moderation_account (did, status) VALUES (%s, 'takendown')",
            (OTHER_ARTIST,),
        )
    # Echoes is no longer ambiguous: T3's account is taken down, T2 is the one visible.
    await feed(scrobble(L1, "b", name="Echoes"))
    await feed(scrobble(L1, "c", origin=f"{FRONT}/track/{track_id(T3)}", name="x"))
    assert await totals(catalog) == [(T2, 1)]
    assert await counters(catalog) == {"matched": 1, "unmatched": 1}


async def test_same_window_rule_replays_and_the_other_plays_stay(catalog, feed):
    first = scrobble(L1, "a", played="2026-11-20T10:00:00Z")
    repeat = scrobble(L1, "b", played="2026-11-20T10:01:00Z")  # inside the 180 s window
    later = scrobble(L1, "c", played="2026-11-20T10:04:00Z")
    await feed(first, repeat, later)
    await feed(first, later)  # replayed: nothing changes
    assert await rows(catalog, "SELECT play_id FROM play ORDER BY played_at") == [
        (uri_of(L1, "a"),),
        (uri_of(L1, "c"),),
    ]
    await feed(scrobble(L1, "a", kind="record.deleted", rev="3k1"))
    assert await totals(catalog) == [(T1, 1)]
    # the listener still played T1 that day (play c): the day row stays
    assert await rows(catalog, "SELECT listener FROM play_track_listener_day") == [(L1,)]


async def test_update_moves_the_play(catalog, feed):
    await feed(scrobble(L1, "a"))
    await feed(
        scrobble(L1, "a", kind="record.updated", rev="3k1", origin=f"{FRONT}/track/{track_id(T2)}")
    )
    assert await rows(catalog, "SELECT track_uri FROM play") == [(T2,)]
    assert await totals(catalog) == [(T2, 1)]


async def test_self_scrobble_is_flagged(catalog, feed):
    await feed(scrobble(ARTIST, "a"))
    assert await rows(catalog, "SELECT self_play FROM play") == [(True,)]
    assert await rows(catalog, "SELECT plays, self_plays FROM play_track_total") == [(1, 1)]


@pytest.mark.parametrize(
    "origin",
    [
        "https://plyr.example.evil/track/1",
        "javascript:alert(1)",
        "http://127.0.0.1:1/track/1",
        "https://plyr.example/track/" + "9" * 500,
        "\u202e" * 100,
    ],
)
async def test_hostile_origin_is_just_a_non_match(catalog, feed, origin):
    await feed(scrobble(L1, "a", name="nothing", origin=origin))
    assert await rows(catalog, "SELECT count(*) FROM play") == [(0,)]
    assert await counters(catalog) == {"unmatched": 1}


async def test_bad_scrobble_events_are_dead_lettered(catalog, feed):
    good = scrobble(L1, "ok")
    bad = json.loads(scrobble(L1, "bad").to_bytes())
    bad["record"]["trackName"] = ""
    messages = [Envelope.from_bytes(json.dumps(bad).encode()), good]
    await feed(*messages)
    assert await rows(catalog, 'SELECT "offset", reason FROM dead_letter') == [
        (0, "scrobble: trackName: expected a non-empty string")
    ]
    assert await totals(catalog) == [(T1, 1)]


async def test_rebuild_with_the_catalog_equals_the_live_run(catalog):
    log = PostgresLog(catalog, partitions=3, topics=[TOPIC])
    await log.start()
    listeners = [f"did:plc:listener{i:020d}" for i in range(5)]
    events = []
    for i in range(60):
        listener = listeners[i % 5]
        minute = (i * 7) % 50
        events.append(
            scrobble(
                listener,
                f"r{i}",
                name=("Night Drive", "Echoes", "Nope")[i % 3],
                origin=f"{FRONT}/track/{track_id(T2)}" if i % 4 == 0 else None,
                played=f"2026-11-20T10:{minute:02d}:00Z",
            )
        )
        if i % 6 == 0:
            events.append(scrobble(listener, f"r{i}", kind="record.deleted", rev="3k9"))
    await log.append(TOPIC, [(e.key, e.to_bytes()) for e in events])
    projector = PlaysProjector(frontend_url=FRONT)
    for partition in range(3):
        await load_offset(catalog, "plays", TOPIC, partition)
        messages = await log.read(TOPIC, partition, 0, max_messages=10_000, timeout=0.1)
        for message in messages:  # live: one event per transaction
            await apply_batch(catalog, projector, [message], message.offset)
    live = await dump(catalog)
    assert live["play"] and live["play_scrobble_counter"]
    await rebuild(catalog, log, projector, TOPIC)
    assert await dump(catalog) == live


async def dump(pool) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table, order in (
        ("play", "play_id"),
        ("play_hourly", "track_uri, hour"),
        ("play_track_listener_day", "track_uri, day, listener"),
        ("play_artist_listener_day", "did, day, listener"),
        ("play_track_total", "track_uri"),
        ("play_artist_total", "did"),
        ("play_scrobble_counter", "name"),
    ):
        out[table] = await rows(pool, f"SELECT * FROM {table} ORDER BY {order}")
    return out
