"""XRPC for third-party apps: the ``fm.plyr.appview.*`` query lexicons and their views.

Parameters are decoded by the query's lexicon (integers, booleans, repeated arrays) and
validated by it; responses are pure presentations of the same rows the REST routes read.
Errors are ATProto-style ``{"error": Name, "message": text}`` (:class:`api.errors.XrpcError`,
re-exported here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.errors import XrpcError
from api.views import iso
from lexicons import UnknownLexicon, ValidationError, default_registry, validate_query_params
from lexicons.schema import ArrayType, BooleanType, EndpointDef, IntegerType

__all__ = [
    "NAMESPACE",
    "XrpcError",
    "decode_params",
    "present_actor",
    "present_artist_view",
    "present_track_view",
]

NAMESPACE = "fm.plyr.appview"


def decode_params(nsid: str, query: Any) -> dict[str, Any]:
    """Typed parameters for query ``nsid`` from a multi-dict (``getlist``/``get``)."""
    try:
        definition = default_registry().resolve(f"{nsid}#main")
    except UnknownLexicon:
        raise XrpcError(501, "MethodNotImplemented", f"method not implemented: {nsid}") from None
    if not isinstance(definition, EndpointDef) or definition.kind != "query":
        raise XrpcError(501, "MethodNotImplemented", f"method not implemented: {nsid}")
    params: dict[str, Any] = {}
    properties = definition.parameters.properties if definition.parameters else {}
    for name, schema in properties.items():
        values = query.getlist(name)
        if not values:
            continue
        try:
            if isinstance(schema, ArrayType):
                params[name] = values
            elif isinstance(schema, IntegerType):
                params[name] = int(values[-1])
            elif isinstance(schema, BooleanType):
                if values[-1] not in ("true", "false"):
                    raise ValueError
                params[name] = values[-1] == "true"
            else:
                params[name] = values[-1]
        except ValueError:
            raise XrpcError(400, "InvalidRequest", f"{name}: wrong type") from None
    try:
        validate_query_params(nsid, params)
    except ValidationError as exc:
        raise XrpcError(400, "InvalidRequest", str(exc)) from None
    return params


def _compact(value: dict[str, Any]) -> dict[str, Any]:
    """ATProto omits absent optional fields rather than sending null."""
    return {k: v for k, v in value.items() if v is not None}


def present_actor(r: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``artistViewBasic`` from columns ``prefix + did/handle/display_name/avatar_url``."""
    did = r[f"{prefix}did"]
    return _compact(
        {
            "did": did,
            "handle": r.get(f"{prefix}handle") or did,
            "displayName": r.get(f"{prefix}display_name"),
            "avatar": r.get(f"{prefix}avatar_url"),
        }
    )


def present_artist_view(r: Mapping[str, Any], track_count: int) -> dict[str, Any]:
    """``artistView`` for an artist row."""
    first = r.get("first_seen_at")
    return _compact(
        {
            **present_actor(r),
            "description": r.get("bio"),
            "trackCount": track_count,
            "firstSeenAt": iso(first) if first else None,
        }
    )


def present_track_view(
    t: Mapping[str, Any], people: Mapping[str, Mapping[str, Any]], *, api_base: str
) -> dict[str, Any]:
    """``trackView`` for a joined track row (``api.views.TRACK_COLUMNS``)."""
    features = []
    for f in t.get("features") or []:
        did = f.get("did") if isinstance(f, dict) else None
        if isinstance(did, str):
            person = people.get(did) or {"did": did}
            features.append(present_actor({**person, "did": did}))
    artist = {
        "did": t["did"],
        "handle": t.get("artist_handle"),
        "display_name": t.get("artist_display_name"),
        "avatar_url": t.get("artist_avatar_url"),
    }
    return _compact(
        {
            "uri": t["uri"],
            "cid": t["cid"],
            "id": t["id"],
            "title": t["title"],
            "artistName": t["artist"],
            "artist": present_actor(artist),
            "features": features or None,
            "album": t.get("album"),
            "albumSlug": t.get("album_slug"),
            "duration": t.get("duration"),
            "fileType": t["file_type"],
            "imageUrl": t.get("image_url"),
            "audioUrl": f"{api_base}/audio/{t['id']}",
            "audioCid": t.get("audio_blob_cid"),
            "description": t.get("description"),
            "labels": list(t.get("self_labels") or []),
            "supportGate": t.get("support_gate"),
            "gated": t.get("support_gate") is not None,
            "likeCount": int(t.get("like_count") or 0),
            "commentCount": int(t.get("comment_count") or 0),
            "playCount": int(t.get("play_count") or 0),
            "createdAt": iso(t["created_at"]),
        }
    )
