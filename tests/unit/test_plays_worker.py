"""plyr_appview/plays_worker.py: how the faust play qualifier is started."""

from __future__ import annotations

import asyncio
import os

import pytest

from kernel.config import Settings
from plyr_appview.plays_worker import exec_worker, run_plays_worker, worker_argv, worker_env


def test_the_worker_runs_the_stream_module_with_our_packages_importable():
    argv = worker_argv()
    assert argv[1:] == ["-m", "projectors.plays_stream", "worker"]
    env = worker_env({"PYTHONPATH": "/elsewhere", "KAFKA_BOOTSTRAP": "k:9092"})
    paths = env["PYTHONPATH"].split(os.pathsep)
    assert os.path.isdir(os.path.join(paths[0], "projectors")) and paths[1:] == ["/elsewhere"]
    assert env["KAFKA_BOOTSTRAP"] == "k:9092"


def test_the_worker_is_refused_in_the_embedded_mode():
    with pytest.raises(SystemExit, match="needs the Kafka log"):
        exec_worker(Settings())
    with pytest.raises(SystemExit, match="needs the Kafka log"):
        asyncio.run(run_plays_worker(Settings(), asyncio.Event()))


def test_the_cli_refuses_plays_worker_without_kafka(monkeypatch):
    from plyr_appview.cli import main

    for name in ("KAFKA_BOOTSTRAP", "PLYR_LOG_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit, match="needs the Kafka log"):
        main(["plays-worker"])
