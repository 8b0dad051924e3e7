"""Labelers as a source: ``com.atproto.label.subscribeLabels`` into the ``labels`` topic.

Frames are either the standard event-stream CBOR (header ``{op: 1, t: "#labels"}``, body
``{seq, labels: [label]}``; ``#info``; error frames ``{op: -1}``) or plyr's JSON text
frames ``{"seq": n, "labels": [label]}``. A label is ``{ver?, src, uri, cid?, val, neg?,
cts, exp?, sig}``; its signature is ECDSA-SHA256 over the DAG-CBOR of the label without
``sig`` (exactly the fields received), by the ``#atproto_label`` key in the labeler's DID
document. Labels whose ``src`` is not the labeler we subscribed to, or whose signature
does not verify (after one fresh look at the DID document, in case the key rotated), are
rejected and counted, never published. Each labeler's cursor (the last ``seq`` whose
labels are on the log) is kept in ``ingest_cursor`` under ``labeler:<did>``; with none,
the stream is read from ``cursor=0`` (labelers serve their full history).

A labeler is configured as ``did=wss://host`` or as a bare DID, whose document's
``#atproto_labeler`` service gives the endpoint (its address checked like every fetch's,
:mod:`kernel.fetch`; the document itself is fetched through it). Bad frames never stop
the consumer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import cbrrr
import websockets
from atproto_core.exceptions import AtProtocolError
from atproto_crypto.verify import verify_signature
from cryptography.exceptions import InvalidSignature
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.client import connect

from ingest.cursor import CursorKeeper
from ingest.errors import LabelError
from ingest.frames import MAX_FRAME_SIZE, ErrorFrame, InfoEvent
from ingest.publisher import Publisher
from ingest.stream import TRANSIENT, keep_connected, receive_until_stopped
from kernel.envelope import Envelope
from kernel.fetch import UpstreamError, UpstreamFetcher
from kernel.identity import ResolveError, resolve_did
from kernel.log import Log

__all__ = [
    "Label",
    "LabelError",
    "LabelIngest",
    "LabelStats",
    "LabelsFrame",
    "decode_labels_frame",
    "label_envelope",
    "parse_label",
    "subscribe_labels_url",
    "verify_label",
]

logger = logging.getLogger(__name__)

_MAX_VAL_BYTES = 128
_REFRESH_INTERVAL = 60.0
_SUBSCRIBE_PATH = "/xrpc/com.atproto.label.subscribeLabels"


@dataclass(frozen=True, slots=True)
class Label:
    """One label as received: ``unsigned`` holds every field but ``sig``, as sent."""

    src: str
    uri: str
    val: str
    cts: str
    sig: bytes
    unsigned: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The label for the envelope: ``src, uri, cid?, val, neg?, cts, exp?``."""
        out: dict[str, Any] = {"src": self.src, "uri": self.uri, "val": self.val, "cts": self.cts}
        for name in ("cid", "exp"):
            if isinstance(self.unsigned.get(name), str):
                out[name] = self.unsigned[name]
        if self.unsigned.get("neg") is True:
            out["neg"] = True
        return out


@dataclass(frozen=True, slots=True)
class LabelsFrame:
    """``#labels``: the labels of sequence number ``seq`` (unparsed, parsed one by one)."""

    seq: int
    labels: list[Any]


def _sig_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict) and isinstance(value.get("$bytes"), str):
        value = value["$bytes"]
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip().rstrip("=")
        padded = text + "=" * (-len(text) % 4)
        try:
            if "-" in text or "_" in text:
                return base64.urlsafe_b64decode(padded)
            return base64.b64decode(padded, validate=True)
        except ValueError:
            pass
    raise LabelError("bad_label", "sig is not bytes")


