"""REST representations of catalog records, also the `doc` of their change-feed entries."""

from __future__ import annotations

from typing import Any

from domain.catalog.models import Customer, Depot, EquipmentModel, Meter, Service, Truck
from domain.clock import rfc3339
from domain.money import decimal_str, money_str


def _meta(row: Any) -> dict[str, Any]:
    return {"id": row.id, "version": row.version, "last_modified": rfc3339(row.last_modified)}


def equipment_doc(e: EquipmentModel) -> dict[str, Any]:
    return {
        **_meta(e),
        "code": e.code,
        "name": e.name,
        "capacity_kg": decimal_str(e.capacity_kg),
        "unit_price": money_str(e.unit_price),
        "deposit": money_str(e.deposit),
        "active": e.active,
    }


def depot_doc(d: Depot) -> dict[str, Any]:
    return {**_meta(d), "code": d.code, "name": d.name, "address": d.address, "active": d.active}


def truck_doc(t: Truck) -> dict[str, Any]:
    return {**_meta(t), "plate": t.plate, "name": t.name, "active": t.active}


def service_doc(s: Service) -> dict[str, Any]:
    return {**_meta(s), "code": s.code, "name": s.name, "price": money_str(s.price), "active": s.active}


def meter_doc(m: Meter) -> dict[str, Any]:
    return {
        "id": m.id,
        "serial": m.serial,
        "active": m.active,
        "last_reading": decimal_str(m.last_reading),
        "last_reading_at": rfc3339(m.last_reading_at),
        "last_billed_reading": decimal_str(m.last_billed_reading),
    }


def customer_doc(
    c: Customer, meters: list[Meter] | None = None, prices: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        **_meta(c),
        "name": c.name,
        "address": c.address,
        "email": c.email,
        "phone": c.phone,
        "meter_rate": decimal_str(c.meter_rate),
        "kg_rate": decimal_str(c.kg_rate),
        "active": c.active,
        "meters": [meter_doc(m) for m in meters or []],
        "prices": prices or {"equipment": {}, "services": {}},
    }
