"""Typed settings, read once from the environment.

Every variable is optional: with none set, the system runs in the embedded default
(embedded PostgreSQL in ``PLYR_DATA_DIR``, the PostgreSQL-backed log, a local blob
directory, the API on 127.0.0.1:8000, the public relay as firehose source).

A bad value raises :class:`ConfigError` naming the variable and what was wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["DEFAULT_COLLECTIONS", "ConfigError", "Settings", "load_settings"]

DEFAULT_COLLECTIONS: tuple[str, ...] = (
    "fm.plyr.track",
    "fm.plyr.like",
    "fm.plyr.comment",
    "fm.plyr.list",
    "fm.plyr.actor.profile",
)

LogBackend = Literal["postgres", "kafka"]
Source = Literal["firehose", "jetstream"]


def _cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ConfigError(ValueError):
    """A configuration variable holds a value we cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything the processes need to know about their surroundings."""

    data_dir: Path = Path(".data")
    database_url: str | None = None
    """``None`` means: start embedded PostgreSQL inside ``data_dir``."""
    log_backend: LogBackend = "postgres"
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "plyr."
    partitions: int = 8
    firehose_url: str = "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos"
    plc_url: str = "https://plc.directory"
    collections: tuple[str, ...] = DEFAULT_COLLECTIONS
    known_did_collections: tuple[str, ...] = ("app.bsky.actor.profile",)
    """Also kept, but only for repos already indexed (display names and avatars)."""
    blob_dir: Path | None = None
    """Local blob cache; defaults to ``data_dir / "blobs"``."""
    blob_cache_max_bytes: int | None = None
    """Audio bytes the local blob cache keeps, least recently used evicted first
    (``PLYR_BLOB_CACHE_MAX_BYTES``); ``None``: half the size of its filesystem."""
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    cors_origins: tuple[str, ...] = ("http://localhost:5173",)
    api_database_url: str | None = None
    """Read-only URL for the API (role ``plyr_api_ro``); ``None``: the main URL."""
    api_workers: int = field(default_factory=lambda: _cpu_count())
    """API worker processes sharing the listening socket (``PLYR_API_WORKERS``)."""
    api_pool_size: int = 10
    """Database connections per API worker, at most (``PLYR_API_POOL_SIZE``)."""
    api_cache_entries: int = 16384
    """Cached GET responses per API worker; 0 turns the cache off (``PLYR_API_CACHE_ENTRIES``)."""
    api_cache_mb: int = 64
    """Response bodies each API worker's cache may hold, in MiB (``PLYR_API_CACHE_MB``)."""
    api_cache_ttl_s: int = 10
    """Longest a cached response is served, even with no read-model change
    (``PLYR_API_CACHE_TTL``): bounds answers that also depend on the clock."""
    ready_max_lag: int = 1000
    """``/ready`` answers 503 while a projector is more events behind (``PLYR_READY_MAX_LAG``)."""
    status_sample_s: float = 10.0
    """Seconds between samples of the status page's charts; 360 are kept
    (``PLYR_STATUS_SAMPLE_S``)."""
    play_rate: int = 1
    """Play reports per second each client address may send, sustained (``PLYR_PLAY_RATE``)."""
    play_burst: int = 60
    """Play reports a client address may send at once before the rate applies
    (``PLYR_PLAY_BURST``)."""
    public_url: str | None = None
    """Absolute base URL of the API as browsers see it (``r2_url``); ``None``: per request."""
    frontend_url: str = "https://plyr.fm"
    """The web client's origin, for oEmbed links."""
    contact_email: str = ""
    audio_origins: tuple[str, ...] = ()
    """Origins (scheme://host[:port]) an ``audioUrl`` record may make us fetch."""
    trusted_hosts: tuple[str, ...] = ()
    """Hosts allowed even on loopback/private addresses for PDS/PLC fetches (tests, LAN)."""
    handle_hosts: tuple[tuple[str, str], ...] = ()
    """``(handle suffix, base URL)``: where handles under that suffix are checked
    (``/.well-known/atproto-did`` asked with the handle as ``Host``), e.g. a local test
    network's PDS, whose host must be in ``trusted_hosts`` (``PLYR_HANDLE_HOSTS``)."""
    upstream_max_bytes: int = 200 * 1024 * 1024
    upstream_timeout_s: int = 60
    s3_presign_seconds: int = 3600
    labelers: tuple[str, ...] = ()
    """DIDs of the labelers whose labels moderation applies (``PLYR_LABELERS``)."""
    labeler_urls: Mapping[str, str] = field(default_factory=dict)
    """Labeler DID → ``subscribeLabels`` endpoint, for entries written ``did=wss://host``;
    the others are found from the DID document's ``#atproto_labeler`` service."""
    source: Source = "firehose"
    """Where repo events come from: the firehose (verified) or Jetstream (``PLYR_SOURCE``)."""
    jetstream_url: str = "wss://jetstream2.us-east.bsky.network/subscribe"
    backfill_dids: tuple[str, ...] = ()
    """Repos to backfill instead of discovering them (``PLYR_BACKFILL_DIDS``)."""
    backfill_concurrency: int = 4
    """``getRepo`` requests at a time per PDS host (``PLYR_BACKFILL_CONCURRENCY``)."""
    operator_did: str | None = None
    """The operator's DID: its labels (``!takedown``) are always trusted (``PLYR_OPERATOR_DID``)."""
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def blob_path(self) -> Path:
        return self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"

    def topic(self, name: str) -> str:
        """Full topic name for a logical topic (``repo``, ``labels``, ``plays``)."""
        return f"{self.topic_prefix}{name}"


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ConfigError(
            f"{name}: expected a URL with scheme {' or '.join(schemes)} and a host, got {value!r}"
        )
    return value.rstrip("/")


