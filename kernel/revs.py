"""How commit revs compare: byte order (``COLLATE "C"``), in SQL as in Python.

A repo's ``rev`` is a TID: base32-sortable ASCII, so later revs sort later in byte order,
the order Python compares ``str`` in. PostgreSQL compares ``text`` by the database's
collation, which may order ASCII otherwise (case, punctuation), so every SQL comparison
of revs goes through :func:`rev_sql`. Ingest (per-repo chains) and the projectors (the
newest rev wins) both use it.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["rev_sql"]

Comparison = Literal["<", "<=", "=", ">=", ">"]


def rev_sql(left: str, op: Comparison, right: str) -> str:
    """SQL comparing two rev expressions in byte order, e.g. ``rev_sql("t.rev", "<=", "x.rev")``."""
    return f'{left} COLLATE "C" {op} {right} COLLATE "C"'
