"""`plyr-appview run` on the embedded default: embedded PostgreSQL, PostgreSQL log, API."""

from __future__ import annotations

from pathlib import Path

import httpx

from plyr_appview.ports import free_port
from tests.appview_process import AppviewProcess


def test_run_serves_health_and_tracks_with_no_setup(tmp_path: Path):
    dead_port = free_port()  # nothing listens: ingest must keep retrying, not crash
    app = AppviewProcess(
        {
            "PLYR_DATA_DIR": str(tmp_path / "data"),
            "PLYR_FIREHOSE_URL": f"ws://127.0.0.1:{dead_port}/xrpc/com.atproto.sync.subscribeRepos",
            # The API inside the run process (the worker processes have their own test).
            "PLYR_API_WORKERS": "1",
        }
    )
    try:
        app.wait_healthy()
        tracks = httpx.get(f"{app.base_url}/tracks/", timeout=5).json()
        assert tracks == {"tracks": [], "next_cursor": None, "has_more": False}
        assert (tmp_path / "data" / "postgres").is_dir()
        app.wait_for_output("firehose disconnected")
    finally:
        code = app.stop()
    assert code == 0, app.output[-3000:]


def test_bad_configuration_is_a_clear_error(tmp_path: Path):
    app = AppviewProcess({"PLYR_DATA_DIR": str(tmp_path), "PLYR_PARTITIONS": "lots"})
    code = app.stop(timeout=30) if app.proc.wait(timeout=30) is None else app.proc.returncode
    assert code == 2
    assert "PLYR_PARTITIONS: expected an integer" in app.output


def test_serve_with_worker_processes_answers_from_each_and_stops_them(tmp_path: Path):
    from testkit.brokers import fresh_database

    with fresh_database() as url:
        app = AppviewProcess(
            {"PLYR_DATA_DIR": str(tmp_path), "DATABASE_URL": url, "PLYR_API_WORKERS": "2"},
            command="serve",
        )
        try:
            app.wait_healthy()
            workers: set[str] = set()
            for _ in range(200):  # fresh connections land on either worker
                metrics = httpx.get(f"{app.base_url}/metrics", timeout=5).text
                workers |= {
                    line.split('"')[1]
                    for line in metrics.splitlines()
                    if line.startswith("plyr_api_cache_entries{")
                }
                if len(workers) == 2:
                    break
            assert len(workers) == 2, workers
            assert httpx.get(f"{app.base_url}/tracks/", timeout=5).json()["tracks"] == []
        finally:
            code = app.stop()
        assert code == 0, app.output[-3000:]
        for pid in workers:  # the workers went with their supervisor
            assert not Path(f"/proc/{pid}").exists(), pid
