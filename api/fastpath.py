"""A lean ASGI path for ``GET /tracks/{track_id}``, the hottest read route, and for
``POST /tracks/{track_id}/play``, the hottest write.

FastAPI's per-request machinery (route matching over every router, dependency resolution,
parameter validation, its exception and exit-stack middleware) cost more CPU on a track
permalink than the query and the presenter together. :class:`TrackDetailFastPath` sits
inside CORS, the access log and metrics, and outside the response cache (a permalink is
cheaper to answer than to cache, see :func:`api.app.create_app`), and answers the
requests it can parse with exactly what the FastAPI route answers: the same query and
presenter (:func:`api.catalog.track_detail_json`), the same visibility rule and
base URL (:func:`api.deps.reader_for`), the same error envelopes (:mod:`api.errors`), and
the route itself in ``scope["route"]``, so metrics and logs label the answer as the
route's own.

Play reports are answered by the route's own function (:func:`api.routers.plays.answer_play`:
rate limit, body, lookup, append, cookie), so both answer alike by construction; FastAPI's
routing, dependency resolution and exception middleware were two thirds of a report's CPU
in the API worker (``bench/bench_plays.py``).

Everything else goes on to FastAPI unchanged: other methods, other paths, and ids that
are not plain decimal digits (``-1``, ``abc``, ``1e3``, overlong numbers) — FastAPI's
validation answers those with its own 422, so no second copy of its messages is needed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from api.catalog import track_detail_json
from api.deps import reader_for
from api.errors import ApiError, api_error_response, pool_timeout_response
from api.responses import send_json
from api.routers.plays import answer_play

__all__ = ["TrackDetailFastPath", "parse_play_path", "parse_track_path"]

# An answer of the fast path: (scope, receive, send, track id).
_Answer = Callable[[Scope, Receive, Send, int], Awaitable[None]]

_PREFIX = "/tracks/"
_PLAY_SUFFIX = "/play"
_MAX_DIGITS = 18
"""Longer ids go to FastAPI: 18 digits always fit PostgreSQL's ``bigint``."""


def parse_track_path(path: str) -> int | None:
    """The id in ``/tracks/<digits>``, or ``None`` for any other path."""
    if not path.startswith(_PREFIX):
        return None
    digits = path[len(_PREFIX) :]
    if not 0 < len(digits) <= _MAX_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return int(digits)


def parse_play_path(path: str) -> int | None:
    """The id in ``/tracks/<digits>/play``, or ``None`` for any other path."""
    if not path.endswith(_PLAY_SUFFIX):
        return None
    return parse_track_path(path[: -len(_PLAY_SUFFIX)])


class TrackDetailFastPath:
    """ASGI middleware answering ``GET /tracks/<digits>`` (and, given ``play_route``,
    ``POST /tracks/<digits>/play``) without the FastAPI router.

    ``route`` is the FastAPI route of ``GET /tracks/{track_id}``, ``play_route`` that of
    ``POST /tracks/{track_id}/play``: the one answered is put in the scope as the router
    would, so the outer middleware label the answer with its path.
    """

    def __init__(
        self, app: ASGIApp, *, route: BaseRoute, play_route: BaseRoute | None = None
    ) -> None:
        self.app = app
        # method -> (path parser, the route it stands for, the answer)
        self._routes: dict[str, tuple[Callable[[str], int | None], BaseRoute, _Answer]] = {
            "GET": (parse_track_path, route, self._answer)
        }
        if play_route is not None:
            self._routes["POST"] = (parse_play_path, play_route, self._play)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self._routes.get(scope["method"])
            track_id = found[0](scope["path"]) if found is not None else None
            if found is not None and track_id is not None:
                _, route, answer = found
                scope["route"] = route
                scope["path_params"] = {"track_id": track_id}
                await answer(scope, receive, send, track_id)
                return
        await self.app(scope, receive, send)

    async def _play(self, scope: Scope, receive: Receive, send: Send, track_id: int) -> None:
        request = Request(scope, receive)
        response: Response
        try:
            response = await answer_play(request, reader_for(request), track_id)
        except ApiError as exc:
            response = api_error_response(exc)
        except PoolTimeout:
            response = pool_timeout_response()
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, track_id: int) -> None:
        error: Response
        try:
            body = await track_detail_json(reader_for(Request(scope)), track_id)
        except ApiError as exc:
            error = api_error_response(exc)
        except PoolTimeout:
            error = pool_timeout_response()
        else:
            await send_json(send, body)
            return
        await error(scope, receive, send)
