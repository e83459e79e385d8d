"""Helpers for the push contract tests: send a batch in either encoding, and read what the database holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
from sqlalchemy import func, select
from starlette.testclient import TestClient

from domain.db import Database

PUSH = "/api/v1/sync/push"
ENCODINGS = ("json", "msgpack")


def recent(minutes: int = 30) -> str:
    """An occurred_at inside the accepted window, in the device's own offset (Singapore)."""
    moment = datetime.now(UTC) - timedelta(minutes=minutes)
    return moment.astimezone(timezone(timedelta(hours=8))).isoformat(timespec="seconds")


def confirmed_sale(
    temp_id: str, customer: int | str = 1, *, truck: int = 1, qty: int = 1, reading: str | None = None
) -> dict[str, Any]:
    """A `transaction.create` change: a confirmed sale of `qty` full CYL12.7 from `truck`, just now."""
    data: dict[str, Any] = {
        "customer": customer,
        "truck": truck,
        "confirm": True,
        "occurred_at": recent(),
        "deliveries": [{"equipment": "CYL12.7", "kind": "full_deliver", "qty": qty}],
    }
    if reading is not None:
        data["meter"] = {"reading": reading}
    return {"client_temp_id": temp_id, "op": "transaction.create", "data": data}


def push(
    client: TestClient,
    headers: dict[str, str],
    changes: list[dict[str, Any]],
    *,
    device: str = "tab-017",
    fmt: str = "json",
    atomic: bool | None = None,
    path: str = PUSH,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> dict[str, Any]:
    body: dict[str, Any] = {"device_id": device, "changes": changes, **(extra or {})}
    if atomic is not None:
        body["atomic"] = atomic
    if fmt == "json":
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        return response.json()  # type: ignore[no-any-return]
    response = client.post(
        path,
        content=msgpack.packb(body),
        headers={**headers, "Content-Type": "application/msgpack", "Accept": "application/msgpack"},
    )
    assert response.status_code == status, response.content[:300]
    assert response.headers["content-type"] == "application/msgpack"
    return msgpack.unpackb(response.content)  # type: ignore[no-any-return]


def by_temp_id(response: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["client_temp_id"]: r for r in response["results"]}


def count(db: Database, model: Any, *where: Any) -> int:
    return db.read(lambda s: s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def table_fingerprint(db: Database) -> dict[str, Any]:
    """Every table's row count and content, for 'nothing changed' assertions."""
    from sync.models import metadata

    def read(session: Any) -> dict[str, Any]:
        out = {}
        for name, table in sorted(metadata.tables.items()):
            rows = session.execute(select(table)).all()
            out[name] = sorted(repr(tuple(r)) for r in rows)
        return out

    return db.read(read)
