"""Building blocks for `schemas.py` modules: frozen commands, decimal strings, quantities, references.

Commands are pydantic models (frozen, unknown fields refused); the same classes validate requests and
feed the OpenAPI document, so the two cannot drift.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic import ValidationError as PydanticValidationError

from domain.clock import parse_rfc3339
from domain.errors import ReadOnlyField, ValidationError

_DECIMAL = re.compile(r"^-?\d{1,12}(\.\d+)?$")


def _decimal_string(places: int, signed: bool, integer_digits: int) -> Any:
    def check(value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str):
            raise ValueError('must be a decimal string such as "12.70", never a number')
        if not _DECIMAL.match(value) or (not signed and value.startswith("-")):
            raise ValueError('must be a decimal string such as "12.70"' + ("" if signed else " (not negative)"))
        decimals = len(value.split(".", 1)[1]) if "." in value else 0
        if decimals > places:
            raise ValueError(f"at most {places} decimal places")
        if len(value.lstrip("-").split(".", 1)[0].lstrip("0")) > integer_digits:
            raise ValueError(f"at most {integer_digits} digits before the decimal point")
        return Decimal(value)

    return check


def _decimal_schema(places: int, signed: bool, integer_digits: int) -> dict[str, Any]:
    pattern = (r"^-?" if signed else r"^") + r"0*\d{1,%d}(\.\d{1,%d})?$" % (integer_digits, places)
    return {"type": "string", "pattern": pattern, "examples": ["12.70"]}


def DecimalString(places: int = 2, signed: bool = False, integer_digits: int = 10) -> Any:  # noqa: N802
    """A decimal string that fits its column: `places` decimals, `integer_digits` before the point
    (Numeric(12, 2) money holds 10), so an over-long value is a validation_error, never a database error."""
    return Annotated[
        Decimal,
        BeforeValidator(_decimal_string(places, signed, integer_digits)),
        PlainSerializer(lambda d: str(d), return_type=str),
        WithJsonSchema(_decimal_schema(places, signed, integer_digits)),
    ]


MoneyStr = DecimalString(2)  # Numeric(12, 2)
RateStr = DecimalString(4, integer_digits=8)  # Numeric(12, 4)
ReadingStr = DecimalString(2, integer_digits=12)  # Numeric(14, 2)
KgStr = DecimalString(2, integer_digits=8)  # Numeric(10, 2)


def _strict_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


MAX_ID = 2**63 - 1  # BIGINT: a larger id names no record (and would overflow the database driver)
# The bounds are also spelled out as JSON Schema: behind a BeforeValidator, pydantic would document them as
# the non-standard keys `gt` / `le`, which clients and schemathesis ignore.
Qty = Annotated[
    int,
    BeforeValidator(_strict_int),
    Field(gt=0, le=1_000_000),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 1_000_000}),
]
Id = Annotated[
    int,
    BeforeValidator(_strict_int),
    Field(gt=0, le=MAX_ID),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
]
# A record named by its permanent id, or (in sync pushes) by a client_temp_id of the same device.
Ref = Annotated[
    int | str,
    WithJsonSchema(
        {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "minLength": 1, "maxLength": 100}]}
    ),
]


def _ref(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError("must be an id or a client_temp_id")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("ids are positive")
        return value
    if isinstance(value, str) and 0 < len(value) <= 100:
        return value
    raise ValueError("must be an id or a client_temp_id")


RefField = Annotated[Ref, BeforeValidator(_ref)]


def _code_or_id(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError("must be a code or an id")
    if isinstance(value, int) and 0 < value <= MAX_ID:
        return value
    if isinstance(value, str) and 0 < len(value) <= 40:
        return value
    raise ValueError('must be a code ("CYL12.7") or an id')


CodeOrId = Annotated[
    int | str,
    BeforeValidator(_code_or_id),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "string", "minLength": 1, "maxLength": 40, "examples": ["CYL12.7"]},
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            ]
        }
    ),
]


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 time string")
    try:
        return parse_rfc3339(value)
    except ValidationError as exc:
        raise ValueError(exc.message) from exc


Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-11-24T02:10:00Z"]}),
]

Text200 = Annotated[str, Field(min_length=1, max_length=200)]
OptText = Annotated[str | None, Field(default=None, max_length=500)]


class Command(BaseModel):
    """An immutable, validated request. Unknown fields are refused; `read_only` names server-owned ones."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
    read_only: ClassVar[frozenset[str]] = frozenset()


