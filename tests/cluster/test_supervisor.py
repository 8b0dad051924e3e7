"""The cluster supervisor's own rules: which roles, in which order they stop, and that a
child ignoring SIGTERM is killed once the bound has passed (real processes, no cluster)."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from plyr_appview import cluster
from plyr_appview.cluster import (
    Child,
    ClusterError,
    ClusterOptions,
    ProcessSpec,
    Supervisor,
    app_roles,
    banner,
    stop_order,
)


def test_roles_are_one_ingest_the_workers_and_the_apis_on_consecutive_ports() -> None:
    roles = app_roles(ClusterOptions(api_port=9000, ingest_metrics_port=9100), plays_worker=False)
    assert [r.name for r in roles] == ["ingest", "project-1", "project-2", "api-1", "api-2"]
    assert [r.argv[3:] for r in roles] == [
        ("ingest",),
        ("project", "--group"),
        ("project", "--group"),
        ("serve",),
        ("serve",),
    ]
    assert [r.env.get("PLYR_API_BIND") for r in roles if r.tier == "api"] == [
        "127.0.0.1:9000",
        "127.0.0.1:9001",
    ]
    assert roles[0].env == {"PLYR_INGEST_METRICS_BIND": "127.0.0.1:9100"}
    with_plays = app_roles(ClusterOptions(projectors=3, apis=1), plays_worker=True)
    assert [r.name for r in with_plays] == [
        "ingest",
        "project-1",
        "project-2",
        "project-3",
        "plays-worker",
        "api-1",
    ]


def _spec(name: str, tier: str, code: str) -> ProcessSpec:
    return ProcessSpec(name, tier, (sys.executable, "-c", code))


def test_stop_goes_api_first_storage_last_and_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    supervisor = Supervisor(ClusterOptions(data_dir=tmp_path, stop_timeout=1.0), env={})
    marker = tmp_path / "order"
    # Each child appends its name to `marker` when SIGTERM reaches it, then exits; the
    # stubborn one ignores SIGTERM.
    polite = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        f"    open({str(marker)!r}, 'a').write(sys.argv[1] + '\\n'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    stubborn += "print('up', flush=True)\ntime.sleep(60)\n"
    children: list[Child] = []
    for name, tier in [("s3", "s3"), ("broker", "broker"), ("project-1", "project")]:
        spec = _spec(name, tier, polite)
        children.append(supervisor.spawn(ProcessSpec(name, tier, (*spec.argv, name)), env={}))
    children.append(supervisor.spawn(_spec("api-1", "api", stubborn), env={}))
    for child in children:
        deadline = time.monotonic() + 20
        while "up" not in child.log_path.read_text():
            assert time.monotonic() < deadline, child.spec.name
            time.sleep(0.05)

    assert [[c.spec.name for c in tier] for tier in stop_order(children)] == [
        ["api-1"],
        ["project-1"],
        ["broker"],
        ["s3"],
    ]
    started = time.monotonic()
    supervisor.stop()
    took = time.monotonic() - started
    assert all(not c.running for c in children)
    assert marker.read_text().split() == ["project-1", "broker", "s3"]
    api = children[-1]
    assert api.process.returncode == -9  # SIGKILL after the bound
    assert 1.0 <= took < 5.0


def test_a_child_that_exits_is_reported_once(tmp_path: Path) -> None:
    supervisor = Supervisor(ClusterOptions(data_dir=tmp_path), env={})
    child = supervisor.spawn(_spec("project-1", "project", "raise SystemExit(3)"), env={})
    child.process.wait(timeout=20)
    assert [c.spec.name for c in supervisor.exited()] == ["project-1"]
    assert supervisor.exited() == []


def test_banner_says_where_everything_is_and_ends_with_the_json() -> None:
    info: dict[str, object] = {
        "database": "embedded, data in d/postgres",
        "partitions": 8,
        "plays_worker": False,
        "logs": "d/logs",
        "processes": {"api-1": {"pid": 12, "url": "http://127.0.0.1:8000", "log": "x"}},
    }
    text = banner(info)
    assert "api-1" in text and "pid 12" in text and "http://127.0.0.1:8000" in text
    assert "http://127.0.0.1:8000/status" in text
    assert "plays are not counted" in text  # says the faust worker is not there
    assert text.splitlines()[-1].startswith("CLUSTER {")


def test_picked_ports_never_take_an_api_port(monkeypatch: pytest.MonkeyPatch) -> None:
    offered = iter([9001, 9000, 9001, 7000, 7000, 7001])
    monkeypatch.setattr(cluster, "free_port", lambda: next(offered))
    supervisor = Supervisor(ClusterOptions(api_port=9000, apis=2), env={})
    assert supervisor.port() == 7000  # 9001 and 9000 are the APIs'
    assert supervisor.port() == 7001  # 7000 is taken now
    assert supervisor.port(8123) == 8123


def test_an_api_port_in_use_stops_the_start_before_anything_runs(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        supervisor = Supervisor(ClusterOptions(data_dir=tmp_path, api_port=port - 1), env={})
        with pytest.raises(ClusterError, match=r"port \d+ is in use"):
            supervisor.start()
    assert supervisor.children == []
