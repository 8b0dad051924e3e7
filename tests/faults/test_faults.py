"""Faults injected at random points of a steady stream of writes, deletes, account changes and
play reports; after each scenario nothing may be lost, doubled or invented.

Each scenario injects its fault :data:`~tests.faults.conftest.RUNS` times while the workload
runs, measuring recovery as the time from the fault until a track written right after it is
served by the API. Then :func:`~tests.faults.harness.check` compares the catalog with the PDS's
repos, every read model with a rebuild from the log, and the accepted plays with the log.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable

import pytest

from tests.e2e.atp_client import AtpClient
from tests.faults.conftest import FULL, RUNS
from tests.faults.harness import (
    COMMANDS,
    TRACK,
    Row,
    Stack,
    Workload,
    check,
    diagnose,
    running,
    track_record,
    visible,
)

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


def kill_and_restart(command: str) -> Callable[[Stack], None]:
    def fault(stack: Stack) -> None:
        stack.kill(command)
        time.sleep(random.uniform(0, 1.5))
        stack.launch(command)

    return fault


def kill_each_in_turn() -> Callable[[Stack], None]:
    turn = iter(range(1_000_000))

    def fault(stack: Stack) -> None:
        kill_and_restart(COMMANDS[next(turn) % len(COMMANDS)])(stack)

    return fault


def restart_postgres(stack: Stack) -> None:
    stack.pg.restart(down_seconds=random.uniform(0.5, 3))


def pds_mode(mode: str, low: float, high: float) -> Callable[[Stack], None]:
    def fault(stack: Stack) -> None:
        stack.proxy.set_mode(mode)
        time.sleep(random.uniform(low, high))
        stack.proxy.set_mode("pass")

    return fault


full_only = pytest.mark.skipif(not FULL, reason="full fault suite only (make faults)")


def revive(stack: Stack, row: Row) -> None:
    """A process that exited by itself is restarted (a service manager's job) and noted."""
    for command, proc in list(stack.procs.items()):
        if proc.proc.poll() is not None:
            lines = proc.output.splitlines()
            errors = [line for line in lines if "Error" in line or "Exception" in line]
            logger.warning("%s exited:\n%s", command, "\n".join(lines[-60:]))
            last = (errors or lines or ["?"])[-1][:300]
            row.failures.append(f"{command} exited with {proc.proc.returncode}: {last}")
            stack.launch(command)


async def run_scenario(
    name: str,
    fault: Callable[[Stack], None],
    stack: Stack,
    atp: AtpClient,
    workload: Workload,
    results: list[Row],
    runs: int = RUNS,
) -> Row:
    row = Row(name)
    results.append(row)
    before = workload.tally.events
    marker_owner = workload.accounts[0]
    async with running(workload):
        for _ in range(runs):
            await asyncio.sleep(random.uniform(1, 4) if FULL else random.uniform(0.5, 1.5))
            await asyncio.to_thread(fault, stack)
            started = time.monotonic()
            uri, _ = await atp.create_record(
                marker_owner, TRACK, track_record(f"marker {uuid.uuid4().hex}")
            )
            # Not in workload.tracks: the workload would delete it now and then, and a deleted
            # marker is rightly never served (the first cause of this check's flakiness).
            workload.born[uri] = started
            seconds = await visible(stack, uri, supervise=lambda: revive(stack, row))
            if seconds is None:
                row.failures.append(f"a write after the fault was not served within 120 s: {uri}")
                logger.warning("not served: %s", await asyncio.to_thread(diagnose, stack.url, uri))
                for command, proc in stack.procs.items():
                    tail = "\n".join(proc.output.splitlines()[-25:])
                    logger.warning("%s, last lines:\n%s", command, tail)
            else:
                row.recovery.append(time.monotonic() - started)
            row.runs += 1
    logger.info("faults done")
    verdict = await check(stack, atp, workload)
    row.events = workload.tally.events - before
    row.lost, row.duplicated, row.extra = verdict.lost, verdict.duplicated, verdict.extra
    row.failures += verdict.details
    if row.failures:  # what every process said, killed ones included, but for requests
        said = [*stack.outputs, *(f"--- {c} ---\n{p.output}" for c, p in stack.procs.items())]
        lines = [line for out in said for line in out.splitlines() if "api.access" not in line]
        logger.warning("process output:\n%s", "\n".join(lines[-400:]))
    return row


async def test_kill_9_each_process_in_turn(
    stack: Stack, atp: AtpClient, workload: Workload, results: list[Row]
) -> None:
    """The short form (``make test``): ingest, projector and API each killed once."""
    row = await run_scenario(
        "kill -9 each in turn", kill_each_in_turn(), stack, atp, workload, results, runs=3
    )
    assert (row.lost, row.duplicated, row.extra, row.failures) == (0, 0, 0, [])


@full_only
@pytest.mark.parametrize("command", COMMANDS)
async def test_kill_9(
    command: str, stack: Stack, atp: AtpClient, workload: Workload, results: list[Row]
) -> None:
    row = await run_scenario(
        f"kill -9 {command}", kill_and_restart(command), stack, atp, workload, results
    )
    assert (row.lost, row.duplicated, row.extra, row.failures) == (0, 0, 0, [])


@full_only
async def test_restart_postgres(
    stack: Stack, atp: AtpClient, workload: Workload, results: list[Row]
) -> None:
    row = await run_scenario("restart PostgreSQL", restart_postgres, stack, atp, workload, results)
    assert (row.lost, row.duplicated, row.extra, row.failures) == (0, 0, 0, [])


@full_only
@pytest.mark.parametrize(
    ("name", "mode", "low", "high"),
    [
        ("PDS restart (cut, resume)", "down", 1.0, 4.0),
        ("PDS slow (0.5 s a chunk)", "slow", 2.0, 5.0),
        ("PDS garbage bytes", "garbage", 1.0, 3.0),
    ],
)
async def test_pds_faults(
    name: str,
    mode: str,
    low: float,
    high: float,
    stack: Stack,
    atp: AtpClient,
    workload: Workload,
    results: list[Row],
) -> None:
    row = await run_scenario(name, pds_mode(mode, low, high), stack, atp, workload, results)
    assert (row.lost, row.duplicated, row.extra, row.failures) == (0, 0, 0, [])
