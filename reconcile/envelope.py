"""The push envelope: checked as a whole before any change is looked at (a bad envelope is a 400)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.clock import parse_rfc3339
from domain.errors import PayloadTooLarge, UnsupportedProtocol, ValidationError
from domain.wire import refuse_control_characters

MAX_CHANGES = 500
PROTOCOLS = (1,)
ENVELOPE_FIELDS = {"device_id", "atomic", "changes", "client", "dry_run"}
CHANGE_FIELDS = {"client_temp_id", "op", "data"}


@dataclass(frozen=True)
class Change:
    client_temp_id: str
    op: str
    data: dict[str, Any]
    raw: dict[str, Any]


@dataclass(frozen=True)
class Envelope:
    device_id: str
    atomic: bool
    changes: list[Change]
    app_version: str | None = None
    device_time: datetime | None = None
    dry_run: bool = False


def _text(value: Any, field: str, limit: int = 100) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ValidationError(f"'{field}' must be a non-empty string of at most {limit} characters", field)
    refuse_control_characters(value, field)
    return value


def parse_envelope(payload: Any, *, allow_dry_run: bool = False) -> Envelope:
    """Steps 1-2 of a push: the envelope's shape, its limits, the client's protocol version."""
    if not isinstance(payload, dict):
        raise ValidationError("the body must be an object with 'device_id' and 'changes'")
    allowed = ENVELOPE_FIELDS if allow_dry_run else ENVELOPE_FIELDS - {"dry_run"}
    for key in payload:
        if key not in allowed:
            raise ValidationError(f"unknown field '{key}'", key)
    if "device_id" not in payload:
        raise ValidationError("'device_id' is required", "device_id")
    if "changes" not in payload:
        raise ValidationError("'changes' is required", "changes")
    device_id = _text(payload["device_id"], "device_id")
    atomic = payload.get("atomic", False)
    dry_run = payload.get("dry_run", False)
    for name, flag in (("atomic", atomic), ("dry_run", dry_run)):
        if not isinstance(flag, bool):
            raise ValidationError(f"'{name}' must be true or false", name)
    raw_changes = payload["changes"]
    if not isinstance(raw_changes, list):
        raise ValidationError("'changes' must be a list", "changes")
    if len(raw_changes) > MAX_CHANGES:
        raise PayloadTooLarge(
            f"a batch holds at most {MAX_CHANGES} changes, this one has {len(raw_changes)}",
            {"limit": MAX_CHANGES, "changes": len(raw_changes)},
        )
    app_version, device_time = _client(payload.get("client"))
    changes = [_change(raw, index) for index, raw in enumerate(raw_changes)]
    return Envelope(device_id, atomic, changes, app_version, device_time, dry_run)


def _client(client: Any) -> tuple[str | None, datetime | None]:
    if client is None:
        return None, None
    if not isinstance(client, dict):
        raise ValidationError("'client' must be an object", "client")
    for key in client:
        if key not in {"app_version", "protocol", "device_time"}:
            raise ValidationError(f"unknown field 'client.{key}'", f"client.{key}")
    protocol = client.get("protocol", 1)
    if isinstance(protocol, bool) or protocol not in PROTOCOLS:
        raise UnsupportedProtocol(
            f"protocol {protocol!r} is not spoken here; update the app (supported: {list(PROTOCOLS)})",
            {"supported": list(PROTOCOLS), "received": protocol},
        )
    app_version = client.get("app_version")
    if app_version is not None:
        app_version = _text(app_version, "client.app_version", 40)
    device_time = client.get("device_time")
    return app_version, (parse_rfc3339(device_time, "client.device_time") if device_time is not None else None)


def _change(raw: Any, index: int) -> Change:
    where = f"changes[{index}]"
    if not isinstance(raw, dict):
        raise ValidationError(f"'{where}' must be an object", where)
    for key in raw:
        if key not in CHANGE_FIELDS:
            raise ValidationError(f"unknown field '{where}.{key}'", f"{where}.{key}")
    temp_id = _text(raw.get("client_temp_id"), f"{where}.client_temp_id")
    op = raw.get("op")
    if not isinstance(op, str):
        raise ValidationError(f"'{where}.op' must be a string", f"{where}.op")
    refuse_control_characters(op, f"{where}.op")
    data = raw.get("data", {})
    if not isinstance(data, dict):
        raise ValidationError(f"'{where}.data' must be an object", f"{where}.data")
    return Change(temp_id, op, data, raw)
