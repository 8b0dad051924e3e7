"""Syntax checks for the Lexicon string formats (`did`, `datetime`, `at-uri`, ...).

Each predicate takes a string and answers whether it is valid for that format, following
the ATProto specs (atproto.com/specs). They only check syntax: a well-formed DID may
still fail to resolve.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

__all__ = [
    "FORMAT_CHECKS",
    "is_at_identifier",
    "is_at_uri",
    "is_cid",
    "is_datetime",
    "is_did",
    "is_handle",
    "is_language",
    "is_nsid",
    "is_record_key",
    "is_tid",
    "is_uri",
]

# Character classes are spelled out in ASCII on purpose: `\d` and `\w` match non-ASCII
# digits and letters in Python.
_DID = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
_DID_MAX = 2048

_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
# The last label (TLD) must start with a letter, which also rules out IPv4 addresses.
_HANDLE = re.compile(rf"(?:{_LABEL}\.)+[a-zA-Z](?:[a-zA-Z0-9-]{{0,61}}[a-zA-Z0-9])?")
_HANDLE_MAX = 253

# Reversed domain authority (first segment starts with a letter), then a name segment of
# letters and digits that starts with a letter.
_NSID = re.compile(
    rf"[a-zA-Z](?:[a-zA-Z0-9-]{{0,61}}[a-zA-Z0-9])?(?:\.{_LABEL})+\.[a-zA-Z][a-zA-Z0-9]{{0,62}}"
)
_NSID_MAX = 317

_TID = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")

_RECORD_KEY = re.compile(r"[a-zA-Z0-9._:~-]{1,512}")

# Restricted AT-URI as used in Lexicon: authority, optional collection, optional record
# key; no query, no fragment, no trailing slash.
_AT_URI = re.compile(r"at://([^/?#\s]+)(?:/([^/?#\s]+)(?:/([^/?#\s]+))?)?")
_AT_URI_MAX = 8 * 1024

_URI_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*")
_URI_MAX = 8 * 1024

_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:Z|([+-])([0-9]{2}):([0-9]{2}))"
)
_DATETIME_MAX = 64

# BCP 47 (RFC 5646 section 2.1) as ATProto uses it: the primary language subtag in lower
# case, 2-3 letters (4 letters are reserved; 5-8 are for registered languages); then the
# optional subtags in their order, any case. A tag may be private use only (`x-...`, any
# case) or an `i-` grandfathered one; the irregular grandfathered tags that do not parse
# are listed.
_LANGUAGE = re.compile(
    r"(?:[a-z]{2,3}(?:-[a-zA-Z]{3}){0,3}|[a-z]{5,8})"  # language, extlangs
    r"(?:-[a-zA-Z]{4})?"  # script
    r"(?:-(?:[a-zA-Z]{2}|[0-9]{3}))?"  # region
    r"(?P<variants>(?:-(?:[a-zA-Z0-9]{5,8}|[0-9][a-zA-Z0-9]{3}))*)"
    r"(?P<extensions>(?:-[a-wyzA-WYZ0-9](?:-[a-zA-Z0-9]{2,8})+)*)"
    r"(?:-[xX](?:-[a-zA-Z0-9]{1,8})+)?"  # private use
    r"|[xX](?:-[a-zA-Z0-9]{1,8})+"
    r"|i(?:-[a-zA-Z0-9]{1,8})+"
)
_IRREGULAR_LANGUAGES = frozenset({"en-GB-oed", "sgn-BE-FR", "sgn-BE-NL", "sgn-CH-DE"})

_BASE32_LOWER = re.compile(r"[a-z2-7]+")
_CID_MIN = 8
_CID_MAX = 256
_CID_SYNTAX = re.compile(r"[a-zA-Z0-9+=]+")


def is_did(value: str) -> bool:
    """Whether `value` is syntactically a DID (`did:method:identifier`)."""
    return len(value) <= _DID_MAX and _DID.fullmatch(value) is not None


def is_handle(value: str) -> bool:
    """Whether `value` is syntactically a handle (a DNS name with at least two labels)."""
    return len(value) <= _HANDLE_MAX and _HANDLE.fullmatch(value) is not None


def is_at_identifier(value: str) -> bool:
    """Whether `value` is a DID or a handle."""
    return is_did(value) if value.startswith("did:") else is_handle(value)


def is_nsid(value: str) -> bool:
    """Whether `value` is a namespaced identifier such as `fm.plyr.track`."""
    return len(value) <= _NSID_MAX and _NSID.fullmatch(value) is not None


def is_tid(value: str) -> bool:
    """Whether `value` is a timestamp identifier (13 base32-sortable characters)."""
    return _TID.fullmatch(value) is not None


def is_record_key(value: str) -> bool:
    """Whether `value` may be used as a record key."""
    return value not in (".", "..") and _RECORD_KEY.fullmatch(value) is not None


def is_at_uri(value: str) -> bool:
    """Whether `value` is an `at://authority[/collection[/rkey]]` URI."""
    if len(value) > _AT_URI_MAX:
        return False
    match = _AT_URI.fullmatch(value)
    if match is None:
        return False
    authority, collection, rkey = match.groups()
    if not is_at_identifier(authority):
        return False
    if collection is not None and not is_nsid(collection):
        return False
    return rkey is None or is_record_key(rkey)


def is_uri(value: str) -> bool:
    """Whether `value` is an absolute URI: a scheme, a colon, and no whitespace."""
    if len(value) > _URI_MAX or any(c.isspace() for c in value):
        return False
    scheme, colon, rest = value.partition(":")
    if not colon or not rest or _URI_SCHEME.fullmatch(scheme) is None:
        return False
    if rest.startswith("//"):
        # A URI with an authority needs a non-empty one.
        authority = rest[2:]
        return authority != "" and not authority.startswith("/")
    return True


def is_datetime(value: str) -> bool:
    """Whether `value` is an ATProto datetime.

    That is RFC 3339 in the subset shared with ISO 8601: uppercase `T`, seconds
    required, optional fractional seconds, and a required timezone (`Z` or `+hh:mm`;
    `-00:00` is not allowed). The date and time must exist, and the moment must not fall
    before `0000-01-01T00:00:00Z` once converted to UTC (year 0 is valid: ISO 8601 counts
    1 BC as year 0000, and the interop vectors accept it).
    """
    if len(value) > _DATETIME_MAX:
        return False
    match = _DATETIME.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    sign, tz_hour, tz_minute = match.groups()[6:]
    if not (1 <= month <= 12 and hour <= 23 and minute <= 59 and second <= 59):
        return False
    # Python's datetime starts at year 1; the Gregorian calendar repeats every 400 years.
    if not 1 <= day <= calendar.monthrange(year + 400, month)[1]:
        return False
    offset_minutes = 0
    if sign is not None:
        hours, minutes = int(tz_hour), int(tz_minute)
        if (sign == "-" and hours == minutes == 0) or hours > 23 or minutes > 59:
            return False
        offset_minutes = (hours * 60 + minutes) * (-1 if sign == "-" else 1)
    # Only the first hours of year 0 can fall before year 0 in UTC (ahead-of-UTC offsets).
    return not (year == 0 and month == 1 and day == 1 and hour * 60 + minute < offset_minutes)


def is_language(value: str) -> bool:
    """Whether `value` is a BCP 47 language tag (`en`, `pt-BR`, `zh-Hant`, `x-klingon`).

    Beyond the syntax, a variant subtag or an extension singleton may not appear twice
    (compared without case: RFC 5646 section 2.2.9 calls such tags invalid).
    """
    if value in _IRREGULAR_LANGUAGES:
        return True
    match = _LANGUAGE.fullmatch(value)
    if match is None:
        return False
    variants = (match.group("variants") or "").lower().split("-")[1:]
    if len(set(variants)) != len(variants):
        return False
    extensions = (match.group("extensions") or "").lower().split("-")
    singletons = [subtag for subtag in extensions if len(subtag) == 1]
    return len(set(singletons)) == len(singletons)


# The CIDs ATProto uses almost always: CIDv1, dag-cbor or raw, sha2-256, in base32. Their
# first bytes (01 71|55 12 20) fix the prefix and the canonical last character carries two
# zero padding bits, so a regex accepts them without decoding; anything else is decoded.
_COMMON_CID = re.compile(r"baf(?:yrei|krei)[a-h][a-z2-7]{50}[aeimquy4]")


def is_cid(value: str) -> bool:
    """Whether `value` is the string form of a CID.

    The syntax is the spec's (and the interop vectors'): 8 to 256 characters from
    `[a-zA-Z0-9+=]` (any multibase encoding), legacy CIDv0 (`Qm...`, 46 characters)
    refused. A CID in atproto's own form, multibase `b` (lowercase base32), must also
    decode to a CIDv1 with a complete multihash: that is the form records carry and the
    one we decode and compare (blob digests, strong refs).
    """
    if _COMMON_CID.fullmatch(value) is not None:
        return True
    if not _CID_MIN <= len(value) <= _CID_MAX or _CID_SYNTAX.fullmatch(value) is None:
        return False
    if len(value) == 46 and value.startswith("Qm"):
        return False
    if value.startswith("b"):
        raw = _base32_decode(value[1:])
        return raw is not None and _is_cid_v1(raw)
    return True


def _is_cid_v1(raw: bytes) -> bool:
    version, pos = _read_varint(raw, 0)
    if version != 1:
        return False
    _codec, pos = _read_varint(raw, pos)
    if pos < 0:
        return False
    _hash_code, pos = _read_varint(raw, pos)
    if pos < 0:
        return False
    digest_size, pos = _read_varint(raw, pos)
    return pos >= 0 and digest_size > 0 and len(raw) - pos == digest_size


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    """Read an unsigned LEB128 varint at `pos`; returns (value, next position) or (-1, -1)."""
    value = 0
    for shift in range(0, 63, 7):
        if pos < 0 or pos >= len(raw):
            return -1, -1
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    return -1, -1


def _base32_decode(text: str) -> bytes | None:
    if _BASE32_LOWER.fullmatch(text) is None:
        return None
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except binascii.Error:
        return None


FORMAT_CHECKS: Mapping[str, Callable[[str], bool]] = MappingProxyType(
    {
        "at-identifier": is_at_identifier,
        "at-uri": is_at_uri,
        "cid": is_cid,
        "datetime": is_datetime,
        "did": is_did,
        "handle": is_handle,
        "language": is_language,
        "nsid": is_nsid,
        "record-key": is_record_key,
        "tid": is_tid,
        "uri": is_uri,
    }
)
"""Every string format Lexicon defines, by name, with its check."""
