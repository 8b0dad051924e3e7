"""Lexicon vectors (``vectors/lexicon/``): schema documents, and record data checked
against the example catalog, by the reference validator and the compiled one alike."""

from __future__ import annotations

from typing import Any

import pytest

from lexicons import (
    LexiconRegistry,
    LexiconSchemaError,
    RecordInvalid,
    parse_lexicon,
    validate_record,
)
from lexicons.compiled import compile_record_check
from tests.interop.vectors import VECTORS, load

RECORD_NSID = "example.lexicon.record"
CATALOG = [
    load(f"lexicon/catalog/{path.name}")
    for path in sorted((VECTORS / "lexicon/catalog").glob("*.json"))
]


def cases(name: str) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in load(name)]


@pytest.fixture(scope="module")
def catalog() -> LexiconRegistry:
    return LexiconRegistry.from_documents(CATALOG)


def test_catalog_loads(catalog: LexiconRegistry) -> None:
    assert catalog.record_nsids() == (RECORD_NSID,)
    assert len(catalog) == len(CATALOG) == 5


@pytest.mark.parametrize("case", cases("lexicon/lexicon-valid.json"))
def test_valid_lexicon(case: dict[str, Any]) -> None:
    registry = LexiconRegistry.from_documents([case["lexicon"]])
    assert registry.is_known(case["lexicon"]["id"])


@pytest.mark.parametrize("case", cases("lexicon/lexicon-invalid.json"))
def test_invalid_lexicon(case: dict[str, Any]) -> None:
    # The document alone is refused: not only because a ref dangles in a registry of one.
    with pytest.raises(LexiconSchemaError):
        parse_lexicon(case["lexicon"])


@pytest.mark.parametrize("case", cases("lexicon/record-data-valid.json"))
def test_valid_record_data(catalog: LexiconRegistry, case: dict[str, Any]) -> None:
    validate_record(RECORD_NSID, case["data"], rkey=case["rkey"], registry=catalog)
    assert compile_record_check(RECORD_NSID, catalog)(case["data"])


@pytest.mark.parametrize("case", cases("lexicon/record-data-invalid.json"))
def test_invalid_record_data(catalog: LexiconRegistry, case: dict[str, Any]) -> None:
    data = case["data"]
    if case["name"] != "missing required field":
        # Some cases also lack the required `integer`; fill it in so the case fails for
        # the reason it was written for, not for that.
        data = {"integer": 1, **data}
    with pytest.raises(RecordInvalid):
        validate_record(RECORD_NSID, data, rkey=case["rkey"], registry=catalog)
    assert not compile_record_check(RECORD_NSID, catalog)(data)