def _int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {number}")
    return number


def _collections(name: str, value: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    if not items:
        raise ConfigError(f"{name}: expected a comma-separated list of NSIDs, got nothing")
    for item in items:
        segments = item.removesuffix(".*").split(".")
        wildcard = item.endswith(".*")
        if len(segments) < (2 if wildcard else 3) or not all(
            seg and seg.replace("-", "").isalnum() for seg in segments
        ):
            raise ConfigError(f"{name}: {item!r} is not an NSID (like fm.plyr.track)")
    return items


def _did(name: str, value: str) -> str:
    parts = value.split(":")
    if len(parts) < 3 or parts[0] != "did" or not all(parts[1:]):
        raise ConfigError(f"{name}: {value!r} is not a DID (like did:plc:abc or did:web:host)")
    return value


def _bind(name: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{name}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), _int(name, port, 1, 65535)


def _ints(low: int, high: int) -> Callable[[str, str], int]:
    return lambda name, value: _int(name, value, low, high)


def _urls(*schemes: str) -> Callable[[str, str], str]:
    return lambda name, value: _url(name, value, schemes)


# The settings read by one rule each: (variable, setting, parser of the value); a variable
# unset or empty leaves the default.
_PLAIN: tuple[tuple[str, str, Callable[[str, str], object]], ...] = (
    ("DATABASE_URL", "database_url", _urls("postgresql", "postgres")),
    ("PLYR_PARTITIONS", "partitions", _ints(1, 1024)),
    ("PLYR_FIREHOSE_URL", "firehose_url", _urls("ws", "wss")),
    ("PLYR_PLC_URL", "plc_url", _urls("http", "https")),
    ("PLYR_BLOB_CACHE_MAX_BYTES", "blob_cache_max_bytes", _ints(1, 2**50)),
    ("PLYR_S3_ENDPOINT_URL", "s3_endpoint_url", _urls("http", "https")),
    ("PLYR_API_WORKERS", "api_workers", _ints(1, 256)),
    ("PLYR_API_POOL_SIZE", "api_pool_size", _ints(1, 1000)),
    ("PLYR_API_CACHE_MB", "api_cache_mb", _ints(1, 1 << 20)),
    ("PLYR_API_CACHE_TTL", "api_cache_ttl_s", _ints(1, 86400)),
    ("PLYR_READY_MAX_LAG", "ready_max_lag", _ints(0, 1 << 62)),
    ("PLYR_PLAY_RATE", "play_rate", _ints(1, 1_000_000)),
    ("PLYR_PLAY_BURST", "play_burst", _ints(1, 1_000_000)),
    ("PLYR_PUBLIC_URL", "public_url", _urls("http", "https")),
    ("PLYR_FRONTEND_URL", "frontend_url", _urls("http", "https")),
    ("PLYR_UPSTREAM_MAX_BYTES", "upstream_max_bytes", _ints(1, 2**40)),
    ("PLYR_UPSTREAM_TIMEOUT", "upstream_timeout_s", _ints(1, 3600)),
    ("PLYR_S3_PRESIGN_SECONDS", "s3_presign_seconds", _ints(60, 7 * 86400)),
    ("PLYR_JETSTREAM_URL", "jetstream_url", _urls("ws", "wss")),
    ("PLYR_BACKFILL_CONCURRENCY", "backfill_concurrency", _ints(1, 64)),
    ("PLYR_API_DATABASE_URL", "api_database_url", _urls("postgresql", "postgres")),
)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: ``os.environ``)."""
    source = os.environ if env is None else env
    get = source.get
    values: dict[str, object] = {
        setting: parse(name, value) for name, setting, parse in _PLAIN if (value := get(name))
    }
    if data_dir := get("PLYR_DATA_DIR"):
        values["data_dir"] = Path(data_dir)
    if backend := get("PLYR_LOG_BACKEND"):
        if backend not in ("postgres", "kafka"):
            raise ConfigError(f"PLYR_LOG_BACKEND: expected 'postgres' or 'kafka', got {backend!r}")
        values["log_backend"] = backend
    if bootstrap := get("KAFKA_BOOTSTRAP"):
        for server in bootstrap.split(","):
            _bind("KAFKA_BOOTSTRAP", server.strip())
        values["kafka_bootstrap"] = bootstrap
        values.setdefault("log_backend", "kafka")
    if prefix := get("PLYR_TOPIC_PREFIX"):
        values["topic_prefix"] = prefix
    if collections := get("PLYR_COLLECTIONS"):
        values["collections"] = _collections("PLYR_COLLECTIONS", collections)
    if (known := get("PLYR_KNOWN_DID_COLLECTIONS")) is not None:
        values["known_did_collections"] = (
            ()
            if known.strip() in ("", "none")
            else _collections("PLYR_KNOWN_DID_COLLECTIONS", known)
        )
    if blob_dir := get("PLYR_BLOB_DIR"):
        values["blob_dir"] = Path(blob_dir)
    if bucket := get("PLYR_S3_BUCKET"):
        values["s3_bucket"] = bucket
    if bind := get("PLYR_API_BIND"):
        values["api_host"], values["api_port"] = _bind("PLYR_API_BIND", bind)
    if origins := get("PLYR_CORS_ORIGINS"):
        values["cors_origins"] = tuple(
            _url("PLYR_CORS_ORIGINS", o.strip(), ("http", "https"))
            for o in origins.split(",")
            if o.strip()
        )
    if (entries := get("PLYR_API_CACHE_ENTRIES")) is not None and entries.strip():
        values["api_cache_entries"] = _int("PLYR_API_CACHE_ENTRIES", entries, 0, 10_000_000)
    if sample_s := get("PLYR_STATUS_SAMPLE_S"):
        values["status_sample_s"] = float(_int("PLYR_STATUS_SAMPLE_S", sample_s, 1, 3600))
    if contact := get("PLYR_CONTACT_EMAIL"):
        values["contact_email"] = contact
    if audio_origins := get("PLYR_AUDIO_ORIGINS"):
        values["audio_origins"] = tuple(
            _url("PLYR_AUDIO_ORIGINS", o.strip(), ("http", "https"))
            for o in audio_origins.split(",")
            if o.strip()
        )
    if trusted := get("PLYR_TRUSTED_HOSTS"):
        values["trusted_hosts"] = tuple(h.strip().lower() for h in trusted.split(",") if h.strip())
    if handle_hosts := get("PLYR_HANDLE_HOSTS"):
        pairs: list[tuple[str, str]] = []
        for entry in handle_hosts.split(","):
            if not entry.strip():
                continue
            suffix, sep, base = entry.strip().partition("=")
            if not sep or not suffix.startswith("."):
                raise ConfigError(f"PLYR_HANDLE_HOSTS: expected .suffix=URL, got {entry!r}")
            pairs.append((suffix.lower(), _url("PLYR_HANDLE_HOSTS", base, ("http", "https"))))
        values["handle_hosts"] = tuple(pairs)
    if labelers := get("PLYR_LABELERS"):
        dids: list[str] = []
        urls: dict[str, str] = {}
        for item in (i.strip() for i in labelers.split(",")):
            if not item:
                continue
            did, sep, endpoint = item.partition("=")
            dids.append(_did("PLYR_LABELERS", did.strip()))
            if sep:
                urls[dids[-1]] = _url(
                    f"PLYR_LABELERS ({did.strip()})",
                    endpoint.strip(),
                    ("ws", "wss", "http", "https"),
                )
        values["labelers"] = tuple(dids)
        values["labeler_urls"] = urls
    if source_name := get("PLYR_SOURCE"):
        if source_name not in ("firehose", "jetstream"):
            raise ConfigError(
                f"PLYR_SOURCE: expected 'firehose' or 'jetstream', got {source_name!r}"
            )
        values["source"] = source_name
    if backfill_dids := get("PLYR_BACKFILL_DIDS"):
        values["backfill_dids"] = tuple(
            _did("PLYR_BACKFILL_DIDS", d.strip()) for d in backfill_dids.split(",") if d.strip()
        )
    if operator := get("PLYR_OPERATOR_DID"):
        values["operator_did"] = _did("PLYR_OPERATOR_DID", operator.strip())
    if values.get("log_backend") == "kafka" and "kafka_bootstrap" not in values:
        raise ConfigError("PLYR_LOG_BACKEND=kafka needs KAFKA_BOOTSTRAP (HOST:PORT[,HOST:PORT])")
    return Settings(**values)  # type: ignore[arg-type]
