"""``keep_connected``: backoff grows over failures in a row, and starts over after a session
that ran a healthy while (found by the fault suite: after a few restarts of PostgreSQL or the
PDS, every reconnection waited the 30 s cap)."""

from __future__ import annotations

import asyncio

import pytest

from ingest import stream


async def test_backoff_starts_over_after_a_healthy_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[int] = []

    def no_wait(attempt: int, **_: float) -> float:
        attempts.append(attempt)
        return 0.0

    monkeypatch.setattr(stream, "backoff_delay", no_wait)
    stop = asyncio.Event()
    runs = iter([0.0, 0.0, 0.0, 0.2, 0.0, 0.0])  # seconds each session lasts, then fails

    async def session() -> None:
        try:
            await asyncio.sleep(next(runs))
        except StopIteration:
            stop.set()
            return
        raise OSError("gone")

    await stream.keep_connected(
        session,
        stop,
        retry_on=(OSError,),
        on_retry=lambda: None,
        message="test disconnected",
        source="test",
        healthy_after=0.1,
    )
    # Three quick failures escalate; the long session starts over at 0.
    assert attempts == [0, 1, 2, 0, 1, 2]
