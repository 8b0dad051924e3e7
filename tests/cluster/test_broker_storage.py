"""The cluster's broker keeps its log in S3: a restarted broker serves what was written before.

moto's server and Tansu on its ``s3://`` engine, as ``make cluster`` starts them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.log.kafka import KafkaLog
from plyr_appview.cluster import (
    BROKER_BUCKET,
    ClusterOptions,
    Supervisor,
    broker_spec,
    create_buckets,
    free_port,
    s3_spec,
)

pytestmark = pytest.mark.kafka

TOPIC = "plyr.repo"


async def test_the_log_outlives_a_broker_restart(tmp_path: Path) -> None:
    supervisor = Supervisor(ClusterOptions(data_dir=tmp_path, stop_timeout=5))
    try:
        s3_port = free_port()
        supervisor.start_process(s3_spec(s3_port), s3_port)
        endpoint = f"http://127.0.0.1:{s3_port}"
        create_buckets(endpoint, [BROKER_BUCKET])
        first_port = free_port()
        first = supervisor.start_process(broker_spec(first_port, endpoint), first_port)

        log = KafkaLog(f"127.0.0.1:{first_port}", partitions=2, topics=[TOPIC])
        await log.start()
        written = [(f"did:plc:{i % 5}".encode(), f"event {i}".encode()) for i in range(40)]
        await log.append(TOPIC, written)
        await log.close()

        first.process.terminate()
        first.process.wait(timeout=10)
        second_port = free_port()
        supervisor.start_process(broker_spec(second_port, endpoint), second_port)

        log = KafkaLog(f"127.0.0.1:{second_port}", partitions=2, topics=[TOPIC])
        await log.start()
        try:
            read: list[tuple[bytes, bytes]] = []
            for partition in range(2):
                offset = 0
                while batch := await log.read(TOPIC, partition, offset, timeout=2):
                    read += [(m.key, m.value) for m in batch]
                    offset = batch[-1].offset + 1
        finally:
            await log.close()
        assert sorted(read) == sorted(written)
    finally:
        supervisor.stop()
