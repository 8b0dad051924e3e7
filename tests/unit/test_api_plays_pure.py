"""Pure parts of play reports: the body parser and the per-client rate limiter."""

from __future__ import annotations

import pytest

from api.errors import ApiError
from api.ratelimit import RateLimiter
from api.routers.plays import parse_play_body


@pytest.mark.parametrize(
    ("body", "ref"),
    [(b"", None), (b"  ", None), (b"null", None), (b"{}", None), (b'{"ref": null}', None),
     (b'{"ref": "abc", "other": 1}', "abc")],
)  # fmt: skip
def test_play_body_ref(body, ref):
    assert parse_play_body(body) == ref


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{", 400), (b"\xff", 400), (b'"x"', 422), (b"[]", 422), (b'{"ref": 1}', 422),
     (b'{"ref": ""}', 422), (b'{"ref": "' + b"x" * 129 + b'"}', 422),
     (b'{"ref": "a\\u0000b"}', 422), (b'{"ref": "\\ud800"}', 400), (b'{"ref": "a\\nb"}', 422)],
)  # fmt: skip
def test_bad_play_bodies(body, status):
    with pytest.raises(ApiError) as info:
        parse_play_body(body)
    assert info.value.status == status and info.value.detail


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_bucket_allows_a_burst_then_refills_at_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate=0.5, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == 2  # one token needs 2 s at 0.5/s
    assert limiter.take("b") == 0  # other clients are not affected
    clock.now += 2.0
    assert limiter.take("a") == 0
    assert limiter.take("a") == 2


def test_table_stays_bounded():
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=4, clock=clock)
    for i in range(50):
        assert limiter.take(f"c{i}") == 0
    assert len(limiter._buckets) <= 4
