"""The API shuts down promptly even when its status sampler is inside a call that swallows
a cancellation (as library code may): the sampler stops on an event, not only on cancel."""

from __future__ import annotations

import asyncio
import time

import pytest
from psycopg_pool import AsyncConnectionPool

import api.app
from api.app import create_app
from kernel.config import Settings


async def test_shutdown_does_not_wait_out_the_sample_interval(
    pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampling = asyncio.Event()

    async def swallowing(*args: object) -> object:
        sampling.set()
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            pass  # what a careless library does: the cancellation is lost here
        raise RuntimeError("no sample")

    monkeypatch.setattr(api.app, "collect_status", swallowing)
    app = create_app(Settings(api_cache_entries=0, status_sample_s=3600.0), pool=pool)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(sampling.wait(), 5)
        started = time.monotonic()
    assert time.monotonic() - started < 5  # not the 3600 s sample interval
