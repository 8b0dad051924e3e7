"""Projector workers as a Kafka consumer group: the broker splits partitions among them.

Each worker joins the group ``plyr-appview.<projector>`` (aiokafka ``group_id``) and, on
every assignment, seeks each new partition to the offset stored in PostgreSQL
(``projector_offset``), never to a broker-committed one. Like the runner's own loop, one
consumer per projector fetches whatever is ready over all the assigned partitions and
hands it to :func:`projectors.runner.dispatch`: each partition's batch goes through
:func:`~projectors.runner.apply_batch`, whose compare-and-set on the stored offset makes a
batch take effect once even when a rebalance briefly hands a partition to two workers;
the loser reloads the stored offset and seeks there. Nothing is committed to the broker.

Tansu takes 5-30 s to form a group, so the session and rebalance timeouts are short.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from psycopg_pool import AsyncConnectionPool

from kernel.log import Message
from kernel.log import TopicPartition as LogPartition
from projectors.base import Projector
from projectors.runner import dispatch, load_offset

__all__ = ["GroupWorker", "group_id"]

logger = logging.getLogger(__name__)


def group_id(projector: Projector) -> str:
    """The consumer group of a projector's workers."""
    return f"plyr-appview.{projector.name}"


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks newly assigned partitions to their stored offsets."""

    def __init__(self, worker: GroupWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self._worker.positions.pop((tp.topic, tp.partition), None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._worker.seek_stored(list(assigned))


class GroupWorker:
    """One projector worker in the projector's consumer group.

    ``topics``: the full names of the topics the projector reads (its registry entry's,
    :mod:`projectors.registry`); the group shares out their partitions.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        bootstrap: str,
        projector: Projector,
        topics: str | Sequence[str],
        *,
        batch_size: int = 1000,
        session_timeout_ms: int = 6000,
        on_assign: Callable[[set[int]], None] | None = None,
    ) -> None:
        self.pool = pool
        self.projector = projector
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.batch_size = batch_size
        self.positions: dict[LogPartition, int] = {}
        self._on_assign = on_assign
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id(projector),
            client_id=f"plyr-appview-{projector.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(500, session_timeout_ms // 4),
            rebalance_timeout_ms=session_timeout_ms * 2,
            max_poll_interval_ms=60_000,
            # Tansu holds an empty fetch this long even when data arrives (see kernel.log.kafka).
            fetch_max_wait_ms=50,
        )

    async def seek_stored(self, assigned: list[Any]) -> None:
        """Point the consumer at the stored offset of each newly assigned partition."""
        for tp in assigned:
            offset = await load_offset(self.pool, self.projector.name, tp.topic, tp.partition)
            self.consumer.seek(tp, offset)
            self.positions[(tp.topic, tp.partition)] = offset
        logger.info(
            "partitions assigned",
            extra={
                "projector": self.projector.name,
                "topics": self.topics,
                "partitions": sorted(tp.partition for tp in assigned),
            },
        )
        if self._on_assign is not None:
            self._on_assign({tp.partition for tp in self.consumer.assignment()})

    async def run(self, stop: asyncio.Event) -> None:
        """Join the group and project the assigned partitions until ``stop`` is set."""
        await self.consumer.start()
        try:
            self.consumer.subscribe(self.topics, listener=_Listener(self))
            while not stop.is_set():
                try:
                    batches = await self.consumer.getmany(
                        timeout_ms=500, max_records=self.batch_size
                    )
                except KafkaError as exc:
                    logger.warning("group fetch failed", extra={"error": repr(exc)})
                    await asyncio.sleep(0.5)
                    continue
                messages = [
                    _message(tp, record) for tp, records in batches.items() for record in records
                ]
                if not messages:
                    continue
                if not await dispatch(self.pool, self.projector, messages, self.positions):
                    await asyncio.sleep(0.5)  # database trouble: read the batch again
                for tp, records in batches.items():
                    # Where a batch was not applied (a conflict, a failure), go back to the
                    # position the runner holds; the consumer has moved past it.
                    position = self.positions.get((tp.topic, tp.partition))
                    if records and position not in (None, int(records[-1].offset) + 1):
                        self.consumer.seek(tp, position)
        finally:
            await self.consumer.stop()


def _message(tp: TopicPartition, record: Any) -> Message:
    """A :class:`~kernel.log.Message` of an aiokafka record of ``tp``."""
    return Message(
        topic=tp.topic,
        partition=tp.partition,
        offset=int(record.offset),
        key=bytes(record.key or b""),
        value=bytes(record.value or b""),
        timestamp_ms=int(record.timestamp),
    )