def parse_label(raw: Any) -> Label:
    """A :class:`Label` from a decoded label object; raises :class:`LabelError`."""
    if not isinstance(raw, dict):
        raise LabelError("bad_label", "label is not an object")
    for name in ("src", "uri", "val", "cts"):
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise LabelError("bad_label", f"{name}: expected a non-empty string")
    if len(raw["val"].encode()) > _MAX_VAL_BYTES:
        raise LabelError("bad_label", "val longer than 128 bytes")
    for name in ("cid", "exp"):
        if name in raw and raw[name] is not None and not isinstance(raw[name], str):
            raise LabelError("bad_label", f"{name}: expected a string")
    if "neg" in raw and not isinstance(raw["neg"], bool):
        raise LabelError("bad_label", "neg: expected a boolean")
    if "ver" in raw and (not isinstance(raw["ver"], int) or isinstance(raw["ver"], bool)):
        raise LabelError("bad_label", "ver: expected an integer")
    if "sig" not in raw:
        raise LabelError("unsigned_label", "label has no sig")
    sig = _sig_bytes(raw["sig"])
    unsigned = {k: v for k, v in raw.items() if k != "sig"}
    return Label(raw["src"], raw["uri"], raw["val"], raw["cts"], sig, unsigned)


def _labels_body(body: Any) -> LabelsFrame:
    if not isinstance(body, dict):
        raise LabelError("undecodable", "body is not a map")
    seq = body.get("seq")
    labels = body.get("labels")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
        # The cursor is a PostgreSQL bigint: a larger seq would crash saving it.
        raise LabelError("undecodable", "seq: expected an integer in 0..2^63-1")
    if not isinstance(labels, list):
        raise LabelError("undecodable", "labels: expected a list")
    return LabelsFrame(seq, labels)


def decode_labels_frame(raw: str | bytes) -> LabelsFrame | InfoEvent | ErrorFrame:
    """Decode one ``subscribeLabels`` frame, CBOR or plyr's JSON; raises :class:`LabelError`."""
    if isinstance(raw, str) or raw[:1] == b"{":
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise LabelError("undecodable", f"not JSON: {exc}") from None
        return _labels_body(data)
    if len(raw) > MAX_FRAME_SIZE:
        raise LabelError("oversized", f"frame of {len(raw)} bytes")
    try:
        parts = list(cbrrr.decode_multi_dag_cbor_in_violation_of_the_spec(raw))
    except (ValueError, AssertionError, TypeError, cbrrr.CbrrrDecodeError) as exc:
        raise LabelError("undecodable", f"not CBOR: {exc}") from None
    if len(parts) != 2 or not isinstance(parts[0], dict):
        raise LabelError("undecodable", "frame must be a header map and a body")
    header: dict[str, Any] = parts[0]
    body: Any = parts[1]
    op = header.get("op")
    if op == -1:
        if not isinstance(body, dict):
            raise LabelError("undecodable", "error body is not a map")
        message = body.get("message")
        return ErrorFrame(str(body.get("error")), message if isinstance(message, str) else None)
    if op != 1:
        raise LabelError("undecodable", f"unknown op {op!r}")
    kind = header.get("t")
    if kind == "#labels":
        return _labels_body(body)
    if kind == "#info" and isinstance(body, dict):
        message = body.get("message")
        return InfoEvent(str(body.get("name")), message if isinstance(message, str) else None)
    raise LabelError("unknown_type", f"frame type {kind!r}")


def verify_label(label: Label, did_key: str) -> bool:
    """Whether ``label``'s signature verifies with ``did_key`` (``did:key:z…``)."""
    if len(label.sig) != 64:
        return False
    try:
        data = cbrrr.encode_dag_cbor(label.unsigned)
        return bool(verify_signature(did_key, data, label.sig))
    except (ValueError, TypeError, InvalidSignature, AtProtocolError):
        return False


def label_envelope(label: Label, labeler: str, seq: int) -> Envelope:
    """The ``label.applied`` envelope for a verified label (keyed by its subject URI)."""
    return Envelope(
        kind="label.applied",
        did=labeler,
        source=f"labeler:{labeler}",
        time=label.cts,
        seq=seq,
        label=label.as_json(),
    )


def subscribe_labels_url(endpoint: str) -> str:
    """The ``subscribeLabels`` websocket URL of a labeler endpoint (http(s) or ws(s))."""
    parts = urlsplit(endpoint)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith("com.atproto.label.subscribeLabels"):
        path += _SUBSCRIBE_PATH
    return f"{scheme}://{parts.netloc}{path}"


@dataclass
class LabelStats:
    frames: int = 0
    labels: int = 0
    published: int = 0
    reconnects: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    last_seq: int | None = None


