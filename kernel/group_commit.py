"""Group commit: concurrent appends to a log combined into one append of the log below.

The API appends one play report per request. On the table-backed log every append is a
transaction (lock the partition counters, insert, commit and its WAL flush), so one report per
append tops out at a few hundred per second on two cores, however many requests wait;
appended 25 at a time the same log takes ten times as many (``bench/bench_plays.py``).

:class:`GroupCommitLog` keeps at most one append per topic in flight: appends that arrive
while it runs wait together and go as the next one, with their positions handed back to
each caller in order. Nothing waits for a timer, so a lone report is appended at once; the
batches grow only with the load. The guarantee is the wrapped log's: an append returns
once the log acknowledged its items; if the combined append fails, every caller in it gets
the error (and may retry: consumers are idempotent). Reads go straight to the wrapped log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from kernel.log import Log, LogClosed, LogReader, Message, Position

__all__ = ["GroupCommitLog"]

_Waiting = tuple[Sequence[tuple[bytes, bytes]], "asyncio.Future[list[Position]]"]


class GroupCommitLog:
    """A :class:`~kernel.log.Log` whose concurrent appends share one append of ``inner``."""

    def __init__(self, inner: Log, *, max_items: int = 1000) -> None:
        self.inner = inner
        self.max_items = max_items
        self._waiting: dict[str, list[_Waiting]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        """Let the appends already taken finish, then close the wrapped log."""
        self._closed = True
        for task in list(self._flushers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.inner.close()

    def partitions(self, topic: str) -> int:
        return self.inner.partitions(topic)

    async def append(self, topic: str, items: Sequence[tuple[bytes, bytes]]) -> list[Position]:
        if self._closed:
            raise LogClosed("append on a closed log")
        if not items:
            return []
        future: asyncio.Future[list[Position]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(topic, []).append((items, future))
        if topic not in self._flushers:
            self._flushers[topic] = asyncio.create_task(self._flush(topic))
        # Each caller waits on its own future: one that gives up cancels only that future,
        # never the flusher's append the others share (no shield needed).
        return await future

    async def _flush(self, topic: str) -> None:
        """Append what waits for ``topic``, batch after batch, until nothing does."""
        try:
            while waiting := self._waiting.get(topic):
                batch: list[_Waiting] = []
                count = 0
                while waiting and (not batch or count + len(waiting[0][0]) <= self.max_items):
                    entry = waiting.pop(0)
                    batch.append(entry)
                    count += len(entry[0])
                items = [item for entry_items, _ in batch for item in entry_items]
                try:
                    positions = await self.inner.append(topic, items)
                except BaseException as exc:  # every caller in the batch gets it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(
                                exc if isinstance(exc, Exception) else LogClosed("append cancelled")
                            )
                    if not isinstance(exc, Exception):
                        raise
                    continue
                start = 0
                for entry_items, future in batch:
                    if not future.done():
                        future.set_result(positions[start : start + len(entry_items)])
                    start += len(entry_items)
        finally:
            del self._flushers[topic]
            for _, future in self._waiting.pop(topic, []):  # only if cancelled
                if not future.done():
                    future.set_exception(LogClosed("append cancelled"))

    async def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_messages: int = 500,
        timeout: float = 1.0,
    ) -> list[Message]:
        return await self.inner.read(
            topic, partition, offset, max_messages=max_messages, timeout=timeout
        )

    async def end_offset(self, topic: str, partition: int) -> int:
        return await self.inner.end_offset(topic, partition)

    def reader(self) -> LogReader:
        return self.inner.reader()
