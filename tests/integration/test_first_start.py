"""First start: ``run`` backfills while it has no live cursor, or its last run never finished."""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from ingest.cursor import save_cursor
from ingest.first_start import backfill_needed

RUN = "pds.test"
LIVE = "firehose:pds.test"


async def _run(pool: AsyncConnectionPool, *, finished: bool) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO backfill_run (source, finished_at)"
            " VALUES (%s, CASE WHEN %s THEN now() END)",
            (RUN, finished),
        )


@pytest.mark.parametrize(
    ("run", "cursor", "expected"),
    [
        (None, False, True),  # never ran
        (None, True, False),  # followed live, no backfill asked for
        ("unfinished", True, True),  # a backfill cut short is taken up again
        ("finished", True, False),  # done, and live has a cursor: nothing to do
        # A process that backfilled, then died before any event gave it a cursor: the next
        # one starts at the live tail again, so what came since must be read again.
        ("finished", False, True),
    ],
)
async def test_backfill_needed(
    pool: AsyncConnectionPool, run: str | None, cursor: bool, expected: bool
) -> None:
    if run is not None:
        await _run(pool, finished=run == "finished")
    if cursor:
        await save_cursor(pool, LIVE, 41)
    assert await backfill_needed(pool, RUN, LIVE) is expected
