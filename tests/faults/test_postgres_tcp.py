"""The PostgreSQL restart scenario on a separately run server reached over TCP (the external
database of a deployment), where clients see their connections closed rather than a unix
socket vanish. Full suite only (``make faults``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.atp_client import AtpClient
from tests.faults.conftest import FULL
from tests.faults.harness import Row, Stack, TcpPostgres, Workload
from tests.faults.test_faults import restart_postgres, run_scenario

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not FULL, reason="full fault suite only (make faults)"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    reason = TcpPostgres.available()
    if reason is not None:
        pytest.skip(f"no TCP PostgreSQL server can be run here: {reason}")
    running = Stack.start(Path(tmp_path_factory.mktemp("faults-tcp")), tcp_postgres=True)
    try:
        yield running
    finally:
        running.stop()


async def test_restart_postgres_over_tcp(
    stack: Stack, atp: AtpClient, workload: Workload, results: list[Row]
) -> None:
    row = await run_scenario(
        "restart PostgreSQL (TCP server)", restart_postgres, stack, atp, workload, results
    )
    assert (row.lost, row.duplicated, row.extra, row.failures) == (0, 0, 0, [])
