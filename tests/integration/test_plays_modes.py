"""The same play reports through both modes give the same read model.

Embedded: the table-backed log and the registry's plays projector qualifying in PostgreSQL.
Kafka: the faust worker as ``plyr-appview run`` starts it in Kafka mode (a child process,
:func:`plyr_appview.plays_worker.run_plays_worker`, stopped by its PID) qualifies on the
Tansu broker into ``play.counted`` events, which the registry's plays projector for Kafka
settings (``qualify_reports=False``) stores. The input has repeats, duplicated play ids,
out-of-order and late reports, several listeners, tracks and partitions, a self-play and a
garbage message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from kernel.config import Settings, load_settings
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log.base import partition_for
from kernel.log.kafka import KafkaLog
from kernel.log.postgres import PostgresLog
from kernel.plays import play_reported
from plyr_appview.plays_worker import run_plays_worker
from projectors import registry
from projectors.plays import PlaysProjector
from projectors.plays_stream import decide, decode_state, encode_state
from projectors.runner import apply_batch, load_offset
from testkit.brokers import create_database, drop_database

A = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
TRACKS = [f"at://{A}/fm.plyr.track/t{i}" for i in range(3)]
PROBE_TRACK = f"at://{A}/fm.plyr.track/probe"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PARTITIONS = 3


def reports() -> list[Envelope]:
    """Reports with repeats, duplicates and out-of-order times (deterministic)."""
    listeners = [f"cookie:listener{i}" for i in range(6)] + [A]
    out = []
    for i in range(240):
        seconds = (i * 53) % 1500 - (300 if i % 11 == 0 else 0)  # jumps back: out of order
        out.append(
            play_reported(
                play_id=f"p{i}",
                listener=listeners[i % len(listeners)],
                track_uri=TRACKS[i % 3],
                at=T0 + timedelta(seconds=seconds),
                duration_s=(None, 45, 200)[i % 3],
            )
        )
        if i % 17 == 0:
            out.append(out[-1])  # redelivered: same play id
    return out


def probes() -> list[Envelope]:
    """One report per partition on a track of its own: its counted event shows that the
    stream worker has gone through everything before it in that partition."""
    found: dict[int, Envelope] = {}
    n = 0
    while len(found) < PARTITIONS:
        listener = f"cookie:probe{n}"
        partition = partition_for(listener.encode(), PARTITIONS)
        if partition not in found:
            found[partition] = play_reported(
                play_id=f"probe{partition}",
                listener=listener,
                track_uri=PROBE_TRACK,
                at=T0 + timedelta(days=1),
                duration_s=60,
            )
        n += 1
    return list(found.values())


def test_stream_state_round_trips():
    state, counted = decide((), reports()[0])
    assert counted is not None and counted.kind == "play.counted"
    assert decode_state(encode_state(state)) == state
    assert decode_state(b"") == ()


async def read_all(log, topic, partition, offset=0):
    """The messages of a partition from ``offset``: read until a read comes back empty at or
    past the end offset (a first fetch from the broker can come back empty before it)."""
    out = []
    while True:
        messages = await log.read(topic, partition, offset, max_messages=1000, timeout=1)
        if messages:
            out += messages
            offset = messages[-1].offset + 1
        elif offset >= await log.end_offset(topic, partition):
            return out


async def project(pool, log, topic, projector) -> None:
    for partition in range(PARTITIONS):
        offset = await load_offset(pool, "plays", topic, partition)
        if messages := await read_all(log, topic, partition, offset):
            await apply_batch(pool, projector, messages, offset)


async def dump(pool):
    out = {}
    for table, order in (
        ("play", "play_id"),
        ("play_hourly", "track_uri, hour"),
        ("play_track_listener_day", "track_uri, day, listener"),
        ("play_artist_listener_day", "did, day, listener"),
        ("play_track_total", "track_uri"),
        ("play_artist_total", "did"),
    ):
        async with pool.connection() as conn:
            cur = await conn.execute(f"SELECT * FROM {table} ORDER BY {order}")
            out[table] = await cur.fetchall()
    return out


async def counted_ids(log: KafkaLog, topic: str) -> set[str]:
    ids: set[str] = set()
    for partition in range(PARTITIONS):
        for m in await read_all(log, topic, partition):
            if b'"play.counted"' in m.value:
                play = Envelope.from_bytes(m.value).play
                assert play is not None
                ids.add(play["id"])
    return ids


@pytest.mark.kafka
async def test_embedded_and_kafka_modes_count_the_same(tansu, tmp_path, monkeypatch):
    events = reports() + probes()
    items = [(e.key, e.to_bytes()) for e in events] + [(b"cookie:junk", b"not an envelope")]

    # Embedded mode.
    name_a, url_a = await asyncio.to_thread(create_database)
    name_b, url_b = await asyncio.to_thread(create_database)
    pool_a = await open_pool(url_a)
    pool_b = await open_pool(url_b)
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}plays"
    kafka = KafkaLog(tansu.bootstrap, partitions=PARTITIONS, topics=[topic])
    worker: asyncio.Task[None] | None = None
    stop = asyncio.Event()
    try:
        embedded_log = PostgresLog(pool_a, partitions=PARTITIONS, topics=[topic])
        await embedded_log.start()
        await embedded_log.append(topic, items)
        await project(pool_a, embedded_log, topic, registry.spec("plays").build(Settings()))
        embedded = await dump(pool_a)
        assert 20 < len(embedded["play"]) < len(events)

        # Kafka mode: the reports on the broker, a faust worker in its own process.
        await kafka.start()
        await kafka.append(topic, items)
        env = {
            "KAFKA_BOOTSTRAP": tansu.bootstrap,
            "PLYR_TOPIC_PREFIX": prefix,
            "PLYR_PARTITIONS": str(PARTITIONS),
            "PLYR_DATA_DIR": str(tmp_path),
            "PLYR_PLAYS_APP_ID": f"plyr-plays-{prefix}",
        }
        for name, value in env.items():  # the worker reads its settings from the environment
            monkeypatch.setenv(name, value)
        settings = load_settings(env)
        worker = asyncio.create_task(run_plays_worker(settings, stop))
        wanted = {f"probe{p}" for p in range(PARTITIONS)}
        deadline = time.monotonic() + 150
        while not wanted <= (ids := await counted_ids(kafka, topic)):
            assert not worker.done(), worker
            assert time.monotonic() < deadline, f"stream worker counted only {len(ids)}"
            await asyncio.sleep(0.5)
        kafka_projector = registry.spec("plays").build(settings)
        assert isinstance(kafka_projector, PlaysProjector) and not kafka_projector.qualify_reports
        await project(pool_b, kafka, topic, kafka_projector)
        assert await dump(pool_b) == embedded
    finally:
        stop.set()
        if worker is not None:
            await worker  # the child is stopped by its PID
        await kafka.close()
        await pool_a.close()
        await pool_b.close()
        await asyncio.to_thread(drop_database, name_a)
        await asyncio.to_thread(drop_database, name_b)
