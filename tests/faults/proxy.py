"""A small TCP proxy in front of the PDS, to make it vanish, answer slowly or send garbage.

It runs its own event loop in a thread; :attr:`FaultyProxy.mode` may be switched at any time:

- ``pass``: bytes go through untouched;
- ``down``: every open connection is cut and new ones are closed at once (a PDS restart,
  as the appview sees it: the PLC directory stays up, which a real restart also keeps);
- ``slow``: every chunk from the PDS is held back ``delay`` seconds;
- ``garbage``: some chunks from the PDS get random bytes overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading

from plyr_appview.ports import free_port

MODES = ("pass", "down", "slow", "garbage")


class FaultyProxy:
    """Listens on ``127.0.0.1:port`` and forwards to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, seed: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.mode = "pass"
        self.delay = 0.5
        self.corrupted = 0
        self._rng = random.Random(seed)
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()

    def set_mode(self, mode: str) -> None:
        """Switch mode; ``down`` also cuts every connection open now."""
        assert mode in MODES, mode
        self.mode = mode
        if mode == "down":
            self._loop.call_soon_threadsafe(self._cut_all)

    def _cut_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "down":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer, downstream=False),
            self._pipe(up_reader, writer, downstream=True),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, downstream: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                if downstream and self.mode == "slow":
                    await asyncio.sleep(self.delay)
                if downstream and self.mode == "garbage" and self._rng.random() < 0.3:
                    chunk = self._corrupt(chunk)
                writer.write(chunk)
                await writer.drain()
        writer.transport.abort()

    def _corrupt(self, chunk: bytes) -> bytes:
        data = bytearray(chunk)
        for _ in range(max(1, len(data) // 200)):
            data[self._rng.randrange(len(data))] = self._rng.randrange(256)
        self.corrupted += 1
        return bytes(data)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._cut_all)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
