"""Kafka mode's play qualifier: the faust worker of :mod:`projectors.plays_stream`.

In Kafka mode the plays projector only stores ``play.counted`` events (see
:mod:`projectors.registry`); they come from this worker. ``plyr-appview plays-worker``
replaces the process with one worker (:func:`exec_worker`); ``plyr-appview run`` starts one
as a child process, restarts it if it dies and stops it by its PID (:func:`run_plays_worker`).
Scaled deployments run several; faust spreads the plays topic's partitions over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import projectors
from kernel.config import Settings

__all__ = ["exec_worker", "run_plays_worker", "worker_argv", "worker_env"]

logger = logging.getLogger(__name__)

_RESTART_DELAY_S = 2.0
_STOP_TIMEOUT_S = 20.0


def worker_argv() -> list[str]:
    """The command line of one stream worker (this interpreter)."""
    return [sys.executable, "-m", "projectors.plays_stream", "worker"]


def worker_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker: ours (its settings), with our packages importable."""
    env = dict(os.environ if environ is None else environ)
    root = str(Path(projectors.__file__).resolve().parent.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
    return env


def _require_kafka(settings: Settings) -> None:
    if settings.log_backend != "kafka":
        raise SystemExit(
            "plays-worker needs the Kafka log (KAFKA_BOOTSTRAP); in the embedded mode the"
            " plays projector qualifies play reports itself"
        )


def exec_worker(settings: Settings) -> NoReturn:
    """``plyr-appview plays-worker``: become one faust stream worker (stopped by SIGTERM)."""
    _require_kafka(settings)
    argv = worker_argv()
    os.execve(argv[0], argv, worker_env())


async def run_plays_worker(settings: Settings, stop: asyncio.Event) -> None:
    """A stream worker as a child process until ``stop``; restarted if it exits."""
    _require_kafka(settings)
    while not stop.is_set():
        proc = subprocess.Popen(worker_argv(), env=worker_env())  # noqa: ASYNC220 (long-lived child)
        logger.info("plays worker started", extra={"pid": proc.pid})
        try:
            while proc.poll() is None and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            if proc.poll() is None:
                await asyncio.to_thread(_stop, proc)
        if not stop.is_set():
            logger.warning(
                "plays worker exited; starting another",
                extra={"pid": proc.pid, "code": proc.returncode},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _RESTART_DELAY_S)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker (faust stops its agents and commits), then SIGKILL if it hangs."""
    proc.terminate()
    try:
        proc.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