class LabelIngest:
    """Follows one labeler's ``subscribeLabels`` into the ``labels`` topic."""

    def __init__(
        self,
        *,
        did: str,
        url: str | None,
        log: Log,
        topic: str,
        pool: AsyncConnectionPool,
        fetcher: UpstreamFetcher,
        plc_url: str,
    ) -> None:
        self.did = did
        self.source = f"labeler:{did}"
        self._url = subscribe_labels_url(url) if url else None
        self._fetcher = fetcher
        self._plc_url = plc_url
        self._key: str | None = None
        self._refreshed_at = -_REFRESH_INTERVAL
        self._cursor = CursorKeeper(pool, self.source)
        self.stats = LabelStats()
        self._publisher = Publisher(log, topic, pool, counts=self.stats)
        self.connected = asyncio.Event()

    async def _identity(self, *, fresh: bool) -> None:
        now = time.monotonic()
        if fresh and now - self._refreshed_at < _REFRESH_INTERVAL:
            return
        try:
            doc = await resolve_did(self._fetcher, self._plc_url, self.did)
        except ResolveError as exc:
            raise LabelError("unresolvable_labeler", str(exc)) from None
        self._refreshed_at = now
        self._key = doc.label_key
        if self._url is None:
            if doc.labeler_url is None:
                raise LabelError("unresolvable_labeler", f"{self.did} has no #atproto_labeler")
            try:  # the document names the endpoint: the same address rule as every fetch
                await self._fetcher.pin(doc.labeler_url, allow_trusted=True)
            except UpstreamError as exc:
                raise LabelError("refused_labeler", str(exc)) from None
            self._url = subscribe_labels_url(doc.labeler_url)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, reconnecting with capped, jittered backoff."""
        await self._cursor.load()

        async def session() -> None:
            if self._key is None or self._url is None:
                await self._identity(fresh=False)
            await self._session(stop)

        def count() -> None:
            self.stats.reconnects += 1

        await keep_connected(
            session,
            stop,
            retry_on=(*TRANSIENT, LabelError),
            on_retry=count,
            message="labeler disconnected",
            source=self.source,
        )
        await self._cursor.save()

    async def _session(self, stop: asyncio.Event) -> None:
        assert self._url is not None
        url = f"{self._url}?cursor={self._cursor.position or 0}"
        async with connect(url, max_size=MAX_FRAME_SIZE, open_timeout=15) as ws:
            logger.info(
                "labeler connected",
                extra={"source": self.source, "cursor": self._cursor.position},
            )
            self.connected.set()
            try:
                await receive_until_stopped(ws, stop, self.handle_frame)
            finally:
                self.connected.clear()
                await self._cursor.save()

    async def handle_frame(self, raw: str | bytes) -> None:
        """Verify and publish one frame's labels, then move the cursor past it."""
        self.stats.frames += 1
        try:
            frame = decode_labels_frame(raw)
        except LabelError as exc:
            self.stats.rejected[exc.reason] += 1
            logger.warning("bad label frame", extra={"source": self.source, "error": str(exc)})
            return
        if isinstance(frame, InfoEvent):
            logger.warning("labeler info", extra={"source": self.source, "info": frame.name})
            return
        if isinstance(frame, ErrorFrame):
            raise websockets.WebSocketException(f"error frame {frame.error}: {frame.message}")
        envelopes: list[Envelope] = []
        for raw_label in frame.labels:
            self.stats.labels += 1
            try:
                label = await self._checked(raw_label)
            except LabelError as exc:
                self.stats.rejected[exc.reason] += 1
                logger.warning(
                    "label rejected",
                    extra={"source": self.source, "seq": frame.seq, "error": str(exc)},
                )
                continue
            envelopes.append(label_envelope(label, self.did, frame.seq))
        if envelopes:
            await self._publisher.publish(envelopes)
        self.stats.last_seq = frame.seq
        await self._cursor.advance(frame.seq, save=bool(envelopes))

    async def _checked(self, raw: Any) -> Label:
        label = parse_label(raw)
        if label.src != self.did:
            raise LabelError("wrong_src", f"label from {label.src} on {self.did}'s stream")
        if self._key is not None and verify_label(label, self._key):
            return label
        try:  # the key may have rotated: look once more (rate-limited)
            await self._identity(fresh=True)
        except LabelError:
            pass
        if self._key is None:
            raise LabelError("no_label_key", f"{self.did} has no usable #atproto_label key")
        if not verify_label(label, self._key):
            raise LabelError("bad_signature", f"{label.val} on {label.uri}")
        return label
