"""The versioned envelope every message on the log carries (JSON, UTF-8).

Kinds are past-tense facts: ``record.created``, ``record.updated``, ``record.deleted``,
``identity.changed``, ``account.changed`` (topic ``repo``, keyed by repo DID) and
``label.applied`` (topic ``labels``, keyed by the label's subject URI; ``did`` is the
labeler, ``label`` the label as JSON: ``src, uri, cid?, val, neg?, cts, exp?``; a negation
is a ``label.applied`` whose label has ``neg: true``), and ``play.reported`` /
``play.counted`` (topic ``plays``, keyed by the listener; ``did``, ``collection`` and
``rkey`` name the track played, ``time`` is when it was played, ``play`` holds
``id, listener, duration?, ref?`` and, once counted, ``window_end, self``; built by
:mod:`kernel.plays`). Parsing untrusted bytes raises
:class:`EnvelopeError`; a consumer dead-letters such a message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

__all__ = ["ENVELOPE_VERSION", "KINDS", "Envelope", "EnvelopeError", "Kind"]

ENVELOPE_VERSION = 1

Kind = Literal[
    "record.created",
    "record.updated",
    "record.deleted",
    "identity.changed",
    "account.changed",
    "label.applied",
    "play.reported",
    "play.counted",
]
KINDS: frozenset[str] = frozenset(Kind.__args__)  # type: ignore[attr-defined]
RECORD_KINDS = frozenset({"record.created", "record.updated", "record.deleted"})
PLAY_KINDS = frozenset({"play.reported", "play.counted"})


class EnvelopeError(ValueError):
    """Bytes on the log that are not a valid envelope."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One fact about one repo (``did``), with where it came from."""

    kind: Kind
    did: str
    source: str
    time: str
    seq: int | None = None
    rev: str | None = None
    collection: str | None = None
    rkey: str | None = None
    cid: str | None = None
    record: dict[str, Any] | None = None
    handle: str | None = None
    active: bool | None = None
    status: str | None = None
    label: dict[str, Any] | None = None
    play: dict[str, Any] | None = None
    backfill: bool = False
    v: int = field(default=ENVELOPE_VERSION)

    @property
    def uri(self) -> str | None:
        if self.collection is None or self.rkey is None:
            return None
        return f"at://{self.did}/{self.collection}/{self.rkey}"

    @property
    def key(self) -> bytes:
        """The log key: the repo DID (one repo's events stay in order); for labels, the
        subject; for plays, the listener (one listener's reports stay in order)."""
        if self.kind == "label.applied" and self.label is not None:
            return str(self.label.get("uri", self.did)).encode()
        if self.kind in PLAY_KINDS and self.play is not None:
            return str(self.play.get("listener", self.did)).encode()
        return self.did.encode()

    def to_bytes(self) -> bytes:
        # Shallow, not dataclasses.asdict: that deep-copies the record (most of the cost).
        data = {
            name: value
            for name in self.__dataclass_fields__
            if (value := getattr(self, name)) is not None
        }
        uri = self.uri
        if uri is not None:
            data["uri"] = uri
        try:
            return orjson.dumps(data)
        except TypeError:  # an integer beyond 64 bits: the standard library writes any int
            return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:  # invalid, or an integer beyond 64 bits: ask the slow path
            try:
                data = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise EnvelopeError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise EnvelopeError("envelope must be a JSON object")
        if data.get("v") != ENVELOPE_VERSION:
            raise EnvelopeError(f"unsupported envelope version {data.get('v')!r}")
        kind = data.get("kind")
        if kind not in KINDS:
            raise EnvelopeError(f"unknown kind {kind!r}")
        for name in ("did", "source", "time"):
            if not isinstance(data.get(name), str):
                raise EnvelopeError(f"{name}: expected a string")
        if kind in RECORD_KINDS:
            for name in ("collection", "rkey", "rev"):
                if not isinstance(data.get(name), str):
                    raise EnvelopeError(f"{name}: required for {kind}")
            if kind != "record.deleted" and not isinstance(data.get("record"), dict):
                raise EnvelopeError(f"record: required object for {kind}")
        if kind == "label.applied":
            label = data.get("label")
            if not isinstance(label, dict):
                raise EnvelopeError("label: required object for label.applied")
            for name in ("src", "uri", "val", "cts"):
                if not isinstance(label.get(name), str):
                    raise EnvelopeError(f"label.{name}: expected a string")
        if kind in PLAY_KINDS:
            play = data.get("play")
            if not isinstance(play, dict):
                raise EnvelopeError(f"play: required object for {kind}")
            for name in ("id", "listener"):
                if not isinstance(play.get(name), str) or not play[name]:
                    raise EnvelopeError(f"play.{name}: expected a non-empty string")
            for name in ("collection", "rkey"):
                if not isinstance(data.get(name), str):
                    raise EnvelopeError(f"{name}: required for {kind}")
        data.pop("uri", None)
        if not data.keys() <= _FIELDS:  # written by a newer producer: ignore what we don't know
            data = {k: v for k, v in data.items() if k in _FIELDS}
        try:
            return cls(**data)
        except TypeError as exc:
            raise EnvelopeError(str(exc)) from None


_FIELDS = frozenset(Envelope.__dataclass_fields__)
