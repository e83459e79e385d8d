"""Workflow A over HTTP and through the services: movements, life cycle, refusals that change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select
from starlette.testclient import TestClient

from domain.accounts.policy import Actor
from domain.audit.models import AuditEntry
from domain.db import Database
from domain.errors import InsufficientStock, InvalidState
from domain.feed.models import Counter, FeedEntry
from domain.logistics import services as svc
from domain.logistics.models import DepotStock, Distribution, SiteStock, StockAdjustment, TruckStock
from domain.logistics.schemas import DistributionCreate, DistributionUpdate
from domain.service import Call

URL = "/api/v1/distributions/"
DRIVER1 = Actor(2, "driver1", "driver")
DRIVER2 = Actor(3, "driver2", "driver")
ADMIN = Actor(1, "admin", "admin")


def depot_stock(db: Database, depot: int, equipment: int) -> tuple[int, int]:
    row = db.read(
        lambda s: s.execute(
            select(DepotStock).where(DepotStock.depot_id == depot, DepotStock.equipment_id == equipment)
        ).scalar_one()
    )
    return row.full, row.empty


def truck_stock(db: Database, truck: int, equipment: int) -> tuple[int, int]:
    row = db.read(
        lambda s: s.execute(
            select(TruckStock).where(TruckStock.truck_id == truck, TruckStock.equipment_id == equipment)
        ).scalar_one()
    )
    return row.full, row.empty


def snapshot(db: Database) -> dict[str, Any]:
    """Everything a refused confirm could have touched."""

    def read(s):  # type: ignore[no-untyped-def]
        return {
            "depot": sorted((r.id, r.full, r.empty, r.version) for r in s.scalars(select(DepotStock))),
            "truck": sorted((r.id, r.full, r.empty, r.version) for r in s.scalars(select(TruckStock))),
            "site": sorted((r.id, r.on_site, r.version) for r in s.scalars(select(SiteStock))),
            "distributions": sorted((d.id, d.status, d.number, d.version) for d in s.scalars(select(Distribution))),
            "feed": sorted((f.seq, f.entity, f.entity_id, f.version) for f in s.scalars(select(FeedEntry))),
            "audit": s.execute(select(func.count()).select_from(AuditEntry)).scalar_one(),
            "counters": sorted((c.name, c.value) for c in s.scalars(select(Counter))),
        }

    return db.read(read)


def create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    payload = {"depot": 1, "truck": 1, "items": [{"equipment": "CYL12.7", "movement_type": "collection", "qty": 5}]}
    payload.update(body)
    response = client.post(URL, json=payload, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def give_truck_empties(db: Database, truck: int, equipment: int, qty: int) -> None:
    from domain.logistics.schemas import StockAdjustmentCreate

    cmd = StockAdjustmentCreate(place="truck", truck=truck, equipment=equipment, empty_delta=qty, reason="test")
    db.run(lambda uow: svc.adjust_stock(Call(uow.session, ADMIN, db.settings), cmd))


# -- movements ------------------------------------------------------------------------------------------


def test_collection_moves_full_cylinders_from_depot_to_truck(demo, client, driver_headers) -> None:
    d = create(client, driver_headers)
    assert d["status"] == "pending" and d["number"] is None and d["driver"] == 2 and d["version"] == 1
    assert depot_stock(demo, 1, 2) == (200, 40) and truck_stock(demo, 1, 2) == (20, 0)  # a draft moves nothing
    response = client.post(f"{URL}{d['id']}/confirm/", headers=driver_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "confirmed" and body["version"] == 2
    assert body["number"].startswith("DIST-") and body["number"].endswith("-000001")
    assert body["confirmed_at"] is not None
    assert depot_stock(demo, 1, 2) == (195, 40)
    assert truck_stock(demo, 1, 2) == (25, 0)


def test_empty_return_moves_empty_cylinders_from_truck_to_depot(demo, client, driver_headers) -> None:
    give_truck_empties(demo, 2, 3, 7)
    d = create(client, driver_headers, truck=2, items=[{"equipment": 3, "movement_type": "empty_return", "qty": 4}])
    assert d["items"] == [{"equipment": "CYL14", "movement_type": "empty_return", "qty": 4}]
    assert client.post(f"{URL}{d['id']}/confirm/", headers=driver_headers).status_code == 200
    assert truck_stock(demo, 2, 3) == (20, 3)
    assert depot_stock(demo, 1, 3) == (200, 44)


def test_create_with_confirm_moves_both_kinds_in_one_unit(demo, client, driver_headers) -> None:
    give_truck_empties(demo, 1, 1, 10)
    d = create(
        client,
        driver_headers,
        confirm=True,
        items=[
            {"equipment": "CYL9", "movement_type": "empty_return", "qty": 10},
            {"equipment": "CYL9", "movement_type": "collection", "qty": 12},
            {"equipment": "CYL50", "movement_type": "collection", "qty": 1},
        ],
    )
    assert d["status"] == "confirmed" and d["version"] == 1 and d["number"].endswith("-000001")
    assert truck_stock(demo, 1, 1) == (32, 0) and depot_stock(demo, 1, 1) == (188, 50)
    assert truck_stock(demo, 1, 4) == (21, 0) and depot_stock(demo, 1, 4) == (199, 40)


def test_confirm_writes_audit_and_feed_for_the_distribution_and_every_stock_row(demo, client, driver_headers) -> None:
    d = create(client, driver_headers)
    before = snapshot(demo)
    client.post(f"{URL}{d['id']}/confirm/", headers=driver_headers)
    after = snapshot(demo)
    assert after["audit"] == before["audit"] + 1
    feed = demo.read(lambda s: s.scalars(select(FeedEntry).order_by(FeedEntry.seq)).all())
    newest = feed[-3:]
    assert {(f.entity, f.scope) for f in newest} == {("distribution", 2), ("depot_stock", 0), ("truck_stock", 0)}
    detail = client.get(f"{URL}{d['id']}/", headers=driver_headers).json()
    import orjson

    assert orjson.loads(next(f for f in newest if f.entity == "distribution").doc) == detail
    stock = client.get("/api/v1/stock/", params={"truck": 1, "equipment": "CYL12.7"}, headers=driver_headers).json()
    assert orjson.loads(next(f for f in newest if f.entity == "truck_stock").doc) == stock["results"][0]
    entry = demo.read(lambda s: s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first())
    assert (entry.action, entry.entity_type, entry.entity_id, entry.user_id) == ("confirm", "distribution", d["id"], 2)
    context = orjson.loads(entry.context)
    assert {(m["place"], m["state"], m["before"], m["after"]) for m in context["stock"]} == {
        ("depot", "full", 200, 195),
        ("truck", "full", 20, 25),
    }


# -- refusals that change nothing ------------------------------------------------------------------------


def test_insufficient_stock_refuses_the_whole_confirm_and_changes_nothing(demo, client, driver_headers) -> None:
    d = create(
        client,
        driver_headers,
        items=[
            {"equipment": "CYL9", "movement_type": "collection", "qty": 3},  # would succeed on its own
            {"equipment": "CYL12.7", "movement_type": "empty_return", "qty": 2},  # the truck has no empties
        ],
    )
    before = snapshot(demo)
    response = client.post(f"{URL}{d['id']}/confirm/", headers=driver_headers)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_stock"
    assert error["details"] == {
        "place": "truck",
        "truck": 1,
        "equipment": "CYL12.7",
        "state": "empty",
        "available": 0,
        "requested": 2,
    }
    assert snapshot(demo) == before
    # and the next successful confirm takes number 1: none was consumed
    ok = create(client, driver_headers)
    assert client.post(f"{URL}{ok['id']}/confirm/", headers=driver_headers).json()["number"].endswith("-000001")


def test_a_refused_confirm_leaves_its_transaction_untouched_for_the_reconciler(demo) -> None:
    """The reconciler commits a batch in which a change was refused: the refusal must have written nothing."""
    cmd = DistributionCreate(
        depot=2, truck=3, items=[{"equipment": "CYL50", "movement_type": "collection", "qty": 201}]
    )
    before = snapshot(demo)
    with demo.unit() as uow:
        call = Call(uow.session, DRIVER1, demo.settings)
        with pytest.raises(InsufficientStock) as refused:
            svc.create_distribution(call, cmd.model_copy(update={"confirm": True}))
        uow.commit()
    assert refused.value.details["available"] == 200 and refused.value.details["requested"] == 201
    assert snapshot(demo) == before


def test_failure_after_the_stock_update_and_before_commit_leaves_nothing(demo, client, driver_headers) -> None:
    d = create(client, driver_headers)
    before = snapshot(demo)

    class Boom(Exception):
        pass

    def work(uow):  # type: ignore[no-untyped-def]
        svc.confirm_distribution(Call(uow.session, DRIVER1, demo.settings), d["id"])
        uow.session.flush()  # the stock UPDATEs and the number reached the database

        @event.listens_for(uow.session, "before_commit")
        def fail(session):  # type: ignore[no-untyped-def]
            raise Boom("after the ledger, just before COMMIT")

    with pytest.raises(Boom):
        demo.run(work)
    assert snapshot(demo) == before
    body = client.post(f"{URL}{d['id']}/confirm/", headers=driver_headers).json()
    assert body["number"].endswith("-000001")  # the failed attempt consumed no number


# -- life cycle ------------------------------------------------------------------------------------------


def test_confirmed_is_immutable_and_a_second_confirm_is_invalid_state(demo, client, driver_headers) -> None:
    d = create(client, driver_headers)
    client.post(f"{URL}{d['id']}/confirm/", headers=driver_headers)
    stock = truck_stock(demo, 1, 2)
    for method, path, body in (
        ("POST", f"{URL}{d['id']}/confirm/", None),
        ("POST", f"{URL}{d['id']}/cancel/", None),
        ("PATCH", f"{URL}{d['id']}/", {"items": [{"equipment": "CYL9", "movement_type": "collection", "qty": 1}]}),
    ):
        response = client.request(method, path, json=body, headers=driver_headers)
        assert response.status_code == 409, (method, path, response.text)
        assert response.json()["error"]["code"] == "invalid_state"
    assert truck_stock(demo, 1, 2) == stock


def test_cancel_a_pending_distribution(demo, client, driver_headers) -> None:
    d = create(client, driver_headers)
    body = client.post(f"{URL}{d['id']}/cancel/", headers=driver_headers).json()
    assert body["status"] == "cancelled" and body["cancelled_at"] and body["number"] is None and body["version"] == 2
    response = client.post(f"{URL}{d['id']}/confirm/", headers=driver_headers)
    assert response.json()["error"]["code"] == "invalid_state"
    assert depot_stock(demo, 1, 2) == (200, 40)


def test_patch_replaces_items_while_pending(demo, client, driver_headers) -> None:
    d = create(client, driver_headers)
    response = client.patch(
        f"{URL}{d['id']}/",
        json={"base_version": 1, "truck": 2, "items": [{"equipment": "CYL9", "movement_type": "collection", "qty": 2}]},
        headers=driver_headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 2 and body["truck"] == 2
    assert body["items"] == [{"equipment": "CYL9", "movement_type": "collection", "qty": 2}]
    client.post(f"{URL}{d['id']}/confirm/", headers=driver_headers)
    assert truck_stock(demo, 2, 1) == (22, 0) and truck_stock(demo, 1, 2) == (20, 0)


def test_update_from_an_older_version_wins_and_reports_the_conflict(demo) -> None:
    def make(uow):  # type: ignore[no-untyped-def]
        cmd = DistributionCreate(
            depot=1, truck=1, items=[{"equipment": "CYL9", "movement_type": "collection", "qty": 1}]
        )
        return svc.create_distribution(Call(uow.session, DRIVER1, demo.settings), cmd).id

    did = demo.run(make)
    items = [{"equipment": "CYL9", "movement_type": "collection", "qty": 2}]
    first = demo.run(
        lambda uow: (
            svc.update_distribution(
                Call(uow.session, DRIVER1, demo.settings), DistributionUpdate(id=did, base_version=1, items=items)
            ).conflict
        )
    )
    assert first is None
    items3 = [{"equipment": "CYL9", "movement_type": "collection", "qty": 3}]
    second = demo.run(
        lambda uow: (
            svc.update_distribution(
                Call(uow.session, ADMIN, demo.settings), DistributionUpdate(id=did, base_version=1, items=items3)
            ).conflict
        )
    )
    assert second == {"base_version": 1, "overwritten_version": 2, "policy": "last_write_wins"}
    d = demo.read(lambda s: s.get(Distribution, did))
    assert d.version == 3


def test_another_drivers_distribution_is_not_found(
    demo, client, driver_headers, other_driver_headers, admin_headers
) -> None:
    d = create(client, driver_headers)
    for method, path in (
        ("GET", f"{URL}{d['id']}/"),
        ("POST", f"{URL}{d['id']}/confirm/"),
        ("POST", f"{URL}{d['id']}/cancel/"),
    ):
        response = client.request(method, path, headers=other_driver_headers)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert client.get(URL, headers=other_driver_headers).json()["count"] == 0
    assert client.get(URL, headers=driver_headers).json()["count"] == 1
    # an admin sees and may confirm it
    assert client.post(f"{URL}{d['id']}/confirm/", headers=admin_headers).status_code == 200


def test_inactive_truck_cannot_be_used(demo, client, driver_headers, admin_headers) -> None:
    d = create(client, driver_headers)
    assert client.patch("/api/v1/trucks/1/", json={"active": False}, headers=admin_headers).status_code == 200
    response = client.post(f"{URL}{d['id']}/confirm/", headers=driver_headers)
    assert response.status_code == 409 and response.json()["error"]["code"] == "invalid_state"
    response = client.post(
        URL,
        json={"depot": 1, "truck": 1, "items": [{"equipment": "CYL9", "movement_type": "collection", "qty": 1}]},
        headers=driver_headers,
    )
    assert response.json()["error"]["code"] == "invalid_state"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"depot": 1, "truck": 1, "items": []}, "validation_error", "items"),
        (
            {"depot": 1, "truck": 1, "items": [{"equipment": "CYL9", "movement_type": "collection", "qty": 0}]},
            "validation_error",
            "items[0].qty",
        ),
        (
            {"depot": 1, "truck": 1, "items": [{"equipment": "CYL9", "movement_type": "teleport", "qty": 1}]},
            "validation_error",
            "items[0].movement_type",
        ),
        (
            {"depot": 1, "truck": 1, "items": [{"equipment": "CYL9", "movement_type": "collection", "qty": "2"}]},
            "validation_error",
            "items[0].qty",
        ),
        (
            {
                "depot": 1,
                "truck": 1,
                "items": [{"equipment": "CYL9", "movement_type": "collection", "qty": 1}],
                "status": "confirmed",
            },
            "read_only_field",
            "status",
        ),
        (
            {
                "depot": 1,
                "truck": 1,
                "items": [{"equipment": "CYL9", "movement_type": "collection", "qty": 1}],
                "number": "DIST-2026-000001",
            },
            "read_only_field",
            "number",
        ),
        (
            {
                "depot": 1,
                "truck": 1,
                "items": [{"equipment": "CYL9", "movement_type": "collection", "qty": 1}],
                "driver": 3,
            },
            "read_only_field",
            "driver",
        ),
        (
            {
                "depot": 1,
                "truck": 1,
                "items": [{"equipment": "CYL9", "movement_type": "collection", "qty": 1}],
                "colour": "red",
            },
            "validation_error",
            "colour",
        ),
    ],
)
def test_invalid_bodies_are_refused_naming_the_field(demo, client, driver_headers, body, code, field) -> None:
    response = client.post(URL, json=body, headers=driver_headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["details"]["field"]) == (code, field)


@pytest.mark.parametrize(
    ("body", "status", "entity"),
    [
        ({"depot": 9, "truck": 1}, 404, "depot"),
        ({"depot": 1, "truck": 9}, 404, "truck"),
        ({"depot": 1, "truck": 1, "equipment": "CYL99"}, 404, "equipment"),
    ],
)
def test_unknown_references_are_not_found(demo, client, driver_headers, body, status, entity) -> None:
    payload = {"items": [{"equipment": body.pop("equipment", "CYL9"), "movement_type": "collection", "qty": 1}], **body}
    response = client.post(URL, json=payload, headers=driver_headers)
    assert response.status_code == status and response.json()["error"]["details"]["entity"] == entity


def test_list_filters_and_pagination(demo, client, driver_headers, admin_headers) -> None:
    ids = [create(client, driver_headers, truck=1 + n % 2)["id"] for n in range(5)]
    client.post(f"{URL}{ids[0]}/confirm/", headers=driver_headers)
    client.post(f"{URL}{ids[1]}/cancel/", headers=driver_headers)
    page = client.get(URL, params={"page_size": 2}, headers=admin_headers).json()
    assert page["count"] == 5 and [d["id"] for d in page["results"]] == ids[:2] and page["previous"] is None
    page2 = client.get(page["next"], headers=admin_headers).json()
    assert [d["id"] for d in page2["results"]] == ids[2:4]
    assert client.get(URL, params={"status": "confirmed"}, headers=admin_headers).json()["count"] == 1
    assert client.get(URL, params={"truck": 2}, headers=admin_headers).json()["count"] == 2
    assert client.get(URL, params={"driver": 2}, headers=admin_headers).json()["count"] == 5
    assert client.get(URL, params={"driver": 3}, headers=admin_headers).json()["count"] == 0
    assert (
        client.get(URL, params={"date_from": "2000-01-01", "date_to": "2100-01-01"}, headers=admin_headers).json()[
            "count"
        ]
        == 5
    )
    assert client.get(URL, params={"date_to": "2000-01-01"}, headers=admin_headers).json()["count"] == 0
    for bad in ({"colour": "red"}, {"status": "lost"}, {"date_from": "yesterday"}, {"truck": "x"}, {"page": 0}):
        response = client.get(URL, params=bad, headers=admin_headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error", bad


def test_services_refuse_confirming_twice_through_the_reconciler_path(demo) -> None:
    cmd = DistributionCreate(
        depot=1, truck=1, items=[{"equipment": "CYL9", "movement_type": "collection", "qty": 1}], confirm=True
    )
    did = demo.run(lambda uow: svc.create_distribution(Call(uow.session, DRIVER1, demo.settings), cmd).id)
    with pytest.raises(InvalidState):
        demo.run(lambda uow: svc.confirm_distribution(Call(uow.session, DRIVER1, demo.settings), did))
    adjustments = demo.read(lambda s: s.execute(select(func.count()).select_from(StockAdjustment)).scalar_one())
    assert adjustments == 0


def test_one_transaction_can_carry_a_whole_batch_like_the_reconciler(demo) -> None:
    """create -> update -> confirm of a distribution and create -> update of a customer, one unit, one commit."""
    from domain.catalog.schemas import CustomerCreate, CustomerUpdate
    from domain.catalog.services import create_customer, update_customer

    def batch(uow):  # type: ignore[no-untyped-def]
        call = Call(uow.session, DRIVER1, demo.settings, device_id="tab-017", client_temp_id="t-1")
        customer = create_customer(
            call, CustomerCreate(name="Kopi Corner", address="3 Tampines St", meter={"serial": "MTR-77"})
        )
        changed = update_customer(call, CustomerUpdate(id=customer.id, base_version=1, phone="+65 6123 4567"))
        d = svc.create_distribution(
            call,
            DistributionCreate(
                depot=2, truck=3, items=[{"equipment": "CYL9", "movement_type": "collection", "qty": 4}]
            ),
        )
        svc.update_distribution(
            call,
            DistributionUpdate(
                id=d.id, base_version=1, items=[{"equipment": "CYL9", "movement_type": "collection", "qty": 6}]
            ),
        )
        confirmed = svc.confirm_distribution(call, d.id)
        return customer.id, changed.version, confirmed.id, confirmed.version, confirmed.number

    customer_id, customer_version, d_id, d_version, number = demo.run(batch)
    assert customer_version == 2 and d_version == 3 and number.endswith("-000001")
    assert truck_stock(demo, 3, 1) == (26, 0) and depot_stock(demo, 2, 1) == (194, 40)
    feed = demo.read(lambda s: {(f.entity, f.entity_id): f.version for f in s.scalars(select(FeedEntry))})
    assert feed[("customer", customer_id)] == 2 and feed[("distribution", d_id)] == 3
    entries = demo.read(
        lambda s: s.scalars(select(AuditEntry).where(AuditEntry.device_id == "tab-017").order_by(AuditEntry.id)).all()
    )
    assert [(e.action, e.entity_type) for e in entries] == [
        ("create", "customer"),
        ("update", "customer"),
        ("create", "distribution"),
        ("update", "distribution"),
        ("confirm", "distribution"),
    ]
    import orjson

    assert all(orjson.loads(e.context)["client_temp_id"] == "t-1" for e in entries)


def test_occurred_at_must_lie_in_the_window(demo, client, driver_headers) -> None:
    items = [{"equipment": "CYL9", "movement_type": "collection", "qty": 1}]
    for when in ("2000-01-01T00:00:00Z", "2999-01-01T00:00:00+08:00", "2026-11-24T10:00:00"):
        response = client.post(
            URL, json={"depot": 1, "truck": 1, "items": items, "occurred_at": when}, headers=driver_headers
        )
        assert response.status_code == 400, when
        assert response.json()["error"]["details"]["field"] == "occurred_at"
    from domain.clock import rfc3339, utcnow

    now = rfc3339(utcnow())
    body = create(client, driver_headers, occurred_at=now)
    assert body["occurred_at"] == now


def test_inactive_equipment_cannot_be_distributed(demo, client, driver_headers, admin_headers) -> None:
    d = create(client, driver_headers, items=[{"equipment": "CYL50", "movement_type": "collection", "qty": 1}])
    client.patch("/api/v1/equipment/4/", json={"active": False}, headers=admin_headers)
    response = client.post(f"{URL}{d['id']}/confirm/", headers=driver_headers)
    assert response.status_code == 409 and response.json()["error"]["details"] == {"entity": "equipment", "id": 4}
    response = client.patch(
        f"{URL}{d['id']}/",
        json={"items": [{"equipment": 4, "movement_type": "collection", "qty": 2}]},
        headers=driver_headers,
    )
    assert response.json()["error"]["code"] == "invalid_state"


def test_an_admins_distribution_is_owned_by_the_admin(demo, client, driver_headers, admin_headers) -> None:
    d = create(client, admin_headers)
    assert d["driver"] == 1
    assert client.get(f"{URL}{d['id']}/", headers=driver_headers).status_code == 404
    assert client.get(URL, headers=admin_headers).json()["count"] == 1
