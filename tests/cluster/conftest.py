"""Cluster fixtures: one real local PDS + PLC for the module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.pds import LocalPds, start_pds


@pytest.fixture(scope="module")
def pds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPds]:
    server = start_pds(Path(tmp_path_factory.mktemp("pds")))
    try:
        yield server
    finally:
        server.stop()
