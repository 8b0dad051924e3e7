"""First-start policy: whether ``run`` backfills, and which repos under which run name.

A run is recorded in ``backfill_run`` (by :meth:`~ingest.backfill.Backfill.run`); one
that never finished is taken up again on the next start.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from psycopg_pool import AsyncConnectionPool

from ingest.discovery import DiscoveredRepo, discover_repos, http_base
from kernel.fetch import UpstreamFetcher

__all__ = ["backfill_needed", "initial_targets"]


async def backfill_needed(pool: AsyncConnectionPool, run_source: str, cursor_source: str) -> bool:
    """Whether ``run`` should backfill: no live cursor yet, or the last run never finished.

    No cursor means the stream is read from its live tail, so a backfill must cover what came
    before, even when an earlier process finished one: that process may have died before
    saving any cursor (no event had arrived yet), and the events since its backfill would
    otherwise never be read. The backfill diffs against what we published: a repeat is cheap.
    """
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT finished_at FROM backfill_run WHERE source = %s", (run_source,)
        )
        run = await cur.fetchone()
        cur = await conn.execute("SELECT 1 FROM ingest_cursor WHERE source = %s", (cursor_source,))
        has_cursor = await cur.fetchone() is not None
    return not has_cursor or (run is not None and run[0] is None)


async def initial_targets(
    fetcher: UpstreamFetcher, discovery_url: str, collections: Sequence[str], dids: Sequence[str]
) -> tuple[str, list[DiscoveredRepo]]:
    """What a backfill covers and under which run name: the DIDs given, else discovery."""
    if dids:
        return "dids", [DiscoveredRepo(d) for d in dids]
    base = http_base(discovery_url)
    return urlsplit(base).netloc, await discover_repos(fetcher, base, collections)
