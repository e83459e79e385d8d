"""Audit cases of the catalog services (domain/catalog/services.py): one entry per changed record, `create`
with the new record's representation, `update` with before and after; a customer's meters and price
overrides are part of the customer's entry; a refused change writes none."""

from __future__ import annotations

from typing import Any

import orjson

from domain.catalog import services as cat
from domain.catalog.schemas import (
    CustomerCreate,
    CustomerUpdate,
    DepotCreate,
    DepotUpdate,
    EquipmentCreate,
    EquipmentUpdate,
    MeterCreate,
    MeterUpdate,
    ServiceCreate,
    ServiceUpdate,
    TruckCreate,
    TruckUpdate,
)
from domain.errors import Conflict, DomainError, Forbidden, ReadOnlyField
from domain.wire import parse
from tests.support.audit_cases import AuditCase, AuditWorld, entry

UPDATE = ("before", "after")
SYNC = ("client_temp_id", "batch")


def created_id(result: Any) -> int:
    return int(result.id)


def admin(service: Any, *args: Any, role: str = "admin", **options: Any) -> Any:
    def perform(world: AuditWorld) -> Any:
        return world.call(lambda call: service(call, *args), role, **options)

    return perform


def refused(error: type[DomainError], service: Any, *args: Any, role: str = "admin") -> Any:
    def perform(world: AuditWorld) -> None:
        try:
            world.call(lambda call: service(call, *args), role)
        except error:
            return
        raise AssertionError(f"{service.__name__} must be refused with {error.__name__}")

    return perform


def context(log: list[Any], n: int = 0) -> dict[str, Any]:
    return orjson.loads(log[n].context)  # type: ignore[no-any-return]


def check_fields(**changed: tuple[Any, Any]) -> Any:
    """The entry's before and after show exactly these fields changing (and the version by one)."""

    def check(world: AuditWorld, result: Any, log: list[Any]) -> None:
        ctx = context(log, -1)
        before, after = ctx["before"], ctx["after"]
        assert after["version"] == before["version"] + 1, ctx
        for name, (old, new) in changed.items():
            assert (before[name], after[name]) == (old, new), (name, before[name], after[name])
        others = set(before) - set(changed) - {"version", "last_modified"}
        assert {k: before[k] for k in others} == {k: after[k] for k in others}, "only the sent fields change"

    return check


def check_created(**fields: Any) -> Any:
    def check(world: AuditWorld, result: Any, log: list[Any]) -> None:
        ctx = context(log)
        assert "before" not in ctx
        for name, value in fields.items():
            assert ctx["after"][name] == value, (name, ctx["after"])
        assert ctx["after"]["id"] == result.id

    return check


NEW_CUSTOMER = {
    "name": "Kopi Tiam Ah Huat",
    "address": "12 Jalan Besar, Singapore 208787",
    "phone": "+65 6291 0000",
    "meter": {"serial": "M-NEW-1"},
    "meter_rate": "3.2000",
    "prices": {"equipment": {"CYL12.7": "30.00"}, "services": {"INSTALL": "25.00"}},
}


def create_customer_by_rest(world: AuditWorld) -> Any:
    r = world.client.post("/api/v1/customers/", json=NEW_CUSTOMER, headers=world.headers["admin"])
    assert r.status_code == 201, r.text
    return r.json()


def check_new_customer(world: AuditWorld, result: Any, log: list[Any]) -> None:
    after = context(log)["after"]
    assert after == result or {k: after[k] for k in ("id", "name", "meters", "prices")} == {
        k: result[k] for k in ("id", "name", "meters", "prices")
    }
    assert [m["serial"] for m in after["meters"]] == ["M-NEW-1"]
    assert after["prices"] == {"equipment": {"CYL12.7": "30.00"}, "services": {"INSTALL": "25.00"}}
    assert log[0].entity_id == result["id"]


def driver_customer_from_sync(world: AuditWorld) -> Any:
    cmd = parse(CustomerCreate, {"name": "Madam Lim", "address": "5 Yishun Ring Rd", "meter": {}})
    return world.call(
        lambda call: cat.create_customer(call, cmd), "driver", device_id="tab-5", client_temp_id="c-1", batch_id="b-5"
    )


