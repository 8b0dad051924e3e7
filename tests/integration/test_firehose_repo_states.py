"""RepoStates: per-repo sync state on a real PostgreSQL, and the backfill hand-over."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from ingest.repos import RepoState, RepoStates
from kernel.db import open_pool
from kernel.envelope import Envelope

DID = "did:plc:abcdefghijklmnopqrstuvwx"
OTHER = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"


@pytest.fixture
async def pool(pg_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(pg_url, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


def rec(rev: str, rkey: str = "t1") -> Envelope:
    return Envelope(
        kind="record.updated",
        did=DID,
        source="test",
        time="2026-11-01T00:00:00Z",
        rev=rev,
        collection="fm.plyr.track",
        rkey=rkey,
        cid="bafyx",
        record={"title": rev},
    )


async def test_advance_persists_and_only_moves_forward(pool: AsyncConnectionPool) -> None:
    states = RepoStates(pool)
    await states.load()
    assert not states.is_known(DID)
    assert await states.get(DID) is None
    await states.advance(DID, "3l2", "bafydata2")
    await states.advance(DID, "3l1", "bafydata1")  # a replay: ignored
    assert await states.get(DID) == RepoState(DID, "3l2", "bafydata2", "active")

    fresh = RepoStates(pool)
    await fresh.load()
    assert fresh.is_known(DID)
    assert await fresh.get(DID) == RepoState(DID, "3l2", "bafydata2", "active")


async def test_status_and_desynchronized_listing(pool: AsyncConnectionPool) -> None:
    states = RepoStates(pool)
    await states.load()
    await states.advance(DID, "3l1", "bafy1")
    await states.advance(OTHER, "3l1", "bafy1")
    await states.set_status(DID, "desynchronized", "prevData mismatch")
    assert await states.desynchronized() == [DID]
    assert await states.desynchronize_all("OutdatedCursor") == 1
    assert sorted(await states.desynchronized()) == [DID, OTHER]
    got = await states.get(OTHER)
    assert got is not None and got.status == "desynchronized"


async def test_backfill_buffers_live_envelopes_and_returns_the_newer(
    pool: AsyncConnectionPool,
) -> None:
    states = RepoStates(pool)
    await states.load()
    await states.begin_backfill(DID)
    assert states.is_backfilling(DID)
    assert await states.backfilling() == [DID]
    identity = Envelope(
        kind="identity.changed", did=DID, source="t", time="2026-11-01T00:00:00Z", handle="a.test"
    )
    states.hold(DID, [rec("3l1")], "3l1", "bafy1")
    states.hold(DID, [identity], None, None)
    states.hold(DID, [rec("3l5", "t2")], "3l5", "bafy5")

    newer = await states.end_backfill(DID, "3l3", "bafy3")
    assert newer == [identity, rec("3l5", "t2")]
    assert not states.is_backfilling(DID)
    assert await states.backfilling() == []
    # The table has the backfill's commit; the cache chains onto the newest held one.
    reloaded = RepoStates(pool)
    await reloaded.load()
    assert await reloaded.get(DID) == RepoState(DID, "3l3", "bafy3", "active")
    cached = states.cached(DID)
    assert cached is not None and (cached.rev, cached.data_cid) == ("3l5", "bafy5")


async def test_abort_backfill_drops_held_events_and_desynchronizes(
    pool: AsyncConnectionPool,
) -> None:
    states = RepoStates(pool)
    await states.load()
    await states.advance(DID, "3l1", "bafy1")
    await states.begin_backfill(DID)
    states.hold(DID, [rec("3l2")], "3l2", "bafy2")
    await states.abort_backfill(DID, "backfill: getRepo failed")
    assert not states.is_backfilling(DID)
    assert await states.backfilling() == []
    assert await states.desynchronized() == [DID]
    # Nothing held survives: a later backfill hands over only what arrives after it began.
    await states.begin_backfill(DID)
    assert await states.end_backfill(DID, "3l3", "bafy3") == []


async def test_end_backfill_with_publish_keeps_holding_until_published(
    pool: AsyncConnectionPool,
) -> None:
    states = RepoStates(pool)
    await states.load()
    await states.begin_backfill(DID)
    states.hold(DID, [rec("3l4")], "3l4", "bafy4")
    published: list[list[Envelope]] = []

    async def publish(batch: list[Envelope]) -> None:
        # Live stream delivers while we publish: must still be held, then drained after.
        assert states.is_backfilling(DID)
        if not published:
            states.hold(DID, [rec("3l6")], "3l6", "bafy6")
        published.append(batch)

    out = await states.end_backfill(DID, "3l2", "bafy2", publish)
    assert published == [[rec("3l4")], [rec("3l6")]]
    assert out == [rec("3l4"), rec("3l6")]
    reloaded = RepoStates(pool)
    await reloaded.load()
    assert await reloaded.get(DID) == RepoState(DID, "3l6", "bafy6", "active")


async def test_identity_fields_are_kept(pool: AsyncConnectionPool) -> None:
    states = RepoStates(pool)
    await states.load()
    await states.set_identity(DID, handle="a.test", pds_url="http://127.0.0.1:1")
    await states.set_identity(DID, account_status="deactivated")
    reloaded = RepoStates(pool)
    await reloaded.load()
    state = await reloaded.get(DID)
    assert state is not None
    assert (state.handle, state.pds_url, state.account_status) == (
        "a.test",
        "http://127.0.0.1:1",
        "deactivated",
    )
