"""Record validators compiled once per lexicon: a fast accept, the reference for errors.

:func:`compile_check` turns a definition into a predicate built from closures, one per
schema node, with every limit, ref and format check resolved when it is built, so checking
a record costs a few calls per field instead of a walk that dispatches on the schema type
at every step. The predicate only answers "valid or not"; :func:`record_validator` runs the
generic validator (:func:`lexicons.validate.validate_record`, the reference) when it says
no, so the error, its field path and its reason are exactly the reference's, and anything
the predicate refuses that the reference accepts is accepted.

The predicate follows the reference rule for rule (a test checks that both agree on a
corpus of valid and invalid records); it never raises on bad data.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Mapping

from lexicons.formats import FORMAT_CHECKS, is_cid
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
from lexicons.validate import (
    GRAPHEME,
    INT64_MAX,
    INT64_MIN,
    is_special_object,
    mime_accepted,
    validate_record,
)

__all__ = ["Check", "compile_check", "compile_record_check", "record_validator"]

Check = Callable[[object], bool]
"""Whether a value is valid for the definition it was compiled from."""


def record_validator(
    nsid: str, *, registry: LexiconRegistry | None = None
) -> Callable[[Mapping[str, object]], None]:
    """A function that checks records of collection ``nsid`` like ``validate_record``.

    It raises what ``validate_record(nsid, record)`` raises (``RecordInvalid`` with the
    same path and reason) and accepts what it accepts; valid records take the compiled
    path. Raises ``UnknownLexicon`` now if there is no record lexicon for ``nsid``.
    """
    if registry is None:
        return _default_validator(nsid)
    return _build_validator(nsid, registry)


@functools.cache
def _default_validator(nsid: str) -> Callable[[Mapping[str, object]], None]:
    return _build_validator(nsid, default_registry())


def _build_validator(
    nsid: str, registry: LexiconRegistry
) -> Callable[[Mapping[str, object]], None]:
    ok = compile_record_check(nsid, registry)

    def validate(record: Mapping[str, object]) -> None:
        if not ok(record):
            validate_record(nsid, record, registry=registry)

    return validate


def compile_record_check(nsid: str, registry: LexiconRegistry) -> Check:
    """The predicate of ``validate_record(nsid, record)`` (without an ``rkey``)."""
    record_def = registry.record_def(nsid)
    body = _Compiler(registry).field(record_def.record)

    def check(record: object) -> bool:
        if type(record) is dict or isinstance(record, Mapping):
            record_type = record.get("$type")
            if record_type is not None and record_type != nsid:
                return False
        return body(record)

    return check


def compile_check(ref: str, registry: LexiconRegistry) -> Check:
    """The predicate of ``validate_value(ref, value)``."""
    return _Compiler(registry).definition(ref if "#" in ref else f"{ref}#main")


class _Compiler:
    """Builds closures; refs are compiled once each (and may be recursive)."""

    def __init__(self, registry: LexiconRegistry) -> None:
        self.registry = registry
        self.refs: dict[str, Check] = {}

    def definition(self, ref: str) -> Check:
        compiled = self.refs.get(ref)
        if compiled is not None:
            return compiled
        slot: list[Check] = []

        def late(value: object) -> bool:  # stands in while a recursive ref is compiled
            return slot[0](value)

        self.refs[ref] = late
        target = self._of_definition(self.registry.resolve(ref))
        slot.append(target)
        self.refs[ref] = target
        return target

    def _of_definition(self, definition: Definition) -> Check:
        if isinstance(definition, RecordDef):
            return self.field(definition.record)
        if isinstance(definition, TokenDef | EndpointDef):
            return _never  # the reference raises TypeError: let it
        return self.field(definition)

    def field(self, schema: FieldType) -> Check:
        # No separate null check: every node below refuses None (not a str, int, Mapping...).
        if isinstance(schema, StringType):
            return _string(schema)
        if isinstance(schema, IntegerType):
            return _integer(schema)
        if isinstance(schema, BooleanType):
            return _boolean(schema)
        if isinstance(schema, ObjectType):
            return self._object(schema)
        if isinstance(schema, ArrayType):
            return self._array(schema)
        if isinstance(schema, RefType):
            return self.definition(schema.ref)
        if isinstance(schema, UnionType):
            return self._union(schema)
        if isinstance(schema, BlobType):
            return _blob(schema)
        if isinstance(schema, BytesType):
            return _bytes(schema)
        if isinstance(schema, CidLinkType):
            return _cid_link
        if isinstance(schema, UnknownType):
            return _plain_object
        raise TypeError(f"unknown schema node {schema!r}")

    def _object(self, schema: ObjectType) -> Check:
        required = schema.required
        nullable = schema.nullable
        props = tuple((name, self.field(prop)) for name, prop in schema.properties.items())

        def check(value: object) -> bool:
            if type(value) is not dict and not isinstance(value, Mapping):
                return False
            for name in required:
                if name not in value:
                    return False
            for name, prop in props:
                if name not in value:
                    continue
                item = value[name]
                if item is None and name in nullable:
                    continue
                if not prop(item):
                    return False
            return True

        return check

    def _array(self, schema: ArrayType) -> Check:
        item_check = self.field(schema.items)
        high, low = schema.max_length, schema.min_length

        def check(value: object) -> bool:
            if not isinstance(value, list | tuple):
                return False
            count = len(value)
            if (high is not None and count > high) or (low is not None and count < low):
                return False
            return all(item_check(item) for item in value)

        return check

    def _union(self, schema: UnionType) -> Check:
        members = {ref: self.definition(ref) for ref in schema.refs}
        closed = schema.closed

        def check(value: object) -> bool:
            if type(value) is not dict and not isinstance(value, Mapping):
                return False
            member_type = value.get("$type")
            if not isinstance(member_type, str) or not member_type:
                return False
            member = members.get(member_type if "#" in member_type else f"{member_type}#main")
            if member is not None:
                return member(value)
            return not closed

        return check


def _never(value: object) -> bool:
    return False


def _plain_object(value: object) -> bool:
    return (type(value) is dict or isinstance(value, Mapping)) and not is_special_object(value)


def _string(schema: StringType) -> Check:
    const, enum = schema.const, schema.enum
    high, low = schema.max_length, schema.min_length
    sized = high is not None or low is not None
    max_graphemes, min_graphemes = schema.max_graphemes, schema.min_graphemes
    format_check = FORMAT_CHECKS[schema.format] if schema.format is not None else None

    def check(value: object) -> bool:
        if not isinstance(value, str):
            return False
        if (const is not None and value != const) or (enum is not None and value not in enum):
            return False
        if sized:
            if value.isascii():
                size = len(value)
            else:
                try:
                    size = len(value.encode("utf-8"))
                except UnicodeEncodeError:
                    return False
            if (high is not None and size > high) or (low is not None and size < low):
                return False
        if min_graphemes is not None or (max_graphemes is not None and len(value) > max_graphemes):
            graphemes = sum(1 for _ in GRAPHEME.finditer(value))
            if (max_graphemes is not None and graphemes > max_graphemes) or (
                min_graphemes is not None and graphemes < min_graphemes
            ):
                return False
        return format_check is None or format_check(value)

    return check


def _integer(schema: IntegerType) -> Check:
    const, enum = schema.const, schema.enum
    low = INT64_MIN if schema.minimum is None else max(INT64_MIN, schema.minimum)
    high = INT64_MAX if schema.maximum is None else min(INT64_MAX, schema.maximum)

    def check(value: object) -> bool:
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        if (const is not None and value != const) or (enum is not None and value not in enum):
            return False
        return low <= value <= high

    return check


def _boolean(schema: BooleanType) -> Check:
    const = schema.const

    def check(value: object) -> bool:
        return isinstance(value, bool) and (const is None or value is const)

    return check


def _cid_link(value: object) -> bool:
    if (type(value) is not dict and not isinstance(value, Mapping)) or len(value) != 1:
        return False
    link = value.get("$link")
    return isinstance(link, str) and is_cid(link)


def _blob(schema: BlobType) -> Check:
    accept = schema.accept
    max_size = schema.max_size

    def check(value: object) -> bool:
        if type(value) is not dict and not isinstance(value, Mapping):
            return False
        size: int | None
        if value.get("$type") == "blob":
            if not _cid_link(value.get("ref")):
                return False
            raw_size = value.get("size")
            if not isinstance(raw_size, int) or isinstance(raw_size, bool) or raw_size < 0:
                return False
            size = raw_size
        elif "cid" in value and "$type" not in value:
            cid = value.get("cid")
            if not isinstance(cid, str) or not is_cid(cid):
                return False
            size = None
        else:
            return False
        mime_type = value.get("mimeType")
        if not isinstance(mime_type, str) or "/" not in mime_type:
            return False
        if accept is not None and not mime_accepted(accept, mime_type):
            return False
        return max_size is None or size is None or size <= max_size

    return check


def _bytes(schema: BytesType) -> Check:
    high, low = schema.max_length, schema.min_length

    def check(value: object) -> bool:
        if (type(value) is not dict and not isinstance(value, Mapping)) or len(value) != 1:
            return False
        encoded = value.get("$bytes")
        if not isinstance(encoded, str):
            return False
        try:
            data = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except ValueError:  # binascii.Error, or text that is not ASCII
            return False
        size = len(data)
        return (high is None or size <= high) and (low is None or size >= low)

    return check
