"""The shortcuts on hot paths give the same answers as the long way: the control-character check that looks
at a body's JSON text first, and the SQLite datetime text (with its cache)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from domain.base import UTCDateTime
from domain.clock import rfc3339
from domain.errors import ValidationError
from domain.wire import _refuse, refuse_control_characters

# Text with plenty of control characters, line breaks, backslashes, DEL, C1 and other non-ASCII characters.
TEXT = st.text(st.sampled_from([*'ab \\n"é€𝄞', "\n", "\t", "\r", "\x00", "\x1b", "\x7f", "\x85", "\x9f", "\xa0"]))
KEYS = st.sampled_from(["name", "address", "notes", "serial", "a\nb", "x\x1b", "é"]) | TEXT
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


def outcome(check: Any, value: Any) -> tuple[str, Any] | None:
    try:
        check(value, "data.")
    except ValidationError as exc:
        return exc.message, exc.details
    return None


@settings(max_examples=400, deadline=None)
@given(JSONISH)
def test_the_check_by_json_text_refuses_exactly_what_the_walk_refuses(value: Any) -> None:
    assert outcome(refuse_control_characters, value) == outcome(_refuse, value)


def test_bodies_json_cannot_hold_are_walked() -> None:
    with pytest.raises(ValidationError):
        refuse_control_characters({1: "a\x1bb"})  # msgpack allows integer keys
    with pytest.raises(ValidationError):
        refuse_control_characters({"a": ["\ud800", "b\x00"]})  # a lone surrogate: orjson refuses it
    refuse_control_characters({"a": [b"\x00\x1b", "plain"]})  # bytes are no text: nothing to refuse


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))
    | st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]),
    )
)
def test_sqlite_datetime_text_is_sqlalchemys(value: datetime) -> None:
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    stock = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and stock is not None
    assert ours(value) == stock(value.astimezone(UTC).replace(tzinfo=None))
    assert rfc3339(value) == value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def test_sqlite_datetime_refuses_what_it_always_refused() -> None:
    dialect = sqlite.dialect()
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None and process(None) is None
    with pytest.raises(ValueError, match="naive"):
        process(datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        process("2026-01-01 00:00:00")


def _rfc3339_long_way(value: datetime) -> str:
    """The wire format spelled out: the instant in UTC (a naive time is UTC), six fractional digits, `Z`."""
    utc = value.astimezone(UTC) if value.tzinfo is not None else value
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}Z"


@settings(max_examples=400, deadline=None)
@given(
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9000, 1, 1)),
    st.lists(st.integers(min_value=-23 * 60, max_value=23 * 60), min_size=1, max_size=4),
)
def test_rfc3339_with_its_cache_formats_every_zone_of_an_instant_as_the_long_way(
    moment: datetime, offsets: list[int]
) -> None:
    """The formatter caches by datetime: the same instant seen in several zones, naive and aware, and again,
    always formats to the one UTC text."""
    utc = moment.replace(tzinfo=UTC)
    expected = _rfc3339_long_way(utc)
    assert rfc3339(moment) == expected  # naive: taken as UTC
    for minutes in offsets:
        seen = utc.astimezone(timezone(timedelta(minutes=minutes)))
        assert rfc3339(seen) == expected
        assert rfc3339(seen) == expected  # from the cache
    assert rfc3339(None) is None
