"""How long each partition's position has stood still, and when that is worth a look.

Two readers watch for partitions held at one position while the log holds more after
it: the projector runner reports them (``projectors.runner.StallWatch``), the Kafka
reader reads them with a long max wait (``kernel.log.kafka._SlowReads``). Both ask the
log for the end offset only once a position has stood still for ``after`` seconds, and
again every ``after`` seconds while it stays put (an idle partition stands still too:
the end offset tells the two apart). :class:`Standstill` is that bookkeeping, kept once.
The clock is the caller's (``now``), so the rule is pure.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Standstill"]

_K = TypeVar("_K", bound=Hashable)


class Standstill(Generic[_K]):
    """Per partition: its position, when it was reached, when it was last looked at."""

    def __init__(self, after: float) -> None:
        self.after = after
        self._marks: dict[_K, tuple[int, float, float]] = {}

    def note(self, key: _K, position: int, now: float) -> bool:
        """Record ``key`` at ``position``; True if that is new or moved (its clock restarts)."""
        mark = self._marks.get(key)
        if mark is not None and mark[0] == position:
            return False
        self._marks[key] = (position, now, now)
        return True

    def due(self, key: _K, now: float) -> float | None:
        """The seconds ``key`` (noted) has stood still, if a look is due; else ``None``.

        A look is due ``after`` seconds after the position was reached, then ``after``
        seconds after the last look; a call that answers counts as that look.
        """
        position, reached, looked = self._marks[key]
        if now - looked < self.after:
            return None
        self._marks[key] = (position, reached, now)
        return now - reached

    def forget(self, key: _K) -> None:
        """Drop ``key``: its next :meth:`note` starts its clock afresh."""
        self._marks.pop(key, None)
