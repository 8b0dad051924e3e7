"""Log formats, request ids, the start-up banner and the status summaries (no I/O)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from api.middleware import REQUEST_ID, RequestIdFilter, request_id_of
from api.status import (
    PartitionStatus,
    ProjectorStatus,
    SampleRing,
    Status,
    p95_by_route,
    status_lines,
)
from kernel.config import Settings
from plyr_appview.runtime import (
    JsonFormatter,
    TextFormatter,
    render_banner,
    startup_banner,
    wants_json,
)


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("projectors.runner", logging.WARNING, "", 0, msg, (), None)
    record.__dict__.update(extra)
    RequestIdFilter().filter(record)
    return record


def test_json_lines_carry_the_request_id_of_the_request_being_served():
    token = REQUEST_ID.set("abc123")
    try:
        line = JsonFormatter().format(_record("request", status=200))
    finally:
        REQUEST_ID.reset(token)
    data = json.loads(line)
    assert data["request_id"] == "abc123"
    assert data["msg"] == "request" and data["status"] == 200 and data["level"] == "warning"
    assert "request_id" not in json.loads(JsonFormatter().format(_record("outside")))


def test_text_lines_are_readable():
    line = TextFormatter().format(_record("dead letter", key="did:plc:x", offset=7))
    assert "warning dead letter  key=did:plc:x  offset=7" in line
    assert not line.lstrip().startswith("{")


def test_json_unless_a_terminal_or_asked():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_json(io.StringIO(), env={})
    assert not wants_json(Tty(), env={})
    assert wants_json(Tty(), env={"PLYR_LOG_FORMAT": "json"})
    assert not wants_json(io.StringIO(), env={"PLYR_LOG_FORMAT": "text"})


def test_request_id_is_taken_when_plain_and_made_otherwise():
    assert request_id_of({"headers": [(b"x-request-id", b"edge-42")]}) == "edge-42"
    made = request_id_of({"headers": [(b"x-request-id", b"bad id\n")]})
    assert made != "bad id\n" and len(made) == 32
    assert request_id_of({"headers": []}) != request_id_of({"headers": []})


def test_banner_says_where_what_and_how_to_stop_without_passwords():
    settings = Settings(data_dir=Path("somewhere"), api_port=8123)
    info = startup_banner(settings, ["ingest", "project", "serve"])
    text = render_banner(info)
    assert "http://127.0.0.1:8123" in info["api"]
    assert "bsky.network" in info["follows"]
    assert "embedded PostgreSQL" in info["data"] and "somewhere" in info["data"]
    assert "Ctrl-C" in info["stop"]
    assert len(text.splitlines()) <= 7
    hidden = startup_banner(Settings(database_url="postgresql://u:secret@db:5432/plyr"), ["serve"])
    assert "secret" not in render_banner(hidden) and "db/plyr" in hidden["data"]
    assert "follows" not in hidden


def _status(lag_at: int) -> Status:
    parts = tuple(
        PartitionStatus("plyr.repo", p, 10, 10 + (5 if p == lag_at else 0)) for p in range(8)
    )
    return Status(
        0.0, (), (ProjectorStatus("catalog", parts),), {}, {"track": 3}, {"plyr.repo": 85}
    )


def test_status_lines_one_per_projector_and_only_lagging_partitions():
    lines = status_lines(_status(lag_at=3))
    assert "  catalog: 5 events behind (8 partitions)" in lines
    assert [line for line in lines if line.startswith("    ")] == ["    plyr.repo/3: 10 of 15"]
    caught_up = status_lines(_status(lag_at=-1))
    assert "  catalog: caught up (8 partitions)" in caught_up
    assert not [line for line in caught_up if line.startswith("    ")]


def test_p95_over_the_window_between_two_readings():
    before = {"/tracks/": [(0.01, 90.0), (0.1, 100.0), (float("inf"), 100.0)]}
    after = {"/tracks/": [(0.01, 90.0), (0.1, 150.0), (float("inf"), 200.0)]}
    # In the window: 0 under 10 ms, 50 under 100 ms, 100 in all: past the last bucket,
    # reported as its bound (JSON has no infinity).
    assert p95_by_route(before, after) == {"/tracks/": 0.1}
    assert p95_by_route({}, before) == {"/tracks/": 0.1}


def test_sample_ring_rates_and_bound():
    ring = SampleRing(size=2)
    for i in range(4):
        status = Status(float(i * 10), (), (), {}, {}, {"plyr.repo": i * 100})
        ring.add(status, {})
    assert len(ring.samples) == 2
    assert [s.events_per_s for s in ring.samples] == [10.0, 10.0]
