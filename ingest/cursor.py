"""Per-source resume points, kept in PostgreSQL (``ingest_cursor``).

:class:`CursorKeeper` is what every source uses: it notes the position of each event it
has handled and writes it at most once per interval (or when asked). The rule that makes
this safe is the caller's: a position is noted only after the log acknowledged every
event up to it (a source that handles events one at a time publishes before it notes; the
firehose, which works on several repos at once, notes the end of the finished prefix of
what it read, :mod:`ingest.lanes`), so any position written can be resumed from with no
gap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from psycopg_pool import AsyncConnectionPool

__all__ = ["SAVE_INTERVAL", "CursorKeeper", "load_cursor", "save_cursor"]

SAVE_INTERVAL = 1.0


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


class CursorKeeper:
    """The resume point of one source: noted per event, written at most every ``interval``.

    ``forward_only``: a lower position than the noted one is ignored (sources that rewind
    on reconnect, such as Jetstream, see older events again). ``before_save`` runs before
    each write (state that must be durable before the cursor passes it).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        source: str,
        *,
        interval: float = SAVE_INTERVAL,
        forward_only: bool = True,
        before_save: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.source = source
        self.position: int | None = None
        """The last noted position: every event up to it is on the log."""
        self.saved: int | None = None
        """The last position written (what a restart resumes from)."""
        # Counted from creation: a monotonic clock's zero is boot time, so 0.0 here made the
        # first event "due" on any machine up for longer than the interval.
        self.saved_at = time.monotonic()
        self.interval = interval
        self._pool = pool
        self._forward_only = forward_only
        self._before_save = before_save
        self._saving = asyncio.Lock()

    async def load(self) -> int | None:
        """Read the saved position (``None``: the source never ran) and start from it."""
        self.position = self.saved = await load_cursor(self._pool, self.source)
        return self.position

    def note(self, position: int) -> None:
        """Every event up to ``position`` is acknowledged by the log."""
        if not self._forward_only or self.position is None or position > self.position:
            self.position = position

    def due(self, now: float | None = None) -> bool:
        """Whether ``interval`` has passed since the last write (or attempt, or creation)."""
        return (time.monotonic() if now is None else now) - self.saved_at >= self.interval

    async def pin_start(self, position: int) -> None:
        """Save ``position`` now if the source has none (it never ran): call it with the
        position just before the first event, before handling that event.

        Otherwise a process killed before its first periodic save restarts with no cursor,
        at the live tail, and never reads the events in between.
        """
        if self.position is None:
            self.note(position)
            await self.save()

    async def advance(self, position: int, *, save: bool = False) -> None:
        """:meth:`note` ``position``, then write if ``save`` or the interval has passed."""
        self.note(position)
        if save or self.due():
            await self.save()

    async def save(self) -> None:
        """Run ``before_save``, then write the position noted before it if it moved.

        The position is taken first: what ``before_save`` persists (repo state) covers every
        event up to it, even when events are still being noted meanwhile. One save at a
        time, so a slower earlier write never lands after a later one.
        """
        async with self._saving:
            self.saved_at = time.monotonic()
            position = self.position
            if self._before_save is not None:
                await self._before_save()
            if position is None or position == self.saved:
                return
            await save_cursor(self._pool, self.source, position)
            self.saved = position
