"""The archive against real things: PostgreSQL's and Kafka's logs, a directory, moto's S3.

Archive → read back equals the log; writing twice and a crash between a segment and the
manifest are harmless; trim deletes only what a trusted segment holds; archive-then-live
reads equal the untrimmed log, and a rebuild from them equals the live read model.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kernel.archive import ArchivedLog, ArchiveReader, LocalStore, S3Store, archive_log
from kernel.archive.manifest import MANIFEST_NAME, Manifest
from kernel.archive.query import QueryError, open_views, run_query
from kernel.archive.trim import trim_postgres_log
from kernel.archive.writer import load_manifest, write_segment
from kernel.envelope import Envelope
from kernel.log import Log, Message
from kernel.log.postgres import PostgresLog
from projectors.catalog import CatalogProjector
from projectors.rebuild import RebuildGap, rebuild
from projectors.runner import apply_batch, load_offset
from testkit.events import catalog_event_mix


def items(count: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    """Envelopes, and now and then bytes that are no envelope (kept all the same)."""
    out = []
    for i in range(start, start + count):
        key = f"did:plc:{i % 5:024d}".encode()
        if i % 9 == 4:
            out.append((key, b"\x00\xffnot json " + bytes([i % 256])))
            continue
        env = Envelope(
            kind="record.created",
            did=key.decode(),
            source="test",
            time="2026-11-01T00:00:00Z",
            rev=f"3l{i:011d}",
            collection="fm.plyr.track",
            rkey=f"t{i}",
            record={"title": f"Song {i}", "n": i},
        )
        out.append((key, env.to_bytes()))
    return out


async def read_all(log: Log, topic: str, partition: int) -> list[Message]:
    out: list[Message] = []
    offset = 0
    while batch := await log.read(topic, partition, offset, max_messages=13, timeout=0.3):
        out.extend(batch)
        offset = batch[-1].offset + 1
    return out


def same(a: list[Message], b: list[Message]) -> bool:
    """Offsets, keys and values equal (timestamps too: they are archived as read)."""
    return [(m.offset, m.key, m.value, m.timestamp_ms) for m in a] == [
        (m.offset, m.key, m.value, m.timestamp_ms) for m in b
    ]


@pytest.fixture
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_store(moto_url: str, tmp_path) -> S3Store:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    bucket = f"archive-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    return S3Store(bucket, tmp_path / "cache", client=client)


async def test_archive_reads_back_what_the_log_holds(log: Log, topic: str, tmp_path):
    await log.append(topic, items(60))
    store = LocalStore(tmp_path / "archive")
    manifest = await archive_log(log, store, [topic], segment_events=7)
    partitions = log.partitions(topic)
    assert sum(s.count for s in manifest.segments) == 60
    assert load_manifest(store) == manifest
    reader = ArchiveReader(store)
    for p in range(partitions):
        expected = await read_all(log, topic, p)
        assert reader.end_offset(topic, p) == len(expected)
        assert all(s.count <= 7 and s.dense for s in manifest.of(topic, p))
        got: list[Message] = []
        offset = 0
        while batch := reader.read(topic, p, offset, 5):
            got.extend(batch)
            offset = batch[-1].offset + 1
        assert same(got, expected)
        assert same(reader.read(topic, p, 3, 2), expected[3:5])  # a jump reopens the scan

    # A second run with nothing new writes nothing; new events go to new segments only.
    assert await archive_log(log, store, [topic], segment_events=7) == manifest
    await log.append(topic, items(10, start=60))
    grown = await archive_log(log, store, [topic], segment_events=7)
    assert set(manifest.segments) < set(grown.segments)
    assert sum(s.count for s in grown.segments) == 70
    reader.close()


async def test_envelope_columns_and_query(tmp_path, pool):
    log = PostgresLog(pool, partitions=2, topics=["plyr.repo", "plyr.plays"])
    await log.start()
    await log.append("plyr.repo", items(30))
    plays = [
        (
            f"listener-{i % 4}".encode(),
            (
                b'{"v":1,"kind":"play.reported","did":"did:plc:artist%d","source":"api",'
                b'"time":"2026-11-0%dT10:00:00Z","uri":"at://did:plc:artist%d/fm.plyr.track/t"}'
            )
            % (i % 2, 1 + i % 3, i % 2),
        )
        for i in range(12)
    ]
    await log.append("plyr.plays", plays)
    store = LocalStore(tmp_path / "archive")
    manifest = await archive_log(log, store, ["plyr.repo", "plyr.plays"])
    con = open_views(
        store, manifest, {"repo": "plyr.repo", "plays": "plyr.plays", "labels": "plyr.labels"}
    )
    result = run_query(
        con,
        "SELECT did, count(*) AS n FROM plays WHERE kind = 'play.reported'"
        " GROUP BY did ORDER BY did",
    )
    assert result.columns == ["did", "n"]
    assert result.rows == [("did:plc:artist0", 6), ("did:plc:artist1", 6)]
    per_day = run_query(
        con,
        "SELECT (body->>'$.time')[1:10] AS day, did AS artist, count(*) FROM plays"
        " GROUP BY ALL ORDER BY day, artist",
    )
    assert len(per_day.rows) == 6 and sum(r[2] for r in per_day.rows) == 12
    repo = run_query(
        con,
        "SELECT count(*), count(kind), count(uri), min(collection) FROM repo",
    )
    assert repo.rows == [(30, 30 - 3, 30 - 3, "fm.plyr.track")]  # 3 are not envelopes
    assert run_query(con, "SELECT count(*) FROM labels").rows == [(0,)]
    with pytest.raises(QueryError, match="plays_nope"):
        run_query(con, "SELECT * FROM plays_nope")
    with pytest.raises(QueryError):
        run_query(con, "SELEC 1")


async def test_s3_archive_twice_and_crash_before_manifest(pool, moto_url, tmp_path):
    topic = "plyr.repo"
    log = PostgresLog(pool, partitions=2, topics=[topic])
    await log.start()
    await log.append(topic, items(40))
    store = s3_store(moto_url, tmp_path)
    # A crash after a segment was written but before the manifest listed it: an orphan.
    first = await log.read(topic, 0, 0, max_messages=3, timeout=0.1)
    orphan = write_segment(store, first)
    assert store.get_bytes(MANIFEST_NAME) is None
    manifest = await archive_log(log, store, [topic], segment_events=16)
    assert manifest.of(topic, 0)[0].name == orphan.name  # overwritten, now listed
    assert manifest.of(topic, 0)[0].count > orphan.count
    # Writing a listed segment again is harmless: same name, same reads.
    again = write_segment(store, await log.read(topic, 0, 0, max_messages=16, timeout=0.1))
    assert again == manifest.of(topic, 0)[0]
    reader = ArchiveReader(store)
    for p in range(2):
        expected = await read_all(log, topic, p)
        assert same(reader.read(topic, p, 0, 1000), expected)
    reader.close()


async def test_trim_then_archive_and_live_equal_the_untrimmed_log(pool, tmp_path):
    topic = "plyr.repo"
    log = PostgresLog(pool, partitions=3, topics=[topic])
    await log.start()
    await log.append(topic, items(50))
    store = LocalStore(tmp_path / "archive")
    manifest = await archive_log(log, store, [topic], segment_events=6)
    await log.append(topic, items(25, start=50))  # the live tail, not archived
    untrimmed = {p: await read_all(log, topic, p) for p in range(3)}

    result = await trim_postgres_log(pool, store, manifest, topic)
    assert result.total == 50 and not result.skipped
    async with pool.connection() as conn:
        cur = await conn.execute(
            'SELECT partition, min("offset"), count(*) FROM log_message GROUP BY 1 ORDER BY 1'
        )
        left = {p: (low, n) for p, low, n in await cur.fetchall()}
    for p in range(3):
        end = manifest.end_offset(topic, p)
        assert left[p] == (end, len(untrimmed[p]) - end)  # exactly the unarchived tail
    assert (await trim_postgres_log(pool, store, manifest, topic)).total == 0

    both = ArchivedLog(log, ArchiveReader(store))
    for p in range(3):
        assert same(await read_all(both, topic, p), untrimmed[p])
        assert await both.end_offset(topic, p) == len(untrimmed[p])


async def test_trim_keeps_what_no_trusted_segment_holds(pool, tmp_path):
    topic = "plyr.repo"
    log = PostgresLog(pool, partitions=1, topics=[topic])
    await log.start()
    await log.append(topic, items(30))
    store = LocalStore(tmp_path / "archive")
    manifest = await archive_log(log, store, [topic], segment_events=10)
    a, b, c = manifest.of(topic, 0)
    # b's file is damaged (size differs from the manifest's), c's is gone, and an orphan
    # segment beyond the manifest's end is not listed at all.
    store.put_bytes(b.name, b"truncated")
    (tmp_path / "archive" / c.name).unlink()
    await log.append(topic, items(5, start=30))
    write_segment(store, await log.read(topic, 0, 30, max_messages=5, timeout=0.1))
    result = await trim_postgres_log(pool, store, Manifest((a, b, c)), topic)
    assert result.deleted == {0: 10} and result.skipped == [b, c]
    async with pool.connection() as conn:
        cur = await conn.execute('SELECT "offset" FROM log_message ORDER BY 1')
        assert [r[0] for r in await cur.fetchall()] == list(range(10, 35))


async def catalog_dump(pool) -> dict[str, list[tuple[object, ...]]]:
    queries = {
        "track": "SELECT * FROM track ORDER BY uri",
        "artist": "SELECT * FROM artist ORDER BY did",
        "like": 'SELECT * FROM "like" ORDER BY uri',
        "album": "SELECT * FROM album ORDER BY did, slug",
    }
    out = {}
    async with pool.connection() as conn:
        for name, query in queries.items():
            cur = await conn.execute(query)
            out[name] = await cur.fetchall()
    return out


async def test_rebuild_from_archive_and_live_tail_equals_live(pool, tmp_path):
    topic = "plyr.repo"
    log = PostgresLog(pool, partitions=3, topics=[topic])
    await log.start()
    events = [(e.key, e.to_bytes()) for e in catalog_event_mix(900, seed=5)]
    await log.append(topic, events[:600])
    store = LocalStore(tmp_path / "archive")
    manifest = await archive_log(log, store, [topic], segment_events=50)
    await log.append(topic, events[600:])
    projector = CatalogProjector()
    for partition in range(3):  # the live run, in small batches
        offset = await load_offset(pool, "catalog", topic, partition)
        while batch := await log.read(topic, partition, offset, max_messages=41, timeout=0.1):
            offset = await apply_batch(pool, projector, batch, offset)
    live = await catalog_dump(pool)
    assert live["track"] and live["like"]

    await trim_postgres_log(pool, store, manifest, topic)
    done = await rebuild(
        pool, ArchivedLog(log, ArchiveReader(store)), projector, topic, batch_size=200
    )
    assert done.done == len(events)
    assert await catalog_dump(pool) == live


@pytest.mark.parametrize("trimmed", ["part", "all"])
async def test_a_plain_rebuild_over_a_trimmed_log_stops_with_a_clear_error(pool, tmp_path, trimmed):
    """Without --from-archive, trimmed events are a gap: never a hang, never a silent skip."""
    topic = "plyr.repo"
    log = PostgresLog(pool, partitions=1, topics=[topic])
    await log.start()
    events = [(e.key, e.to_bytes()) for e in catalog_event_mix(120, seed=3)]
    await log.append(topic, events[:80])
    store = LocalStore(tmp_path / "archive")
    manifest = await archive_log(log, store, [topic], segment_events=40)
    if trimmed == "part":
        await log.append(topic, events[80:])
    await trim_postgres_log(pool, store, manifest, topic)
    with pytest.raises(RebuildGap, match="--from-archive"):
        await rebuild(pool, log, CatalogProjector(), topic, batch_size=50, stall_seconds=0.5)
    # The archive-then-live log replays all of it.
    done = await rebuild(pool, ArchivedLog(log, ArchiveReader(store)), CatalogProjector(), topic)
    assert done.done == len(events) if trimmed == "part" else done.done == 80
