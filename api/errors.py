"""The API's error envelopes, built here and nowhere else.

REST routes answer ``{"detail": message, "error": code}`` (:class:`ApiError`); ``detail``
keeps plyr's (FastAPI's) field name so the plyr web client shows the message. XRPC queries
(``/xrpc/…``) answer ATProto's ``{"error": Name, "message": text}`` (:class:`XrpcError`).

Exceptions::

    Exception
    ├── ApiError    status, code, detail   (REST; XRPC maps it with xrpc_from_api)
    └── XrpcError   status, error, message (XRPC)
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import DataError
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException

__all__ = [
    "XRPC_PREFIX",
    "ApiError",
    "XrpcError",
    "api_error_response",
    "error_response",
    "install_error_handlers",
    "pool_timeout_response",
    "xrpc_error_response",
    "xrpc_from_api",
    "xrpc_pool_timeout_response",
]

XRPC_PREFIX = "/xrpc/"
"""Requests under this path get the XRPC envelope."""

_BUSY = "the database is busy; retry shortly"


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a human message."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class XrpcError(Exception):
    """An XRPC error: HTTP status, ATProto error name and message."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def _envelope(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": code}, status_code=status)


def api_error_response(exc: ApiError) -> JSONResponse:
    """The envelope answering an :class:`ApiError` (handlers and ASGI fast paths alike)."""
    return _envelope(exc.status, exc.code, exc.detail)


def xrpc_error_response(exc: XrpcError) -> JSONResponse:
    """The XRPC envelope answering an :class:`XrpcError`."""
    return JSONResponse({"error": exc.error, "message": exc.message}, status_code=exc.status)


_XRPC_NAMES = {400: "InvalidRequest", 404: "NotFound", 410: "Gone"}


def xrpc_from_api(exc: ApiError) -> XrpcError:
    """An :class:`ApiError` of the shared queries as XRPC says it: ATProto answers a
    missing record with 400 ``NotFound``; 410 stays ``Gone``."""
    name = _XRPC_NAMES.get(exc.status, "InternalServerError")
    status = 400 if exc.status in (400, 404) else exc.status
    return XrpcError(status, name, exc.detail)


def error_response(path: str, status: int, code: str, name: str, message: str) -> JSONResponse:
    """The envelope for a request to ``path``: XRPC's (``name``) under ``/xrpc/``, else
    REST's (``code``), both with ``status``."""
    if path.startswith(XRPC_PREFIX):
        return xrpc_error_response(XrpcError(status, name, message))
    return _envelope(status, code, message)


def pool_timeout_response() -> JSONResponse:
    """503 with ``Retry-After``: every database connection stayed busy for the pool's
    whole timeout. Overloaded, not broken: say so instead of a bare 500."""
    response = _envelope(503, "unavailable", _BUSY)
    response.headers["Retry-After"] = "1"
    return response


def xrpc_pool_timeout_response() -> JSONResponse:
    """:func:`pool_timeout_response` in the XRPC envelope."""
    response = xrpc_error_response(XrpcError(503, "ServiceUnavailable", _BUSY))
    response.headers["Retry-After"] = "1"
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error the app raises with the REST envelope."""

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

    async def data_error(_: Request, exc: Exception) -> JSONResponse:
        # A value the database cannot hold (NUL: DataError; a lone surrogate: psycopg's
        # UnicodeEncodeError) that came in a request body; paths and queries are refused
        # earlier, by api.middleware.InputGuard. Nothing else we send is client text.
        return _envelope(400, "invalid_request", "request holds text the database cannot store")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(PoolTimeout, pool_timeout)
    app.add_exception_handler(DataError, data_error)
    app.add_exception_handler(UnicodeEncodeError, data_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
