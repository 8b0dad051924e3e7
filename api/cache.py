"""In-process cache of anonymous GET responses, dropped whenever a read model changes.

Every read-model table carries a statement-level trigger (``migrations/0011``) that sends
``NOTIFY plyr_read_model`` when its transaction commits. Each API process keeps one
connection ``LISTEN``-ing on that channel (:class:`ReadModelListener`); a notification
empties the cache, so a projected change is served as soon as it is announced. While the
listener is not connected, nothing is cached or served from the cache.

What is cached (:class:`ResponseCache`): complete ``200`` JSON answers to ``GET`` requests
without credentials or ranges, keyed by host and full path with query string, up to
``max_entries`` and ``max_bytes`` of bodies (least recently used out first) and for at
most ``ttl_s`` seconds: some
answers depend on the clock as well as on the rows (``/tracks/top?period=week``, label
expiry), and the age bound keeps them honest. A response whose request started before
the last invalidation is not stored (it may have read the old rows). Track permalinks
(``GET /tracks/<id>``) are answered by :mod:`api.fastpath` before they reach the cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import psycopg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CHANNEL", "CachedResponse", "ReadModelListener", "ResponseCache", "ResponseCacheApp"]

logger = logging.getLogger(__name__)

CHANNEL = "plyr_read_model"

# Paths whose answers are not (only) read-model rows: bytes, process state, docs.
_UNCACHED_PREFIXES = (
    "/audio",
    "/metrics",
    "/health",
    "/ready",
    "/status",
    "/docs",
    "/redoc",
    "/openapi",
    "/radio/state",  # where the loop stands depends on the clock
)
_MAX_BODY = 512 * 1024
_VARY = frozenset({b"authorization", b"cookie", b"range", b"if-range", b"if-none-match"})


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """One stored answer: status line headers, body, the matched route, when stored."""

    headers: list[tuple[bytes, bytes]]
    body: bytes
    route: Any
    stored_at: float


class ResponseCache:
    """A bounded LRU of responses with a generation counter bumped by :meth:`invalidate`."""

    def __init__(self, *, max_entries: int, ttl_s: float, max_bytes: int = 64 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        """Bodies held, in bytes (headers are small and not counted)."""
        self.ttl_s = ttl_s
        self.generation = 0
        self.live = False
        """True while a listener is connected; the cache is bypassed otherwise."""
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, CachedResponse] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> CachedResponse | None:
        """The fresh entry for ``key`` (counted as a hit), else ``None`` (a miss)."""
        entry = self._entries.get(key)
        if entry is not None:
            if time.monotonic() - entry.stored_at < self.ttl_s:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
            self._drop(key)
        self.misses += 1
        return None

    def put(self, key: bytes, entry: CachedResponse, generation: int) -> None:
        """Store ``entry`` unless the read models changed since ``generation`` was read."""
        if generation != self.generation or not self.live or len(entry.body) > self.max_bytes:
            return
        self._drop(key)
        self._entries[key] = entry
        self.bytes += len(entry.body)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))  # the least recently used

    def _drop(self, key: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= len(old.body)

    def invalidate(self) -> None:
        """Drop everything: a read model changed (or we can no longer tell)."""
        self.generation += 1
        self._entries.clear()
        self.bytes = 0


def _cache_key(scope: Scope) -> bytes | None:
    """The key for a cacheable request, or ``None``."""
    if scope["method"] != "GET":
        return None
    path: str = scope["path"]
    if path.startswith(_UNCACHED_PREFIXES):
        return None
    host = b""
    for name, value in scope["headers"]:
        if name in _VARY:
            return None
        if name == b"host":
            host = value
    scheme: str = scope.get("scheme", "http")
    return b"%s://%s%s?%s" % (scheme.encode(), host, path.encode(), scope["query_string"])


class ResponseCacheApp:
    """ASGI middleware answering cacheable requests from a :class:`ResponseCache`.

    Sits inside CORS, access log and metrics, so cached answers get the same headers,
    log lines and counters (under the route they were first answered by).

    Identical misses in flight at once are answered once: later arrivals wait for the
    first one's answer instead of running the same queries (after an invalidation, every
    client of the home page misses at the same moment). Only arrivals that saw the same
    cache generation as the first one share its answer.
    """

    def __init__(self, app: ASGIApp, *, cache: ResponseCache) -> None:
        self.app = app
        self.cache = cache
        self._in_flight: dict[bytes, tuple[int, asyncio.Future[CachedResponse | None]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache = self.cache
        key = _cache_key(scope) if scope["type"] == "http" and cache.live else None
        if key is None:
            await self.app(scope, receive, send)
            return
        entry = cache.get(key)
        generation = cache.generation
        if entry is None:
            leader = self._in_flight.get(key)
            if leader is not None and leader[0] == generation:
                entry = await asyncio.shield(leader[1])
        if entry is not None:
            scope["route"] = entry.route
            # A fresh list: outer middleware (CORS) adds headers to the message in place.
            fresh = list(entry.headers)
            await send({"type": "http.response.start", "status": 200, "headers": fresh})
            await send({"type": "http.response.body", "body": entry.body})
            return
        await self._answer(key, generation, scope, receive, send)

    async def _answer(
        self, key: bytes, generation: int, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Run the app, keep a cacheable answer, hand it to identical requests waiting."""
        done: asyncio.Future[CachedResponse | None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = (generation, done)
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0

        async def keep(message: Message) -> None:
            nonlocal status, headers, size
            if message["type"] == "http.response.start":
                # Copied before outer middleware sees it: CORS edits the list in place.
                status, headers = message["status"], list(message.get("headers", ()))
            elif message["type"] == "http.response.body" and status == 200:
                body: bytes = message.get("body", b"")
                size += len(body)
                if size <= _MAX_BODY:  # past it, nothing is stored: stop holding a copy
                    chunks.append(body)
                if not message.get("more_body", False) and size <= _MAX_BODY:
                    stored = _cacheable(scope, headers, b"".join(chunks))
                    if stored is not None:
                        self.cache.put(key, stored, generation)
                        done.set_result(stored)
            await send(message)

        try:
            await self.app(scope, receive, keep)
        finally:
            if not done.done():
                done.set_result(None)  # not cacheable or failed: waiters answer themselves
            if self._in_flight.get(key, (0, None))[1] is done:
                del self._in_flight[key]


def _cacheable(
    scope: Scope, headers: list[tuple[bytes, bytes]], body: bytes
) -> CachedResponse | None:
    """An entry for a complete 200 JSON answer that sets no cookie, else ``None``."""
    for name, value in headers:
        if name == b"content-type" and not value.startswith(b"application/json"):
            return None
        if name == b"set-cookie":
            return None
    return CachedResponse(headers, body, scope.get("route"), time.monotonic())


class ReadModelListener:
    """Keeps a connection ``LISTEN``-ing on :data:`CHANNEL`; each notification invalidates.

    Reconnects with capped backoff. The cache is live only while listening; every
    (re)connection starts from an empty cache, since notifications may have been missed.
    """

    def __init__(self, url: str, cache: ResponseCache) -> None:
        self.url = url
        self.cache = cache
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self, timeout: float = 10.0) -> None:
        """Start listening; wait (up to ``timeout``) for the first connection."""
        self._task = asyncio.create_task(self._run(), name="read-model-listener")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            logger.warning("read model listener not connected; response cache off for now")

    async def close(self) -> None:
        self.cache.live = False
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.cache.invalidate()
                    self.cache.live = True
                    self._ready.set()
                    delay = 0.5
                    async for _ in conn.notifies():
                        self.cache.invalidate()
            except psycopg.OperationalError as exc:
                logger.warning("read model listener lost", extra={"error": str(exc)})
            finally:
                self.cache.live = False
                self.cache.invalidate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
