"""The push contract (docs/sync-protocol.md "Push"), every example in both encodings, on both engines."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from domain.catalog.models import Customer
from domain.db import Database
from domain.invoicing.models import Invoice
from domain.logistics.models import SiteStock, TruckStock
from domain.sales.models import Transaction
from reconcile.models import AppliedChange, RejectedChange
from tests.support.sync_support import ENCODINGS, by_temp_id, count, push, recent, table_fingerprint

RESULT_FIELDS = {"client_temp_id", "status", "entity", "id", "version", "server_ts"}


def spec_example() -> list[dict[str, Any]]:
    """The push example of the spec, with an occurred_at inside the accepted window."""
    return [
        {
            "client_temp_id": "t-17-0001",
            "op": "customer.create",
            "data": {"name": "Ah Seng Eating House", "address": "12 Jurong Port Rd", "email": "ahseng@example.sg"},
        },
        {
            "client_temp_id": "t-17-0002",
            "op": "transaction.create",
            "data": {
                "customer": "t-17-0001",
                "truck": 3,
                "confirm": True,
                "occurred_at": recent(),
                "meter": {"reading": "1532.40"},
                "deliveries": [{"equipment": "CYL12.7", "kind": "full_deliver", "qty": 2}],
                "services": [{"code": "INSTALL", "qty": 1}],
            },
        },
    ]


def truck_full(db: Database, truck: int, equipment: int) -> int:
    return db.read(
        lambda s: s.execute(
            select(TruckStock.full).where(TruckStock.truck_id == truck, TruckStock.equipment_id == equipment)
        ).scalar_one()
    )


@pytest.mark.parametrize("fmt", ENCODINGS)
def test_the_spec_example(fmt: str, client: TestClient, driver_headers: dict[str, str], demo: Database) -> None:
    response = push(client, driver_headers, spec_example(), fmt=fmt)
    assert set(response) == {"server_ts", "id_map", "results", "last_seq"}
    customer, sale = response["results"]
    assert set(customer) == RESULT_FIELDS and customer["status"] == "applied" and customer["entity"] == "customer"
    assert customer["version"] == 1 and customer["server_ts"].endswith("Z")
    assert RESULT_FIELDS | {"number", "related"} <= set(sale) <= RESULT_FIELDS | {"number", "related", "warnings"}
    assert sale["entity"] == "transaction" and sale["number"].startswith("TRX-")
    invoice = sale["related"]["invoice"]
    assert set(invoice) == {"id", "number"} and invoice["number"].startswith("INV-")
    assert response["id_map"] == {
        "t-17-0001": {"entity": "customer", "id": customer["id"]},
        "t-17-0002": {"entity": "transaction", "id": sale["id"], "number": sale["number"]},
    }
    trx = demo.read(lambda s: s.get(Transaction, sale["id"]))
    assert trx.customer_id == customer["id"] and trx.status == "confirmed" and trx.device_id == "tab-017"
    assert response["last_seq"] >= 1
    assert truck_full(demo, 3, 2) == 18


@pytest.mark.parametrize("fmt", ENCODINGS)
def test_field_day_lost_response_push_again(
    fmt: str, client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    """A tablet creates a customer and a confirmed sale offline, pushes, loses the answer, pushes again."""
    customers_before = count(demo, Customer)
    queue = spec_example()  # the tablet's queue: the very same changes, sent twice
    first = push(client, driver_headers, queue, fmt=fmt)
    again = push(client, driver_headers, queue, fmt="msgpack" if fmt == "json" else "json")
    assert again["id_map"] == first["id_map"]
    for before, after in zip(first["results"], again["results"], strict=True):
        assert after["status"] == "duplicate"
        assert {k: v for k, v in after.items() if k != "status"} == {k: v for k, v in before.items() if k != "status"}
    assert count(demo, Customer) == customers_before + 1
    assert count(demo, Transaction) == 1 and count(demo, Invoice) == 1
    assert truck_full(demo, 3, 2) == 18  # moved once
    new_customer = first["id_map"]["t-17-0001"]["id"]
    assert (
        demo.read(
            lambda s: s.execute(select(SiteStock.on_site).where(SiteStock.customer_id == new_customer)).scalar_one()
        )
        == 2
    )


def test_same_key_other_content_is_idempotency_key_reuse(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    change = spec_example()[0]
    push(client, driver_headers, [change])
    other = {**change, "data": {**change["data"], "name": "Another Name"}}
    result = push(client, driver_headers, [other])["results"][0]
    assert result["status"] == "rejected" and result["error"]["code"] == "idempotency_key_reuse"
    assert count(demo, Customer, Customer.name == "Another Name") == 0


def test_key_order_does_not_matter_but_strings_do(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    change = {"client_temp_id": "t-1", "op": "customer.create", "data": {"name": "A", "address": "B"}}
    push(client, driver_headers, [change])
    reordered = {"op": "customer.create", "data": {"address": "B", "name": "A"}, "client_temp_id": "t-1"}
    assert push(client, driver_headers, [reordered])["results"][0]["status"] == "duplicate"
    differently = {"client_temp_id": "t-1", "op": "customer.create", "data": {"name": "A ", "address": "B"}}
    assert push(client, driver_headers, [differently])["results"][0]["error"]["code"] == "idempotency_key_reuse"


def ten_changes(bad_reading: bool = True) -> list[dict[str, Any]]:
    at = recent()
    return [
        {"client_temp_id": "t-1", "op": "customer.create", "data": {"name": "Kopi One", "address": "1 Kopi Rd"}},
        {
            "client_temp_id": "t-2",
            "op": "transaction.create",
            "data": {"customer": 1, "truck": 1, "confirm": True, "occurred_at": at, "meter": {"reading": "100.00"}},
        },
        {
            "client_temp_id": "t-3",
            "op": "transaction.create",
            "data": {
                "customer": 1,
                "truck": 1,
                "confirm": True,
                "occurred_at": at,
                "meter": {"reading": "50.00" if bad_reading else "120.00"},
                "deliveries": [{"equipment": "CYL9", "kind": "full_deliver", "qty": 1}],
            },
        },
        {"client_temp_id": "t-4", "op": "customer.create", "data": {"name": "Kopi Two", "address": "2 Kopi Rd"}},
        {
            "client_temp_id": "t-5",
            "op": "distribution.create",
            "data": {
                "depot": 1,
                "truck": 1,
                "confirm": True,
                "items": [{"equipment": "CYL14", "movement_type": "collection", "qty": 3}],
            },
        },
        {
            "client_temp_id": "t-6",
            "op": "meter_reading.create",
            "data": {"customer": 2, "reading": "10.00", "occurred_at": at},
        },
        {"client_temp_id": "t-7", "op": "invoice.mark_printed", "data": {"transaction": "t-3", "occurred_at": at}},
        {
            "client_temp_id": "t-8",
            "op": "transaction.create",
            "data": {
                "customer": "t-1",
                "truck": 1,
                "confirm": True,
                "occurred_at": at,
                "deliveries": [{"equipment": "CYL12.7", "kind": "full_deliver", "qty": 1}],
                "services": [{"code": "DELIVERY", "qty": 1}],
            },
        },
        {
            "client_temp_id": "t-9",
            "op": "customer.update",
            "data": {"id": "t-4", "base_version": 1, "phone": "+65 6000 0000"},
        },
        {
            "client_temp_id": "t-10",
            "op": "invoice.mark_paid",
            "data": {"transaction": "t-8", "amount": "5.00", "method": "cash", "occurred_at": at},
        },
    ]


def test_a_refused_change_refuses_its_dependents_only(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    response = push(client, driver_headers, ten_changes())
    results = by_temp_id(response)
    refused = {t for t, r in results.items() if r["status"] == "rejected"}
    assert refused == {"t-3", "t-7"}, {t: r.get("error") for t, r in results.items()}
    assert results["t-3"]["error"]["code"] == "meter_regression"
    assert results["t-3"]["error"]["details"]
    seven = results["t-7"]["error"]
    assert seven["code"] == "dependency_rejected"
    assert seven["details"]["cause"] == {"client_temp_id": "t-3", "code": "meter_regression"}
    assert set(response["id_map"]) == {f"t-{n}" for n in (1, 2, 4, 5, 6, 8, 9, 10)}
    assert count(demo, Transaction) == 2
    assert count(demo, RejectedChange) == 2 and count(demo, AppliedChange) == 8
    # the refused change left no trace: truck 1's CYL9 is untouched
    assert truck_full(demo, 1, 1) == 20


def test_atomic_batch_applies_nothing_when_one_change_is_refused(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    before = count(demo, Customer), count(demo, Transaction), truck_full(demo, 1, 3)
    response = push(client, driver_headers, ten_changes(), atomic=True)
    assert all(r["status"] == "rejected" for r in response["results"])
    assert len(response["results"]) == 10 and response["id_map"] == {}
    codes = {r["client_temp_id"]: r["error"]["code"] for r in response["results"]}
    assert codes["t-3"] == "meter_regression"
    assert {c for t, c in codes.items() if t != "t-3"} == {"rolled_back"}
    assert (count(demo, Customer), count(demo, Transaction), truck_full(demo, 1, 3)) == before
    assert count(demo, AppliedChange) == 0


def test_atomic_batch_applies_everything_when_all_pass(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    response = push(client, driver_headers, ten_changes(bad_reading=False), atomic=True)
    assert [r["status"] for r in response["results"]] == ["applied"] * 10, response["results"]
    assert truck_full(demo, 1, 3) == 23


def test_a_refusal_is_evaluated_again_and_resolved_when_it_applies(
    client: TestClient, driver_headers: dict[str, str], admin_headers: dict[str, str], demo: Database
) -> None:
    sale = {
        "client_temp_id": "t-big",
        "op": "transaction.create",
        "data": {
            "customer": 2,
            "truck": 2,
            "confirm": True,
            "occurred_at": recent(),
            "deliveries": [{"equipment": "CYL50", "kind": "full_deliver", "qty": 25}],
        },
    }
    first = push(client, driver_headers, [sale])["results"][0]
    assert first["error"]["code"] == "insufficient_stock"
    # support staff add the missing cylinders, then replay the open rejections of the device
    adjust = client.post(
        "/api/v1/stock/adjustments/",
        headers=admin_headers,
        json={
            "place": "truck",
            "truck": 2,
            "equipment": "CYL50",
            "full_delta": 10,
            "reason": "stock count after the day",
        },
    )
    assert adjust.status_code in (200, 201), adjust.text
    replayed = client.post(
        "/api/v1/sync/rejections/replay", json={"device_id": "tab-017"}, headers=admin_headers
    ).json()
    assert replayed["results"][0]["status"] == "applied", replayed
    rejection = demo.read(lambda s: s.execute(select(RejectedChange)).scalar_one())
    assert rejection.resolved_at is not None and rejection.resolved_by == 1
    # the tablet pushes the same change again later: it is a duplicate now
    assert push(client, driver_headers, [sale])["results"][0]["status"] == "duplicate"


def test_unknown_and_rejected_references(client: TestClient, driver_headers: dict[str, str], demo: Database) -> None:
    orphan = {
        "client_temp_id": "t-x",
        "op": "invoice.mark_printed",
        "data": {"transaction": "t-never", "occurred_at": recent()},
    }
    result = push(client, driver_headers, [orphan])["results"][0]
    assert result["error"]["code"] == "unknown_reference"
    bad = {"client_temp_id": "t-bad", "op": "customer.create", "data": {"name": ""}}
    assert push(client, driver_headers, [bad])["results"][0]["error"]["code"] == "validation_error"
    later = {
        "client_temp_id": "t-later",
        "op": "customer.update",
        "data": {"id": "t-bad", "base_version": 1, "phone": "1"},
    }
    result = push(client, driver_headers, [later])["results"][0]
    assert result["error"]["code"] == "dependency_rejected"
    assert result["error"]["details"]["cause"] == {"client_temp_id": "t-bad", "code": "validation_error"}
    wrong_kind = {
        "client_temp_id": "t-w",
        "op": "transaction.create",
        "data": {"customer": 1, "truck": "t-later", "occurred_at": recent()},
    }
    assert push(client, driver_headers, [wrong_kind])["results"][0]["error"]["code"] in (
        "dependency_rejected",
        "validation_error",
    )


def test_last_write_wins_reports_the_conflict_and_keeps_the_overwritten_state(
    client: TestClient, driver_headers: dict[str, str], other_driver_headers: dict[str, str], demo: Database
) -> None:
    from domain.audit.models import AuditEntry

    first = {"client_temp_id": "a-1", "op": "customer.update", "data": {"id": 3, "base_version": 1, "phone": "111"}}
    second = {"client_temp_id": "b-1", "op": "customer.update", "data": {"id": 3, "base_version": 1, "phone": "222"}}
    assert "conflict" not in push(client, driver_headers, [first], device="tab-a")["results"][0]
    late = push(client, other_driver_headers, [second], device="tab-b")["results"][0]
    assert late["status"] == "applied" and late["version"] == 3
    assert late["conflict"] == {"base_version": 1, "overwritten_version": 2, "policy": "last_write_wins"}
    assert demo.read(lambda s: s.get(Customer, 3)).phone == "222"
    entries = demo.read(
        lambda s: s.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity_type == "customer", AuditEntry.entity_id == 3)
            .order_by(AuditEntry.id)
        ).all()
    )
    assert '"111"' in entries[-1].context and '"b-1"' in entries[-1].context


def test_dry_run_replay_changes_nothing(
    client: TestClient, driver_headers: dict[str, str], admin_headers: dict[str, str], demo: Database
) -> None:
    push(client, driver_headers, [])  # registers tab-017 to driver1
    before = table_fingerprint(demo)
    response = client.post(
        "/api/v1/sync/replay",
        headers=admin_headers,
        json={"device_id": "tab-017", "changes": ten_changes(bad_reading=False), "dry_run": True},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True and [r["status"] for r in body["results"]] == ["applied"] * 10
    assert table_fingerprint(demo) == before
    # and a real replay afterwards gets the very first numbers: the dry run consumed none
    real = client.post(
        "/api/v1/sync/replay",
        headers=admin_headers,
        json={"device_id": "tab-017", "changes": ten_changes(bad_reading=False)},
    ).json()
    numbers = sorted(r["number"] for r in real["results"] if r.get("number", "").startswith("TRX"))
    assert numbers[0].endswith("-000001")


def test_replay_of_an_unknown_device_is_404(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.post("/api/v1/sync/replay", headers=admin_headers, json={"device_id": "nobody", "changes": []})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
