"""A test relay: serves ``com.atproto.sync.subscribeRepos`` frames we choose, and DID docs.

The same loopback port answers the websocket at ``/xrpc/com.atproto.sync.subscribeRepos``
(frames in the order added; ``?cursor=N`` replays those after the last one with
``seq <= N``, as a relay does) and plain HTTP ``GET /<did>`` with the DID document (a PLC
directory stand-in), so verification runs against keys the test controls. It also answers
``GET /.well-known/atproto-did`` for the handle in the ``Host`` header from ``handles``
(handle -> DID), as a PDS does for its own handles. Frames can be anything: forged
commits, garbage, truncated or oversized bytes.

Run as a module it streams generated mixed traffic forever (for the memory benchmark):
``python -m testkit.firehose_server --stream`` prints ``READY <ws url> <plc url>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cbrrr
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from testkit.identity import tid
from testkit.repos import SignedRepo

PATH = "/xrpc/com.atproto.sync.subscribeRepos"


class FirehoseServer:
    """See the module docstring. ``async with FirehoseServer() as relay: ...``."""

    def __init__(self) -> None:
        self.frames: list[tuple[int | None, bytes]] = []
        self.docs: dict[str, dict[str, Any]] = {}
        self.handles: dict[str, str] = {}
        """What ``/.well-known/atproto-did`` answers, by ``Host``: handle -> DID."""
        self.connections = 0
        self.cursors: list[int | None] = []
        self._once: set[int] = set()
        self._sent_once: set[int] = set()
        self.endless: Callable[[int], bytes] | None = None
        """If set, every stream sends ``endless(seq)`` for seq = cursor + 1, + 2, …"""
        self._added = asyncio.Condition()
        self._server: Server | None = None
        self._port = 0

    async def __aenter__(self) -> FirehoseServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await serve(
            self._stream, "127.0.0.1", 0, process_request=self._http, max_size=None
        )
        self._port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}{PATH}"

    @property
    def plc_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def add(self, raw: bytes, seq: int | None = None, *, once: bool = False) -> None:
        """Append a frame (``seq`` lets a cursor resume after it) and wake the streams.

        ``once``: sent to the first stream that reaches it only (an error frame a relay
        sends once, not on every replay).
        """
        async with self._added:
            if once:
                self._once.add(len(self.frames))
            self.frames.append((seq, raw))
            self._added.notify_all()

    async def drop_connections(self) -> None:
        """Close every open stream (the consumer must reconnect with its cursor)."""
        if self._server is not None:
            for conn in list(self._server.connections):
                await conn.close()

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == PATH:
            return None
        if path == "/.well-known/atproto-did":
            did = self.handles.get((request.headers.get("Host") or "").split(":")[0])
            if did is None:
                return conn.respond(HTTPStatus.NOT_FOUND, "no such handle\n")
            text = did.encode()
            plain = Headers({"Content-Type": "text/plain", "Content-Length": str(len(text))})
            return Response(200, "OK", plain, text)
        doc = self.docs.get(path.lstrip("/"))
        if doc is None:
            return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")
        body = json.dumps(doc).encode()
        headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(body))})
        return Response(200, "OK", headers, body)

    async def _stream(self, conn: ServerConnection) -> None:
        self.connections += 1
        query = parse_qs(urlsplit(conn.request.path if conn.request else "").query)
        cursor = int(query["cursor"][0]) if "cursor" in query else None
        self.cursors.append(cursor)
        if self.endless is not None:
            seq = cursor or 0
            try:
                while True:
                    seq += 1
                    await conn.send(self.endless(seq))
            except ConnectionClosed:
                return
        position = 0
        if cursor is not None:
            for i, (frame_seq, _) in enumerate(self.frames):
                if frame_seq is not None and frame_seq <= cursor:
                    position = i + 1
        while True:
            async with self._added:
                while len(self.frames) <= position:
                    if conn.close_code is not None:
                        return
                    try:  # wake now and then to notice a closed connection
                        await asyncio.wait_for(self._added.wait(), 0.2)
                    except TimeoutError:
                        pass
                batch = self.frames[position:]
            for index, (_, raw) in enumerate(batch, start=position):
                if index in self._once:
                    self._once.discard(index)
                    self._sent_once.add(index)
                elif index in self._sent_once:
                    continue
                await conn.send(raw)
            position += len(batch)


def with_seq(raw: bytes, seq: int) -> bytes:
    """``raw`` (a frame) with its body's ``seq`` replaced."""
    header, body = cbrrr.decode_multi_dag_cbor_in_violation_of_the_spec(raw)
    assert isinstance(body, dict)
    body["seq"] = seq
    return cbrrr.encode_dag_cbor(header) + cbrrr.encode_dag_cbor(body)


