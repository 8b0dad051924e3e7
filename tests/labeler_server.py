"""A labeler for tests (no real labeler, e.g. Ozone, can run here).

Serves ``/xrpc/com.atproto.label.subscribeLabels?cursor=`` on 127.0.0.1 (free port), in
the standard CBOR ``#labels`` framing or plyr's JSON text framing, and, standing in for
the PLC directory, the labeler's DID document at ``/<did>`` (``#atproto_label`` key and
``#atproto_labeler`` service), so ``PLYR_PLC_URL`` can point here.

    async with LabelerServer(did, key, json_frames=False) as labeler:
        labeler.emit(uri="at://…", val="porn")              # signed with the labeler key
        labeler.emit(uri=…, val=…, sign_with=other_key)      # a forged label
        labeler.emit_raw(b"garbage")
"""

from __future__ import annotations

import asyncio
import base64
import http
import json
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from testkit.frames import labels_frame
from testkit.identity import SigningKey, service_did_document, signed_label

_PATH = "/xrpc/com.atproto.label.subscribeLabels"


class LabelerServer:
    def __init__(self, did: str, key: SigningKey, *, json_frames: bool = False) -> None:
        self.did = did
        self.key = key
        self.json_frames = json_frames
        self.frames: list[tuple[int, str | bytes]] = []
        self.requests: list[str] = []
        self._subscribers: set[asyncio.Queue[tuple[int, str | bytes]]] = set()
        self._server: Server | None = None
        self._seq = 0
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._http)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def did_document(self) -> dict[str, Any]:
        return service_did_document(self.did, label_key=self.key, labeler_url=self.base_url)

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path.startswith(_PATH):
            return None
        if path == f"/{self.did}":
            body = json.dumps(self.did_document()).encode()
            headers = Headers([("Content-Type", "application/json")])
            return Response(http.HTTPStatus.OK, "OK", headers, body)
        return conn.respond(http.HTTPStatus.NOT_FOUND, "not found\n")

    def emit(self, *, sign_with: SigningKey | None = None, **fields: Any) -> int:
        """Sign and send one label (one per frame, as plyr does); returns its seq."""
        label = signed_label(
            sign_with or self.key,
            src=fields.pop("src", self.did),
            cts=fields.pop("cts", "2026-11-01T12:00:00.000Z"),
            **fields,
        )
        self._seq += 1
        frame: str | bytes
        if self.json_frames:
            label["sig"] = {"$bytes": base64.b64encode(label["sig"]).decode()}
            frame = json.dumps({"seq": self._seq, "labels": [label]})
        else:
            frame = labels_frame(self._seq, [label])
        self._send(self._seq, frame)
        return self._seq

    def emit_raw(self, frame: str | bytes) -> None:
        """Send a frame as is (garbage tests); it is not replayed."""
        for queue in self._subscribers:
            queue.put_nowait((-1, frame))

    def _send(self, seq: int, frame: str | bytes) -> None:
        self.frames.append((seq, frame))
        for queue in self._subscribers:
            queue.put_nowait((seq, frame))

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.requests.append(ws.request.path)
        params = parse_qs(urlsplit(ws.request.path).query)
        cursor = int(params.get("cursor", ["0"])[0])
        queue: asyncio.Queue[tuple[int, str | bytes]] = asyncio.Queue()
        for seq, frame in self.frames:
            if seq > cursor:
                queue.put_nowait((seq, frame))
        self._subscribers.add(queue)
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            while True:
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return
                _, frame = get.result()
                await ws.send(frame)
        except ConnectionClosed:  # the client went away
            return
        finally:
            closed.cancel()
            self._subscribers.discard(queue)
