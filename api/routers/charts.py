"""``/charts``: track charts per calendar day, week or month, by plays or likes
(:mod:`api.charts` says what a period is and how entries are ranked and paged)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from api import catalog
from api.charts import By, Period, chart_rows, chart_window, parse_chart_date
from api.deps import Read
from api.pagination import decode_count_cursor, encode_count_cursor
from api.responses import encode, json_doc, json_response
from api.views import iso

__all__ = ["router"]

router = APIRouter(prefix="/charts", tags=["charts"])

_ENTRY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rank": {"type": "integer"},
        "count": {"type": "integer"},
        "track": {"type": "object", "additionalProperties": True},
    },
}
_CHART: dict[str, Any] = {
    "type": "object",
    "properties": {
        "period": {"type": "string"},
        "by": {"type": "string"},
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
        "entries": {"type": "array", "items": _ENTRY},
        "next_cursor": {"type": ["string", "null"]},
        "has_more": {"type": "boolean"},
    },
}


@router.get(
    "/tracks",
    description="The tracks of one calendar period (UTC day, ISO week from Monday, or "
    "calendar month; ``date`` picks the period containing it, default today), ranked by "
    "plays counted or likes created in it (≥ 1), visible tracks only. ``rank``: "
    "competition rank over the whole chart; ``count``: plays or likes in the period; "
    "``track``: a ``TrackResponse`` (its counts all-time). Keyset-paged by ``next_cursor``.",
    response_model=None,
    responses=json_doc(_CHART),
)
async def track_chart(
    read: Read,
    period: Period = "week",
    by: By = "plays",
    date: Annotated[
        str | None, Query(max_length=10, description="YYYY-MM-DD inside the period (UTC)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(description="opaque cursor from next_cursor")] = None,
) -> Response:
    """``{period, by, start, end, entries: [{rank, count, track}], next_cursor, has_more}``."""
    window = chart_window(period, parse_chart_date(date, datetime.now(UTC).date()))
    after = decode_count_cursor(cursor) if cursor is not None else None
    async with read.pool.connection() as conn:
        found = await chart_rows(conn, read.vis, window, by, limit=limit + 1, after=after)
        has_more = len(found) > limit
        found = found[:limit]
        tracks = await catalog.present_tracks(conn, found, api_base=read.api_base)
    entries = [
        {"rank": int(r["chart_rank"]), "count": int(r["chart_count"]), "track": track}
        for r, track in zip(found, tracks, strict=True)
    ]
    last = found[-1] if has_more else None
    body = {
        "period": period,
        "by": by,
        "start": iso(window.start),
        "end": iso(window.end),
        "entries": entries,
        "next_cursor": encode_count_cursor(int(last["chart_count"]), last["id"]) if last else None,
        "has_more": has_more,
    }
    return json_response(encode(body))
