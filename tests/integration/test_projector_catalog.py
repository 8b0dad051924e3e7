"""The catalog projector through the generic runner, on a real PostgreSQL."""

from __future__ import annotations

import pytest

from kernel.envelope import Envelope
from kernel.log import Message
from projectors.base import OffsetConflict
from projectors.catalog import CatalogProjector
from projectors.runner import apply_batch, load_offset
from testkit.records import track_record

DID = "did:plc:abcdefghijklmnopqrstuvwx"
TOPIC = "plyr.repo"


def env(kind, rkey="t1", rev="3l1", record=None, **extra) -> Envelope:
    return Envelope(
        kind=kind,
        did=DID,
        source="test",
        time="2026-11-01T00:00:00Z",
        rev=rev,
        collection="fm.plyr.track",
        rkey=rkey,
        cid=f"bafy{rev}",
        record=record,
        **extra,
    )


def messages(envelopes, start=0):
    return [
        Message(
            TOPIC, 0, start + i, DID.encode(), e.to_bytes() if isinstance(e, Envelope) else e, 0
        )
        for i, e in enumerate(envelopes)
    ]


async def project(pool, envelopes, start=0) -> int:
    projector = CatalogProjector()
    offset = await load_offset(pool, projector.name, TOPIC, 0)
    return await apply_batch(pool, projector, messages(envelopes, start), offset)


async def tracks(pool):
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT rkey, title, rev FROM track ORDER BY rkey")
        return await cur.fetchall()


async def test_create_update_delete(pool):
    await project(
        pool,
        [
            env("record.created", rev="3l1", record=track_record("One")),
            env("record.updated", rev="3l2", record=track_record("One (edit)")),
            env("record.created", rkey="t2", rev="3l3", record=track_record("Two")),
            env("record.deleted", rkey="t1", rev="3l4"),
        ],
    )
    assert await tracks(pool) == [("t2", "Two", "3l3")]
    assert await load_offset(pool, "catalog", TOPIC, 0) == 4


async def test_replay_twice_is_once(pool):
    batch = [
        env("record.created", rev="3l1", record=track_record("One")),
        env("record.updated", rev="3l2", record=track_record("Two")),
    ]
    await project(pool, batch)
    once = await tracks(pool)
    # The same events delivered again at later offsets (a re-published replay).
    await project(pool, batch, start=2)
    assert await tracks(pool) == once == [("t1", "Two", "3l2")]


async def test_already_applied_offsets_are_skipped(pool):
    batch = [env("record.created", rev="3l1", record=track_record("One"))]
    await project(pool, batch)
    projector = CatalogProjector()
    # Re-delivery of offset 0 with the stored offset at 1: nothing applied, no conflict.
    with pytest.raises(OffsetConflict):
        await apply_batch(pool, projector, messages(batch), 0)
    assert await load_offset(pool, "catalog", TOPIC, 0) == 1


async def test_out_of_order_update_before_create(pool):
    await project(
        pool,
        [
            env("record.updated", rev="3l2", record=track_record("Newer")),
            env("record.created", rev="3l1", record=track_record("Older")),
        ],
    )
    assert await tracks(pool) == [("t1", "Newer", "3l2")]


async def test_duplicates(pool):
    e = env("record.created", rev="3l1", record=track_record("One"))
    await project(pool, [e, e, e])
    assert await tracks(pool) == [("t1", "One", "3l1")]


async def test_insert_delete_insert(pool):
    await project(
        pool,
        [
            env("record.created", rev="3l1", record=track_record("One")),
            env("record.deleted", rev="3l2"),
            env("record.created", rev="3l3", record=track_record("Again")),
        ],
    )
    assert await tracks(pool) == [("t1", "Again", "3l3")]


