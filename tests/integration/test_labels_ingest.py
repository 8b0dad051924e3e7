"""Labeler test server (CBOR and plyr JSON frames) → LabelIngest → the labels topic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ingest.errors import LabelError
from ingest.labels import LabelIngest
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.fetch import UpstreamFetcher
from kernel.log.postgres import PostgresLog
from testkit.identity import SigningKey, did_for
from tests.appview_process import wait_until
from tests.labeler_server import LabelerServer

TOPIC = "plyr.labels"
LABELER = did_for("labeler-it")
TRACK = f"at://{did_for('artist-it')}/fm.plyr.track/3abc"
LOOPBACK = frozenset({"127.0.0.1"})  # the test labeler serves its DID document there


async def labels(log: PostgresLog) -> list[Envelope]:
    out: list[Envelope] = []
    for partition in range(log.partitions(TOPIC)):
        for msg in await log.read(TOPIC, partition, 0, max_messages=10_000, timeout=0):
            out.append(Envelope.from_bytes(msg.value))
    return sorted(out, key=lambda e: e.seq or 0)


@pytest.fixture
async def setup(pg_url: str) -> AsyncIterator[tuple[Any, PostgresLog]]:
    pool = await open_pool(pg_url, max_size=5)
    log = PostgresLog(pool, partitions=2, topics=[TOPIC])
    await log.start()
    try:
        yield pool, log
    finally:
        await log.close()
        await pool.close()


@pytest.mark.parametrize("json_frames", [False, True], ids=["cbor", "plyr-json"])
async def test_signed_labels_are_published_and_forged_ones_rejected(setup, json_frames: bool):
    pool, log = setup
    key = SigningKey()
    async with (
        LabelerServer(LABELER, key, json_frames=json_frames) as labeler,
        httpx.AsyncClient() as http,
    ):
        labeler.emit(uri=TRACK, val="copyright-violation")  # before we subscribe: replayed
        ingest = LabelIngest(
            did=LABELER,
            url=None,
            log=log,
            topic=TOPIC,
            pool=pool,
            fetcher=UpstreamFetcher(client=http, trusted_hosts=LOOPBACK),
            plc_url=labeler.base_url,  # the test labeler also serves its DID document
        )
        stop = asyncio.Event()
        task = asyncio.create_task(ingest.run(stop))
        try:
            await wait_until(lambda: _ready(ingest.connected.is_set()), what="connected")
            labeler.emit(uri=TRACK, val="porn", sign_with=SigningKey())  # forged
            labeler.emit_raw(b"\xa2garbage")
            labeler.emit_raw("{nope")
            labeler.emit(
                uri=TRACK, val="copyright-violation", neg=True, cts="2026-11-02T00:00:00.000Z"
            )
            labeler.emit(uri=TRACK, val="porn", src=did_for("someone-else"))

            async def settled() -> bool:
                return ingest.stats.last_seq == 4

            await wait_until(settled, what="all four labels processed")
            got = await labels(log)
            assert [(e.label or {}).get("val") for e in got] == ["copyright-violation"] * 2
            assert got[0].label == {
                "src": LABELER,
                "uri": TRACK,
                "val": "copyright-violation",
                "cts": "2026-11-01T12:00:00.000Z",
            }
            assert got[1].label is not None and got[1].label["neg"] is True
            assert all(e.did == LABELER and e.key == TRACK.encode() for e in got)
            assert ingest.stats.rejected == {"bad_signature": 1, "undecodable": 2, "wrong_src": 1}
            assert labeler.requests[0].endswith("cursor=0")
        finally:
            stop.set()
            await task
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT cursor FROM ingest_cursor WHERE source = %s", (f"labeler:{LABELER}",)
            )
            assert (await cur.fetchone())[0] == 4

        # A restart resumes after the cursor: nothing is published twice.
        labeler.emit(uri=TRACK, val="sexual")
        again = LabelIngest(
            did=LABELER,
            url=labeler.ws_url,
            log=log,
            topic=TOPIC,
            pool=pool,
            fetcher=UpstreamFetcher(client=http, trusted_hosts=LOOPBACK),
            plc_url=labeler.base_url,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(again.run(stop))
        try:
            await wait_until(lambda: _ready(again.stats.last_seq == 5), what="resumed")
        finally:
            stop.set()
            await task
        assert labeler.requests[-1].endswith("cursor=4")
        assert [(e.label or {}).get("val") for e in await labels(log)][-1] == "sexual"
        assert len(await labels(log)) == 3


async def _ready(value: bool) -> bool:
    return value


async def test_a_labeler_document_cannot_aim_us_at_our_network(setup):
    pool, log = setup

    async def directory(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]  # where the test labeler serves its DID document

    async with LabelerServer(LABELER, SigningKey()) as labeler, httpx.AsyncClient() as http:
        # The directory is trusted by name; the endpoint its document names (127.0.0.1) is not.
        fetcher = UpstreamFetcher(
            client=http, trusted_hosts=frozenset({"plc.test"}), lookup=directory
        )
        ingest = LabelIngest(
            did=LABELER,
            url=None,
            log=log,
            topic=TOPIC,
            pool=pool,
            fetcher=fetcher,
            plc_url=labeler.base_url.replace("127.0.0.1", "plc.test"),
        )
        with pytest.raises(LabelError) as refused:
            await ingest._identity(fresh=False)
        assert refused.value.reason == "refused_labeler"
        assert ingest._key is not None and ingest._url is None
