"""One lookup per key at a time, shared by every caller asking for that key meanwhile.

The DID resolver (:mod:`kernel.identity`) and the handle verifier (:mod:`ingest.handles`)
both look things up on remote hosts that may take seconds, for callers that come in bursts
(a repo's events, the backfill worker). :class:`SingleFlight` runs each lookup as a task
of its own: a caller cancelled while it waits (its session ended, its repo's lane was
stopped) cancels only its own wait, and the others still get the outcome. Before, the
first caller's cancellation either left the others waiting forever or cancelled them too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Shares the outcome of an unfinished lookup among the callers asking for its key."""

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        """How many lookups are unfinished."""
        return len(self._tasks)

    async def run(self, key: K, lookup: Callable[[], Awaitable[V]]) -> V:
        """The outcome of the unfinished lookup of ``key``, or of ``lookup()`` started now.

        The lookup's exception is raised to every caller; cancelling a caller cancels only
        its wait.
        """
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(lookup())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning when nobody waits
