"""ResponseCache bounds, ages and the stale-store guard; which requests are cacheable."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.types import Message

from api.cache import CachedResponse, ResponseCache, ResponseCacheApp, _cache_key


def entry(body: bytes = b"{}", age: float = 0.0) -> CachedResponse:
    return CachedResponse([], body, None, time.monotonic() - age)


def live_cache(entries: int = 3, ttl: float = 60) -> ResponseCache:
    cache = ResponseCache(max_entries=entries, ttl_s=ttl)
    cache.live = True
    return cache


def test_least_recently_used_goes_first():
    cache = live_cache(entries=2)
    cache.put(b"a", entry(b"a"), cache.generation)
    cache.put(b"b", entry(b"b"), cache.generation)
    assert cache.get(b"a") is not None  # a is now the most recent
    cache.put(b"c", entry(b"c"), cache.generation)
    assert len(cache) == 2
    assert cache.get(b"b") is None
    assert cache.get(b"a") is not None and cache.get(b"c") is not None


def test_bodies_are_bounded_in_bytes():
    cache = ResponseCache(max_entries=100, ttl_s=60, max_bytes=10)
    cache.live = True
    cache.put(b"a", entry(b"aaaa"), cache.generation)
    cache.put(b"b", entry(b"bbbb"), cache.generation)
    cache.put(b"c", entry(b"cccc"), cache.generation)  # 12 bytes: a goes
    assert cache.get(b"a") is None and cache.bytes == 8
    cache.put(b"b", entry(b"bb"), cache.generation)  # replacing counts the new body only
    assert cache.bytes == 6
    cache.put(b"big", entry(b"x" * 11), cache.generation)  # larger than the budget
    assert cache.get(b"big") is None and cache.bytes == 6
    cache.invalidate()
    assert cache.bytes == 0


def test_entries_expire_after_ttl():
    cache = live_cache(ttl=5)
    cache.put(b"old", entry(age=6), cache.generation)
    cache.put(b"new", entry(age=1), cache.generation)
    assert cache.get(b"old") is None
    assert cache.get(b"new") is not None
    assert len(cache) == 1


def test_a_response_read_before_an_invalidation_is_not_stored():
    cache = live_cache()
    generation = cache.generation
    cache.invalidate()
    cache.put(b"k", entry(), generation)
    assert cache.get(b"k") is None


def test_invalidate_drops_everything_and_counts():
    cache = live_cache()
    cache.put(b"k", entry(), cache.generation)
    cache.invalidate()
    assert len(cache) == 0 and cache.generation == 1
    assert cache.get(b"k") is None and cache.misses == 1


def test_nothing_is_stored_while_not_listening():
    cache = ResponseCache(max_entries=3, ttl_s=60)
    cache.put(b"k", entry(), cache.generation)
    assert len(cache) == 0


def scope(path: str, method: str = "GET", query: bytes = b"", **headers: str) -> dict:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "scheme": "http",
        "headers": [(b"host", b"api.test")]
        + [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


def test_key_has_host_path_and_query():
    assert _cache_key(scope("/tracks/", query=b"limit=5")) == b"http://api.test/tracks/?limit=5"
    assert _cache_key(scope("/tracks/", query=b"limit=5")) != _cache_key(scope("/tracks/"))


@pytest.mark.parametrize(
    "request_scope",
    [
        scope("/tracks/", method="POST"),
        scope("/tracks/", method="HEAD"),
        scope("/audio/123"),
        scope("/metrics"),
        scope("/health"),
        scope("/tracks/", authorization="Bearer x"),
        scope("/tracks/", cookie="session=1"),
        scope("/tracks/", range="bytes=0-1"),
    ],
)
def test_uncacheable_requests(request_scope):
    assert _cache_key(request_scope) is None


class SlowApp:
    """An ASGI app answering 200 JSON after ``release`` is set; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        body = b'{"n": %d}' % self.calls
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


async def get(app: ResponseCacheApp, path: str = "/tracks/") -> bytes:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope(path), receive, send)
    assert sent[0]["status"] == 200
    return b"".join(m.get("body", b"") for m in sent[1:])


async def test_identical_misses_in_flight_are_answered_once():
    inner = SlowApp()
    app = ResponseCacheApp(inner, cache=live_cache())
    requests = [asyncio.create_task(get(app)) for _ in range(5)]
    await asyncio.sleep(0)
    inner.release.set()
    assert await asyncio.gather(*requests) == [b'{"n": 1}'] * 5
    assert inner.calls == 1


async def test_a_request_after_an_invalidation_does_not_share_an_older_answer():
    inner = SlowApp()
    cache = live_cache()
    app = ResponseCacheApp(inner, cache=cache)
    first = asyncio.create_task(get(app))
    await asyncio.sleep(0)
    cache.invalidate()  # a change committed while the first request was running
    second = asyncio.create_task(get(app))
    await asyncio.sleep(0)
    inner.release.set()
    assert (await first, await second) == (b'{"n": 1}', b'{"n": 2}')
    assert inner.calls == 2
    key = _cache_key(scope("/tracks/"))
    assert key is not None
    kept = cache.get(key)  # the answer read after the change, not the older one
    assert kept is not None and kept.body == b'{"n": 2}'
