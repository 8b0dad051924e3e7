"""DuckDB connections for the archive, set up so they never try to download anything."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

__all__ = ["connect", "parquet_list"]


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection; Parquet and JSON are built in, nothing is installed.

    Extension auto-install would reach the network (blocked here, unwanted anywhere), so
    a query needing a missing extension fails with a message instead of hanging.
    """
    return duckdb.connect(
        ":memory:",
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": True},
    )


def parquet_list(paths: Sequence[str]) -> str:
    """A SQL list literal of file paths, for ``read_parquet([...])`` in a view."""
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"
