"""The Kafka log (scaled mode), over aiokafka; works with any Kafka-protocol broker.

Each message is sent to the partition :func:`~kernel.log.base.partition_for` picks,
never to aiokafka's partitioner, so a key lands in the same partition in both backends.

Reading is without a consumer group: partitions are assigned by hand and sought to the
asked offset (projectors keep their offsets in PostgreSQL, so there is nothing to commit
to the broker, and no group join to wait for). :meth:`KafkaLog.read` (one partition, for
rebuilds and tools) uses one consumer per log, one read at a time. Live projectors use
:meth:`KafkaLog.reader`: a consumer of their own over all their partitions, whose
fetcher keeps every partition's next batch in flight, so a fetch returns whatever is
ready as soon as it is. End offsets are asked through a never-assigned consumer.

A broker may hold data it does not return to a short fetch: Tansu's ``s3://`` engine lists a
partition's objects (one per produced batch) within the fetch's max wait and answers empty
past it, so a partition of a few hundred batches is never served to the reader's 50 ms
(``tests/integration/test_tansu_s3.py``). A reader partition that has not moved for
``slow_after`` seconds while the broker's end offset is beyond it is read with a fetch of
its own that may wait ``_SLOW_MAX_WAIT_MS``, until it catches up (:class:`_SlowReads`).

Errors: aiokafka's errors become :class:`~kernel.log.base.LogError`, use after
:meth:`KafkaLog.close` raises :class:`~kernel.log.base.LogClosed`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import ConsumerStoppedError, KafkaError, TopicAlreadyExistsError

from kernel.log.base import (
    LogClosed,
    LogError,
    LogReader,
    Message,
    Position,
    check_fetch,
    partition_for,
)
from kernel.log.base import (
    TopicPartition as LogPartition,
)
from kernel.log.standstill import Standstill

__all__ = ["KafkaLog"]

logger = logging.getLogger(__name__)

# Small: appends are awaited whole, so the batch fills while the items are handed over.
_LINGER_MS = 5
# Largest message we produce; also set on the topics we create, because brokers default
# to about 1 MB and a 1 MB value plus its record header would not fit.
_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
_REQUEST_TIMEOUT_MS = 30_000
# How long the broker may hold a fetch that has nothing to return. A broker answers as
# soon as data arrives, but Tansu holds a fetch for this long anyway: short, so a write
# waits at most this for a reader whose partitions were idle.
_FETCH_MAX_WAIT_MS = 50
# A partition not served to the reader's short fetches is read with this max wait instead.
_SLOW_MAX_WAIT_MS = 10_000
SLOW_AFTER = 5.0
"""Seconds a reader partition may stand still, the log holding more, before it is read slowly."""


@dataclass(frozen=True, slots=True)
class _Clients:
    """The aiokafka clients of one started :class:`KafkaLog`."""

    admin: Any
    producer: Any
    reader: Any
    offsets: Any

    async def stop(self) -> None:
        """Stop all of them, even when one fails (the first error is raised)."""
        try:
            await self.reader.stop()
        finally:
            try:
                await self.offsets.stop()
            finally:
                try:
                    await self.producer.stop()
                finally:
                    await self.admin.close()


class KafkaLog:
    """:class:`~kernel.log.base.Log` over Kafka topics.

    ``partitions`` is the partition count of the topics this log creates (with
    ``replication_factor`` replicas); topics that already exist keep theirs (see
    :meth:`partitions`). Topics not named in ``topics`` are created when first used.
    ``slow_after``: see the module docstring (``None``: never read a partition slowly).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int,
        topics: Sequence[str] = (),
        client_id: str = "plyr-appview",
        replication_factor: int = 1,
        slow_after: float | None = SLOW_AFTER,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        self._bootstrap = bootstrap
        self._partitions = partitions
        self._topics = tuple(topics)
        self._client_id = client_id
        self._replication_factor = replication_factor
        self._slow_after = slow_after
        self._counts: dict[str, int] = {}
        self._clients: _Clients | None = None
        # Where the reader stands in each assigned partition: the next offset it fetches.
        self._positions: dict[Any, int] = {}
        self._read_lock = asyncio.Lock()
        self._topic_lock = asyncio.Lock()
        self._readers: set[_KafkaReader] = set()
        self._closed = False

    async def start(self) -> None:
        """Connect, create the missing topics and learn the partition count of all of them."""
        if self._closed:
            raise LogClosed("start on a closed log")
        if self._clients is not None:
            return
        clients = _Clients(
            admin=AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                request_timeout_ms=_REQUEST_TIMEOUT_MS,
            ),
            producer=AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                # Idempotence needs InitProducerId, which Tansu fails; readers are idempotent.
                enable_idempotence=False,
                linger_ms=_LINGER_MS,
                max_request_size=_MAX_MESSAGE_BYTES,
                request_timeout_ms=_REQUEST_TIMEOUT_MS,
            ),
            reader=self._consumer(),
            # Never assigned, so never fetching: a ListOffsets request does not queue behind
            # the reader's long-polling fetch on the same connection (~1 s otherwise).
            offsets=self._consumer(),
        )
        try:
            await clients.admin.start()
            await self._ensure_topics(clients.admin, self._topics)
            await clients.producer.start()
            await clients.reader.start()
            await clients.offsets.start()
            # aiokafka 0.14: a consumer's no-group coordinator task must run once before
            # stop() cancels it, or stop() re-raises its CancelledError (start, then close).
            await asyncio.sleep(0)
        except BaseException as exc:
            await clients.stop()
            if isinstance(exc, KafkaError):
                raise LogError(f"kafka log could not start on {self._bootstrap}: {exc!r}") from exc
            raise
        self._clients = clients
        logger.info(
            "kafka log started",
            extra={"bootstrap": self._bootstrap, "topics": list(self._topics)},
        )

    def _consumer(self, **options: Any) -> Any:
        return AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            # Every partition is sought before it is read: an offset the broker does not
            # have must surface as an error, not as a silent jump to the start or the end.
            auto_offset_reset="none",
            request_timeout_ms=_REQUEST_TIMEOUT_MS,
            **options,
        )

    async def _started_consumer(self, what: str, **options: Any) -> Any:
        """A new consumer (:meth:`_consumer`), started; :class:`LogError` naming ``what``."""
        consumer = self._consumer(**options)
        try:
            await consumer.start()
            await asyncio.sleep(0)  # see start(): let the coordinator task run once
        except KafkaError as exc:
            await consumer.stop()
            raise self._error(f"{what} could not start", exc) from exc
        return consumer

    def reader(self) -> LogReader:
        """A reader with a consumer of its own over many partitions; closed with the log."""
        self._running("reader")
        reader = _KafkaReader(self)
        self._readers.add(reader)
        return reader

    async def close(self) -> None:
        """Flush pending sends and disconnect. Idempotent; a waiting read raises LogClosed."""
        if self._closed:
            return
        self._closed = True
        for reader in list(self._readers):
            await reader.close()
        clients, self._clients = self._clients, None
        if clients is not None:
            await clients.stop()
        logger.info("kafka log closed", extra={"bootstrap": self._bootstrap})

    def partitions(self, topic: str) -> int:
        """Partition count of ``topic`` as the broker reported it, else the configured one."""
        return self._counts.get(topic, self._partitions)

    def _running(self, action: str) -> _Clients:
        """The clients of a started, open log."""
        if self._closed:
            raise LogClosed(f"{action} on a closed log")
        if self._clients is None:
            raise LogError(f"{action} before KafkaLog.start()")
        return self._clients

    async def _ensure_topics(self, admin: Any, topics: Sequence[str]) -> None:
        """Create the topics not known yet and record every topic's real partition count."""
        if all(topic in self._counts for topic in topics):
            return
        async with self._topic_lock:
            missing = sorted({topic for topic in topics if topic not in self._counts})
            if not missing:
                return
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=topic,
                        num_partitions=self._partitions,
                        replication_factor=self._replication_factor,
                        topic_configs={"max.message.bytes": str(_MAX_MESSAGE_BYTES)},
                    )
                    for topic in missing
                ]
            )
            for result in response.to_object()["topic_errors"]:
                code = result["error_code"]
                if code == 0:
                    logger.info(
                        "topic created",
                        extra={"topic": result["topic"], "partitions": self._partitions},
                    )
                elif code != TopicAlreadyExistsError.errno:
                    raise LogError(
                        f"could not create topic {result['topic']}: error {code}"
                        f" {result.get('error_message') or ''}".rstrip()
                    )
            for described in await admin.describe_topics(missing):
                topic = described["topic"]
                if described["error_code"] != 0 or not described["partitions"]:
                    raise LogError(
                        f"could not describe topic {topic}: error {described['error_code']}"
                    )
                count = len(described["partitions"])
                if count != self._partitions:
                    logger.warning(
                        "topic partition count differs from configuration",
                        extra={
                            "topic": topic,
                            "partitions": count,
                            "configured": self._partitions,
                        },
                    )
                self._counts[topic] = count

    async def append(self, topic: str, items: Sequence[tuple[bytes, bytes]]) -> list[Position]:
        """Send every ``(key, value)`` to its partition; return once all are acknowledged.

        If this raises, some of the items may have been appended (at-least-once).
        """
        clients = self._running("append")
        if not items:
            return []
        try:
            await self._ensure_topics(clients.admin, [topic])
            count = self._counts[topic]
            futures: list[asyncio.Future[Any]] = []
            try:
                for key, value in items:
                    futures.append(
                        await clients.producer.send(
                            topic, value=value, key=key, partition=partition_for(key, count)
                        )
                    )
            finally:
                # Wait for what was handed over even when a send failed, so no ack is lost
                # and no future is left with an unretrieved exception.
                results = await asyncio.gather(*futures, return_exceptions=True)
        except KafkaError as exc:
            raise self._error(f"append to {topic} failed", exc) from exc
        positions: list[Position] = []
        for result in results:
            if isinstance(result, BaseException):
                raise self._error(f"append to {topic} failed", result) from result
            positions.append(Position(int(result.partition), int(result.offset)))
        return positions

    async def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_messages: int = 500,
        timeout: float = 1.0,
    ) -> list[Message]:
        """Messages of one partition from ``offset``; waits up to ``timeout`` s for the first."""
        if offset < 0:
            raise ValueError(f"offset must not be negative, got {offset}")
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        self._running("read")
        async with self._read_lock:
            clients = self._running("read")
            try:
                await self._ensure_topics(clients.admin, [topic])
                if not 0 <= partition < self._counts[topic]:
                    raise ValueError(
                        f"{topic} has {self._counts[topic]} partitions, asked for {partition}"
                    )
                tp = TopicPartition(topic, partition)
                self._seek(clients.reader, tp, offset)
                batches = await clients.reader.getmany(
                    tp, timeout_ms=max(0, round(timeout * 1000)), max_records=max_messages
                )
            except (KafkaError, ConsumerStoppedError) as exc:
                raise self._error(f"read from {topic}/{partition} failed", exc) from exc
            records = batches.get(tp, [])
            if records:
                self._positions[tp] = int(records[-1].offset) + 1
            elif self._closed:
                # A consumer stopped during getmany() returns nothing rather than raising.
                raise LogClosed(f"read from {topic}/{partition}: the log was closed")
        return [_message(topic, partition, record) for record in records]

    def _seek(self, reader: Any, tp: Any, offset: int) -> None:
        """Point the reader at ``offset`` of ``tp``, assigning the partition if needed."""
        position = self._positions.get(tp)
        if position == offset:
            return
        if position is None:
            self._positions[tp] = offset
            # assign() replaces the assignment and forgets every position: restore them all.
            reader.assign(list(self._positions))
            for known, known_offset in self._positions.items():
                reader.seek(known, known_offset)
            logger.debug(
                "partition assigned",
                extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
            )
            return
        reader.seek(tp, offset)
        self._positions[tp] = offset
        logger.debug(
            "reader seek",
            extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
        )

    async def end_offset(self, topic: str, partition: int) -> int:
        """The broker's end offset (high watermark) of the partition, for lag reports."""
        clients = self._running("end_offset")
        try:
            await self._ensure_topics(clients.admin, [topic])
            tp = TopicPartition(topic, partition)
            offsets = await clients.offsets.end_offsets([tp])
        except (KafkaError, ConsumerStoppedError) as exc:
            raise self._error(f"end offset of {topic}/{partition} failed", exc) from exc
        return int(offsets[tp])

    def _error(self, what: str, exc: BaseException) -> LogError:
        """``LogClosed`` if the failure came from a concurrent close, else ``LogError``."""
        if self._closed:
            return LogClosed(f"{what}: the log was closed")
        logger.warning("kafka log operation failed", extra={"operation": what, "error": repr(exc)})
        return LogError(f"{what}: {exc!r}")


