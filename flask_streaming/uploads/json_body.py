"""Bounded JSON request bodies: size, media type and nesting depth.

A JSON value nested a few thousand levels deep makes Python's parser raise
``RecursionError`` (and one nested ~900 levels parses, then fails wherever
it is encoded again). Every JSON body the extension accepts goes through
:func:`parse_json_object`, which refuses such a body with 400 ``too_deep``
before the parser sees it.
"""

from __future__ import annotations

import json
from typing import IO, Any

from ..errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from .bodies import read_block

#: Largest JSON body accepted (bytes).
MAX_JSON_BODY = 64 * 1024
#: Deepest nesting of arrays and objects accepted in a JSON body; the body
#: itself is level 1, so ``{"metadata": {"a": [1]}}`` is 3 deep.
MAX_JSON_DEPTH = 16
#: The media type of a JSON body.
JSON_MEDIA_TYPE = "application/json"


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in the JSON text *raw*
    (brackets inside strings do not count), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # "
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def value_depth(value: Any) -> int:
    """The nesting depth of lists and dicts in *value* (a scalar is 0),
    computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list | tuple):
            deepest = max(deepest, depth + 1)
            stack.extend((x, depth + 1) for x in item)
    return deepest


def check_value_depth(name: str, value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """:raises BadRequest: ``too_deep`` when *value* nests deeper than *max_depth*."""
    if value_depth(value) > max_depth:
        raise BadRequest(
            f"{name} is nested deeper than {max_depth} levels", code="too_deep", limit=max_depth
        )


def read_json_object(
    body: IO[bytes],
    *,
    mimetype: str,
    content_length: int | None,
    limit: int = MAX_JSON_BODY,
    max_depth: int = MAX_JSON_DEPTH,
) -> dict[str, Any]:
    """Read a request body that is empty (``{}``) or a JSON object.

    :param mimetype: the request's media type (without parameters); a
        non-empty body must be ``application/json``, so that a page of
        another site cannot send one with a plain ``<form>`` or a
        ``text/plain`` ``fetch`` (no CORS preflight).
    :raises PayloadTooLarge: more than *limit* bytes.
    :raises UnsupportedMediaType: a non-empty body of another media type.
    :raises BadRequest: ``bad_json`` (not JSON, or not an object),
        ``too_deep`` (nested deeper than *max_depth*).
    """
    if content_length is not None and content_length > limit:
        raise PayloadTooLarge("the JSON body is too large", limit=limit)
    raw = read_block(body, limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge("the JSON body is too large", limit=limit)
    if not raw.strip():
        return {}
    if mimetype != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"the body must be {JSON_MEDIA_TYPE} (or empty)", media_type=JSON_MEDIA_TYPE
        )
    return parse_json_object(raw, max_depth=max_depth)


def parse_json_object(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse *raw* as a JSON object nested at most *max_depth* deep.

    :raises BadRequest: ``too_deep`` or ``bad_json``.
    """
    if json_depth(raw) > max_depth:
        raise BadRequest(
            f"the JSON body is nested deeper than {max_depth} levels",
            code="too_deep",
            limit=max_depth,
        )
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON", code="bad_json") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", code="bad_json")
    return value
