"""Fetching from hosts named in records, without letting a record aim us at our own network.

Every outbound HTTP request of the product goes through :class:`UpstreamFetcher`: DID
documents (:mod:`kernel.identity`), ``getRepo`` and repo discovery (ingest), labeler
resolution, handle checks (``/.well-known/atproto-did`` and the ``_atproto`` DNS TXT record,
:meth:`UpstreamFetcher.txt`), ``getBlob`` and ``audioUrl`` (the API). A DID document names a
PDS, a record names audio: either could name ``127.0.0.1`` or a cloud metadata address.

- the host is resolved first and *every* address it resolves to must be public (not
  loopback, private, link-local, CGNAT, multicast, reserved, unspecified, or the cloud
  metadata address); IPv4-mapped IPv6 is judged as the IPv4 it maps;
- the connection then goes to the address we checked (the URL's host is replaced by the IP,
  ``Host`` and TLS SNI keep the name), so a second DNS answer cannot swap it;
- redirects are followed by hand (at most :data:`MAX_REDIRECTS`), each hop checked again;
- every fetch has a time limit and a byte limit.

Hosts listed in ``trusted_hosts`` (``PLYR_TRUSTED_HOSTS``: the PLC directory or a PDS on a
LAN/loopback, as in tests) skip the address check; that list is the only exemption, and
callers choose whether a fetch may use it (``audioUrl`` and ``did:web`` fetches never do).

Errors: :class:`UpstreamError` (network, limits), with :class:`UpstreamRefused` (policy),
:class:`UpstreamStatus` (a non-2xx answer: ``status`` and the start of the ``body``) and
:class:`UpstreamTooLarge` (past the byte limit) below it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import dns.asyncresolver
import dns.exception
import dns.resolver
import httpx

__all__ = [
    "MAX_REDIRECTS",
    "UpstreamError",
    "UpstreamFetcher",
    "UpstreamRefused",
    "UpstreamResponse",
    "UpstreamStatus",
    "UpstreamTooLarge",
    "is_public_address",
]

MAX_REDIRECTS = 5
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class UpstreamError(RuntimeError):
    """An upstream fetch failed: network error, bad status, too large or too slow."""


class UpstreamRefused(UpstreamError):
    """A fetch the policy does not allow (address, origin, scheme)."""


class UpstreamStatus(UpstreamError):
    """The upstream answered with a status other than 2xx (after redirects)."""

    def __init__(self, message: str, status: int, body: bytes) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        """At most the first 2,000 bytes (for the XRPC ``error`` name)."""


class UpstreamTooLarge(UpstreamError):
    """The body is larger than the fetch's byte limit."""