def _message(topic: str, partition: int, record: Any) -> Message:
    """A :class:`~kernel.log.base.Message` of an aiokafka ``ConsumerRecord``."""
    return Message(
        topic=topic,
        partition=partition,
        offset=int(record.offset),
        key=bytes(record.key or b""),
        value=bytes(record.value or b""),
        timestamp_ms=int(record.timestamp),
    )


class _KafkaReader:
    """:class:`~kernel.log.base.LogReader` of a :class:`KafkaLog`: one consumer, no group.

    The consumer is assigned exactly the asked partitions and sought only where a fetch
    asks for another position than where the last one left off, so its fetcher keeps
    prefetching every partition between fetches.
    """

    def __init__(self, log: KafkaLog) -> None:
        self._log = log
        self._consumer: Any = None
        # Where the consumer stands in each assigned partition: the next offset it returns.
        self._positions: dict[Any, int] = {}
        self._lock = asyncio.Lock()
        self._closed = False
        self._slow = None if log._slow_after is None else _SlowReads(log, log._slow_after)

    async def fetch(
        self,
        positions: Mapping[LogPartition, int],
        *,
        max_messages: int = 500,
        timeout: float = 1.0,
    ) -> list[Message]:
        """Whatever is ready in ``positions``; waits up to ``timeout`` s for any of it."""
        check_fetch(positions, max_messages)
        async with self._lock:
            consumer = await self._started()
            try:
                wanted = await self._checked(positions)
                if not wanted:
                    await asyncio.sleep(timeout)
                    return []
                self._point(consumer, wanted)
                batches = await consumer.getmany(
                    *wanted, timeout_ms=max(0, round(timeout * 1000)), max_records=max_messages
                )
            except (KafkaError, ConsumerStoppedError) as exc:
                raise self._log._error(f"fetch of {len(positions)} partitions failed", exc) from exc
            if self._closed or self._log._closed:
                # A consumer stopped during getmany() returns nothing rather than raising.
                raise LogClosed("fetch: the log was closed")
            messages: list[Message] = []
            served: set[Any] = set()
            for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition)):
                # A fetch answered from before a seek may hold offsets below the position.
                records = [r for r in batches[tp] if int(r.offset) >= wanted[tp]]
                if records:
                    served.add(tp)
                    self._positions[tp] = int(records[-1].offset) + 1
                    messages.extend(_message(tp.topic, tp.partition, r) for r in records)
            if self._slow is not None:
                for tp, records in (await self._slow.read(wanted, served, max_messages)).items():
                    self._positions[tp] = int(records[-1].offset) + 1
                    consumer.seek(tp, self._positions[tp])  # keep the fast path in step
                    messages.extend(_message(tp.topic, tp.partition, r) for r in records)
            return messages

    async def _started(self) -> Any:
        """The reader's consumer, started on first use."""
        if self._closed:
            raise LogClosed("fetch on a closed reader")
        self._log._running("fetch")
        if self._consumer is None:
            self._consumer = await self._log._started_consumer(
                "reader", fetch_max_wait_ms=_FETCH_MAX_WAIT_MS
            )
        return self._consumer

    async def _checked(self, positions: Mapping[LogPartition, int]) -> dict[Any, int]:
        """``positions`` keyed by aiokafka partitions, after checking that they exist."""
        clients = self._log._running("fetch")
        await self._log._ensure_topics(clients.admin, sorted({t for t, _ in positions}))
        wanted: dict[Any, int] = {}
        for (topic, partition), offset in positions.items():
            count = self._log.partitions(topic)
            if not 0 <= partition < count:
                raise ValueError(f"{topic} has {count} partitions, asked for {partition}")
            wanted[TopicPartition(topic, partition)] = offset
        return wanted

    def _point(self, consumer: Any, wanted: dict[Any, int]) -> None:
        """Assign ``wanted``'s partitions and seek those not where the last fetch left off."""
        if set(wanted) != set(self._positions):
            # assign() forgets every position: seek all of them.
            consumer.assign(list(wanted))
            self._positions = {}
        for tp, offset in wanted.items():
            if self._positions.get(tp) != offset:
                consumer.seek(tp, offset)
                self._positions[tp] = offset

    async def close(self) -> None:
        """Stop the consumer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._log._readers.discard(self)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        if self._slow is not None:
            await self._slow.close()


class _SlowReads:
    """Reads the partitions a reader's short fetches do not serve, with a long max wait.

    A partition is due once its position has not moved for ``after`` seconds and the
    broker's end offset is beyond it (so an idle partition at its end costs one ListOffsets
    every ``after`` seconds: :class:`~kernel.log.standstill.Standstill`). A due partition
    is read on a consumer of its own whose fetch may wait ``_SLOW_MAX_WAIT_MS``, fetch
    after fetch, while the end offset stays beyond its position and such a read returns
    something.
    """

    def __init__(self, log: KafkaLog, after: float) -> None:
        self._log = log
        self._consumer: Any = None
        self._still: Standstill[Any] = Standstill(after)
        self._due: set[Any] = set()

    async def read(
        self, wanted: dict[Any, int], served: set[Any], max_messages: int
    ) -> dict[Any, list[Any]]:
        """Records of due partitions not served by the fast fetch, by partition."""
        now = time.monotonic()
        out: dict[Any, list[Any]] = {}
        for tp, offset in wanted.items():
            if tp in served:
                self._still.forget(tp)
                self._due.discard(tp)
                continue
            self._still.note(tp, offset, now)
            if tp not in self._due and self._still.due(tp, now) is None:
                continue
            # Asked before every slow read: a slow fetch of a partition with nothing more
            # would hold this reader for the whole long max wait.
            if await self._log.end_offset(tp.topic, tp.partition) <= offset:
                self._due.discard(tp)  # at its end (caught up, or idle)
                continue
            if tp not in self._due:
                self._due.add(tp)
                logger.warning(
                    "partition read slowly",
                    extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
                )
            records = await self._fetch(tp, offset, max_messages)
            if records:
                out[tp] = records
                self._still.forget(tp)
            else:
                self._due.discard(tp)
        return out

    async def _fetch(self, tp: Any, offset: int, max_messages: int) -> list[Any]:
        if self._consumer is None:
            self._consumer = await self._log._started_consumer(
                "slow reader", fetch_max_wait_ms=_SLOW_MAX_WAIT_MS
            )
        self._consumer.assign([tp])
        self._consumer.seek(tp, offset)
        try:
            batches = await self._consumer.getmany(
                tp, timeout_ms=_SLOW_MAX_WAIT_MS + 2_000, max_records=max_messages
            )
        except (KafkaError, ConsumerStoppedError) as exc:
            raise self._log._error(f"slow read of {tp.topic}/{tp.partition} failed", exc) from exc
        return [r for r in batches.get(tp, []) if int(r.offset) >= offset]

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
