"""``plyr-appview takedown``: an operator label on the labels topic, projected."""

from __future__ import annotations

import asyncio

import pytest

from kernel.config import load_settings
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log.postgres import PostgresLog
from plyr_appview.cli import main
from projectors import registry
from projectors.runner import apply_batch, load_offset

OPERATOR = "did:plc:operatoroperatoroperator"
URI = "at://did:plc:artistartistartistartist/fm.plyr.track/t1"


async def test_takedown_and_negate(pg_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("PLYR_PARTITIONS", "1")
    monkeypatch.delenv("PLYR_OPERATOR_DID", raising=False)
    assert await asyncio.to_thread(main, ["takedown", URI]) == 2  # no operator configured
    monkeypatch.setenv("PLYR_OPERATOR_DID", OPERATOR)
    assert await asyncio.to_thread(main, ["takedown", URI, "--reason", "dmca"]) == 0
    assert "!takedown applied" in capsys.readouterr().out
    pool = await open_pool(pg_url)
    try:
        log = PostgresLog(pool, partitions=1, topics=["plyr.labels"])
        await log.start()
        messages = await log.read("plyr.labels", 0, 0, max_messages=10, timeout=1)
        [envelope] = [Envelope.from_bytes(m.value) for m in messages]
        assert envelope.label is not None
        assert (envelope.label["src"], envelope.label["val"]) == (OPERATOR, "!takedown")
        # the trusted set from the settings, as the CLI wiring builds it
        projector = registry.spec("moderation").build(load_settings())
        await load_offset(pool, "moderation", "plyr.labels", 0)
        await apply_batch(pool, projector, messages, 0)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT plyr_visible(%s, 'did:x', 'audio', true)", (URI,))
            row = await cur.fetchone()
            assert row is not None and row[0] is False
        assert await asyncio.to_thread(main, ["takedown", URI, "--negate"]) == 0
        messages = await log.read("plyr.labels", 0, 1, max_messages=10, timeout=1)
        await apply_batch(pool, projector, messages, 1)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT plyr_visible(%s, 'did:x', 'audio', true)", (URI,))
            row = await cur.fetchone()
            assert row is not None and row[0] is True
        await log.close()
    finally:
        await pool.close()


@pytest.mark.parametrize("subject", ["https://example.com/x", "alice.test"])
async def test_takedown_refuses_what_is_not_an_at_uri_or_did(pg_url, monkeypatch, subject):
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("PLYR_OPERATOR_DID", OPERATOR)
    assert await asyncio.to_thread(main, ["takedown", subject]) == 2


async def test_rebuild_moderation_replays_labels_and_repo_topics(pg_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("PLYR_PARTITIONS", "2")
    monkeypatch.setenv("PLYR_OPERATOR_DID", OPERATOR)
    artist = "did:plc:otherotherotherotherothe"
    assert await asyncio.to_thread(main, ["takedown", URI]) == 0
    pool = await open_pool(pg_url)
    try:
        log = PostgresLog(pool, partitions=2, topics=["plyr.repo", "plyr.labels"])
        await log.start()
        deactivated = Envelope(
            kind="account.changed",
            did=artist,
            source="t",
            time="t",
            active=False,
            status="deactivated",
        )
        await log.append("plyr.repo", [(deactivated.key, deactivated.to_bytes())])

        async def visible(uri: str, did: str) -> bool:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT plyr_visible(%s, %s, 'list', true)", (uri, did))
                row = await cur.fetchone()
                assert row is not None
                return bool(row[0])

        other = f"at://{artist}/fm.plyr.track/x"
        assert await visible(URI, "did:x") and await visible(other, artist)  # nothing projected
        assert await asyncio.to_thread(main, ["rebuild", "moderation"]) == 0
        assert not await visible(URI, "did:x")  # from the labels topic
        assert not await visible(other, artist)  # from the repo topic
        await log.close()
    finally:
        await pool.close()
