"""A Jetstream-speaking websocket server for tests (no real Jetstream can run here).

Serves ``/subscribe`` like Jetstream v1: JSON text messages, ``wantedCollections``
(exact or ``prefix.*``; identity and account events always pass), ``cursor`` (replay
stored events with ``time_us >= cursor``, then live). Listens on 127.0.0.1, a free port.

    async with JetstreamServer() as js:
        js.add(event_dict)     # stored and sent to live subscribers
        js.add_raw("garbage")  # sent as is (not filtered, not stored for replay)
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class JetstreamServer:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/subscribe"

    async def __aenter__(self) -> Self:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def disconnect_all(self) -> None:
        """Drop every subscriber (they should reconnect with their cursor)."""
        assert self._server is not None
        for conn in list(self._server.connections):
            await conn.close()

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for queue in self._subscribers:
            queue.put_nowait(json.dumps(event))

    def add_raw(self, text: str) -> None:
        for queue in self._subscribers:
            queue.put_nowait(text)

    @staticmethod
    def _wanted(event: dict[str, Any], collections: list[str]) -> bool:
        if event.get("kind") != "commit" or not collections:
            return True
        collection = str(event.get("commit", {}).get("collection", ""))
        return any(
            collection.startswith(c[:-1]) if c.endswith("*") else collection == c
            for c in collections
        )

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.requests.append(ws.request.path)
        params = parse_qs(urlsplit(ws.request.path).query)
        collections = params.get("wantedCollections", [])
        cursor = int(params["cursor"][0]) if "cursor" in params else None
        queue: asyncio.Queue[str] = asyncio.Queue()
        if cursor is not None:
            for event in self.events:
                if event["time_us"] >= cursor and self._wanted(event, collections):
                    queue.put_nowait(json.dumps(event))
        self._subscribers.add(queue)
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            while True:
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return
                text = get.result()
                try:
                    data = json.loads(text)
                except ValueError:
                    data = None
                if isinstance(data, dict) and not self._wanted(data, collections):
                    continue
                await ws.send(text)
        except ConnectionClosed:  # the client went away
            return
        finally:
            closed.cancel()
            self._subscribers.discard(queue)
