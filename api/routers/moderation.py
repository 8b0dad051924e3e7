"""``/moderation``: the public moderation lists the plyr web client reads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import Pool
from api.moderation import sensitive_images

__all__ = ["router"]

router = APIRouter(prefix="/moderation", tags=["moderation"])


@router.get("/sensitive-images")
async def get_sensitive_images(pool: Pool, response: Response) -> dict[str, Any]:
    """``{image_ids, urls}``: artwork to blur (tracks with an active adult label)."""
    async with pool.connection() as conn:
        body = await sensitive_images(conn)
    response.headers["Cache-Control"] = "public, max-age=60"
    return body
