"""Aggregates of the catalog: per-subject counts recounted from rows, never incremented.

A module whose rows count towards a subject (likes and comments towards their track)
declares an :class:`Aggregate`: the column it feeds on the subject's table, its own table,
and how its rows count. The subject's table computes the counts as its rows are written
(:func:`count_joins`), and :func:`recount` recomputes them for the subjects a batch
touched. Each statement aggregates all the batch's subjects at once (a bitmap scan per
table), not a count per subject.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import AsyncConnection

__all__ = ["Aggregate", "count_joins", "derived_counts", "recount"]

# The URIs of %(uris)s as a subquery: the planner does not estimate each of thousands of
# URIs against the column's most common values (20-40 ms of planning per 10,000-event
# batch, as long as running the statement).
_URIS = "ARRAY(SELECT unnest(%(uris)b::text[]))"


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A count a module's rows give their subject: ``column`` = ``count`` of ``table``'s
    rows with that ``subject_uri``."""

    column: str
    table: str
    count: str
    alias: str

    def join(self, uri: str) -> str:
        """A LEFT JOIN giving ``{alias}.n`` for the subjects of ``%(uris)s`` (by ``uri``)."""
        return (
            f" LEFT JOIN (SELECT subject_uri, {self.count} AS n FROM {self.table}"
            f"  WHERE subject_uri = ANY({_URIS}) GROUP BY subject_uri) {self.alias}"
            f" ON {self.alias}.subject_uri = {uri}"
        )


def count_joins(aggregates: Sequence[Aggregate], uri: str) -> str:
    """The joins of every aggregate, for subjects identified by the expression ``uri``."""
    return "".join(a.join(uri) for a in aggregates)


def derived_counts(aggregates: Sequence[Aggregate]) -> tuple[tuple[str, str], ...]:
    """The ``(column, expression)`` pairs a subject table computes as it writes rows."""
    return tuple((a.column, f"coalesce({a.alias}.n, 0)") for a in aggregates)


async def recount(
    conn: AsyncConnection, table: str, aggregates: Sequence[Aggregate], uris: Sequence[str]
) -> None:
    """Recompute ``aggregates`` of the rows of ``table`` whose ``uri`` is in ``uris``."""
    if not uris or not aggregates:
        return
    columns = [a.column for a in aggregates]
    values = [f"coalesce({a.alias}.n, 0) AS {a.column}" for a in aggregates]
    await conn.execute(
        f"UPDATE {table} SET {', '.join(f'{c} = c.{c}' for c in columns)} FROM ("
        f" SELECT u.uri, {', '.join(values)} FROM unnest(%(uris)b::text[]) AS u(uri)"
        f"{count_joins(aggregates, 'u.uri')}) AS c"
        f" WHERE {table}.uri = c.uri AND {table}.uri = ANY(%(uris)b::text[])"
        f" AND ({', '.join(f'{table}.{c}' for c in columns)})"
        f" IS DISTINCT FROM ({', '.join(f'c.{c}' for c in columns)})",
        {"uris": sorted(uris)},
    )
