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


def test_compiled_validator_agrees_with_the_reference_on_the_catalog(
    catalog: LexiconRegistry,
) -> None:
    # The unit agreement test's mutations, applied to the vector record that uses every type.
    from tests.unit.test_lexicons import compiled_outcome, mutations, reference_outcome

    [full] = [case for case in load("lexicon/record-data-valid.json") if case["name"] == "full"]
    check = compile_record_check(RECORD_NSID, catalog)
    outcomes = {"valid": 0, "invalid": 0}
    for record in mutations(full["data"]):
        expected = reference_outcome(RECORD_NSID, record, catalog)
        assert check(record) is (expected is None), (record, expected)
        assert compiled_outcome(RECORD_NSID, record, catalog) == expected
        outcomes["valid" if expected is None else "invalid"] += 1
    assert outcomes["valid"] > 100 and outcomes["invalid"] > 1000, outcomes
