"""Running ``plyr-appview`` as a real subprocess in tests, and waiting on its state."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import httpx

from plyr_appview.ports import free_port

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], *, timeout: float = 30, what: str = "state") -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


async def wait_until(
    check: Callable[[], Awaitable[T | None]], *, timeout: float = 30, what: str = "state"
) -> T:
    """Async :func:`wait_for`: await ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


class AppviewProcess:
    """``python -m plyr_appview <command> [args]`` with a clean environment plus ``env``."""

    def __init__(
        self, env: Mapping[str, str], command: str = "run", args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PLYR_", "DATABASE_URL", "KAFKA_"))
        }
        base.update({"PLYR_API_BIND": f"127.0.0.1:{self.port}", **env})
        self._lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plyr_appview", command, *args],
            env=base,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line.decode(errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self._lines)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"appview exited early:\n{self.output[-3000:]}")
            return text in self.output

        wait_for(seen, timeout=timeout, what=repr(text))

    def wait_healthy(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"appview exited early:\n{self.output[-3000:]}")
            try:
                return httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=timeout, what="/health")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode
