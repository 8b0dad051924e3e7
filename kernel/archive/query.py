"""SQL over the archive: DuckDB with one view per topic, named after its short name.

With the default prefix, ``plyr.repo`` is the view ``repo``, ``plyr.plays`` is ``plays``.
Each view has the segment columns (``topic, partition, offset, key, value, timestamp_ms,
kind, did, collection, uri``) plus ``ts`` (the append time as a timestamp) and ``body``
(the value as text, NULL when it is not UTF-8), so JSON fields are one ``->>`` away::

    SELECT date_trunc('day', ts) AS day, body->>'$.record.artist' AS artist, count(*)
    FROM plays WHERE kind = 'play.reported' GROUP BY ALL ORDER BY day

A topic with nothing archived is an empty view with the same columns. A failing query
raises :class:`QueryError` with DuckDB's message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from kernel.archive.duck import connect, parquet_list
from kernel.archive.manifest import Manifest
from kernel.archive.store import SegmentStore

__all__ = ["QueryError", "QueryResult", "format_result", "open_views", "run_query"]

_COLUMNS = (
    'topic, "partition", "offset", key, value, timestamp_ms, kind, did, collection, uri,'
    " make_timestamp(timestamp_ms * 1000) AS ts, try(decode(value)) AS body"
)
_EMPTY = (
    'SELECT NULL::VARCHAR AS topic, NULL::INTEGER AS "partition", NULL::BIGINT AS "offset",'
    " NULL::BLOB AS key, NULL::BLOB AS value, NULL::BIGINT AS timestamp_ms,"
    " NULL::VARCHAR AS kind, NULL::VARCHAR AS did, NULL::VARCHAR AS collection,"
    " NULL::VARCHAR AS uri, NULL::TIMESTAMP AS ts, NULL::VARCHAR AS body WHERE false"
)


class QueryError(ValueError):
    """The SQL could not run (syntax, unknown column, type error…); the message says why."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Column names and rows of a query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def open_views(
    store: SegmentStore, manifest: Manifest, views: Mapping[str, str]
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view per ``views`` item (view name → full topic name)."""
    con = connect()
    for view, topic in views.items():
        paths = [str(store.local_path(s.name)) for s in manifest.of_topic(topic)]
        source = f"SELECT {_COLUMNS} FROM read_parquet({parquet_list(paths)})" if paths else _EMPTY
        con.execute(f"CREATE VIEW {_identifier(view)} AS {source}")
    return con


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
    """Run ``sql``; its last statement's result. Raises :class:`QueryError` on failure."""
    try:
        cur = con.execute(sql)
        if cur.description is None:
            return QueryResult([], [])
        columns = [str(d[0]) for d in cur.description]
        return QueryResult(columns, [tuple(r) for r in cur.fetchall()])
    except duckdb.Error as exc:
        raise QueryError(str(exc).strip()) from None


def format_result(result: QueryResult) -> Sequence[str]:
    """Tab-separated lines: a header, then one line per row (NULL as empty)."""
    lines = ["\t".join(result.columns)]
    for row in result.rows:
        lines.append("\t".join("" if v is None else _text(v) for v in row))
    return lines


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value).replace("\t", " ").replace("\n", " ")
