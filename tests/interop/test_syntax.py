"""Syntax vectors (``vectors/syntax/``) against the string formats of ``lexicons.formats``.

Every identifier kind has a valid and an invalid list; ``*_parse_invalid`` lists hold
strings that are well formed but still not valid (a month zero, a repeated BCP 47 variant),
which our checks must refuse too, since they are the only check a record gets.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lexicons import formats
from tests.interop.vectors import VECTORS, lines

CHECKS: dict[str, Callable[[str], bool]] = {
    "atidentifier": formats.is_at_identifier,
    "aturi": formats.is_at_uri,
    "cid": formats.is_cid,
    "datetime": formats.is_datetime,
    "did": formats.is_did,
    "handle": formats.is_handle,
    "language": formats.is_language,
    "nsid": formats.is_nsid,
    "recordkey": formats.is_record_key,
    "tid": formats.is_tid,
    "uri": formats.is_uri,
}

FILES = sorted(path.name for path in (VECTORS / "syntax").glob("*.txt"))
CASES = [
    pytest.param(name.partition("_")[0], line, name.endswith("_valid.txt"), id=f"{name}:{line!r}")
    for name in FILES
    for line in lines(f"syntax/{name}")
]


def test_every_syntax_file_has_a_check() -> None:
    assert {name.partition("_")[0] for name in FILES} == set(CHECKS)
    assert len(CASES) > 500


@pytest.mark.parametrize(("kind", "value", "valid"), CASES)
def test_syntax_vector(kind: str, value: str, valid: bool) -> None:
    assert CHECKS[kind](value) is valid
