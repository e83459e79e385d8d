from __future__ import annotations

import msgpack
import pytest

from domain import codec
from domain.errors import MalformedBody, NotAcceptable, UnsupportedMediaType


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"\xff\xfe",
        b'{"a": "\xed\xa0\x80"}',
        b'{"a": 123456789012345678901234567890}',
        b"[" * 40 + b"]" * 40,
    ],
)
def test_bad_json_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedBody):
        codec.decode(raw, codec.JSON)


def test_depth_32_is_fine_33_is_not() -> None:
    ok = b"[" * 32 + b"]" * 32
    assert codec.decode(ok, codec.JSON) is not None
    with pytest.raises(MalformedBody):
        codec.decode(b"[" * 33 + b"]" * 33, codec.JSON)


def test_msgpack_lying_header_does_not_allocate() -> None:
    # array32 header declaring 4 billion elements, then nothing
    with pytest.raises(MalformedBody):
        codec.decode(b"\xdd\xff\xff\xff\xff", codec.MSGPACK)
    # str32 header declaring 4 GB
    with pytest.raises(MalformedBody):
        codec.decode(b"\xdb\xff\xff\xff\xff", codec.MSGPACK)


def test_msgpack_rejects_nan_binary_keys_and_trailing_data() -> None:
    for raw in (
        msgpack.packb({"a": float("nan")}),
        msgpack.packb({1: "x"}),
        msgpack.packb({"a": b"bytes"}, use_bin_type=True),
        msgpack.packb({"a": 1}) + b"\x01",
    ):
        with pytest.raises(MalformedBody):
            codec.decode(raw, codec.MSGPACK)


def test_same_structure_both_ways() -> None:
    value = {"changes": [{"client_temp_id": "t-1", "qty": 2, "price": "12.70", "ok": True, "none": None}]}
    for fmt in (codec.JSON, codec.MSGPACK):
        assert codec.decode(codec.encode(value, fmt), fmt) == value


def test_content_negotiation() -> None:
    assert codec.request_format(None) == codec.JSON
    assert codec.request_format("application/json; charset=utf-8") == codec.JSON
    for kind in ("application/msgpack", "application/vnd.msgpack", "application/x-msgpack"):
        assert codec.request_format(kind) == codec.MSGPACK
    with pytest.raises(UnsupportedMediaType):
        codec.request_format("text/plain")
    assert codec.response_format(None) == codec.JSON
    assert codec.response_format("application/msgpack") == codec.MSGPACK
    assert codec.response_format("application/json, application/msgpack;q=0.5") == codec.JSON
    assert codec.response_format("*/*") == codec.JSON
    with pytest.raises(NotAcceptable):
        codec.response_format("text/html")
