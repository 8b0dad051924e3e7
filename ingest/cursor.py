"""Per-source resume points, kept in PostgreSQL (``ingest_cursor``)."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

__all__ = ["load_cursor", "save_cursor"]


async def load_cursor(pool: AsyncConnectionPool, source: str) -> int | None:
    """The last saved cursor of ``source``, or ``None`` if it never ran."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT cursor FROM ingest_cursor WHERE source = %s", (source,))
        row = await cur.fetchone()
    return int(row[0]) if row else None


async def save_cursor(pool: AsyncConnectionPool, source: str, cursor: int) -> None:
    """Record that every event of ``source`` up to ``cursor`` is on the log."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO ingest_cursor (source, cursor, updated_at) VALUES (%s, %s, now())"
            " ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_at = now()",
            (source, cursor),
        )
