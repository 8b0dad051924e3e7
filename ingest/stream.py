"""What every websocket source shares: staying connected, and reading until stopped.

A source (firehose, Jetstream, a labeler) supplies one ``session`` coroutine that connects
and consumes; :func:`keep_connected` runs it again after each transient failure with capped,
jittered exponential backoff, until ``stop`` is set. :func:`receive_until_stopped` hands
each websocket message to the source and returns promptly when ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import psycopg
import websockets
from websockets.asyncio.client import ClientConnection

from kernel.log import LogError

__all__ = ["backoff_delay", "keep_connected", "receive_until_stopped"]

logger = logging.getLogger(__name__)


HEALTHY_AFTER = 10.0
"""Seconds a session must have run for its failure to count as the first in a row."""


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Capped exponential backoff, jittered over its upper half."""
    return min(cap, base * 2.0**attempt) * random.uniform(0.5, 1.0)


# What any live source (firehose, Jetstream, a labeler) reconnects after: the network, the
# socket, the log refusing an append, a timeout, and the database (cursor, repo state, the
# PostgreSQL log) restarting. A source adds its own protocol errors.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    websockets.WebSocketException,
    LogError,
    TimeoutError,
    psycopg.OperationalError,
)


async def keep_connected(
    session: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    *,
    retry_on: tuple[type[BaseException], ...],
    on_retry: Callable[[], None],
    message: str,
    source: str,
    healthy_after: float = HEALTHY_AFTER,
) -> None:
    """Run ``session`` until ``stop``; after an exception in ``retry_on``, back off and rerun.

    ``message`` is the fixed log message of a disconnect (e.g. ``firehose disconnected``);
    ``on_retry`` counts it. Any other exception propagates. The backoff grows over failures
    in a row only: a session that ran ``healthy_after`` seconds or more starts it over (a
    live stream always ends in an exception, so "returned normally" never happens).
    """
    attempt = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await session()
            attempt = 0
        except retry_on as exc:
            if time.monotonic() - started >= healthy_after:
                attempt = 0
            on_retry()
            delay = backoff_delay(attempt)
            attempt += 1
            logger.warning(message, extra={"source": source, "error": str(exc), "retry_in": delay})
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass


async def receive_until_stopped(
    ws: ClientConnection,
    stop: asyncio.Event,
    handle: Callable[[str | bytes], Awaitable[None]],
) -> None:
    """Pass each message of ``ws`` to ``handle`` until ``stop`` is set or the socket fails."""
    stopper = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            receive = asyncio.ensure_future(ws.recv())
            done, _ = await asyncio.wait({receive, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                return
            await handle(receive.result())
    finally:
        stopper.cancel()
