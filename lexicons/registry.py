"""The set of known lexicons, loaded from the JSON files in `lexicons/schemas/`."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from types import MappingProxyType

from lexicons.errors import LexiconSchemaError, UnknownLexicon
from lexicons.schema import (
    ArrayType,
    Definition,
    EndpointDef,
    FieldType,
    Lexicon,
    ObjectType,
    RecordDef,
    RefType,
    TokenDef,
    UnionType,
    parse_lexicon,
)

__all__ = [
    "LexiconRegistry",
    "default_registry",
    "is_known",
    "record_nsids",
]


class LexiconRegistry:
    """An immutable set of lexicons, indexed by NSID.

    Construction checks that every `ref` and union member points at a definition that
    exists and can describe data, so a registry that loaded can resolve all of its refs.
    """

    def __init__(self, lexicons: Iterable[Lexicon]) -> None:
        by_id: dict[str, Lexicon] = {}
        for lexicon in lexicons:
            if lexicon.id in by_id:
                raise LexiconSchemaError(f"duplicate lexicon {lexicon.id}")
            by_id[lexicon.id] = lexicon
        self._lexicons: Mapping[str, Lexicon] = MappingProxyType(by_id)
        self._check_refs()

    @classmethod
    def from_documents(cls, documents: Iterable[object]) -> LexiconRegistry:
        """Build a registry from decoded lexicon JSON documents."""
        return cls(parse_lexicon(document) for document in documents)

    @classmethod
    def from_directory(cls, directory: Traversable) -> LexiconRegistry:
        """Load every `*.json` file in `directory`; each file must be named `<nsid>.json`."""
        lexicons = []
        for entry in sorted(directory.iterdir(), key=lambda item: item.name):
            if not entry.name.endswith(".json"):
                continue
            try:
                document: object = json.loads(entry.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise LexiconSchemaError(f"{entry.name}: not valid JSON ({exc})") from exc
            lexicon = parse_lexicon(document)
            if entry.name != f"{lexicon.id}.json":
                raise LexiconSchemaError(f"{entry.name}: holds lexicon {lexicon.id}")
            lexicons.append(lexicon)
        return cls(lexicons)

    def __contains__(self, nsid: object) -> bool:
        return nsid in self._lexicons

    def __iter__(self) -> Iterator[Lexicon]:
        return iter(self._lexicons.values())

    def __len__(self) -> int:
        return len(self._lexicons)

    def is_known(self, nsid: str) -> bool:
        """Whether a lexicon with this NSID is registered."""
        return nsid in self._lexicons

    def nsids(self) -> tuple[str, ...]:
        """The NSIDs of all registered lexicons, sorted."""
        return tuple(sorted(self._lexicons))

    def record_nsids(self) -> tuple[str, ...]:
        """The NSIDs of the record lexicons (collections), sorted."""
        return tuple(
            sorted(
                nsid
                for nsid, lexicon in self._lexicons.items()
                if isinstance(lexicon.defs.get("main"), RecordDef)
            )
        )

    def lexicon(self, nsid: str) -> Lexicon:
        """The lexicon with this NSID; raises `UnknownLexicon`."""
        try:
            return self._lexicons[nsid]
        except KeyError:
            raise UnknownLexicon(nsid) from None

    def record_def(self, nsid: str) -> RecordDef:
        """The record definition of collection `nsid`; raises `UnknownLexicon`."""
        main = self.lexicon(nsid).defs.get("main")
        if not isinstance(main, RecordDef):
            raise UnknownLexicon(nsid, "not a record lexicon")
        return main

    def resolve(self, ref: str) -> Definition:
        """The definition a fully qualified ref (`nsid#name`) names; raises `UnknownLexicon`."""
        nsid, _, name = ref.partition("#")
        definition = self.lexicon(nsid).defs.get(name or "main")
        if definition is None:
            raise UnknownLexicon(ref, "unknown definition")
        return definition

    def _check_refs(self) -> None:
        for lexicon in self._lexicons.values():
            for name, definition in lexicon.defs.items():
                where = f"{lexicon.id}#{name}"
                if isinstance(definition, RecordDef):
                    self._check_field(definition.record, where)
                elif isinstance(definition, EndpointDef):
                    for part in (definition.parameters, definition.output):
                        if part is not None:
                            self._check_field(part, where)
                elif not isinstance(definition, TokenDef):
                    self._check_field(definition, where)

    def _check_field(self, field: FieldType, where: str) -> None:
        if isinstance(field, RefType):
            if isinstance(self._target(field.ref, where), TokenDef | EndpointDef):
                raise LexiconSchemaError(f"{where}: ref {field.ref} does not describe data")
        elif isinstance(field, UnionType):
            for ref in field.refs:
                if not isinstance(self._target(ref, where), ObjectType | RecordDef):
                    raise LexiconSchemaError(f"{where}: union member {ref} is not an object")
        elif isinstance(field, ArrayType):
            self._check_field(field.items, where)
        elif isinstance(field, ObjectType):
            for prop_name, prop in field.properties.items():
                self._check_field(prop, f"{where}.{prop_name}")

    def _target(self, ref: str, where: str) -> Definition:
        try:
            return self.resolve(ref)
        except UnknownLexicon:
            raise LexiconSchemaError(f"{where}: ref {ref} does not resolve") from None


@functools.cache
def default_registry() -> LexiconRegistry:
    """The registry of the lexicons shipped in this package (loaded once, then cached)."""
    return LexiconRegistry.from_directory(files("lexicons").joinpath("schemas"))


def is_known(nsid: str) -> bool:
    """Whether the default registry has a lexicon with this NSID."""
    return default_registry().is_known(nsid)


def record_nsids() -> tuple[str, ...]:
    """The record collections the default registry can validate, sorted."""
    return default_registry().record_nsids()
