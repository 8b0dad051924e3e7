"""A minimal HTTP/1.1 keep-alive client for the benchmarks: requests back to back on raw
asyncio connections, so the client costs a few microseconds a request and the server's
figures are the server's (an HTTP library costs more than the API answering)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["Connection", "Tally"]


class Tally:
    """Latencies (ms), outcomes, and the send times (``perf_counter`` s) of the ``200``
    answers of one run."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.statuses.items() if code != 200) + sum(
            self.errors.values()
        )


class Connection(asyncio.Protocol):
    """One keep-alive connection running requests back to back until ``next_path`` is None.

    ``method`` ``b"GET"`` or a bodiless ``b"POST"``; ``keep_body`` keeps the last answer's
    body (de-chunking is the caller's)."""

    def __init__(
        self,
        host: bytes,
        next_path: Callable[[], str | None],
        tally: Tally,
        *,
        method: bytes = b"GET",
        keep_body: bool = False,
    ) -> None:
        self.request = b"%s %%s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
            method,
            host,
            b"Content-Length: 0\r\n" if method == b"POST" else b"",
        )
        self.keep_body = keep_body
        self.body = b""
        self.host = host
        self.next_path = next_path
        self.tally = tally
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.in_flight = False
        self.started = 0.0
        self.head_end = -1
        self.length = -1
        self.chunked = False
        self.status = 0
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self._send_next()

    def _send_next(self) -> None:
        assert self.transport is not None
        path = self.next_path()
        if path is None:
            self.transport.close()
            return
        self.buf.clear()
        self.head_end = -1
        self.in_flight = True
        self.started = time.perf_counter()
        self.transport.write(self.request % path.encode())

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.head_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head_end = end + 4
            head = bytes(buf[:end]).lower()
            self.status = int(head[9:12])
            self.chunked = b"\r\ntransfer-encoding: chunked" in head
            self.close_after = b"\r\nconnection: close" in head
            self.length = -1
            if not self.chunked:
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    self._fail("no content-length")
                    return
                line_end = head.find(b"\r\n", at + 2)
                self.length = int(head[at + 17 : line_end if line_end > 0 else len(head)])
        if self.chunked:
            if not self._chunked_complete():
                return
        elif len(buf) < self.head_end + self.length:
            return
        self.in_flight = False
        self.tally.latencies.append((time.perf_counter() - self.started) * 1000)
        self.tally.statuses[self.status] += 1
        if self.status == 200:
            self.tally.sent.append(self.started)
        if self.keep_body:
            self.body = bytes(buf[self.head_end :])
        if self.close_after:
            assert self.transport is not None
            self.transport.close()
            return
        self._send_next()

    def _chunked_complete(self) -> bool:
        buf, pos = self.buf, self.head_end
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return False
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            if size == 0:  # last chunk, then optional trailers and an empty line
                return buf.find(b"\r\n\r\n", line_end) >= 0
            pos = line_end + 2 + size + 2
            if pos > len(buf):
                return False

    def _fail(self, why: str) -> None:
        self.in_flight = False
        self.tally.errors[why] += 1
        self.tally.latencies.append((time.perf_counter() - self.started) * 1000)
        assert self.transport is not None
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight:  # the request in flight got no (complete) answer
            self.in_flight = False
            self.tally.errors[type(exc).__name__ if exc else "closed mid-response"] += 1
            self.tally.latencies.append((time.perf_counter() - self.started) * 1000)
        if not self.closed.done():
            self.closed.set_result(True)
