"""`plyr-appview run` on the embedded default: embedded PostgreSQL, PostgreSQL log, API."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.appview_process import AppviewProcess, free_port


def test_run_serves_health_and_tracks_with_no_setup(tmp_path: Path):
    dead_port = free_port()  # nothing listens: ingest must keep retrying, not crash
    app = AppviewProcess(
        {
            "PLYR_DATA_DIR": str(tmp_path / "data"),
            "PLYR_FIREHOSE_URL": f"ws://127.0.0.1:{dead_port}/xrpc/com.atproto.sync.subscribeRepos",
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
