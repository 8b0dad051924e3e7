"""The log: an ordered, partitioned, append-only stream of keyed messages.

Two backends implement :class:`~kernel.log.base.Log`: a table-backed log in
PostgreSQL (embedded mode) and Kafka (scaled mode). Errors raised by a backend are
:class:`LogError` (transient: retry) or :class:`LogClosed`.
"""

from kernel.log.base import (
    Log,
    LogClosed,
    LogError,
    LogReader,
    Message,
    Position,
    TopicPartition,
    partition_for,
)

__all__ = [
    "Log",
    "LogClosed",
    "LogError",
    "LogReader",
    "Message",
    "Position",
    "TopicPartition",
    "partition_for",
]