def check_sync_customer(world: AuditWorld, result: Any, log: list[Any]) -> None:
    ctx = context(log)
    assert (ctx["client_temp_id"], ctx["batch"]) == ("c-1", "b-5")
    assert len(ctx["after"]["meters"]) == 1 and ctx["after"]["name"] == "Madam Lim"


def update_customer_prices(world: AuditWorld) -> Any:
    cmd = parse(
        CustomerUpdate,
        {"id": 1, "base_version": 1, "phone": "+65 9000 0001", "prices": {"equipment": {"CYL14": "33.00"}}},
    )
    return world.call(lambda call: cat.update_customer(call, cmd))


def check_customer_prices(world: AuditWorld, result: Any, log: list[Any]) -> None:
    ctx = context(log)
    assert ctx["before"]["prices"]["equipment"] == {} and ctx["after"]["prices"]["equipment"] == {"CYL14": "33.00"}
    assert ctx["after"]["phone"] == "+65 9000 0001" and ctx["before"]["phone"] != "+65 9000 0001"
    assert ctx["after"]["version"] == ctx["before"]["version"] + 1


def stale_customer_update(world: AuditWorld) -> Any:
    """Last-write-wins: an edit from an older version is applied, reported, and `before` keeps what it overwrote."""
    first = parse(CustomerUpdate, {"id": 2, "name": "First edit"})
    world.call(lambda call: cat.update_customer(call, first), "driver")
    stale = parse(CustomerUpdate, {"id": 2, "base_version": 1, "name": "Stale edit"})
    outcome = world.call(lambda call: cat.update_customer(call, stale), "other_driver")
    assert outcome.conflict is not None and outcome.conflict["overwritten_version"] == 2
    return outcome


def check_stale(world: AuditWorld, result: Any, log: list[Any]) -> None:
    first, second = context(log, 0), context(log, 1)
    assert first["after"]["name"] == "First edit"
    assert (second["before"]["name"], second["after"]["name"]) == ("First edit", "Stale edit")
    assert second["before"] == first["after"]


def add_meter(world: AuditWorld) -> Any:
    return world.call(lambda call: cat.add_meter(call, 3, parse(MeterCreate, {"serial": "M-EXTRA"})), "driver")


def check_meter_added(world: AuditWorld, result: Any, log: list[Any]) -> None:
    ctx = context(log)
    assert len(ctx["after"]["meters"]) == len(ctx["before"]["meters"]) + 1
    assert ctx["after"]["meters"][-1]["serial"] == "M-EXTRA"


def update_meter(world: AuditWorld) -> Any:
    meter = world.db.read(lambda s: _meter_of(s, 4))
    return world.call(lambda call: cat.update_meter(call, 4, meter, parse(MeterUpdate, {"serial": "M-FIXED"})))


def _meter_of(session: Any, customer_id: int) -> int:
    from sqlalchemy import select

    from domain.catalog.models import Meter

    return int(session.execute(select(Meter.id).where(Meter.customer_id == customer_id)).scalar_one())


def check_meter_updated(world: AuditWorld, result: Any, log: list[Any]) -> None:
    ctx = context(log)
    assert ctx["before"]["meters"][0]["serial"] != "M-FIXED"
    assert ctx["after"]["meters"][0]["serial"] == "M-FIXED"


def driver_sets_a_rate(world: AuditWorld) -> None:
    cmd = parse(CustomerUpdate, {"id": 1, "name": "New name", "meter_rate": "9.0000"})
    try:
        world.call(lambda call: cat.update_customer(call, cmd), "driver")
    except ReadOnlyField:
        return
    raise AssertionError("a driver may not set a rate")


