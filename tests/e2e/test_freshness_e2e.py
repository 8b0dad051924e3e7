"""A PDS write is visible through the API within a second, on either log.

The bound is tight on purpose: before each projector read its partitions through one
reader, the Kafka mode took 10-15 s per write (and the PostgreSQL log several seconds
under load), which a generous wait would have hidden. ``bench/bench_fresh.py`` measures
the distribution; this test holds the line.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.appview_process import AppviewProcess
from tests.e2e.atp_client import AtpClient

pytestmark = pytest.mark.e2e

WRITES = 10
BOUND = 1.0


def track(title: str) -> dict[str, object]:
    return {
        "$type": "fm.plyr.track",
        "title": title,
        "artist": "Fresh Artist",
        "fileType": "mp3",
        "audioUrl": "https://audio.example.com/a.mp3",
        "createdAt": "2026-11-20T10:00:00.000Z",
    }


async def seconds_to_visible(api: httpx.AsyncClient, uri: str, limit: float) -> float | None:
    """Seconds from now until ``/tracks/by-uri`` has ``uri``; None if not within ``limit``."""
    written = time.monotonic()
    while time.monotonic() - written < limit:
        if (await api.get("/tracks/by-uri", params={"uri": uri})).status_code == 200:
            return time.monotonic() - written
        await asyncio.sleep(0.01)
    return None


async def test_a_pds_write_is_visible_through_the_api_within_a_second(
    appview: AppviewProcess, atp: AtpClient
) -> None:
    account = await atp.create_account(f"fresh{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(base_url=appview.base_url, timeout=5) as api:
        # The first write of a new account also makes its artist row: allowed a warm-up.
        uri, _ = await atp.create_record(account, "fm.plyr.track", track("warm-up"))
        assert await seconds_to_visible(api, uri, 30.0) is not None, "warm-up never arrived"

        waits: list[float | None] = []
        for i in range(WRITES):
            uri, _ = await atp.create_record(account, "fm.plyr.track", track(f"take {i}"))
            waits.append(await seconds_to_visible(api, uri, BOUND))
    slow = [w for w in waits if w is None]
    assert not slow, f"{len(slow)} of {WRITES} writes not visible within {BOUND} s: {waits}"
