"""End-to-end fixtures: one real local PDS + PLC for the whole e2e session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e.atp_client import AtpClient
from tests.e2e.pds import LocalPds, start_pds


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