def is_public_address(address: str) -> bool:
    """Whether ``address`` (an IP literal) is a globally routable unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA:
        return False
    return bool(
        ip.is_global
        and not ip.is_multicast
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_private
        and not ip.is_reserved
        and not ip.is_unspecified
    )


@dataclass(frozen=True)
class UpstreamResponse:
    """An upstream response whose body is being streamed (``chunks``)."""

    status: int
    headers: httpx.Headers
    url: str
    chunks: AsyncIterator[bytes]


@dataclass
class UpstreamFetcher:
    """Guarded GETs; one per app, sharing an :class:`httpx.AsyncClient`."""

    client: httpx.AsyncClient
    trusted_hosts: frozenset[str] = frozenset()
    max_bytes: int = 200 * 1024 * 1024
    timeout_s: float = 60.0
    public_overrides: frozenset[str] = field(default_factory=frozenset)
    """IP literals to treat as public: a test seam for a fake "internet" host on 127.0.0.2."""
    lookup: Callable[[str, int], Awaitable[list[str]]] | None = None
    """How host names become addresses (default: the system resolver); a test seam for
    hosts served in-process (``httpx.ASGITransport``) under made-up names."""
    txt_lookup: Callable[[str], Awaitable[list[str]]] | None = None
    """How DNS TXT records are read (default: dnspython with the system's resolvers); a
    test seam, as ``lookup`` is."""

    async def txt(self, name: str, *, timeout_s: float = 5.0) -> list[str]:
        """The TXT strings of ``name`` (empty if it has none or does not exist).

        A TXT query goes to the system's configured resolvers, never to an address a record
        names, so no address check applies. Raises :class:`UpstreamError` if DNS fails.
        """
        if self.txt_lookup is not None:
            return await self.txt_lookup(name)
        try:
            answer = await dns.asyncresolver.resolve(name, "TXT", lifetime=timeout_s)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise UpstreamError(f"TXT {name}: {exc.__class__.__name__}") from None
        out: list[str] = []
        for rdata in answer:
            parts = getattr(rdata, "strings", ())
            out.append(b"".join(parts).decode("utf-8", "replace"))
        return out

    async def _addresses(self, host: str, port: int) -> list[str]:
        try:
            literal = ipaddress.ip_address(host)
            return [str(literal)]
        except ValueError:
            pass
        if self.lookup is not None:
            return await self.lookup(host, port)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=10
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot resolve {host}: {exc}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def pin(self, url: str, *, allow_trusted: bool) -> tuple[str, str]:
        """Check ``url`` and return (URL with the checked IP as host, original host)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamRefused(f"refusing {parts.scheme or 'relative'} URL")
        if parts.username or parts.password:
            raise UpstreamRefused("refusing URL with credentials")
        host = parts.hostname.lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await self._addresses(host, port)
        trusted = allow_trusted and (host in self.trusted_hosts)
        if not addresses:
            raise UpstreamError(f"{host} has no addresses")
        if not trusted:
            for address in addresses:
                if not (is_public_address(address) or address in self.public_overrides):
                    raise UpstreamRefused(f"refusing {host}: resolves to non-public {address}")
        ip = addresses[0]
        netloc_host = f"[{ip}]" if ":" in ip else ip
        netloc = f"{netloc_host}:{parts.port}" if parts.port else netloc_host
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        return pinned, parts.netloc.rsplit("@", 1)[-1]

    @asynccontextmanager
    async def get(
        self,
        url: str,
        *,
        allow_trusted: bool,
        origins: Iterable[str] | None = None,
        headers: dict[str, str] | None = None,
        max_bytes: int | None = None,
        timeout_s: float | None = None,
        host: str | None = None,
    ) -> AsyncIterator[UpstreamResponse]:
        """GET ``url`` following checked redirects; yields the final 2xx response, streaming.

        ``origins``, if given, limits every hop to those ``scheme://host[:port]`` origins.
        ``host``, if given, is sent as the first hop's ``Host`` (a handle asked of the
        server that answers for it, e.g. a local PDS); the address check is the URL's.
        The body iterator stops with :class:`UpstreamTooLarge` past ``max_bytes``; the whole
        exchange is bounded by ``timeout_s`` (both default to the fetcher's).
        """
        allowed = {o.rstrip("/").lower() for o in origins} if origins is not None else None
        limit = self.max_bytes if max_bytes is None else max_bytes
        timeout = self.timeout_s if timeout_s is None else timeout_s
        async with asyncio.timeout(timeout):
            current = url
            for _ in range(MAX_REDIRECTS + 1):
                parts = urlsplit(current)
                origin = f"{parts.scheme}://{parts.netloc}".lower()
                if allowed is not None and origin not in allowed:
                    raise UpstreamRefused(f"refusing {origin}: not a configured audio origin")
                pinned, host_header = await self.pin(current, allow_trusted=allow_trusted)
                if host is not None and current == url:
                    host_header = host
                request = self.client.build_request(
                    "GET",
                    pinned,
                    headers={**(headers or {}), "Host": host_header, "Accept-Encoding": "identity"},
                    extensions={"sni_hostname": parts.hostname or ""},
                    timeout=httpx.Timeout(timeout),
                )
                try:
                    response = await self.client.send(request, stream=True, follow_redirects=False)
                except httpx.HTTPError as exc:
                    raise UpstreamError(f"{origin}: {exc.__class__.__name__}") from None
                try:
                    if response.status_code in (301, 302, 303, 307, 308):
                        location = response.headers.get("location")
                        if not location:
                            raise UpstreamError(f"{origin}: redirect without Location")
                        current = urljoin(current, location)
                        continue
                    if not 200 <= response.status_code < 300:
                        body = await self._start_of(response)
                        raise UpstreamStatus(
                            f"{origin}: answered {response.status_code}", response.status_code, body
                        )
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limit:
                        raise UpstreamTooLarge(f"{origin}: body larger than {limit} bytes")
                    yield UpstreamResponse(
                        response.status_code,
                        response.headers,
                        current,
                        self._limited(response, limit),
                    )
                    return
                finally:
                    await response.aclose()
            raise UpstreamError(f"more than {MAX_REDIRECTS} redirects")

    @staticmethod
    async def _start_of(response: httpx.Response, size: int = 2000) -> bytes:
        out = b""
        try:
            async for chunk in response.aiter_raw(size):
                out += chunk
                if len(out) >= size:
                    break
        except httpx.HTTPError:
            pass
        return out[:size]

    async def _limited(self, response: httpx.Response, limit: int) -> AsyncIterator[bytes]:
        total = 0
        try:
            async for chunk in response.aiter_raw(64 * 1024):
                total += len(chunk)
                if total > limit:
                    raise UpstreamTooLarge(f"body larger than {limit} bytes")
                yield chunk
        except httpx.HTTPError as exc:
            raise UpstreamError(f"reading body: {exc.__class__.__name__}") from None

    async def get_bytes(
        self,
        url: str,
        *,
        allow_trusted: bool,
        limit: int,
        timeout_s: float | None = None,
        host: str | None = None,
    ) -> bytes:
        """A small body (DID documents, listings): at most ``limit`` bytes."""
        out = bytearray()
        async with self.get(
            url, allow_trusted=allow_trusted, max_bytes=limit, timeout_s=timeout_s, host=host
        ) as response:
            async for chunk in response.chunks:
                out += chunk
        return bytes(out)
