"""Request and response bodies: JSON or MessagePack, with the same structure and the same limits.

Kept in `domain` (not `sync`) because the rules hold for every endpoint, REST included, and `domain/*/api.py`
may not import `sync`. No HTTP here: bytes and media types in, Python values out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import msgpack
import orjson

from domain.errors import MalformedBody, NotAcceptable, UnsupportedMediaType

JSON = "application/json"
MSGPACK = "application/msgpack"
NDJSON = "application/x-ndjson"
MSGPACK_TYPES = {"application/msgpack", "application/vnd.msgpack", "application/x-msgpack"}
MAX_DEPTH = 32
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


def media_type(header: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (header or "").split(";", 1)[0].strip().lower()


def request_format(content_type: str | None) -> str:
    """Which decoder a request body needs: JSON when no Content-Type is given, 415 for anything else."""
    kind = media_type(content_type)
    if kind in ("", JSON) or kind.endswith("+json"):
        return JSON
    if kind in MSGPACK_TYPES:
        return MSGPACK
    raise UnsupportedMediaType(
        f"Content-Type {kind!r} is not supported: send application/json or application/msgpack",
        {"supported": [JSON, *sorted(MSGPACK_TYPES)]},
    )


def response_format(accept: str | None, also: Sequence[str] = ()) -> str:
    """JSON unless the client prefers MessagePack (or accepts only it). `also`: other media types the
    endpoint answers with (a PDF, CSV, metrics text): a client that accepts only one of them is served
    (its errors, if any, come as JSON), never refused with 406."""
    if not accept:
        return JSON
    best, best_q = None, -1.0
    for position, part in enumerate(accept.split(",")):
        kind, _, params = part.strip().partition(";")
        kind = kind.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if kind in MSGPACK_TYPES:
            candidate = MSGPACK
        elif kind in (JSON, "application/*", "*/*", NDJSON) or kind.endswith("+json") or kind in also:
            candidate = JSON
        else:
            continue
        if q > best_q or (q == best_q and best == JSON and candidate == MSGPACK and position == 0):
            best, best_q = candidate, q
    if best is None or best_q <= 0:
        raise NotAcceptable("this server answers in application/json or application/msgpack")
    return best


def decode(raw: bytes, fmt: str) -> Any:
    """Decode a whole body; anything that does not decode to plain data is `malformed_body` (400)."""
    if fmt == JSON:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedBody(f"the body is not valid JSON: {exc}") from exc
        if check_plain(value):
            _recheck_json_numbers(raw)
        return value
    else:
        try:
            # unpackb bounds every declared length by the buffer's size: a lying header cannot allocate.
            value = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True, timestamp=0)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, TypeError) as exc:
            raise MalformedBody(f"the body is not valid MessagePack: {exc}") from exc
    check_plain(value)
    return value


def _recheck_json_numbers(raw: bytes) -> None:
    """orjson reads an integer beyond 64 bits as a float; the slower parser tells them apart."""

    def checked_int(text: str) -> int:
        number = int(text)
        if not INT64_MIN <= number <= UINT64_MAX:
            raise MalformedBody("integers beyond 64 bits are not accepted")
        return number

    json.loads(raw, parse_int=checked_int)


def check_plain(value: Any) -> bool:
    """Only maps with string keys, lists, strings, 64-bit integers, finite floats, booleans and null,
    nested at most 32 levels deep. Returns whether a float was seen."""
    seen_float = False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedBody(f"the body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise MalformedBody("map keys must be strings")
                if isinstance(sub, (dict, list)):
                    stack.append((sub, depth + 1))
                else:
                    seen_float |= _check_scalar(sub)
        elif isinstance(item, list):
            for sub in item:
                if isinstance(sub, (dict, list)):
                    stack.append((sub, depth + 1))
                else:
                    seen_float |= _check_scalar(sub)
        else:
            seen_float |= _check_scalar(item)
    return seen_float


def _check_scalar(item: Any) -> bool:
    if item is None or isinstance(item, (str, bool)):
        return False
    if isinstance(item, int):
        if not INT64_MIN <= item <= UINT64_MAX:
            raise MalformedBody("integers beyond 64 bits are not accepted")
        return False
    if isinstance(item, float):
        if not math.isfinite(item):
            raise MalformedBody("NaN and Infinity are not accepted")
        return True
    raise MalformedBody(f"values of type {type(item).__name__} are not accepted")


def _default(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not plain data: build wire documents with strings")


def encode(value: Any, fmt: str) -> bytes:
    if fmt == JSON:
        return orjson.dumps(value, default=_default)
    return msgpack.packb(value, use_bin_type=True, datetime=False)


def encode_json_line(value: Any) -> bytes:
    return orjson.dumps(value, default=_default) + b"\n"
