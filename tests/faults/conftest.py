"""The fault suite's size (short in ``make test``, full with ``PLYR_FAULTS=full``), its one
stack (PDS + the suite's PostgreSQL + the product's processes) and the results table printed
at the end of the run."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e.atp_client import Account, AtpClient
from tests.faults.harness import Row, Stack, Workload, table

FULL = os.environ.get("PLYR_FAULTS", "short").lower() == "full"
"""``make faults`` sets ``PLYR_FAULTS=full``: more runs per scenario, longer streams."""

RUNS = 5 if FULL else 2
"""Faults injected per scenario, each at a random point of the stream."""

_ROWS: list[Row] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _ROWS:
        terminalreporter.write_sep("=", "fault suite")
        terminalreporter.write_line(table(_ROWS))
        for row in _ROWS:
            for failure in row.failures:
                terminalreporter.write_line(f"{row.scenario}: {failure}")


@pytest.fixture(scope="session")
def results() -> list[Row]:
    return _ROWS


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack.start(Path(tmp_path_factory.mktemp("faults")))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
async def atp(stack: Stack) -> AsyncIterator[AtpClient]:
    async with AtpClient.for_pds(stack.pds) as client:
        yield client


@pytest.fixture(scope="module")
async def workload(stack: Stack, atp: AtpClient) -> Workload:
    accounts: list[Account] = [await atp.create_account(f"f{i}x{os.getpid()}") for i in range(3)]
    return Workload(stack, atp, accounts, seed=int.from_bytes(os.urandom(4), "big"))
