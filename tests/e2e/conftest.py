"""End-to-end fixtures: one real local PDS + PLC for the whole e2e session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from testkit.brokers import fresh_database
from testkit.pds import LocalPds, start_pds
from tests.appview_process import AppviewProcess
from tests.e2e.atp_client import AtpClient


@pytest.fixture(scope="session")
def pds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPds]:
    server = start_pds(Path(tmp_path_factory.mktemp("pds")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def atp(pds: LocalPds) -> AsyncIterator[AtpClient]:
    async with AtpClient.for_pds(pds) as client:
        yield client


@pytest.fixture(params=["postgres", pytest.param("kafka", marks=pytest.mark.kafka)])
def appview(request: pytest.FixtureRequest, pds: LocalPds) -> Iterator[AppviewProcess]:
    """``python -m plyr_appview run`` following the local PDS, once per log (PostgreSQL,
    then Kafka on the session's Tansu), on a fresh database; stopped (exit 0) after."""
    with fresh_database() as url:
        env = {
            "DATABASE_URL": url,
            "PLYR_FIREHOSE_URL": pds.firehose_url,
            "PLYR_PLC_URL": pds.plc_url,
            "PLYR_TRUSTED_HOSTS": pds.trusted_hosts,
            "PLYR_HANDLE_HOSTS": pds.handle_hosts,
            "PLYR_PARTITIONS": "4",
        }
        if request.param == "kafka":
            broker = request.getfixturevalue("tansu")
            env["KAFKA_BOOTSTRAP"] = broker.bootstrap
            env["PLYR_TOPIC_PREFIX"] = f"e2e{uuid.uuid4().hex[:8]}."
        app = AppviewProcess(env)
        try:
            app.wait_healthy()
            app.wait_for_output("firehose connected")
            yield app
        finally:
            code = app.stop()
            assert code == 0, app.output[-3000:]