async def test_invalid_record_goes_to_dead_letter_and_offset_advances(pool):
    bad = track_record("x" * 300)
    await project(
        pool,
        [
            env("record.created", rkey="bad", rev="3l1", record=bad),
            b"not json at all",
            env("record.created", rkey="good", rev="3l2", record=track_record("Fine")),
        ],
    )
    assert await tracks(pool) == [("good", "Fine", "3l2")]
    async with pool.connection() as conn:
        cur = await conn.execute('SELECT "offset", uri, reason FROM dead_letter ORDER BY "offset"')
        rows = await cur.fetchall()
    assert [r[0] for r in rows] == [0, 1]
    assert rows[0][1] == f"at://{DID}/fm.plyr.track/bad"
    assert "title" in rows[0][2]
    assert "JSON" in rows[1][2]
    assert await load_offset(pool, "catalog", TOPIC, 0) == 3


async def test_crash_before_commit_leaves_offset_and_rows_unmoved(pool):
    class Crashing(CatalogProjector):
        def reduce(self, envelopes):
            self.boom = any(e.rkey == "boom" for e in envelopes)
            return super().reduce(envelopes)

        async def write(self, conn, steps):
            await super().write(conn, steps)
            if self.boom:
                raise RuntimeError("crash")  # after the writes, before the commit

    batch = messages(
        [
            env("record.created", rev="3l1", record=track_record("One")),
            env("record.created", rkey="boom", rev="3l2", record=track_record()),
        ]
    )
    with pytest.raises(RuntimeError):
        await apply_batch(pool, Crashing(), batch, await load_offset(pool, "catalog", TOPIC, 0))
    assert await tracks(pool) == []
    assert await load_offset(pool, "catalog", TOPIC, 0) == 0


async def test_two_workers_cannot_apply_the_same_batch(pool):
    batch = messages([env("record.created", rev="3l1", record=track_record("One"))])
    projector = CatalogProjector()
    await load_offset(pool, projector.name, TOPIC, 0)
    assert await apply_batch(pool, projector, batch, 0) == 1
    with pytest.raises(OffsetConflict):
        await apply_batch(pool, projector, batch, 0)
    assert await tracks(pool) == [("t1", "One", "3l1")]


async def test_identity_and_account_events_shape_the_artist(pool):
    await project(
        pool,
        [
            Envelope(kind="identity.changed", did=DID, source="t", time="t", handle="a.test"),
            env("record.created", rev="3l1", record=track_record("One")),
            Envelope(
                kind="account.changed",
                did=DID,
                source="t",
                time="t",
                active=False,
                status="deactivated",
            ),
        ],
    )
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT handle, account_status FROM artist")
        assert await cur.fetchall() == [("a.test", "deactivated")]
    await project(
        pool,
        [
            Envelope(
                kind="account.changed",
                did=DID,
                source="t",
                time="t",
                active=False,
                status="deleted",
            )
        ],
        start=3,
    )
    assert await tracks(pool) == []


async def test_nul_characters_are_dead_lettered_not_a_crash(pool):
    # A record with a NUL character cannot be stored by PostgreSQL: dead letter, not a crash.
    await project(pool, [env("record.created", rev="3l1", record=track_record("a\u0000b"))])
    assert await tracks(pool) == []
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT reason FROM dead_letter")
        (reason,) = await cur.fetchone()
    assert "NUL" in reason


async def test_tags_are_kept_by_the_rule_search_uses(pool):
    from projectors.search import SearchProjector

    raw = ["Lo-Fi", "lo-fi", "  Night   Drive ", 7, ""]
    created = env("record.created", rev="3l1", record=track_record("One", tags=raw))
    updated = env("record.updated", rev="3l2", record=track_record("One", tags=["Ambient"]))
    await project(pool, [created])
    search = SearchProjector()
    offset = await load_offset(pool, search.name, TOPIC, 0)
    await apply_batch(pool, search, messages([created]), offset)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT tags FROM track")
        assert await cur.fetchall() == [(["lo-fi", "night drive"],)]
        cur = await conn.execute("SELECT tag FROM search_tag ORDER BY tag")
        assert [r[0] for r in await cur.fetchall()] == ["lo-fi", "night drive"]
    await project(pool, [updated], start=1)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT tags FROM track WHERE tags @> ARRAY['ambient']")
        assert await cur.fetchall() == [(["ambient"],)]
