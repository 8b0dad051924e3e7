"""One lookup per key at a time, and a cancelled caller cancels only its own wait."""

from __future__ import annotations

import asyncio

import pytest

from kernel.singleflight import SingleFlight


class Gate:
    """A lookup that waits until opened, counting its starts."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.started = 0

    async def lookup(self) -> str:
        self.started += 1
        await self.opened.wait()
        return "answer"


async def test_callers_of_one_key_share_one_lookup() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    gate = Gate()
    waiting = [asyncio.create_task(flights.run("k", gate.lookup)) for _ in range(4)]
    await asyncio.sleep(0)
    assert len(flights) == 1
    gate.opened.set()
    assert await asyncio.gather(*waiting) == ["answer"] * 4
    assert gate.started == 1 and len(flights) == 0  # the key is free again


async def test_the_first_caller_cancelled_leaves_the_others_their_answer() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    gate = Gate()
    first = asyncio.create_task(flights.run("k", gate.lookup))
    await asyncio.sleep(0)
    second = asyncio.create_task(flights.run("k", gate.lookup))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.opened.set()
    assert await asyncio.wait_for(second, 2) == "answer"
    assert gate.started == 1


async def test_a_failure_reaches_every_caller_and_is_not_kept() -> None:
    flights: SingleFlight[str, str] = SingleFlight()

    async def failing() -> str:
        await asyncio.sleep(0)
        raise LookupError("no such name")

    results = await asyncio.gather(
        flights.run("k", failing), flights.run("k", failing), return_exceptions=True
    )
    assert [type(r) for r in results] == [LookupError, LookupError]
    assert len(flights) == 0
