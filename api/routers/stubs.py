"""Routes the plyr web client calls on every page that need a plyr.fm session.

This appview has no accounts, so they answer as plyr.fm does for an anonymous visitor:
``401 {"detail": "not authenticated"}``.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.errors import ApiError

__all__ = ["router"]

router = APIRouter(tags=["session (anonymous answers)"])


def _anonymous() -> ApiError:
    return ApiError(401, "not_authenticated", "not authenticated")


@router.get("/auth/me", status_code=200)
async def auth_me() -> None:
    """Always 401: no sessions here."""
    raise _anonymous()


@router.get("/preferences/")
async def preferences() -> None:
    """Always 401: preferences belong to a session."""
    raise _anonymous()


@router.get("/jams/active")
async def active_jam() -> None:
    """Always 401, as plyr.fm answers anonymous visitors (jams need a session)."""
    raise _anonymous()


@router.get("/discover/network")
async def discover_network() -> None:
    """Always 401: the follow graph needs a session."""
    raise _anonymous()


@router.get("/for-you/")
async def for_you() -> None:
    """Always 401: personalised feeds need a session."""
    raise _anonymous()
