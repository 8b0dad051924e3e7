"""Shared fixtures: a session Tansu broker, fresh PostgreSQL databases, and started logs."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from psycopg_pool import AsyncConnectionPool

from kernel.db import open_pool
from kernel.log.base import Log
from kernel.log.kafka import KafkaLog
from kernel.log.postgres import PostgresLog
from testkit.brokers import Tansu, create_database, drop_database, start_tansu


@pytest.fixture(scope="session", autouse=True)
def _root_log_handlers() -> Iterator[None]:
    """Take back the root handlers tests installed (``main()`` configures logging onto a
    captured stream): at exit, libraries logging from ``atexit`` hooks (the embedded
    PostgreSQL's shutdown) would write to a closed file."""
    before = list(logging.getLogger().handlers)
    yield
    logging.getLogger().handlers[:] = before


@pytest.fixture(scope="session")
def tansu() -> Iterator[Tansu]:
    """One in-memory Tansu broker for the whole session, stopped by PID at the end."""
    broker = start_tansu()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """URL of a fresh, migrated database on the system PostgreSQL, dropped afterwards."""
    name, url = await asyncio.to_thread(create_database)
    try:
        yield url
    finally:
        await asyncio.to_thread(drop_database, name)


@pytest.fixture
async def pool(pg_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A connection pool on the fresh database of ``pg_url``."""
    pool = await open_pool(pg_url)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses (the session broker is shared)."""
    return f"plyr.test.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def log_partitions() -> int:
    """Partitions of the topics the ``log`` fixture creates.

    Not 4, Tansu's default for topics it creates by itself, so a topic that was not
    created on purpose shows.
    """
    return 3


@pytest.fixture(params=["postgres", pytest.param("kafka", marks=pytest.mark.kafka)])
async def log(
    request: pytest.FixtureRequest, topic: str, log_partitions: int
) -> AsyncIterator[Log]:
    """A started log of each backend with ``topic`` created; closed afterwards."""
    if request.param == "postgres":
        # Not the pg_url fixture: an async fixture cannot be requested from a running loop.
        name, url = await asyncio.to_thread(create_database)
        try:
            pool = await open_pool(url, max_size=30)
            backend: Log = PostgresLog(pool, partitions=log_partitions, topics=[topic])
            try:
                await backend.start()
                yield backend
            finally:
                await backend.close()
                await pool.close()
        finally:
            await asyncio.to_thread(drop_database, name)
    else:
        broker: Tansu = request.getfixturevalue("tansu")
        backend = KafkaLog(broker.bootstrap, partitions=log_partitions, topics=[topic])
        try:
            await backend.start()
            yield backend
        finally:
            await backend.close()
