"""kernel/group_commit.py: concurrent appends share one append of the log below.

The log contract suite runs again on :class:`GroupCommitLog` over each backend (the
``log`` fixture is wrapped here), then what grouping adds: fewer appends below than
callers, each caller's own positions, and a failure reaching every caller of the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from kernel.group_commit import GroupCommitLog
from kernel.log.base import Log, LogError, Position
from tests.integration.test_log_contract import (  # noqa: F401 (collected again, grouped)
    read_exactly,
    test_a_closed_log_raises_log_closed,
    test_append_returns_positions_in_order_with_consecutive_offsets,
    test_close_ends_a_waiting_read_with_log_closed,
    test_concurrent_appends_leave_partitions_gapless_and_keep_each_task_order,
    test_empty_append_is_a_no_op,
    test_read_from_zero_returns_everything_in_order,
    test_same_key_lands_in_the_same_partition,
)


class CountingLog:
    """The log below, counting its appends (and failing them when told to)."""

    def __init__(self, inner: Log) -> None:
        self.inner = inner
        self.appends = 0
        self.fail = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def append(self, topic: str, items: Sequence[tuple[bytes, bytes]]) -> list[Position]:
        self.appends += 1
        if self.fail:
            raise LogError("the log is down")
        return await self.inner.append(topic, items)


@pytest.fixture
async def log(log: Log) -> AsyncIterator[Log]:  # the conftest's log, per backend, grouped
    yield GroupCommitLog(CountingLog(log))  # type: ignore[arg-type]


async def test_concurrent_appends_are_grouped_and_get_their_own_positions(
    log: GroupCommitLog, topic: str, log_partitions: int
) -> None:
    callers = 200
    items = [[(f"did:plc:{i % 13}".encode(), f"value-{i}".encode())] for i in range(callers)]
    positions = await asyncio.gather(*(log.append(topic, one) for one in items))

    assert log.inner.appends < callers / 4  # type: ignore[attr-defined]
    by_partition: dict[int, dict[int, bytes]] = {}
    for one, [position] in zip(items, positions, strict=True):
        by_partition.setdefault(position.partition, {})[position.offset] = one[0][1]
    for partition, expected in by_partition.items():
        messages = await read_exactly(log, topic, partition, len(expected))
        assert {m.offset: m.value for m in messages} == expected


async def test_a_failed_append_fails_every_caller_in_it(log: GroupCommitLog, topic: str) -> None:
    log.inner.fail = True  # type: ignore[attr-defined]
    results = await asyncio.gather(
        *(log.append(topic, [(b"did:plc:x", b"%d" % i)]) for i in range(20)),
        return_exceptions=True,
    )
    assert all(isinstance(r, LogError) for r in results)
    log.inner.fail = False  # type: ignore[attr-defined]
    [position] = await log.append(topic, [(b"did:plc:x", b"after")])  # and it recovers
    assert position.offset == 0


async def test_a_caller_that_gives_up_leaves_the_shared_append_to_the_others(
    log: GroupCommitLog, topic: str
) -> None:
    callers = [
        asyncio.create_task(log.append(topic, [(b"did:plc:x", b"%d" % i)])) for i in range(10)
    ]
    await asyncio.sleep(0)  # every caller is waiting, the flusher has started
    callers[3].cancel()
    results = await asyncio.gather(*callers, return_exceptions=True)

    assert isinstance(results[3], asyncio.CancelledError)
    kept = [r for i, r in enumerate(results) if i != 3]
    assert all(isinstance(r, list) and len(r) == 1 for r in kept), results
    # The given-up item was taken with its batch: all ten are on the log, in order.
    [partition] = {r[0].partition for r in kept}  # type: ignore[index]
    messages = await read_exactly(log, topic, partition, 10)
    assert [m.value for m in messages] == [b"%d" % i for i in range(10)]
