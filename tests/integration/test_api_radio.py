"""``/radio/state`` and the catalog in time: a station airs what was indexed before its
period began; a station with nothing settled yet airs what is indexed now."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import httpx
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from kernel.config import Settings
from kernel.envelope import Envelope
from kernel.log import Message
from projectors.base import track_id
from projectors.catalog import CatalogProjector
from projectors.runner import apply_batch, load_offset
from testkit.records import track_record
from tests.integration.test_api_routes import ident, rec, uri

ALICE = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
BOB = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
OLD = uri(ALICE, "fm.plyr.track", "old")
NEW = uri(BOB, "fm.plyr.track", "new")


def upload(did: str, rkey: str, at: str) -> Envelope:
    """A track record created at ``at`` and seen by ingest then (the envelope's time)."""
    return replace(rec(did, "fm.plyr.track", rkey, track_record(rkey, createdAt=at)), time=at)


async def project(pool: AsyncConnectionPool, events: list[Envelope]) -> None:
    catalog = CatalogProjector()
    start = await load_offset(pool, catalog.name, "plyr.repo", 0)
    messages = [
        Message("plyr.repo", 0, start + i, e.key, e.to_bytes(), 0) for i, e in enumerate(events)
    ]
    await apply_batch(pool, catalog, messages, start)


async def rotation_ids(client: httpx.AsyncClient) -> list[int]:
    body = (await client.get("/radio/state")).json()
    return [t["id"] for t in body["rotation"]]


async def test_a_new_upload_waits_for_the_next_period_unless_nothing_is_settled(pool):
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    app = create_app(Settings(api_cache_entries=0), pool=pool)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        await project(pool, [ident(BOB, "bob.test"), upload(BOB, "new", now)])
        assert await rotation_ids(client) == [track_id(NEW)]  # nothing settled: what there is
        old = upload(ALICE, "old", "2026-01-01T00:00:00Z")
        await project(pool, [ident(ALICE, "alice.test"), old])
        assert await rotation_ids(client) == [track_id(OLD)]  # settled: the new one waits
