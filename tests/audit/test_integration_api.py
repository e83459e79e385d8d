"""`GET /api/v1/audit/`: admin-only, read-only, newest first, filtered, paginated DRF-style."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from domain.audit.models import AuditEntry
from domain.audit.schemas import AuditEntryOut
from domain.db import Database
from tests.support.audit_support import as_root, entries, write_entries

AUDIT = "/api/v1/audit/"


def get(client: TestClient, headers: dict[str, str], **params: Any) -> Any:
    response = client.get(AUDIT, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", [AUDIT, AUDIT + "verify/"])
def test_no_write_method_exists(
    client: TestClient, admin_headers: dict[str, str], demo: Database, method: str, path: str
) -> None:
    before = [(e.id, e.hash) for e in entries(demo)]
    response = client.request(method, path, headers=admin_headers, json={"action": "forged"})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "GET"
    assert [(e.id, e.hash) for e in entries(demo)] == before


def test_the_demo_log_newest_first_with_its_representation(client: TestClient, admin_headers: dict[str, str]) -> None:
    page = get(client, admin_headers, page_size=5)
    assert page["count"] == 40
    assert [r["id"] for r in page["results"]] == [40, 39, 38, 37, 36]
    assert page["previous"] is None and "page=2" in page["next"]
    newest = page["results"][0]
    for result in page["results"]:
        AuditEntryOut.model_validate(result)
    assert set(newest) == {
        "id", "at", "user_id", "device_id", "action", "entity_type", "entity_id", "context", "prev_hash", "hash",
    }  # fmt: skip
    assert newest["entity_type"] == "truck_stock" and newest["action"] == "create"
    assert newest["context"]["after"]["equipment"] == "CYL50"
    assert newest["context"]["source"] == "demo"
    assert newest["at"].endswith("Z")
    assert newest["prev_hash"] == page["results"][1]["hash"]
    last = get(client, admin_headers, page_size=5, page=8)
    assert [r["id"] for r in last["results"]] == [5, 4, 3, 2, 1]
    assert last["next"] is None and "page=7" in last["previous"]
    assert last["results"][-1]["prev_hash"] == "0" * 64


def test_filters_combine(demo: Database, client: TestClient, admin_headers: dict[str, str]) -> None:
    write_entries(demo, 3, per_transaction=2, actor=2)
    assert get(client, admin_headers, entity_type="customer")["count"] == 5
    customer = get(client, admin_headers, entity_type="customer", entity_id=3)
    assert [(r["entity_type"], r["entity_id"]) for r in customer["results"]] == [("customer", 3)]
    assert customer["results"][0]["context"]["after"]["meters"][0]["serial"] == "MTR-0003"
    assert get(client, admin_headers, action="adjust")["count"] == 6
    assert get(client, admin_headers, user=2)["count"] == 6
    assert get(client, admin_headers, user="driver1")["count"] == 6
    assert get(client, admin_headers, user="nobody")["count"] == 0
    assert get(client, admin_headers, user="9" * 30)["count"] == 0  # beyond BIGINT: no such user, not a 500
    assert get(client, admin_headers, user="driver1", entity_id=1002)["count"] == 1
    assert get(client, admin_headers, action="adjust", entity_type="user")["count"] == 0


def test_time_filters_take_dates_in_the_business_zone_and_rfc3339_times(
    demo: Database, client: TestClient, admin_headers: dict[str, str]
) -> None:
    # Place three entries at known times (as root: the log is otherwise immutable, which is the point).
    moments = {
        1: datetime(2026, 3, 1, 15, 59, 59, 999999, tzinfo=UTC),
        2: datetime(2026, 3, 1, 16, 0, 0, tzinfo=UTC),
        3: datetime(2026, 3, 2, 15, 59, 59, tzinfo=UTC),
    }
    table = AuditEntry.__table__
    with as_root(demo) as conn:
        for entry_id, at in moments.items():
            conn.execute(table.update().where(table.c.id == entry_id).values(at=at))
    ids = lambda **p: sorted(r["id"] for r in get(client, admin_headers, page_size=500, **p)["results"])  # noqa: E731
    # 2026-03-02 in Singapore is 2026-03-01T16:00Z .. 2026-03-02T16:00Z
    assert ids(date_from="2026-03-02", date_to="2026-03-02") == [2, 3]
    assert ids(date_to="2026-03-01") == [1]
    assert ids(date_from="2026-03-01T16:00:00Z", date_to="2026-03-02T15:59:59Z") == [2, 3]
    assert ids(date_from="2026-03-02T00:00:00+08:00", date_to="2026-03-02T00:00:00+08:00") == [2]
    today = datetime.now(UTC)
    assert len(ids(date_from=(today - timedelta(hours=1)).isoformat())) == 37


@pytest.mark.parametrize(
    "params",
    [
        {"date_from": "yesterday"},
        {"date_to": "2026-13-01"},
        {"date_from": "2026-03-01T10:00:00"},  # a time without an offset is ambiguous
        {"entity_id": "abc"},
        {"entity_id": "0"},
        {"page_size": "501"},
        {"ordering": "id"},
        {"date_to": "9999-12-31"},  # its end is beyond the calendar
        {"date_from": "0001-01-01"},  # its start in UTC is before year 1
    ],
)
def test_bad_filters_are_refused_naming_the_field(
    client: TestClient, admin_headers: dict[str, str], params: dict[str, str]
) -> None:
    response = client.get(AUDIT, headers=admin_headers, params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["details"].get("field") == next(iter(params))


def test_drivers_may_not_read_the_log(
    client: TestClient, driver_headers: dict[str, str], other_driver_headers: dict[str, str]
) -> None:
    for headers in (driver_headers, other_driver_headers, {}):
        for path in (AUDIT, AUDIT + "verify/"):
            response = client.get(path, headers=headers)
            assert response.status_code in (401, 403)
            assert "results" not in response.json() and "ok" not in response.json()
