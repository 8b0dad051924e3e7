"""What the projectors that apply a batch at once share (search, moderation).

Such a projector (:class:`~projectors.runner.ReducingProjector`) folds a batch into
segments with a pure function, cutting it at each event that purges a repo (an account
deletion: what came before is written, then the repo is purged, then what follows), and
applies a single event as a batch of one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from projectors.base import InvalidEvent
from projectors.runner import ReducingProjector

__all__ = ["apply_one", "reduce_segments"]

S = TypeVar("S")
P = TypeVar("P")
C = TypeVar("C")


def reduce_segments(
    envelopes: Sequence[Envelope],
    segment: Callable[[], S],
    fold: Callable[[S, Envelope, int], None],
    plan: Callable[[S], P],
    cut: Callable[[Envelope], C | None],
) -> tuple[list[P | C], list[tuple[int, str]]]:
    """Fold ``envelopes`` into segments: the planned segments and cuts, and the rejects.

    ``fold(segment, envelope, index)`` adds an event (:class:`InvalidEvent` rejects it);
    ``cut(envelope)`` is not None for an event that ends a segment (the step written
    between the segment before and the one after); ``plan`` turns a non-empty segment
    (truthy) into what the projector writes.
    """
    rejected: list[tuple[int, str]] = []
    steps: list[P | C] = []
    current = segment()
    for index, envelope in enumerate(envelopes):
        step = cut(envelope)
        if step is not None:
            if current:
                steps.append(plan(current))
            steps.append(step)
            current = segment()
            continue
        try:
            fold(current, envelope, index)
        except InvalidEvent as exc:
            rejected.append((index, str(exc)))
    if current:
        steps.append(plan(current))
    return steps, rejected


async def apply_one(
    projector: ReducingProjector, conn: AsyncConnection, envelope: Envelope
) -> None:
    """Apply one event as a batch of one; :class:`InvalidEvent` if its data is bad."""
    reduced, rejected = projector.reduce([envelope])
    if rejected:
        raise InvalidEvent(rejected[0][1])
    await projector.write(conn, reduced)
