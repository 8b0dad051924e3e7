"""Jetstream test server → JetstreamIngest → the PostgreSQL log, cursor, repo_record."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ingest.handles import HandleVerifier
from ingest.jetstream import JetstreamIngest
from ingest.repos import RepoStates
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.fetch import UpstreamFetcher
from kernel.identity import DidResolver
from kernel.log.postgres import PostgresLog
from testkit.firehose_server import FirehoseServer
from testkit.identity import SigningKey, did_document, did_for
from testkit.records import track_record
from tests.appview_process import wait_until
from tests.jetstream_server import JetstreamServer

TOPIC = "plyr.repo"
ALICE = did_for("js-alice")
BOB = did_for("js-bob")


def commit(did: str, t: int, op: str, rkey: str, rev: str, collection: str = "fm.plyr.track"):
    body: dict[str, Any] = {"rev": rev, "operation": op, "collection": collection, "rkey": rkey}
    if op != "delete":
        body.update(record=track_record(f"{rkey}@{rev}"), cid=f"bafy{rkey}{rev}")
    return {"did": did, "time_us": t, "kind": "commit", "commit": body}


async def envelopes(log: PostgresLog) -> list[Envelope]:
    out: list[Envelope] = []
    for partition in range(log.partitions(TOPIC)):
        for msg in await log.read(TOPIC, partition, 0, max_messages=10_000, timeout=0):
            out.append(Envelope.from_bytes(msg.value))
    return sorted(out, key=lambda e: e.seq or 0)


@pytest.fixture
async def setup(pg_url: str) -> AsyncIterator[tuple[Any, PostgresLog, RepoStates]]:
    pool = await open_pool(pg_url, max_size=5)
    log = PostgresLog(pool, partitions=2, topics=[TOPIC])
    await log.start()
    states = RepoStates(pool)
    await states.load()
    try:
        yield pool, log, states
    finally:
        await log.close()
        await pool.close()


async def test_jetstream_events_reach_the_log_and_resume_from_the_cursor(setup) -> None:
    pool, log, states = setup
    async with JetstreamServer() as js, FirehoseServer() as plc, httpx.AsyncClient() as http:
        # The PLC stand-in serves alice's document, and answers for her handle as a PDS does.
        plc.docs[ALICE] = did_document(ALICE, SigningKey(), "alice2.test", "http://127.0.0.1:1")
        plc.handles["alice2.test"] = ALICE
        fetcher = UpstreamFetcher(client=http, trusted_hosts=frozenset({"127.0.0.1"}))
        js.add(commit(ALICE, 1_000_000, "create", "t1", "3aaa"))
        js.add(commit(ALICE, 1_000_001, "create", "p1", "3aab", collection="app.bsky.feed.post"))
        js.add(commit(ALICE, 1_000_002, "update", "t1", "3aac"))
        js.add(
            {
                "did": ALICE,
                "time_us": 1_000_003,
                "kind": "identity",
                "identity": {"did": ALICE, "handle": "alice2.test"},
            }
        )
        js.add(
            {
                "did": BOB,
                "time_us": 1_000_004,
                "kind": "account",
                "account": {"did": BOB, "active": False, "status": "deactivated"},
            }
        )
        ingest = JetstreamIngest(
            url=js.url,
            collections=("fm.plyr.*",),
            log=log,
            topic=TOPIC,
            pool=pool,
            states=states,
            resolver=DidResolver(fetcher, plc.plc_url),
            handles=HandleVerifier(fetcher, hosts=[(".test", plc.plc_url)]),
        )
        # A first connection without cursor gets live events only: seed a cursor of 1.
        async with pool.connection() as conn:
            await conn.execute(
                "INSERT INTO ingest_cursor (source, cursor) VALUES (%s, 1)", (ingest.source,)
            )
        stop = asyncio.Event()
        task = asyncio.create_task(ingest.run(stop))
        try:

            async def four() -> list[Envelope] | None:
                got = await envelopes(log)
                return got if len(got) >= 4 else None

            got = await wait_until(four, what="4 envelopes")
            assert [e.kind for e in got] == [
                "identity.changed",  # first sight of alice
                "record.created",
                "record.updated",
                "identity.changed",
            ]
            assert got[1].record == track_record("t1@3aaa") and got[1].seq == 1_000_000
            assert got[0].handle == got[3].handle == "alice2.test"  # verified both times
            assert "wantedCollections=fm.plyr.%2A" in js.requests[0]
            assert ingest.stats.skipped["unwanted_collection"] == 0  # filtered by the server

            js.add_raw("{ not json")
            js.add_raw('{"did": "x"}')
            js.add(commit(ALICE, 1_000_005, "create", "t0", "3aaa"))  # older rev: dropped
            await wait_until(
                lambda: _true(ingest.stats.skipped["old_rev"] == 1), what="old rev dropped"
            )
            assert ingest.stats.skipped["undecodable"] == 2
            await js.disconnect_all()
            await wait_until(lambda: _true(len(js.requests) >= 2), what="reconnect")
            js.add(commit(ALICE, 2_000_000, "delete", "t1", "3aad"))

            async def deleted() -> Envelope | None:
                last = (await envelopes(log))[-1]
                return last if last.kind == "record.deleted" else None

            gone = await wait_until(deleted, what="delete after reconnect")
            assert gone.rkey == "t1" and gone.rev == "3aad"
            assert "cursor=" in js.requests[1]
        finally:
            stop.set()
            await task
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT cursor FROM ingest_cursor WHERE source = %s", (ingest.source,)
        )
        assert (await cur.fetchone())[0] == 2_000_000
        cur = await conn.execute("SELECT count(*) FROM repo_record WHERE did = %s", (ALICE,))
        assert (await cur.fetchone())[0] == 0
        cur = await conn.execute("SELECT rev, handle FROM repo_state WHERE did = %s", (ALICE,))
        assert await cur.fetchone() == ("3aad", "alice2.test")
    assert not states.is_known(BOB)


async def _true(value: bool) -> bool:
    return value


async def test_live_events_of_a_backfilling_repo_are_held(setup) -> None:
    pool, log, states = setup
    async with JetstreamServer() as js, httpx.AsyncClient() as http:
        ingest = JetstreamIngest(
            url=js.url,
            collections=("fm.plyr.track",),
            log=log,
            topic=TOPIC,
            pool=pool,
            states=states,
            resolver=DidResolver(UpstreamFetcher(client=http), "http://127.0.0.1:9"),
        )
        await states.begin_backfill(ALICE)
        await ingest.handle_message(json.dumps(commit(ALICE, 5_000_000, "create", "t9", "3zzz")))
        assert await envelopes(log) == []
        assert ingest.stats.held == 1  # no first-sight identity: the backfill sends one
        held = await states.end_backfill(ALICE, "3aaa", None)
        assert [e.rkey for e in held if e.kind == "record.created"] == ["t9"]


async def test_a_first_run_saves_where_it_started_before_its_first_event(setup) -> None:
    """No cursor yet, killed while publishing its first event: the next process resumes
    from just before that event (``time_us - 1``), not at the live tail."""
    pool, log, states = setup
    appending = asyncio.Event()

    async def hang(topic: str, items: Any) -> Any:
        appending.set()
        await asyncio.Event().wait()  # never returns: the process dies here

    log.append = hang
    async with FirehoseServer() as plc, httpx.AsyncClient() as http:
        plc.docs[ALICE] = did_document(ALICE, SigningKey(), "alice3.test", "http://127.0.0.1:1")
        plc.handles["alice3.test"] = ALICE
        fetcher = UpstreamFetcher(client=http, trusted_hosts=frozenset({"127.0.0.1"}))
        ingest = JetstreamIngest(
            url="ws://127.0.0.1:1/subscribe",
            collections=("fm.plyr.*",),
            log=log,
            topic=TOPIC,
            pool=pool,
            states=states,
            resolver=DidResolver(fetcher, plc.plc_url),
            handles=HandleVerifier(fetcher, hosts=[(".test", plc.plc_url)]),
        )
        event = json.dumps(commit(ALICE, 5_000_000, "create", "t1", "3aaa"))
        task = asyncio.create_task(ingest.handle_message(event))
        try:
            await asyncio.wait_for(appending.wait(), 10)
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT cursor FROM ingest_cursor WHERE source = %s", (ingest.source,)
                )
                assert await cur.fetchone() == (4_999_999,)
        finally:
            task.cancel()
