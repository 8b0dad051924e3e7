"""Pure audio helpers and the SSRF guard's address policy (no network)."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from api.audio import RangeNotSatisfiable, blob_digest, content_type, parse_range, raw_cid
from kernel.fetch import UpstreamFetcher, UpstreamRefused, is_public_address


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-1", (0, 1)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=500-", (500, 999)),
        ("bytes=990-5000", (990, 999)),
        ("bytes=5-2", None),  # invalid: ignored, whole body
        ("bytes=0-1,5-6", None),  # multi-range: whole body
        ("items=0-1", None),
        ("bytes=abc", None),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)


@pytest.mark.parametrize(
    ("file_type", "mime"),
    [
        ("mp3", "audio/mpeg"),
        ("m4a", "audio/mp4"),
        ("flac", "audio/flac"),
        ("ogg", "audio/ogg"),
        ("opus", "audio/ogg; codecs=opus"),
        ("wav", "audio/wav"),
        ("aiff", "audio/aiff"),
        ("AIF", "audio/aiff"),
    ],
)
def test_content_types_are_explicit(file_type, mime):
    assert content_type(file_type) == mime


def test_unknown_type_falls_back_to_blob_mime_then_octet_stream():
    assert content_type("xyz", "audio/x-custom") == "audio/x-custom"
    assert content_type("xyz", "text/html") == "application/octet-stream"


def test_raw_cid_round_trip():
    digest = hashlib.sha256(b"hello").digest()
    cid = raw_cid(digest)
    assert cid.startswith("bafkrei") and blob_digest(cid) == digest
    with pytest.raises(ValueError):
        blob_digest("Qmnotbase32")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("127.9.9.9", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("169.254.1.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
        ("not-an-ip", False),
    ],
)
def test_public_address_policy(address, public):
    assert is_public_address(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/x",
        "http://localhost/x",
        "http://[::ffff:7f00:1]/x",
        "file:///etc/passwd",
        "http://user:pw@8.8.8.8/x",
    ],
)
async def test_guard_refuses_before_connecting(url):
    async with httpx.AsyncClient() as client:
        fetcher = UpstreamFetcher(client=client, trusted_hosts=frozenset({"localhost"}))
        with pytest.raises(UpstreamRefused):
            await fetcher.pin(url, allow_trusted=False)


async def test_trusted_hosts_only_when_allowed_and_ip_is_pinned():
    async with httpx.AsyncClient() as client:
        fetcher = UpstreamFetcher(client=client, trusted_hosts=frozenset({"localhost"}))
        pinned, host = await fetcher.pin("http://localhost:2583/xrpc/x?a=1", allow_trusted=True)
        assert host == "localhost:2583"
        assert pinned.split("//", 1)[1].split(":")[0] in ("127.0.0.1", "[")  # an IP, not a name
        assert pinned.endswith("/xrpc/x?a=1")
