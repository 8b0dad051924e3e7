"""Operations routes: ``/health`` (alive), ``/ready`` (fit to serve), ``/metrics``
(Prometheus, every worker), and the ``/status`` page with its data and script.

``/health`` touches nothing: a process that answers is alive. ``/ready`` answers 503
until the migrations are applied, the log answers, and every projector is at most
``PLYR_READY_MAX_LAG`` events behind. The status page is plain HTML plus ``/status.js``
(no inline script, so the API's Content-Security-Policy holds), refreshing itself from
``/status.json``.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import Pool
from api.metrics import metrics_registry
from api.status import collect_status
from kernel.db import MIGRATIONS_DIR

__all__ = ["router"]

router = APIRouter(tags=["meta"])

_PAGE_DIR = Path(__file__).resolve().parent.parent / "status_page"
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers (readiness is ``/ready``)."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "not ready; see checks"}})
async def ready(request: Request, pool: Pool) -> JSONResponse:
    """Readiness: ``{status, checks: {migrations, log, caught_up}}``, 200 or 503."""
    checks: dict[str, Any] = {}
    expected = {
        int(m.group(1)) for p in MIGRATIONS_DIR.glob("*.sql") if (m := _MIGRATION.match(p.name))
    }
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT CASE WHEN to_regclass('schema_migration') IS NULL THEN '{}'::int[]"
            " ELSE (SELECT coalesce(array_agg(number), '{}') FROM schema_migration) END"
        )
        row = await cur.fetchone()
    missing = sorted(expected - set(row[0] if row else []))
    checks["migrations"] = "ok" if not missing else f"{len(missing)} not applied"
    log = request.app.state.log
    status = None
    if log is None:
        checks["log"] = "not configured"
    else:
        try:
            status = await asyncio.wait_for(collect_status(pool, log), 5)
            checks["log"] = "ok"
        except Exception as exc:  # any failure to reach the log means: not ready
            checks["log"] = f"unreachable: {type(exc).__name__}"
    if status is None:
        status = await collect_status(pool, None)
    bound: int = request.app.state.settings.ready_max_lag
    behind = {p.name: p.lag for p in status.projectors if p.lag > bound}
    checks["caught_up"] = "ok" if not behind else {"over": bound, "behind": behind}
    fine = all(v == "ok" or v == "not configured" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if fine else "not ready", "checks": checks},
        status_code=200 if fine else 503,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of the whole API (every worker process)."""
    gauges = request.app.state.cache_gauges
    if gauges is not None:
        gauges.publish()
    registry = metrics_registry(request.app.state.metrics)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/status", response_class=HTMLResponse, include_in_schema=False)
async def status_page() -> HTMLResponse:
    """The status page (HTML; its script is ``/status.js``)."""
    return HTMLResponse((_PAGE_DIR / "status.html").read_text(), headers=_NO_STORE)


@router.get("/status.js", include_in_schema=False)
async def status_script() -> Response:
    """The status page's script."""
    return Response(
        (_PAGE_DIR / "status.js").read_text(),
        media_type="text/javascript; charset=utf-8",
        headers=_NO_STORE,
    )


@router.get("/status.json")
async def status_data(request: Request, pool: Pool) -> dict[str, Any]:
    """``{now: {sources, projectors, dead_letters, rows, log_end}, samples: [...]}``:
    the figures now and the samples of the last hour (events/s, lag, p95 ms by route)."""
    now = await collect_status(pool, request.app.state.log)
    return {"now": now.to_json(), "samples": request.app.state.status_ring.to_json()}


_NO_STORE = {"Cache-Control": "no-store"}
