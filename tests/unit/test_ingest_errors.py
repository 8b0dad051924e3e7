"""ingest has one exception tree: every exception its modules define or raise is an IngestError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import ingest
from ingest.errors import IngestError, Rejected, Undecodable


def test_every_ingest_exception_is_an_ingest_error() -> None:
    found = set()
    for module in pkgutil.iter_modules(ingest.__path__):
        mod = importlib.import_module(f"ingest.{module.name}")
        for _, value in vars(mod).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__.startswith("ingest.")
            ):
                found.add(value)
    assert len(found) >= 12
    assert [c.__name__ for c in found if not issubclass(c, IngestError)] == []


def test_refusals_and_undecodable_input_stay_value_errors() -> None:
    assert issubclass(Rejected, ValueError) and issubclass(Undecodable, ValueError)
    error = Rejected("bad_signature", "did:plc:x rev 1")
    assert (error.reason, str(error)) == ("bad_signature", "bad_signature: did:plc:x rev 1")
