"""``POST /tracks/{id}/play``: a listener reports a play (plyr's web client sends it after
30 s of listening); the report goes onto the log's ``plays`` topic as ``play.reported``.

As plyr.fm answers it: an optional JSON body ``{ref}`` (a share code), the answer
``{play_count}``. Unknown tracks are 404 and hidden ones 410, as for ``GET /tracks/{id}``.

- **Listener**: the DID of an authenticated viewer when the request carries one (an auth
  layer puts it in ``request.state.viewer_did``; this API has none yet), else the
  first-party cookie ``plyr_play_id`` (HttpOnly, SameSite=Lax, 180 days, Secure over
  HTTPS), minted when missing or malformed. Cookie listeners are ``cookie:<id>`` on the log.
- **Counting** happens downstream (:mod:`projectors.plays` qualifies the report), so the
  answer is the count the read model holds now; this report shows in it once projected
  (well under a second), if it qualifies.
- **Rate limit**: per client address, ``PLYR_PLAY_RATE`` reports per second (default 1)
  with bursts of ``PLYR_PLAY_BURST`` (default 60), in each API worker; over it, 429 with
  ``Retry-After``.
- Bad bodies get 400/422 with a message; a log that cannot take the report, 503.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from api.catalog import shown_row
from api.deps import Read, Reader
from api.errors import ApiError
from api.ratelimit import RateLimiter
from api.responses import encode, json_response
from kernel.log import Log, LogError
from kernel.plays import new_play_id, play_reported

__all__ = ["COOKIE", "answer_play", "parse_play_body", "router", "set_cookie_header"]

router = APIRouter(prefix="/tracks", tags=["tracks"])

COOKIE = "plyr_play_id"
COOKIE_MAX_AGE = 180 * 24 * 3600
_MAX_REF = 128
_COOKIE_PLAIN = b"%s=%%s; HttpOnly; Max-Age=%d; Path=/; SameSite=lax" % (
    COOKIE.encode(),
    COOKIE_MAX_AGE,
)
_COOKIE_SECURE = _COOKIE_PLAIN + b"; Secure"
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _limiter(request: Request) -> RateLimiter:
    state = request.app.state
    limiter: RateLimiter | None = getattr(state, "play_limiter", None)
    if limiter is None:
        settings = state.settings
        limiter = state.play_limiter = RateLimiter(
            rate=float(settings.play_rate), burst=settings.play_burst
        )
    return limiter


def parse_play_body(body: bytes) -> str | None:
    """The ``ref`` of a play report body (empty, ``null`` or ``{ref?}``, a printable share
    code); :class:`ApiError` 400/422 for anything else."""
    if not body.strip():
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_request", 'body must be JSON: {"ref": string}') from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", 'body must be a JSON object: {"ref": string}')
    ref = data.get("ref")
    if ref is None:
        return None
    if not isinstance(ref, str) or not 0 < len(ref) <= _MAX_REF or not ref.isprintable():
        # isprintable: no NUL or other control character, no lone surrogate, on the log.
        raise ApiError(
            422,
            "invalid_request",
            f"ref: expected a string of 1 to {_MAX_REF} printable characters",
        )
    return ref


def _listener(request: Request) -> tuple[str, str | None]:
    """``(listener, cookie value to set or None)``."""
    did = getattr(request.state, "viewer_did", None)
    if isinstance(did, str) and did.startswith("did:"):
        return did, None
    value = request.cookies.get(COOKIE)
    if value is not None and _COOKIE_VALUE.match(value):
        return f"cookie:{value}", None
    value = secrets.token_urlsafe(16)
    return f"cookie:{value}", value


@router.post(
    "/{track_id}/play",
    response_model=None,
    responses={
        200: {"description": "``{play_count}``: the track's counted plays so far"},
        404: {"description": "unknown track"},
        410: {"description": "hidden track"},
        429: {"description": "too many reports from this client; see Retry-After"},
    },
)
async def report_play(
    request: Request, read: Read, track_id: Annotated[int, Path(ge=0)]
) -> Response:
    """Report a play of a track; answers ``{play_count}``."""
    return await answer_play(request, read, track_id)


async def answer_play(request: Request, read: Reader, track_id: int) -> Response:
    """The answer to ``POST /tracks/{track_id}/play``: the route's, and the ASGI fast
    path's (:mod:`api.fastpath`); raises :class:`ApiError` for the error envelopes."""
    client = request.client.host if request.client is not None else "unknown"
    wait = _limiter(request).take(client)
    if wait:
        response = json_response(
            encode(
                {"detail": f"too many play reports; retry in {wait} s", "error": "rate_limited"}
            ),
            status_code=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    ref = parse_play_body(await request.body())
    # The row (batched with the other lookups in flight) carries the count too: the count
    # the read model holds now, as a query after the append would read it (this report is
    # counted later, by the projector).
    found = await read.tracks.load(track_id)
    row = shown_row(found.row, found.visible)
    log_: Log | None = getattr(request.app.state, "log", None)
    if log_ is None:
        raise ApiError(503, "unavailable", "play reports are not accepted by this server")
    listener, new_cookie = _listener(request)
    envelope = play_reported(
        play_id=new_play_id(),
        listener=listener,
        track_uri=row["uri"],
        at=datetime.now(UTC),
        duration_s=row.get("duration"),
        ref=ref,
    )
    topic = request.app.state.settings.topic("plays")
    try:
        await log_.append(topic, [(envelope.key, envelope.to_bytes())])
    except LogError:
        raise ApiError(503, "unavailable", "could not record the play; retry shortly") from None
    response = json_response(encode({"play_count": int(row.get("play_count") or 0)}))
    if new_cookie is not None:
        # The API's base URL (PLYR_PUBLIC_URL, else the request's own, remembered per host).
        secure = read.api_base.startswith("https:")
        response.raw_headers.append(set_cookie_header(new_cookie, secure=secure))
    return response


def set_cookie_header(value: str, *, secure: bool) -> tuple[bytes, bytes]:
    """The ``Set-Cookie`` header of a new listener cookie, as Starlette's ``set_cookie``
    writes it (HttpOnly, 180 days, path ``/``, SameSite=Lax, Secure over HTTPS): built
    directly: ``http.cookies`` took 15 µs a cookie. ``value`` is from
    :func:`secrets.token_urlsafe`, which needs no quoting."""
    return (b"set-cookie", (_COOKIE_SECURE if secure else _COOKIE_PLAIN) % value.encode())
