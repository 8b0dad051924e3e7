"""The ATProto data model for values that arrive as JSON (Jetstream records).

A record decoded from DAG-CBOR is in the data model by construction; one decoded from JSON
is not: JSON has floats, and its objects can claim to be bytes, CID links or blobs with
the wrong shape. :func:`normalize_json_record` applies the data-model rules (atproto.com
/specs/data-model) that do not depend on a lexicon:

- the value is an object; there are no floats, except integer-valued ones such as
  ``123.0`` (JSON cannot tell them from ``123``), which become ints;
- ``$type``, where present, is a non-empty string;
- ``{"$bytes": base64}`` and ``{"$link": cid}`` have exactly that one key, a string;
  the link's string is a CID;
- a ``{"$type": "blob"}`` has a ``ref`` that is a CID link, a ``mimeType`` string and an
  integer ``size``.

Violations raise :class:`lexicons.errors.ValidationError` with the path and the reason.
"""

from __future__ import annotations

from lexicons.errors import ValidationError
from lexicons.formats import is_cid

__all__ = ["normalize_json_record"]

_Path = tuple[str | int, ...]


def normalize_json_record(value: object) -> dict[str, object]:
    """Check a record decoded from JSON against the data model; return it, floats fixed.

    Integer-valued floats are replaced by ints in place (the record is the caller's fresh
    decode). Raises ``ValidationError`` for the first violation found.
    """
    if not isinstance(value, dict):
        raise ValidationError("record", "must be an object")
    # Iterative walk: nesting depth is bounded by the JSON decoder, not by our stack.
    pending: list[tuple[object, _Path]] = [(value, ())]
    while pending:
        node, path = pending.pop()
        if isinstance(node, dict):
            _check_object(node, path)
            for key, item in node.items():
                if isinstance(item, float):
                    node[key] = _integer(item, (*path, key))
                elif isinstance(item, dict | list):
                    pending.append((item, (*path, key)))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, float):
                    node[index] = _integer(item, (*path, index))
                elif isinstance(item, dict | list):
                    pending.append((item, (*path, index)))
    return value


def _integer(number: float, path: _Path) -> int:
    if not number.is_integer():
        raise ValidationError(_render(path), f"must not be a float, got {number!r}")
    return int(number)


def _check_object(node: dict[str, object], path: _Path) -> None:
    if "$type" in node:
        kind = node["$type"]
        if not isinstance(kind, str) or not kind:
            raise ValidationError(_render((*path, "$type")), "must be a non-empty string")
        if kind == "blob":
            _check_blob(node, path)
    if "$bytes" in node:
        if len(node) != 1 or not isinstance(node["$bytes"], str):
            raise ValidationError(_render(path), 'bytes must be exactly {"$bytes": string}')
    if "$link" in node:
        _check_link(node, path)


def _check_link(node: object, path: _Path) -> None:
    link = node.get("$link") if isinstance(node, dict) else None
    if not isinstance(node, dict) or len(node) != 1 or not isinstance(link, str):
        raise ValidationError(_render(path), 'a CID link must be exactly {"$link": string}')
    if not is_cid(link):
        raise ValidationError(_render((*path, "$link")), f"must be a CID, got {link[:64]!r}")


def _check_blob(node: dict[str, object], path: _Path) -> None:
    _check_link(node.get("ref"), (*path, "ref"))
    if not isinstance(node.get("mimeType"), str):
        raise ValidationError(_render((*path, "mimeType")), "must be a string")
    size = node.get("size")
    if isinstance(size, float) and size.is_integer():
        node["size"] = size = int(size)
    if not isinstance(size, int) or isinstance(size, bool):
        raise ValidationError(_render((*path, "size")), "must be an integer")


def _render(path: _Path) -> str:
    text = "record"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
