"""Standstill: a position standing still is due a look after ``after`` s, then each ``after``."""

from __future__ import annotations

from kernel.log.standstill import Standstill

TP = ("plyr.records", 0)


def test_a_still_position_is_due_after_the_wait_and_again_each_wait() -> None:
    still: Standstill[tuple[str, int]] = Standstill(10)
    assert still.note(TP, 5, now=100.0)  # new
    assert still.due(TP, now=109.0) is None
    assert still.due(TP, now=110.0) == 10.0
    assert not still.note(TP, 5, now=115.0)  # not moved: the clock runs on
    assert still.due(TP, now=115.0) is None  # looked at 110: the next look at 120
    assert still.due(TP, now=121.0) == 21.0  # seconds since the position was reached


def test_a_moved_or_forgotten_position_starts_its_clock_again() -> None:
    still: Standstill[tuple[str, int]] = Standstill(10)
    still.note(TP, 5, now=100.0)
    assert still.note(TP, 6, now=108.0)  # moved
    assert still.due(TP, now=112.0) is None
    assert still.due(TP, now=118.0) == 10.0
    still.forget(TP)
    assert still.note(TP, 6, now=130.0)
    assert still.due(TP, now=135.0) is None


def test_with_no_wait_a_new_position_is_due_at_once() -> None:
    still: Standstill[tuple[str, int]] = Standstill(0)
    still.note(TP, 5, now=100.0)
    assert still.due(TP, now=100.0) == 0.0
