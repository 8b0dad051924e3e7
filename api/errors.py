"""One error envelope for every failure: ``{"detail": message, "error": code}``.

``detail`` keeps plyr's (FastAPI's) field name so the plyr web client shows the message.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException

__all__ = ["ApiError", "api_error_response", "install_error_handlers", "pool_timeout_response"]


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a human message."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def _envelope(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": code}, status_code=status)


def api_error_response(exc: ApiError) -> JSONResponse:
    """The envelope answering an :class:`ApiError` (handlers and ASGI fast paths alike)."""
    return _envelope(exc.status, exc.code, exc.detail)


def pool_timeout_response() -> JSONResponse:
    """503 with ``Retry-After``: every database connection stayed busy for the pool's
    whole timeout. Overloaded, not broken: say so instead of a bare 500."""
    response = _envelope(503, "unavailable", "the database is busy; retry shortly")
    response.headers["Retry-After"] = "1"
    return response


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return api_error_response(exc)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _envelope(exc.status_code, code, str(exc.detail))

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return _envelope(422, "invalid_request", "; ".join(parts) or "invalid request")

    async def pool_timeout(_: Request, exc: Exception) -> JSONResponse:
        return pool_timeout_response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(PoolTimeout, pool_timeout)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