CASES = [
    AuditCase(
        "catalog_create_equipment",
        admin(
            cat.create_equipment,
            parse(EquipmentCreate, {"code": "CYL5", "name": "5 kg", "capacity_kg": "5.0", "unit_price": "15.00"}),
        ),
        [entry("create", "equipment", actor="admin", entity_id=created_id)],
        check=check_created(code="CYL5", unit_price="15.00", version=1),
    ),
    AuditCase(
        "catalog_update_equipment",
        admin(cat.update_equipment, 2, parse(EquipmentUpdate, {"unit_price": "31.00"})),
        [entry("update", "equipment", *UPDATE, actor="admin", entity_id=2)],
        check=check_fields(unit_price=("32.90", "31.00")),
    ),
    AuditCase(
        "catalog_create_equipment_duplicate_code_writes_nothing",
        refused(
            Conflict,
            cat.create_equipment,
            parse(EquipmentCreate, {"code": "CYL9", "name": "again", "capacity_kg": "9", "unit_price": "1.00"}),
        ),
        [],
    ),
    AuditCase(
        "catalog_update_equipment_by_driver_writes_nothing",
        refused(Forbidden, cat.update_equipment, 1, parse(EquipmentUpdate, {"unit_price": "1.00"}), role="driver"),
        [],
    ),
    AuditCase(
        "catalog_create_depot",
        admin(cat.create_depot, parse(DepotCreate, {"code": "TUAS", "name": "Tuas depot"})),
        [entry("create", "depot", actor="admin", entity_id=created_id)],
        check=check_created(code="TUAS", name="Tuas depot"),
    ),
    AuditCase(
        "catalog_update_depot",
        admin(cat.update_depot, 1, parse(DepotUpdate, {"name": "Renamed depot", "active": False})),
        [entry("update", "depot", *UPDATE, actor="admin", entity_id=1)],
        check=check_fields(name=("Jurong Port Depot", "Renamed depot"), active=(True, False)),
    ),
    AuditCase(
        "catalog_create_truck",
        admin(cat.create_truck, parse(TruckCreate, {"plate": "GBZ1234X", "name": "New lorry"})),
        [entry("create", "truck", actor="admin", entity_id=created_id)],
        check=check_created(plate="GBZ1234X"),
    ),
    AuditCase(
        "catalog_update_truck",
        admin(cat.update_truck, 3, parse(TruckUpdate, {"plate": "GBZ9999Z"})),
        [entry("update", "truck", *UPDATE, actor="admin", entity_id=3)],
    ),
    AuditCase(
        "catalog_create_service",
        admin(
            cat.create_service, parse(ServiceCreate, {"code": "REPAIR", "name": "Regulator repair", "price": "45.00"})
        ),
        [entry("create", "service", actor="admin", entity_id=created_id)],
        check=check_created(code="REPAIR", price="45.00"),
    ),
    AuditCase(
        "catalog_update_service",
        admin(cat.update_service, 1, parse(ServiceUpdate, {"price": "35.00"})),
        [entry("update", "service", *UPDATE, actor="admin", entity_id=1)],
        check=check_fields(price=("30.00", "35.00")),
    ),
    AuditCase(
        "catalog_create_customer_with_meter_and_prices",
        create_customer_by_rest,
        [entry("create", "customer", actor="admin")],
        check=check_new_customer,
    ),
    AuditCase(
        "catalog_create_customer_by_driver_from_sync",
        driver_customer_from_sync,
        [entry("create", "customer", "after", *SYNC, actor="driver", device="tab-5", entity_id=created_id)],
        check=check_sync_customer,
    ),
    AuditCase(
        "catalog_update_customer_contact_and_prices",
        update_customer_prices,
        [entry("update", "customer", *UPDATE, actor="admin", entity_id=1)],
        check=check_customer_prices,
    ),
    AuditCase(
        "catalog_update_customer_last_write_wins",
        stale_customer_update,
        [
            entry("update", "customer", *UPDATE, actor="driver", entity_id=2),
            entry("update", "customer", *UPDATE, actor="other_driver", entity_id=2),
        ],
        ordered=True,
        check=check_stale,
    ),
    AuditCase("catalog_driver_sets_a_rate_writes_nothing", driver_sets_a_rate, []),
    AuditCase(
        "catalog_add_meter",
        add_meter,
        [entry("update", "customer", *UPDATE, actor="driver", entity_id=3)],
        check=check_meter_added,
    ),
    AuditCase(
        "catalog_update_meter",
        update_meter,
        [entry("update", "customer", *UPDATE, actor="admin", entity_id=4)],
        check=check_meter_updated,
    ),
]
