"""Validation of records and other data against their lexicons.

Data is expected in the JSON form of the ATProto data model, as produced from DAG-CBOR:
blobs as `{"$type": "blob", "ref": {"$link": cid}, "mimeType": ..., "size": ...}` (the
legacy `{"cid": ..., "mimeType": ...}` form is accepted too), bytes as `{"$bytes": base64}`
and CID links as `{"$link": cid}`. Fields a lexicon does not mention are allowed; open
unions admit members of types they do not list.

The first problem found is raised, with the path of the field and the reason:
`features[2].did: must be a valid DID, got 'alice'`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TypeAlias

import regex

from lexicons.errors import RecordInvalid, UnknownLexicon, ValidationError
from lexicons.formats import FORMAT_CHECKS, is_cid, is_nsid, is_record_key, is_tid
from lexicons.registry import LexiconRegistry, default_registry
from lexicons.schema import (
    ArrayType,
    BlobType,
    BooleanType,
    BytesType,
    CidLinkType,
    Definition,
    EndpointDef,
    FieldType,
    IntegerType,
    ObjectType,
    RecordDef,
    RefType,
    StringType,
    TokenDef,
    UnionType,
    UnknownType,
)

__all__ = ["validate_record", "validate_value"]

_Path: TypeAlias = tuple[str | int, ...]

# Shared with lexicons.compiled, which checks the same rules.
GRAPHEME = regex.compile(r"\X")
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_SHOWN_CHARS = 64

_FORMAT_NAMES = MappingProxyType(
    {
        "at-identifier": "DID or handle",
        "at-uri": "AT-URI",
        "cid": "CID",
        "datetime": "datetime (RFC 3339 with uppercase T and a timezone)",
        "did": "DID",
        "handle": "handle",
        "language": "language tag",
        "nsid": "NSID",
        "record-key": "record key",
        "tid": "TID",
        "uri": "URI",
    }
)


def validate_record(
    nsid: str,
    record: Mapping[str, object],
    *,
    rkey: str | None = None,
    registry: LexiconRegistry | None = None,
) -> None:
    """Check `record` against the record lexicon of collection `nsid`.

    A `$type` in the record must equal `nsid`. When `rkey` is given it must suit the
    lexicon's key type (`tid`, `nsid`, `literal:self`, `any`). Uses the packaged lexicons
    unless `registry` is given.

    Raises `UnknownLexicon` if there is no record lexicon for `nsid`, and `RecordInvalid`
    naming the field and the reason otherwise.
    """
    if registry is None:
        registry = default_registry()
    record_def = registry.record_def(nsid)
    try:
        if rkey is not None:
            _check_rkey(record_def.key, rkey)
        if isinstance(record, Mapping):
            record_type = record.get("$type")
            if record_type is not None and record_type != nsid:
                raise ValidationError("$type", f"must be {nsid!r}, got {_show(record_type)}")
        _Validator(registry, "record").check(record_def.record, record, ())
    except ValidationError as exc:
        raise RecordInvalid(nsid, exc.path, exc.reason) from None


def validate_value(
    ref: str,
    value: object,
    *,
    registry: LexiconRegistry | None = None,
) -> None:
    """Check `value` against the definition `ref` names (`nsid` or `nsid#name`).

    Raises `UnknownLexicon` if `ref` names nothing, and `ValidationError` naming the
    field (relative to `value`) and the reason otherwise.
    """
    if registry is None:
        registry = default_registry()
    definition = registry.resolve(ref if "#" in ref else f"{ref}#main")
    _Validator(registry, "value").check_definition(definition, value, ())


def validate_query_output(
    nsid: str,
    value: object,
    *,
    registry: LexiconRegistry | None = None,
) -> None:
    """Check a query's JSON response `value` against the output schema of lexicon `nsid`.

    Raises `UnknownLexicon` if `nsid` is not a query with an output schema, and
    `ValidationError` naming the field and the reason otherwise.
    """
    if registry is None:
        registry = default_registry()
    definition = registry.resolve(f"{nsid}#main")
    if not isinstance(definition, EndpointDef) or definition.output is None:
        raise UnknownLexicon(nsid, "not a query with an output schema")
    _Validator(registry, "output").check(definition.output, value, ())


def validate_query_params(
    nsid: str,
    params: Mapping[str, object],
    *,
    registry: LexiconRegistry | None = None,
) -> None:
    """Check decoded query parameters against the `parameters` of lexicon `nsid`.

    Raises `UnknownLexicon` if `nsid` is not a query, and `ValidationError` otherwise.
    """
    if registry is None:
        registry = default_registry()
    definition = registry.resolve(f"{nsid}#main")
    if not isinstance(definition, EndpointDef) or definition.kind != "query":
        raise UnknownLexicon(nsid, "not a query")
    if definition.parameters is not None:
        _Validator(registry, "params").check(definition.parameters, params, ())


def _check_rkey(key_type: str, rkey: str) -> None:
    if key_type.startswith("literal:"):
        expected = key_type.removeprefix("literal:")
        if rkey != expected:
            raise ValidationError("rkey", f"must be {expected!r}, got {_show(rkey)}")
    elif key_type == "tid" and not is_tid(rkey):
        raise ValidationError("rkey", f"must be a valid TID, got {_show(rkey)}")
    elif key_type == "nsid" and not is_nsid(rkey):
        raise ValidationError("rkey", f"must be a valid NSID, got {_show(rkey)}")
    elif not is_record_key(rkey):
        raise ValidationError("rkey", f"must be a valid record key, got {_show(rkey)}")


class _Validator:
    """Walks a value alongside its schema; raises `ValidationError` on the first problem."""

    def __init__(self, registry: LexiconRegistry, root: str) -> None:
        self.registry = registry
        self.root = root

    def fail(self, path: _Path, reason: str) -> ValidationError:
        return ValidationError(self.render(path), reason)

    def render(self, path: _Path) -> str:
        text = ""
        for part in path:
            if isinstance(part, int):
                text += f"[{part}]"
            else:
                text += f".{part}" if text else part
        if not text or text.startswith("["):
            text = self.root + text
        return text

    def check_definition(self, definition: Definition, value: object, path: _Path) -> None:
        if isinstance(definition, RecordDef):
            self.check(definition.record, value, path)
        elif isinstance(definition, TokenDef | EndpointDef):
            # The registry refuses refs to these when it loads, so this is a bug.
            raise TypeError(f"{definition!r} does not describe data")
        else:
            self.check(definition, value, path)

    def check(self, schema: FieldType, value: object, path: _Path) -> None:
        if value is None:
            raise self.fail(path, "must not be null")
        if isinstance(schema, StringType):
            self.check_string(schema, value, path)
        elif isinstance(schema, IntegerType):
            self.check_integer(schema, value, path)
        elif isinstance(schema, BooleanType):
            if not isinstance(value, bool):
                raise self.fail(path, f"must be a boolean, got {_kind(value)}")
            if schema.const is not None and value is not schema.const:
                raise self.fail(path, f"must be {str(schema.const).lower()}")
        elif isinstance(schema, ObjectType):
            self.check_object(schema, value, path)
        elif isinstance(schema, ArrayType):
            self.check_array(schema, value, path)
        elif isinstance(schema, RefType):
            self.check_definition(self.registry.resolve(schema.ref), value, path)
        elif isinstance(schema, UnionType):
            self.check_union(schema, value, path)
        elif isinstance(schema, BlobType):
            self.check_blob(schema, value, path)
        elif isinstance(schema, BytesType):
            self.check_bytes(schema, value, path)
        elif isinstance(schema, CidLinkType):
            self.check_cid_link(value, path)
        elif isinstance(schema, UnknownType):
            if not isinstance(value, Mapping):
                raise self.fail(path, f"must be an object, got {_kind(value)}")
            if is_special_object(value):
                raise self.fail(path, "must be an object, not bytes, a CID link or a blob")

    def check_object(self, schema: ObjectType, value: object, path: _Path) -> None:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be an object, got {_kind(value)}")
        for name in schema.required:
            if name not in value:
                raise self.fail((*path, name), "is required")
        for name, prop in schema.properties.items():
            if name not in value:
                continue
            item = value[name]
            if item is None and name in schema.nullable:
                continue
            self.check(prop, item, (*path, name))

    def check_array(self, schema: ArrayType, value: object, path: _Path) -> None:
        if not isinstance(value, list | tuple):
            raise self.fail(path, f"must be an array, got {_kind(value)}")
        count = len(value)
        if schema.max_length is not None and count > schema.max_length:
            raise self.fail(
                path, f"must have at most {_count(schema.max_length, 'item')}, got {count}"
            )
        if schema.min_length is not None and count < schema.min_length:
            raise self.fail(
                path, f"must have at least {_count(schema.min_length, 'item')}, got {count}"
            )
        for index, item in enumerate(value):
            self.check(schema.items, item, (*path, index))

    def check_union(self, schema: UnionType, value: object, path: _Path) -> None:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be an object, got {_kind(value)}")
        expected = ", ".join(_display_ref(ref) for ref in schema.refs)
        member_type = value.get("$type")
        if member_type is None:
            raise self.fail(path, f"union value is missing $type (expected one of {expected})")
        if not isinstance(member_type, str) or not member_type:
            raise self.fail((*path, "$type"), f"must be a string, got {_kind(member_type)}")
        qualified = member_type if "#" in member_type else f"{member_type}#main"
        if qualified in schema.refs:
            self.check_definition(self.registry.resolve(qualified), value, path)
        elif schema.closed:
            raise self.fail(
                (*path, "$type"), f"{member_type!r} is not one of the allowed types ({expected})"
            )

    def check_string(self, schema: StringType, value: object, path: _Path) -> None:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, got {_kind(value)}")
        if schema.const is not None and value != schema.const:
            raise self.fail(path, f"must be {schema.const!r}, got {_show(value)}")
        if schema.enum is not None and value not in schema.enum:
            allowed = ", ".join(repr(option) for option in schema.enum)
            raise self.fail(path, f"must be one of {allowed}; got {_show(value)}")
        if schema.min_length is not None or schema.max_length is not None:
            try:
                size = len(value.encode("utf-8"))
            except UnicodeEncodeError:
                raise self.fail(path, "must be valid Unicode (found a lone surrogate)") from None
            if schema.max_length is not None and size > schema.max_length:
                raise self.fail(
                    path, f"must be at most {_count(schema.max_length, 'byte')}, got {size}"
                )
            if schema.min_length is not None and size < schema.min_length:
                raise self.fail(
                    path, f"must be at least {_count(schema.min_length, 'byte')}, got {size}"
                )
        self.check_graphemes(schema, value, path)
        if schema.format is not None and not FORMAT_CHECKS[schema.format](value):
            name = _FORMAT_NAMES.get(schema.format, schema.format)
            raise self.fail(path, f"must be a valid {name}, got {_show(value)}")

    def check_graphemes(self, schema: StringType, value: str, path: _Path) -> None:
        high, low = schema.max_graphemes, schema.min_graphemes
        # A grapheme holds at least one code point, so short strings need no counting.
        if (high is None or len(value) <= high) and low is None:
            return
        graphemes = sum(1 for _ in GRAPHEME.finditer(value))
        if high is not None and graphemes > high:
            raise self.fail(path, f"must be at most {_count(high, 'grapheme')}, got {graphemes}")
        if low is not None and graphemes < low:
            raise self.fail(path, f"must be at least {_count(low, 'grapheme')}, got {graphemes}")

    def check_integer(self, schema: IntegerType, value: object, path: _Path) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(path, f"must be an integer, got {_kind(value)}")
        if not INT64_MIN <= value <= INT64_MAX:
            raise self.fail(path, "must fit in a signed 64-bit integer")
        if schema.const is not None and value != schema.const:
            raise self.fail(path, f"must be {schema.const}, got {value}")
        if schema.enum is not None and value not in schema.enum:
            allowed = ", ".join(str(option) for option in schema.enum)
            raise self.fail(path, f"must be one of {allowed}; got {value}")
        if schema.minimum is not None and value < schema.minimum:
            raise self.fail(path, f"must be at least {schema.minimum}, got {value}")
        if schema.maximum is not None and value > schema.maximum:
            raise self.fail(path, f"must be at most {schema.maximum}, got {value}")

    def check_blob(self, schema: BlobType, value: object, path: _Path) -> None:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a blob, got {_kind(value)}")
        size: int | None
        if value.get("$type") == "blob":
            self.check_cid_link(value.get("ref"), (*path, "ref"))
            raw_size = value.get("size")
            if not isinstance(raw_size, int) or isinstance(raw_size, bool) or raw_size < 0:
                raise self.fail(
                    (*path, "size"), f"must be a non-negative integer, got {_show(raw_size)}"
                )
            size = raw_size
        elif "cid" in value and "$type" not in value:
            # Legacy blob reference: a CID string and a MIME type, no size.
            cid = value.get("cid")
            if not isinstance(cid, str) or not is_cid(cid):
                raise self.fail((*path, "cid"), f"must be a valid CID, got {_show(cid)}")
            size = None
        else:
            raise self.fail(path, 'must be a blob (an object with "$type": "blob")')
        mime_type = value.get("mimeType")
        if not isinstance(mime_type, str) or "/" not in mime_type:
            raise self.fail((*path, "mimeType"), f"must be a MIME type, got {_show(mime_type)}")
        if schema.accept is not None and not mime_accepted(schema.accept, mime_type):
            raise self.fail(
                path,
                f"MIME type {mime_type!r} is not accepted (accepts {', '.join(schema.accept)})",
            )
        if schema.max_size is not None and size is not None and size > schema.max_size:
            raise self.fail(
                path, f"blob must be at most {_count(schema.max_size, 'byte')}, got {size}"
            )

    def check_bytes(self, schema: BytesType, value: object, path: _Path) -> None:
        encoded = value.get("$bytes") if isinstance(value, Mapping) else None
        if not isinstance(value, Mapping) or len(value) != 1 or not isinstance(encoded, str):
            raise self.fail(path, f'must be bytes ({{"$bytes": base64}}), got {_kind(value)}')
        try:
            # ATProto writes base64 without padding; accept it either way.
            data = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except ValueError:  # binascii.Error, or text that is not ASCII
            raise self.fail((*path, "$bytes"), "must be valid base64") from None
        size = len(data)
        if schema.max_length is not None and size > schema.max_length:
            raise self.fail(
                path, f"must be at most {_count(schema.max_length, 'byte')}, got {size}"
            )
        if schema.min_length is not None and size < schema.min_length:
            raise self.fail(
                path, f"must be at least {_count(schema.min_length, 'byte')}, got {size}"
            )

    def check_cid_link(self, value: object, path: _Path) -> None:
        link = value.get("$link") if isinstance(value, Mapping) else None
        if not isinstance(value, Mapping) or len(value) != 1 or not isinstance(link, str):
            raise self.fail(path, f'must be a CID link ({{"$link": cid}}), got {_kind(value)}')
        if not is_cid(link):
            raise self.fail((*path, "$link"), f"must be a valid CID, got {_show(link)}")


def is_special_object(value: Mapping[str, object]) -> bool:
    """Whether a JSON object stands for bytes, a CID link or a blob rather than an object.

    An ``unknown`` field holds an object; these are other data-model types in JSON form.
    """
    return "$bytes" in value or "$link" in value or value.get("$type") == "blob"


def mime_accepted(patterns: Sequence[str], mime_type: str) -> bool:
    """Whether a blob's ``mime_type`` matches one of a lexicon's ``accept`` patterns."""
    base = mime_type.partition(";")[0].strip().lower()
    major = base.partition("/")[0]
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern in ("*/*", base) or pattern == f"{major}/*":
            return True
    return False


def _display_ref(ref: str) -> str:
    return ref.removesuffix("#main")


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


def _kind(value: object) -> str:
    """Name the data-model type of `value` for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes | bytearray):
        return "raw bytes"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _show(value: object) -> str:
    """A short repr of `value` for messages (long values are cut)."""
    text = repr(value)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return text