def mixed_traffic(
    repos: int = 200, frames: int = 2000, plyr_every: int = 200
) -> Iterator[tuple[str, Any, bytes]]:
    """Generated relay traffic: (did, signing key, frame); one ``fm.plyr`` commit per
    ``plyr_every`` frames, the rest ``app.bsky`` posts, likes and follows. Each repo starts
    with 100 records, so a commit carries about 5 MST nodes (1 to 8)."""
    from testkit.identity import plc_did
    from testkit.records import post_record, track_record

    signed = [SignedRepo(plc_did(i), records=100) for i in range(repos)]
    for n in range(frames):
        repo = signed[n % repos]
        if n % plyr_every == plyr_every // 2:
            ops: list[tuple[str, str, dict[str, Any] | None]] = [
                ("create", f"fm.plyr.track/{tid(n)}", track_record(f"Song {n}"))
            ]
        elif n % 3 == 0:
            ops = [("create", f"app.bsky.feed.post/{tid(n)}", post_record(n))]
        elif n % 3 == 1:
            like = {
                "$type": "app.bsky.feed.like",
                "subject": {
                    "uri": f"at://{plc_did(n + 1)}/app.bsky.feed.post/{tid(n)}",
                    "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
                },
                "createdAt": "2026-11-01T12:00:00.000Z",
            }
            ops = [("create", f"app.bsky.feed.like/{tid(n)}", like)]
        else:
            follow = {
                "$type": "app.bsky.graph.follow",
                "subject": plc_did(n + 7),
                "createdAt": "2026-11-01T12:00:00.000Z",
            }
            ops = [("create", f"app.bsky.graph.follow/{tid(n)}", follow)]
        yield repo.did, repo.key, repo.commit_frame(n + 1, ops)


async def _stream_forever(repos: int, frames: int) -> None:
    from testkit.identity import did_document, plc_did
    from testkit.records import track_record

    relay = FirehoseServer()
    pool = [raw for _, _, raw in mixed_traffic(repos, frames, plyr_every=10**9)]
    artists = [SignedRepo(plc_did(10_000 + i), records=100) for i in range(20)]
    for repo in artists:
        relay.docs[repo.did] = did_document(repo.did, repo.key, "a.test", "http://127.0.0.1:1")

    def frame(seq: int) -> bytes:
        # 0.5% fresh signed fm.plyr commits (new revs: published), the rest app.bsky traffic.
        if seq % 200 == 100:
            artist = artists[(seq // 200) % len(artists)]
            ops: list[tuple[str, str, dict[str, Any] | None]] = [
                ("create", f"fm.plyr.track/{tid(seq)}", track_record(f"Song {seq}"))
            ]
            return artist.commit_frame(seq, ops)
        return with_seq(pool[seq % len(pool)], seq)

    relay.endless = frame
    await relay.start()
    print(f"READY {relay.url} {relay.plc_url}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stream", action="store_true", required=True)
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(_stream_forever(args.repos, args.frames))


if __name__ == "__main__":
    main()
