"""Start and stop a real local ATProto network (in-memory PLC + one PDS, no AppView).

The network is `@atproto/dev-env` (pinned in ``tests/e2e/atp/package-lock.json``), run by
``tests/e2e/atp/start_pds.js`` under the system Node. Both servers listen on 127.0.0.1 only,
on two free ports picked here. Install the Node side once with ``npm ci --prefix tests/e2e/atp``
(``make test`` does it).

    with running_pds(tmp_path / "atp") as pds:
        ...  # pds.pds_url, pds.firehose_url, pds.plc_url, pds.admin_password, ...
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from plyr_appview.ports import free_port

ATP_DIR = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "atp"
START_SCRIPT = ATP_DIR / "start_pds.js"
INSTALL_HINT = "run `make test`, or install it directly with `npm ci --prefix tests/e2e/atp`"

DEFAULT_START_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 10.0
_READY_PREFIX = "READY "
_LOG_TAIL_CHARS = 4000


class PdsStartError(RuntimeError):
    """The local PDS could not be started (missing install, crash, or timeout)."""


@dataclass
class LocalPds:
    """A running local PLC + PDS. Call :meth:`stop` (or use :func:`running_pds`)."""

    plc_url: str
    pds_url: str
    firehose_url: str
    pds_did: str
    admin_password: str
    handle_domain: str
    handle_domains: tuple[str, ...]
    public_url: str
    pds_version: str | None
    data_dir: Path
    stdout_log: Path
    stderr_log: Path
    pid: int
    startup_seconds: float
    _process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def trusted_hosts(self) -> str:
        """``PLYR_TRUSTED_HOSTS`` for an appview using this PLC and PDS (both on loopback)."""
        urls = (self.plc_url, self.pds_url, self.public_url, self.firehose_url)
        return ",".join(sorted({h for u in urls if (h := urlsplit(u).hostname)}))

    @property
    def handle_hosts(self) -> str:
        """``PLYR_HANDLE_HOSTS``: the PDS answers ``/.well-known/atproto-did`` for handles
        under its own domains when asked with the handle as ``Host``."""
        return ",".join(f"{domain}={self.pds_url}" for domain in self.handle_domains)

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> int:
        """SIGTERM the node process (by PID), wait, SIGKILL its process group as a fallback.

        Returns the exit code. Safe to call more than once.
        """
        return _terminate(self._process, timeout)

    def email_token(self, did: str, purpose: str = "delete_account") -> str | None:
        """The token the PDS would have emailed to ``did`` (it has no real mailer).

        ``purpose``: ``delete_account``, ``confirm_email``, ``update_email``,
        ``reset_password`` or ``plc_operation``. None if no token was requested.
        """
        db = self.data_dir / "pds" / "account.sqlite"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            row = conn.execute(
                "SELECT token FROM email_token WHERE did = ? AND purpose = ?", (did, purpose)
            ).fetchone()
        return None if row is None else str(row[0])

    def __enter__(self) -> LocalPds:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _two_distinct_ports() -> tuple[int, int]:
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def _tail(path: Path, limit: int = _LOG_TAIL_CHARS) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text if len(text) <= limit else "…" + text[-limit:]


def _check_installation(node: str | None) -> str:
    if node is None:
        raise PdsStartError(
            f"`node` is not on PATH; the local PDS needs Node 20+, then {INSTALL_HINT}."
        )
    if not START_SCRIPT.is_file():
        raise PdsStartError(f"missing {START_SCRIPT}")
    if not (ATP_DIR / "node_modules" / "@atproto" / "dev-env" / "package.json").is_file():
        missing = ATP_DIR / "node_modules"
        raise PdsStartError(f"@atproto/dev-env is not installed in {missing}; {INSTALL_HINT}.")
    return node


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> int:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # The child leads its own process group (start_new_session), so this reaches
            # only what it started.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
    if process.stdin is not None and not process.stdin.closed:
        with contextlib.suppress(OSError):
            process.stdin.close()
    return process.returncode


def _parse_ready(stdout_log: Path) -> dict[str, Any] | None:
    try:
        text = stdout_log.read_text(errors="replace")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith(_READY_PREFIX):
            info: dict[str, Any] = json.loads(line[len(_READY_PREFIX) :])
            return info
    return None


class _PortTaken(PdsStartError):
    """A picked port was taken by someone else before node bound it; worth a retry."""


def _launch(
    node: str, data_dir: Path, admin_password: str, timeout: float
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    pds_data = data_dir / "pds"
    stdout_log = data_dir / "node.stdout.log"
    stderr_log = data_dir / "node.stderr.log"
    plc_port, pds_port = _two_distinct_ports()
    env = {
        **os.environ,
        "PLC_PORT": str(plc_port),
        "PDS_PORT": str(pds_port),
        "ATP_DATA": str(pds_data),
        "ATP_ADMIN_PASSWORD": admin_password,
        "ATP_EXIT_ON_STDIN_EOF": "1",
    }
    with stdout_log.open("wb") as out, stderr_log.open("wb") as err:
        process = subprocess.Popen(
            [node, str(START_SCRIPT)],
            cwd=ATP_DIR,
            env=env,
            # Kept open for the child's lifetime: if this Python process dies, the pipe closes
            # and start_pds.js shuts itself down instead of lingering.
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    try:
        while True:
            info = _parse_ready(stdout_log)
            if info is not None:
                return process, info
            if process.poll() is not None:
                stderr = _tail(stderr_log)
                error = _PortTaken if "EADDRINUSE" in stderr else PdsStartError
                raise error(
                    f"local PDS exited with code {process.returncode} before it was ready.\n"
                    f"--- stderr ({stderr_log}) ---\n{stderr}\n"
                    f"--- stdout ---\n{_tail(stdout_log)}"
                )
            if time.monotonic() > deadline:
                raise PdsStartError(
                    f"local PDS did not print READY within {timeout:.0f}s.\n"
                    f"--- stderr ({stderr_log}) ---\n{_tail(stderr_log)}\n"
                    f"--- stdout ---\n{_tail(stdout_log)}"
                )
            time.sleep(0.05)
    except BaseException:
        _terminate(process, DEFAULT_STOP_TIMEOUT)
        raise


def start_pds(
    data_dir: Path,
    *,
    timeout: float = DEFAULT_START_TIMEOUT,
    admin_password: str = "admin-pass",
) -> LocalPds:
    """Launch PLC + PDS on two free loopback ports, storing PDS data under ``data_dir``.

    ``data_dir`` must be new or empty: the PLC directory is in memory, so PDS data from an
    earlier run would refer to DIDs the new PLC does not know. Node's stdout and stderr are
    written to ``data_dir/node.stdout.log`` and ``data_dir/node.stderr.log``.

    This blocks for a few seconds; from async code call it via ``asyncio.to_thread``.

    Raises :class:`PdsStartError` (with the captured stderr) if the network does not come up
    within ``timeout`` seconds.
    """
    node = _check_installation(shutil.which("node"))
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()):
        raise PdsStartError(f"PDS data dir {data_dir} is not empty; use a fresh directory")
    started = time.monotonic()
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            process, info = _launch(node, data_dir, admin_password, timeout)
            break
        except _PortTaken:
            if attempt == attempts:
                raise
            shutil.rmtree(data_dir / "pds", ignore_errors=True)
    domains = tuple(str(d) for d in info.get("handleDomains") or ())
    if not domains:
        _terminate(process, DEFAULT_STOP_TIMEOUT)
        raise PdsStartError(f"local PDS reported no handle domains: {info}")
    return LocalPds(
        plc_url=str(info["plc"]),
        pds_url=str(info["pds"]),
        firehose_url=str(info["firehose"]),
        pds_did=str(info["pdsDid"]),
        admin_password=str(info["adminPassword"]),
        handle_domain=domains[0],
        handle_domains=domains,
        public_url=str(info.get("pdsPublicUrl") or info["pds"]),
        pds_version=str(info["pdsVersion"]) if info.get("pdsVersion") else None,
        data_dir=data_dir,
        stdout_log=data_dir / "node.stdout.log",
        stderr_log=data_dir / "node.stderr.log",
        pid=process.pid,
        startup_seconds=time.monotonic() - started,
        _process=process,
    )


@contextlib.contextmanager
def running_pds(data_dir: Path, *, timeout: float = DEFAULT_START_TIMEOUT) -> Iterator[LocalPds]:
    """Context manager: start the local network, yield it, always stop it (blocking calls)."""
    pds = start_pds(data_dir, timeout=timeout)
    try:
        yield pds
    finally:
        pds.stop()
