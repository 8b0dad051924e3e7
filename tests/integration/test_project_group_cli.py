"""``plyr-appview project --group`` projects every registered projector from Kafka.

The real CLI as a subprocess against Tansu: one record and one operator label on the log
must reach the catalog, search and moderation read models, and every registered
projector (plays too) must have joined its group and taken its partitions. Tansu forms a
group in 5-30 s, so this is the one slow group test.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log.kafka import KafkaLog
from projectors import registry
from projectors.moderation import operator_label
from testkit.brokers import Tansu
from testkit.records import track_record
from tests.appview_process import AppviewProcess, wait_until

pytestmark = pytest.mark.kafka

DID = "did:plc:groupgroupgroupgroupgrou"
OPERATOR = "did:plc:operatoroperatoroperator"
PARTITIONS = 2


async def test_project_group_runs_every_registered_projector(tansu: Tansu, pg_url: str) -> None:
    prefix = f"group{uuid.uuid4().hex[:8]}."
    worker = AppviewProcess(
        {
            "DATABASE_URL": pg_url,
            "KAFKA_BOOTSTRAP": tansu.bootstrap,
            "PLYR_TOPIC_PREFIX": prefix,
            "PLYR_PARTITIONS": str(PARTITIONS),
            "PLYR_OPERATOR_DID": OPERATOR,
        },
        command="project",
        args=["--group"],
    )
    log = KafkaLog(tansu.bootstrap, partitions=PARTITIONS)
    await log.start()
    pool = await open_pool(pg_url)
    try:
        track = Envelope(
            kind="record.created",
            did=DID,
            source="test",
            time="2026-11-20T10:00:00Z",
            rev="3l1",
            collection="fm.plyr.track",
            rkey="t1",
            cid="bafy3l1",
            record=track_record("Grouped Song"),
        )
        uri = f"at://{DID}/fm.plyr.track/t1"
        label = operator_label(OPERATOR, uri, negate=False, reason="test")
        await log.append(f"{prefix}repo", [(track.key, track.to_bytes())])
        await log.append(f"{prefix}labels", [(label.key, label.to_bytes())])

        async def rows(sql: str, *args: Any) -> list[tuple[Any, ...]]:
            async with pool.connection() as conn:
                cur = await conn.execute(sql, args)
                return await cur.fetchall()

        async def projected() -> bool:
            if worker.proc.poll() is not None:
                raise AssertionError(f"project --group exited:\n{worker.output[-3000:]}")
            catalog = await rows("SELECT title FROM track WHERE uri = %s", uri)
            search = await rows(
                "SELECT title FROM search_doc WHERE doc_type = 'track' AND uri = %s", uri
            )
            moderation = await rows(
                "SELECT val FROM moderation_label WHERE src = %s AND uri = %s", OPERATOR, uri
            )
            return bool(catalog and search and moderation)

        await wait_until(projected, timeout=120, what="catalog, search and moderation rows")
        joined = {
            name
            for (name,) in await rows(
                "SELECT DISTINCT projector FROM projector_offset WHERE topic LIKE %s",
                prefix + "%",
            )
        }
        assert joined == set(registry.names())
    finally:
        await pool.close()
        await log.close()
        code = worker.stop()
        assert code == 0, worker.output[-3000:]