class Query(BaseModel):
    """Query-string parameters: unknown names and unparseable values are refused, never ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


SERVER_OWNED = frozenset(
    {
        "id",  # a new record's id is the server's; commands that name a record declare `id` themselves
        "active",  # a new record is active; commands that may change it declare `active`
        "price",
        "unit_price",
        "amount",
        "amounts",
        "total",
        "subtotal",
        "gst",
        "gst_rate",
        "rate",
        "meter_rate",
        "kg_rate",
        "fee",
        "deposit",
        "number",
        "status",
        "version",
        "last_modified",
        "driver",
        "driver_id",
        "owner",
        "owner_id",
        "created_by",
        "created_at",
        "confirmed_at",
        "usage",
        "usage_amount",
        "invoice",
        "balance",
        "amount_paid",
    }
)


# -- control characters ---------------------------------------------------------------------------------

# Fields a person writes on several lines: they may hold line breaks and tabs. Every other text field is one
# line. NUL and every other control character (C0, DEL, C1) are refused everywhere: they reach printers
# (ESC p opens the cash drawer), PDFs, e-mails and CSV files, and no person types them.
MULTILINE_FIELDS = frozenset({"address", "notes", "remarks", "reason"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def control_character(text: str, multiline: bool = False) -> str | None:
    """The first control character `text` may not hold (line breaks and tabs are allowed if `multiline`)."""
    found = (_CONTROL_MULTILINE if multiline else _CONTROL).search(text)
    return found.group() if found else None


# What a control character becomes in orjson's output: an escape (`\n`, `\u001b`, ...), a raw DEL or a C1
# character (UTF-8 C2 80..C2 9F). Escaped backslashes may match too; that only costs the walk below.
_MAYBE_CONTROL = re.compile(rb"\\(?:u00[01]|[bfnrt])|\x7f|\xc2[\x80-\x9f]")


def refuse_control_characters(value: Any, field: str = "") -> None:
    """Walk a decoded body (objects, lists, strings; keys too) and refuse the first text holding a control
    character, with `validation_error` naming the field as the body spells it (`data.meter.serial`).

    A body whose JSON text shows no trace of one (nearly every body) is passed at once, without the walk."""
    if isinstance(value, dict | list):
        try:
            if _MAYBE_CONTROL.search(orjson.dumps(value)) is None:
                return
        except TypeError:  # not JSON (msgpack's integer keys or bytes, lone surrogates): walk it
            pass
    _refuse(value, field)


def _refuse(value: Any, field: str) -> None:
    if isinstance(value, str):
        name = field.rsplit(".", 1)[-1].split("[", 1)[0]
        bad = control_character(value, multiline=name in MULTILINE_FIELDS)
        if bad is not None:
            raise ValidationError(
                f"'{field}' may not contain control characters (found U+{ord(bad):04X})"
                + (
                    "; line breaks are allowed only in " + ", ".join(sorted(MULTILINE_FIELDS))
                    if bad in "\n\r\t"
                    else ""
                ),
                field or None,
                {"character": f"U+{ord(bad):04X}"},
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{field}.{key}" if field and not field.endswith(".") else f"{field}{key}"
            if isinstance(key, str) and control_character(key) is not None:
                parent = field.rstrip(".")
                raise ValidationError(
                    f"the names in '{parent or 'the body'}' may not contain control characters",
                    parent or None,
                    {"key": ascii(key)},
                )
            _refuse(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse(item, f"{field}[{index}]")


def parse(model: type[Command], payload: Any, prefix: str = "") -> Any:
    """Validate `payload` into `model`, or raise the spec's error naming the field."""
    if not isinstance(payload, dict):
        raise ValidationError("the body must be an object", prefix.rstrip(".") or None)
    refuse_control_characters(payload, prefix)
    _refuse_read_only(model, payload, prefix)
    try:
        return model.model_validate(payload)
    except PydanticValidationError as exc:
        raise validation_error(exc, prefix) from None


def _refuse_read_only(model: type[Command], payload: dict[str, Any], prefix: str) -> None:
    for key in payload:
        if key in model.read_only or (key in SERVER_OWNED and key not in model.model_fields):
            raise ReadOnlyField(prefix + key)
    # Nested commands (lines) have their own read-only sets.
    for name, inner in _nested_commands(model):
        value = payload.get(name)
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, dict):
                where = f"{prefix}{name}[{index}]." if isinstance(value, list) else f"{prefix}{name}."
                _refuse_read_only(inner, item, where)


@functools.cache
def _nested_commands(model: type[Command]) -> tuple[tuple[str, type[Command]], ...]:
    """The fields of `model` that hold commands (or lists of them): worked out once per model."""
    found = ((name, _command_type(field.annotation)) for name, field in model.model_fields.items())
    return tuple((name, inner) for name, inner in found if inner is not None)


def _command_type(annotation: Any) -> type[Command] | None:
    if isinstance(annotation, type) and issubclass(annotation, Command):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _command_type(arg)
        if found is not None:
            return found
    return None


def validation_error(exc: PydanticValidationError, prefix: str = "") -> ValidationError:
    first = exc.errors()[0]
    field = prefix + _loc(first["loc"])
    if first["type"] == "extra_forbidden":
        return ValidationError(f"unknown field '{field}'", field)
    if first["type"] == "missing":
        return ValidationError(f"'{field}' is required", field)
    return ValidationError(f"'{field}': {first['msg']}", field, {"errors": len(exc.errors())})


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-before[check(), Decimal]",) or "function" in str(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out
