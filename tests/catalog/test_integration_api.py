"""The catalog endpoints: reads for everyone, reference data for admins, customers for drivers too."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from domain.accounts.policy import Actor
from domain.audit.models import AuditEntry
from domain.catalog.models import Customer
from domain.catalog.schemas import CustomerUpdate
from domain.catalog.services import update_customer
from domain.db import Database
from domain.errors import ValidationError
from domain.feed.models import FeedEntry
from domain.service import Call


def feed_doc(db: Database, entity: str, entity_id: int) -> tuple[dict[str, Any], int]:
    row = db.read(
        lambda s: s.execute(
            select(FeedEntry).where(FeedEntry.entity == entity, FeedEntry.entity_id == entity_id)
        ).scalar_one()
    )
    return orjson.loads(row.doc), row.scope


def last_audit(db: Database) -> AuditEntry:
    return db.read(lambda s: s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first())


def count(db: Database, model: Any) -> int:
    return db.read(lambda s: s.execute(select(func.count()).select_from(model)).scalar_one())


# -- reference data ----------------------------------------------------------------------------------------


def test_equipment_list_shows_codes_and_decimal_strings(demo, client, driver_headers) -> None:
    page = client.get("/api/v1/equipment/", headers=driver_headers).json()
    assert page["count"] == 4 and page["next"] is None and page["previous"] is None
    first = page["results"][0]
    assert {k: first[k] for k in ("id", "code", "name", "capacity_kg", "unit_price", "deposit", "active")} == {
        "id": 1,
        "code": "CYL9",
        "name": "CYL 9kg",
        "capacity_kg": "9.00",
        "unit_price": "24.50",
        "deposit": "40.00",
        "active": True,
    }
    assert first["version"] == 1 and first["last_modified"].endswith("Z")
    only = client.get("/api/v1/equipment/", params={"code": "CYL12.7"}, headers=driver_headers).json()
    assert [e["id"] for e in only["results"]] == [2]


@pytest.mark.parametrize("path", ["/api/v1/equipment/", "/api/v1/depots/", "/api/v1/trucks/", "/api/v1/services/"])
def test_reference_lists_refuse_unknown_filters_and_bad_values(demo, client, driver_headers, path) -> None:
    for params in ({"colour": "red"}, {"active": "perhaps"}, {"page_size": 501}):
        response = client.get(path, params=params, headers=driver_headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error", params
    assert client.get(path + "999/", headers=driver_headers).status_code == 404


def test_admin_creates_and_changes_reference_data_with_feed_and_audit(demo, client, admin_headers) -> None:
    response = client.post(
        "/api/v1/depots/", json={"code": "TUAS", "name": "Tuas Depot", "address": "1 Tuas Ave"}, headers=admin_headers
    )
    assert response.status_code == 201, response.text
    depot = response.json()
    assert depot["version"] == 1 and depot["active"] is True
    assert feed_doc(demo, "depot", depot["id"]) == (depot, 0)
    changed = client.patch(f"/api/v1/depots/{depot['id']}/", json={"active": False}, headers=admin_headers).json()
    assert changed["active"] is False and changed["version"] == 2
    assert (
        feed_doc(demo, "depot", depot["id"])[0]
        == client.get(f"/api/v1/depots/{depot['id']}/", headers=admin_headers).json()
    )
    entry = last_audit(demo)
    assert (entry.action, entry.entity_type, entry.entity_id) == ("update", "depot", depot["id"])
    context = orjson.loads(entry.context)
    assert context["before"]["active"] is True and context["after"]["active"] is False
    inactive = client.get("/api/v1/depots/", params={"active": "false"}, headers=admin_headers).json()
    assert [d["id"] for d in inactive["results"]] == [depot["id"]]


def test_codes_are_unique_and_immutable(demo, client, admin_headers) -> None:
    response = client.post(
        "/api/v1/equipment/",
        json={"code": "CYL9", "name": "dup", "capacity_kg": "9.00", "unit_price": "1.00"},
        headers=admin_headers,
    )
    assert response.status_code == 409 and response.json()["error"]["details"]["field"] == "code"
    response = client.patch("/api/v1/equipment/1/", json={"code": "CYL9X"}, headers=admin_headers)
    assert response.status_code == 400 and response.json()["error"]["details"]["field"] == "code"
    response = client.patch("/api/v1/equipment/1/", json={"name": None}, headers=admin_headers)
    assert response.status_code == 400 and response.json()["error"]["details"]["field"] == "name"
    response = client.patch("/api/v1/services/1/", json={"price": 30.5}, headers=admin_headers)
    assert response.status_code == 400 and response.json()["error"]["details"]["field"] == "price"


def test_price_change_bumps_version_and_keeps_decimals(demo, client, admin_headers) -> None:
    body = client.patch("/api/v1/equipment/2/", json={"unit_price": "33.5"}, headers=admin_headers).json()
    assert body["unit_price"] == "33.50" and body["version"] == 2


# -- customers ---------------------------------------------------------------------------------------------


def test_driver_creates_a_customer_with_a_meter(demo, client, driver_headers) -> None:
    response = client.post(
        "/api/v1/customers/",
        json={
            "name": "Ah Seng Eating House 2",
            "address": "12 Jurong Port Rd",
            "email": "ahseng2@example.sg",
            "phone": "+65 6265 0000",
            "meter": {"serial": "MTR-9001"},
        },
        headers=driver_headers,
    )
    assert response.status_code == 201, response.text
    customer = response.json()
    assert customer["meter_rate"] == "0.00" and customer["kg_rate"] is None
    assert [(m["serial"], m["last_reading"]) for m in customer["meters"]] == [("MTR-9001", None)]
    assert customer["prices"] == {"equipment": {}, "services": {}}
    assert feed_doc(demo, "customer", customer["id"]) == (customer, 0)
    assert client.get(f"/api/v1/customers/{customer['id']}/", headers=driver_headers).json() == customer
    created_by = demo.read(lambda s: s.get(Customer, customer["id"]).created_by)
    assert created_by == 2


@pytest.mark.parametrize(
    "extra", [{"meter_rate": "3.1000"}, {"kg_rate": "2.5"}, {"prices": {"equipment": {"CYL9": "20.00"}}}]
)
def test_driver_may_not_set_rates_or_prices(demo, client, driver_headers, extra) -> None:
    before = count(demo, Customer)
    body = {"name": "Kopi Corner", "address": "3 Tampines St", **extra}
    response = client.post("/api/v1/customers/", json=body, headers=driver_headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "read_only_field"
    assert response.json()["error"]["details"]["field"] == next(iter(extra))
    assert count(demo, Customer) == before
    response = client.patch("/api/v1/customers/1/", json=extra, headers=driver_headers)
    assert response.json()["error"]["code"] == "read_only_field"


def test_driver_edits_contact_fields_admin_edits_rates_and_prices(demo, client, driver_headers, admin_headers) -> None:
    body = client.patch(
        "/api/v1/customers/1/", json={"phone": "+65 6111 2222", "email": None}, headers=driver_headers
    ).json()
    assert body["phone"] == "+65 6111 2222" and body["email"] is None and body["version"] == 2
    body = client.patch(
        "/api/v1/customers/1/",
        json={"meter_rate": "3.3", "prices": {"equipment": {"CYL12.7": "30.00"}, "services": {"INSTALL": "25"}}},
        headers=admin_headers,
    ).json()
    assert body["meter_rate"] == "3.30" and body["version"] == 3
    assert body["prices"] == {"equipment": {"CYL12.7": "30.00"}, "services": {"INSTALL": "25.00"}}
    body = client.patch(
        "/api/v1/customers/1/", json={"prices": {"equipment": {"CYL12.7": None}}}, headers=admin_headers
    ).json()
    assert body["prices"] == {"equipment": {}, "services": {"INSTALL": "25.00"}}
    assert feed_doc(demo, "customer", 1)[0] == body
    response = client.patch(
        "/api/v1/customers/1/", json={"prices": {"equipment": {"CYL99": "1.00"}}}, headers=admin_headers
    )
    assert response.status_code == 404


def test_customer_update_is_last_write_wins_and_audits_the_overwritten_state(demo) -> None:
    driver = Actor(2, "driver1", "driver")

    def update(**fields):  # type: ignore[no-untyped-def]
        return demo.run(
            lambda uow: (
                update_customer(Call(uow.session, driver, demo.settings), CustomerUpdate(id=3, **fields)).conflict
            )
        )

    assert update(base_version=1, phone="+65 6000 0001") is None
    conflict = update(base_version=1, phone="+65 6000 0002")
    assert conflict == {"base_version": 1, "overwritten_version": 2, "policy": "last_write_wins"}
    customer = demo.read(lambda s: s.get(Customer, 3))
    assert customer.phone == "+65 6000 0002" and customer.version == 3
    context = orjson.loads(last_audit(demo).context)
    assert context["before"]["phone"] == "+65 6000 0001" and context["before"]["version"] == 2
    with pytest.raises(ValidationError) as future:
        update(base_version=9, phone="+65 6000 0003")
    assert future.value.details["field"] == "base_version"


def test_customer_search_and_validation(demo, client, driver_headers) -> None:
    page = client.get("/api/v1/customers/", params={"search": "kopitiam"}, headers=driver_headers).json()
    assert [c["name"] for c in page["results"]] == ["Hock Lee Kopitiam"]
    page = client.get("/api/v1/customers/", params={"search": "%"}, headers=driver_headers).json()
    assert page["count"] == 0  # the wildcard is a literal character
    for body, field in (
        ({"name": "X", "address": "Y", "email": "not-an-email"}, "email"),
        ({"address": "Y"}, "name"),
        ({"name": "X"}, "address"),
        ({"name": "X", "address": "Y", "meter": {"serial": "MTR-0001"}}, "serial"),
    ):
        response = client.post("/api/v1/customers/", json=body, headers=driver_headers)
        assert response.status_code in (400, 409), response.text
        assert response.json()["error"]["details"]["field"] == field


def test_meters_can_be_added_by_drivers_and_corrected_by_admins(demo, client, driver_headers, admin_headers) -> None:
    response = client.post("/api/v1/customers/2/meters/", json={"serial": "MTR-2B"}, headers=driver_headers)
    assert response.status_code == 201
    meters = response.json()["meters"]
    assert [m["serial"] for m in meters] == ["MTR-0002", "MTR-2B"]
    response = client.patch(
        f"/api/v1/customers/2/meters/{meters[1]['id']}/", json={"active": False}, headers=admin_headers
    )
    assert [m["active"] for m in response.json()["meters"]] == [True, False]
    response = client.patch("/api/v1/customers/3/meters/1/", json={"active": False}, headers=admin_headers)
    assert response.status_code == 404  # meter 1 belongs to customer 1


def test_customer_list_shows_each_customers_own_meters_and_prices(demo, client, driver_headers, admin_headers) -> None:
    client.patch("/api/v1/customers/2/", json={"prices": {"services": {"DELIVERY": "0.00"}}}, headers=admin_headers)
    page = client.get("/api/v1/customers/", params={"page_size": 2, "page": 1}, headers=driver_headers).json()
    assert page["count"] == 5 and page["next"].endswith("page=2")
    assert [[m["serial"] for m in c["meters"]] for c in page["results"]] == [["MTR-0001"], ["MTR-0002"]]
    assert [c["prices"]["services"] for c in page["results"]] == [{}, {"DELIVERY": "0.00"}]
    last = client.get("/api/v1/customers/", params={"page_size": 2, "page": 3}, headers=driver_headers).json()
    assert [c["id"] for c in last["results"]] == [5] and last["next"] is None
    assert last["results"][0] == client.get("/api/v1/customers/5/", headers=driver_headers).json()
