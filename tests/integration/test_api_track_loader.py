"""TrackLoader: concurrent lookups by id share statements and answer as one-by-one lookups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api import catalog
from api.app import create_app
from api.track_loader import MAX_TRACK_ID, TrackLoader
from api.visibility import Visibility
from kernel.config import Settings
from kernel.db import open_pool
from projectors.base import track_id
from tests.integration.test_api_routes import A1, A2, A3, B1, B2, B3, C1, project

IDS = [track_id(u) for u in (A1, A2, A3, B1, B2, B3, C1)] + [999, 0, MAX_TRACK_ID]


class CountingPool:
    """A pool stand-in that counts the connections taken (one per statement batch)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.taken = 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        self.taken += 1
        async with self.pool.connection() as conn:
            yield conn


@pytest.fixture
async def projected(pg_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(pg_url)
    await project(pool, search=False)
    yield pool
    await pool.close()


async def one_by_one(pool: AsyncConnectionPool, vis: Any, ids: list[int]) -> dict[int, Any]:
    out = {}
    async with pool.connection() as conn:
        for i in ids:
            row, shown = await catalog.track_row_visible(conn, vis, "detail", track_id=i)
            out[i] = (row, shown)
    return out


async def test_concurrent_loads_share_one_statement_and_match_single_lookups(projected):
    vis = Visibility()
    counting = CountingPool(projected)
    loader = TrackLoader(counting, vis)  # type: ignore[arg-type]
    asked = IDS + IDS[:3]  # repeats share a slot
    found = await asyncio.gather(*(loader.load(i) for i in asked))
    assert counting.taken == 1
    expected = await one_by_one(projected, vis, asked)
    for i, lookup in zip(asked, found, strict=True):
        assert (lookup.row, lookup.visible) == expected[i], i
    shown = {i for i, lookup in zip(asked, found, strict=True) if lookup.visible}
    assert shown == {track_id(u) for u in (A1, A2, A3, B1, B3)}
    # The featured artist of A2 comes with the batch (present_track resolves it).
    a2 = found[asked.index(track_id(A2))]
    assert a2.row is not None
    assert set(a2.people) == {f["did"] for f in a2.row["features"]}


async def test_batches_are_bounded_and_later_arrivals_wait_for_a_slot(projected):
    vis = Visibility()
    counting = CountingPool(projected)
    loader = TrackLoader(counting, vis, max_batch=3, max_in_flight=1)  # type: ignore[arg-type]
    found = await asyncio.gather(*(loader.load(i) for i in IDS))
    assert counting.taken == -(-len(IDS) // 3)
    expected = await one_by_one(projected, vis, IDS)
    assert [(f.row, f.visible) for f in found] == [expected[i] for i in IDS]


async def test_a_cancelled_request_leaves_the_others_of_its_batch_answered(projected):
    vis = Visibility()
    loader = TrackLoader(projected, vis)
    doomed = asyncio.create_task(loader.load(track_id(A1)))
    kept = asyncio.create_task(loader.load(track_id(A1)))
    other = asyncio.create_task(loader.load(track_id(A2)))
    await asyncio.sleep(0)
    doomed.cancel()
    kept_row, other_row = (await kept).row, (await other).row
    assert kept_row is not None and other_row is not None
    assert kept_row["uri"] == A1 and other_row["uri"] == A2
    with pytest.raises(asyncio.CancelledError):
        await doomed


async def test_a_failed_statement_fails_every_request_of_its_batch(projected):
    vis = Visibility()
    pool = AsyncConnectionPool(projected.conninfo, min_size=1, max_size=1, timeout=0.2, open=False)
    await pool.open(wait=True)
    try:
        loader = TrackLoader(pool, vis)
        async with pool.connection():  # the only connection, held past the timeout
            results = await asyncio.gather(
                *(loader.load(i) for i in IDS[:4]), return_exceptions=True
            )
        assert all(isinstance(r, PoolTimeout) for r in results), results
        assert (await loader.load(track_id(A1))).visible  # and the loader still works after
    finally:
        await pool.close()


async def test_a_saturated_pool_answers_503_on_both_detail_paths(projected):
    pool = AsyncConnectionPool(projected.conninfo, min_size=1, max_size=1, timeout=0.2, open=False)
    await pool.open(wait=True)
    answers = []
    try:
        for fast in (True, False):
            app = create_app(Settings(api_cache_entries=0), pool=pool, fast_paths=fast)
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://api") as c,
                pool.connection(),
            ):
                # One request id on both paths: the echoed X-Request-Id is compared too.
                r = await c.get(f"/tracks/{track_id(A1)}", headers={"X-Request-Id": "same"})
            answers.append((r.status_code, r.content, sorted(r.headers.multi_items())))
    finally:
        await pool.close()
    assert answers[0] == answers[1]
    status, body, headers = answers[0]
    assert status == 503 and ("retry-after", "1") in headers and b'"unavailable"' in body


async def test_one_id_at_a_time_settles_on_the_generic_plan(projected):
    # Planned again on every execution, a one-id lookup cost PostgreSQL six times more.
    pool = AsyncConnectionPool(projected.conninfo, min_size=1, max_size=1, open=False)
    await pool.open(wait=True)
    try:
        loader = TrackLoader(pool, Visibility())
        for _ in range(12):
            assert (await loader.load(track_id(A1))).visible
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%visible_in_context%ANY(%'"
            )
            [(generic, custom)] = await cur.fetchall()
    finally:
        await pool.close()
    assert generic >= 6 and custom <= 5, (generic, custom)
