"""Typed model of lexicon documents, and the parser that builds it from decoded JSON.

Parsing is strict about what validation relies on (types, limits, formats, refs) and
ignores documentation fields (`description`, `knownValues`, `default`). Refs are stored
fully qualified (`nsid#name`), so `#item` in `fm.plyr.list` becomes `fm.plyr.list#item`
and a bare `com.atproto.repo.strongRef` becomes `com.atproto.repo.strongRef#main`.

Primary types that describe XRPC endpoints or permissions (`query`, `procedure`,
`subscription`, `permission-set`) are kept as `EndpointDef` and not validated here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

from lexicons.errors import LexiconSchemaError
from lexicons.formats import FORMAT_CHECKS, is_nsid

__all__ = [
    "ArrayType",
    "BlobType",
    "BooleanType",
    "BytesType",
    "CidLinkType",
    "Definition",
    "EndpointDef",
    "FieldType",
    "IntegerType",
    "Lexicon",
    "ObjectType",
    "RecordDef",
    "RefType",
    "StringType",
    "TokenDef",
    "UnionType",
    "UnknownType",
    "parse_lexicon",
    "qualify_ref",
]


@dataclass(frozen=True, slots=True)
class StringType:
    """`string`: lengths in UTF-8 bytes, lengths in graphemes, enum/const, format."""

    format: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_graphemes: int | None = None
    max_graphemes: int | None = None
    enum: tuple[str, ...] | None = None
    const: str | None = None


@dataclass(frozen=True, slots=True)
class IntegerType:
    """`integer`: inclusive bounds, enum/const."""

    minimum: int | None = None
    maximum: int | None = None
    enum: tuple[int, ...] | None = None
    const: int | None = None


@dataclass(frozen=True, slots=True)
class BooleanType:
    """`boolean`, optionally fixed by `const`."""

    const: bool | None = None


@dataclass(frozen=True, slots=True)
class BytesType:
    """`bytes` (`{"$bytes": base64}` in JSON form); lengths count decoded bytes."""

    min_length: int | None = None
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class CidLinkType:
    """`cid-link` (`{"$link": cid}` in JSON form)."""


@dataclass(frozen=True, slots=True)
class BlobType:
    """`blob`: accepted MIME types (`audio/*` patterns allowed) and a size limit."""

    accept: tuple[str, ...] | None = None
    max_size: int | None = None


@dataclass(frozen=True, slots=True)
class UnknownType:
    """`unknown`: any object."""


@dataclass(frozen=True, slots=True)
class RefType:
    """`ref` to another definition, stored fully qualified (`nsid#name`)."""

    ref: str


@dataclass(frozen=True, slots=True)
class UnionType:
    """`union` of refs (fully qualified); an open union also admits other `$type`s."""

    refs: tuple[str, ...]
    closed: bool = False


@dataclass(frozen=True, slots=True)
class ArrayType:
    """`array` of one item type, with optional length bounds (in items)."""

    items: FieldType
    min_length: int | None = None
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class ObjectType:
    """`object`: typed properties, required and nullable property names."""

    properties: Mapping[str, FieldType]
    required: tuple[str, ...] = ()
    nullable: frozenset[str] = frozenset()


FieldType: TypeAlias = (
    StringType
    | IntegerType
    | BooleanType
    | BytesType
    | CidLinkType
    | BlobType
    | UnknownType
    | RefType
    | UnionType
    | ArrayType
    | ObjectType
)
"""A type that data can have."""


@dataclass(frozen=True, slots=True)
class RecordDef:
    """`record`: the record key type (`tid`, `any`, `nsid`, `literal:self`) and its object."""

    key: str
    record: ObjectType


@dataclass(frozen=True, slots=True)
class TokenDef:
    """`token`: a named value with no data of its own."""


@dataclass(frozen=True, slots=True)
class EndpointDef:
    """`query`, `procedure`, `subscription` or `permission-set`: not record data.

    For queries and procedures, `parameters` (a `params` object) and `output` (the
    schema of a JSON response body) are kept so responses can be validated.
    """

    kind: str
    parameters: ObjectType | None = None
    output: FieldType | None = None


Definition: TypeAlias = FieldType | RecordDef | TokenDef | EndpointDef
"""Anything a lexicon can define under a name."""


@dataclass(frozen=True, slots=True)
class Lexicon:
    """One lexicon document: its NSID and its definitions by name."""

    id: str
    defs: Mapping[str, Definition]
    description: str | None = None


_ENDPOINT_KINDS = frozenset({"query", "procedure", "subscription", "permission-set"})
_RECORD_KEY_TYPES = frozenset({"tid", "any", "nsid"})
# Types that only describe a field, never a named definition (Lexicon spec, "Overview of
# Types": refs and unions name other definitions, and `unknown` says nothing by itself).
_FIELD_ONLY_KINDS = frozenset({"ref", "union", "unknown"})


def qualify_ref(ref: str, lexicon_id: str) -> str:
    """Return `ref` as `nsid#name`, resolving `#name` against `lexicon_id`."""
    if ref.startswith("#"):
        return f"{lexicon_id}{ref}"
    if "#" in ref:
        return ref
    return f"{ref}#main"


def parse_lexicon(document: object) -> Lexicon:
    """Build a `Lexicon` from a decoded JSON document.

    Raises `LexiconSchemaError` naming the offending definition when the document is not
    a well-formed lexicon.
    """
    doc = _mapping(document, "lexicon document")
    lexicon_id = doc.get("id")
    if not isinstance(lexicon_id, str) or not is_nsid(lexicon_id):
        raise LexiconSchemaError(f"lexicon id must be an NSID, got {lexicon_id!r}")
    if doc.get("lexicon") != 1:
        raise LexiconSchemaError(f"{lexicon_id}: unsupported lexicon version")
    raw_defs = _mapping(doc.get("defs"), f"{lexicon_id} defs")
    defs: dict[str, Definition] = {}
    for name, raw in raw_defs.items():
        parser = _Parser(lexicon_id, f"{lexicon_id}#{name}")
        defs[name] = parser.definition(raw, is_main=name == "main")
    description = doc.get("description")
    return Lexicon(
        id=lexicon_id,
        defs=MappingProxyType(defs),
        description=description if isinstance(description, str) else None,
    )


class _Parser:
    """Parses the definitions of one lexicon; `where` locates errors."""

    def __init__(self, lexicon_id: str, where: str) -> None:
        self.lexicon_id = lexicon_id
        self.where = where

    def fail(self, message: str) -> LexiconSchemaError:
        return LexiconSchemaError(f"{self.where}: {message}")

    def definition(self, raw: object, *, is_main: bool) -> Definition:
        spec = _mapping(raw, self.where)
        kind = spec.get("type")
        if kind == "record":
            if not is_main:
                raise self.fail("a record must be the main definition")
            key = spec.get("key", "any")
            if not isinstance(key, str) or not (
                key in _RECORD_KEY_TYPES or key.startswith("literal:")
            ):
                raise self.fail(f"unknown record key type {key!r}")
            record = self.field(spec.get("record"))
            if not isinstance(record, ObjectType):
                raise self.fail("a record must describe an object")
            return RecordDef(key=key, record=record)
        if kind == "token":
            return TokenDef()
        if isinstance(kind, str) and kind in _ENDPOINT_KINDS:
            return self.endpoint(kind, spec)
        if kind in _FIELD_ONLY_KINDS:
            raise self.fail(f"a named definition cannot be of type {kind!r}")
        return self.field(spec)

    def field(self, raw: object) -> FieldType:
        spec = _mapping(raw, self.where)
        kind = spec.get("type")
        if kind == "string":
            return self.string(spec)
        if kind == "integer":
            return IntegerType(
                minimum=self.opt_int(spec, "minimum", signed=True),
                maximum=self.opt_int(spec, "maximum", signed=True),
                enum=self.opt_int_list(spec, "enum"),
                const=self.opt_int(spec, "const", signed=True),
            )
        if kind == "boolean":
            const = spec.get("const")
            if const is not None and not isinstance(const, bool):
                raise self.fail("boolean const must be true or false")
            return BooleanType(const=const)
        if kind == "bytes":
            return BytesType(
                min_length=self.opt_int(spec, "minLength"),
                max_length=self.opt_int(spec, "maxLength"),
            )
        if kind == "cid-link":
            return CidLinkType()
        if kind == "blob":
            return self.blob(spec)
        if kind == "unknown":
            return UnknownType()
        if kind == "ref":
            ref = spec.get("ref")
            if not isinstance(ref, str) or not ref:
                raise self.fail("ref needs a `ref` string")
            return RefType(ref=qualify_ref(ref, self.lexicon_id))
        if kind == "union":
            refs = self.opt_str_list(spec, "refs")
            if refs is None:
                raise self.fail("union needs a `refs` list")
            closed = spec.get("closed", False)
            if not isinstance(closed, bool):
                raise self.fail("union `closed` must be true or false")
            return UnionType(
                refs=tuple(qualify_ref(ref, self.lexicon_id) for ref in refs),
                closed=closed,
            )
        if kind == "array":
            return ArrayType(
                items=self.field(spec.get("items")),
                min_length=self.opt_int(spec, "minLength"),
                max_length=self.opt_int(spec, "maxLength"),
            )
        if kind == "object":
            return self.object_type(spec)
        raise self.fail(f"unsupported type {kind!r}")

    def endpoint(self, kind: str, spec: Mapping[str, object]) -> EndpointDef:
        if kind not in ("query", "procedure"):
            return EndpointDef(kind=kind)
        parameters = None
        if (raw_params := spec.get("parameters")) is not None:
            params = _mapping(raw_params, f"{self.where} parameters")
            if params.get("type") != "params":
                raise self.fail("`parameters` must have type params")
            parameters = self.object_type(params)
        output = None
        if (raw_output := spec.get("output")) is not None:
            out = _mapping(raw_output, f"{self.where} output")
            if out.get("schema") is not None:
                output = self.field(out.get("schema"))
        return EndpointDef(kind=kind, parameters=parameters, output=output)

    def string(self, spec: Mapping[str, object]) -> StringType:
        string_format = spec.get("format")
        if string_format is not None and (
            not isinstance(string_format, str) or string_format not in FORMAT_CHECKS
        ):
            raise self.fail(f"unknown string format {string_format!r}")
        const = spec.get("const")
        if const is not None and not isinstance(const, str):
            raise self.fail("string const must be a string")
        return StringType(
            format=string_format,
            min_length=self.opt_int(spec, "minLength"),
            max_length=self.opt_int(spec, "maxLength"),
            min_graphemes=self.opt_int(spec, "minGraphemes"),
            max_graphemes=self.opt_int(spec, "maxGraphemes"),
            enum=self.opt_str_list(spec, "enum"),
            const=const,
        )

    def blob(self, spec: Mapping[str, object]) -> BlobType:
        accept = self.opt_str_list(spec, "accept")
        for pattern in accept or ():
            major, slash, minor = pattern.partition("/")
            if not (major and slash and minor) or (major == "*" and minor != "*"):
                raise self.fail(f"bad MIME type pattern {pattern!r}")
        return BlobType(accept=accept, max_size=self.opt_int(spec, "maxSize"))

    def object_type(self, spec: Mapping[str, object]) -> ObjectType:
        raw_properties = _mapping(spec.get("properties", {}), f"{self.where} properties")
        properties = {name: self.field(raw) for name, raw in raw_properties.items()}
        return ObjectType(
            properties=MappingProxyType(properties),
            required=self.opt_str_list(spec, "required") or (),
            nullable=frozenset(self.opt_str_list(spec, "nullable") or ()),
        )

    def opt_int(self, spec: Mapping[str, object], key: str, *, signed: bool = False) -> int | None:
        value = spec.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or (value < 0 and not signed):
            raise self.fail(f"`{key}` must be a {'' if signed else 'non-negative '}integer")
        return value

    def opt_int_list(self, spec: Mapping[str, object], key: str) -> tuple[int, ...] | None:
        value = spec.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(
            isinstance(item, int) and not isinstance(item, bool) for item in value
        ):
            raise self.fail(f"`{key}` must be a list of integers")
        return tuple(value)

    def opt_str_list(self, spec: Mapping[str, object], key: str) -> tuple[str, ...] | None:
        value = spec.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(f"`{key}` must be a list of strings")
        return tuple(value)


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise LexiconSchemaError(f"{where}: expected a JSON object")
    return value
