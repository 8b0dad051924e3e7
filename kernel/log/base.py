"""The interface every log backend implements, and the partitioner they share."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Log",
    "LogClosed",
    "LogError",
    "LogReader",
    "Message",
    "Position",
    "TopicPartition",
    "check_fetch",
    "partition_for",
]

TopicPartition = tuple[str, int]
"""A partition of a topic: ``(topic, partition)``."""


class LogError(RuntimeError):
    """The log could not do what was asked (broker or database trouble); retry later."""


class LogClosed(LogError):
    """The log was used after :meth:`Log.close`."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where an appended message landed."""

    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Message:
    """One message read back from the log."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp_ms: int


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a key belongs to; the same in every backend and every process."""
    return zlib.crc32(key) % partitions


def check_fetch(positions: Mapping[TopicPartition, int], max_messages: int) -> None:
    """The arguments every :meth:`LogReader.fetch` refuses (``ValueError``)."""
    if max_messages < 1:
        raise ValueError(f"max_messages must be at least 1, got {max_messages}")
    if any(offset < 0 for offset in positions.values()):
        raise ValueError("offsets must not be negative")


class LogReader(Protocol):
    """Reads many partitions at once, from positions its owner keeps (see :meth:`Log.reader`).

    The owner (a projector runner) stores its offsets elsewhere and passes them to every
    :meth:`fetch`; a reader only remembers where its fetches left off, so asking for the
    same position again (after a failed batch, or another worker's commit) just works.
    """

    async def fetch(
        self,
        positions: Mapping[TopicPartition, int],
        *,
        max_messages: int = 500,
        timeout: float = 1.0,
    ) -> list[Message]:
        """Whatever is ready in the given partitions, each read from its position.

        Returns as soon as any partition has messages (up to ``max_messages`` in all),
        else after ``timeout`` seconds with ``[]``. The messages of each partition come in
        offset order, starting at its position; partitions follow each other (dispatch by
        partition).
        """

    async def close(self) -> None:
        """Release the reader's connections. Idempotent."""


class Log(Protocol):
    """Append keyed messages; read one topic-partition from an offset, in order, or many
    partitions at once through a :class:`LogReader`.

    Messages with the same key land in the same partition (see :func:`partition_for`),
    so their order is kept. Offsets within a partition start at 0 and grow by one.
    """

    async def start(self) -> None:
        """Connect and make sure the topics exist."""

    async def close(self) -> None:
        """Release connections. Idempotent."""

    def partitions(self, topic: str) -> int:
        """Number of partitions of ``topic``."""

    async def append(self, topic: str, items: Sequence[tuple[bytes, bytes]]) -> list[Position]:
        """Append ``(key, value)`` pairs; return once the log has acknowledged all of them.

        Positions are returned in the order of ``items``.
        """

    async def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_messages: int = 500,
        timeout: float = 1.0,
    ) -> list[Message]:
        """Messages of one partition starting at ``offset``, in offset order.

        Waits up to ``timeout`` seconds for at least one message; returns ``[]`` if none came.
        """

    def reader(self) -> LogReader:
        """A new reader over many partitions (Kafka: a consumer of its own).

        Give each projector its own, so a slow one does not hold back another. Readers
        connect on their first fetch and are closed with the log.
        """

    async def end_offset(self, topic: str, partition: int) -> int:
        """The offset the next appended message of this partition will get (for lag reports)."""
