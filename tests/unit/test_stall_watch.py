"""StallWatch: a partition held at one position while the log holds more is reported."""

from __future__ import annotations

import logging

import pytest

from kernel.log import LogError
from projectors.runner import StallWatch

TP = ("plyr.records", 0)


class _Ends:
    """Stands in for a log: only end offsets are asked (a fake, the watch needs no more)."""

    def __init__(self, end: int) -> None:
        self.end = end
        self.asked = 0
        self.fail = False

    async def end_offset(self, topic: str, partition: int) -> int:
        self.asked += 1
        if self.fail:
            raise LogError("broker down")
        return self.end


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "partition not served"]


async def test_a_partition_put_below_the_end_is_reported_after_the_stall_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, log = _Clock(), _Ends(end=338)
    watch = StallWatch("track", stall_seconds=10, clock=clock)
    positions = {TP: 0}
    await watch.check(log, positions)  # type: ignore[arg-type]
    clock.now += 9
    await watch.check(log, positions)  # type: ignore[arg-type]
    assert (log.asked, _errors(caplog)) == (0, [])
    clock.now += 2
    await watch.check(log, positions)  # type: ignore[arg-type]
    [error] = _errors(caplog)
    assert (error.offset, error.end_offset, error.seconds) == (0, 338, 11.0)  # type: ignore[attr-defined]
    assert watch.stalled == {TP: 338}
    positions[TP] = 5
    await watch.check(log, positions)  # type: ignore[arg-type]
    assert watch.stalled == {}
    assert "partition served again" in caplog.text


async def test_an_idle_partition_at_the_end_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, log = _Clock(), _Ends(end=42)
    watch = StallWatch("track", stall_seconds=10, clock=clock)
    for _ in range(5):
        await watch.check(log, {TP: 42})  # type: ignore[arg-type]
        clock.now += 6
    assert log.asked == 2  # once per stall time, not on every fetch
    assert _errors(caplog) == []


async def test_an_unreachable_log_is_left_to_the_fetch_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, log = _Clock(), _Ends(end=50)
    log.fail = True
    watch = StallWatch("track", stall_seconds=1, clock=clock)
    await watch.check(log, {TP: 0})  # type: ignore[arg-type]
    clock.now += 2
    await watch.check(log, {TP: 0})  # type: ignore[arg-type]
    assert (log.asked, _errors(caplog), watch.stalled) == (1, [], {})
