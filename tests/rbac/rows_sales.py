"""RBAC rows of the sales and invoicing endpoints: drivers act on their own records (another driver's is
404), admins on all; anonymous callers get 401. `setup` creates records owned by driver1."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from domain.catalog.models import Meter
from tests.rbac.matrix import RbacRow, Request, World, expect
from tests.support.sales_support import full, sale_payload, sell, when

OWN = expect(401, 200, 404, 200)
ANY_USER = expect(401, 200, 200, 200)
CREATED = expect(401, 201, 201, 201)


class PathId(int):
    """An id that fills a `{id:int}` route template (str.format would read `int` as a format spec)."""

    def __format__(self, spec: str) -> str:
        return str(int(self)) if spec == "int" else super().__format__(spec)


def draft(world: World) -> Request:
    trx = sell(world.db, confirm=False, services=[{"code": "DELIVERY"}])
    return Request(path={"id": PathId(trx.id)})


def patch_draft(world: World) -> Request:
    trx = sell(world.db, confirm=False, services=[{"code": "DELIVERY"}])
    return Request(path={"id": PathId(trx.id)}, json={"base_version": 1, "services": [{"code": "INSTALL"}]})


def confirmed(world: World) -> Request:
    trx = sell(world.db, services=[{"code": "INSTALL"}])
    return Request(path={"id": PathId(trx.id)})


def invoice(world: World, body: Any = None) -> Request:
    outcome = sell(world.db, services=[{"code": "INSTALL"}])
    return Request(path={"id": PathId(outcome.related["invoice"].id)}, json=body)


def new_sale(world: World) -> Request:
    return Request(json=sale_payload(deliveries=[full("CYL9", 1)]))


def next_reading(world: World) -> Request:
    last = world.db.read(lambda s: s.scalars(select(Meter.last_reading).where(Meter.customer_id == 5)).one())
    return Request(json={"customer": 5, "reading": str((last or Decimal("0")) + 1), "occurred_at": when()})


def reading(world: World) -> Request:
    world.client.post("/api/v1/meter-readings/", json=next_reading(world).json, headers=world.headers["driver"])
    from domain.sales.models import MeterReading

    last_id = world.db.read(lambda s: s.scalars(select(MeterReading.id).order_by(MeterReading.id.desc())).first())
    return Request(path={"id": PathId(last_id)})


ROWS = [
    RbacRow("GET", "/api/v1/transactions/", ANY_USER),
    RbacRow("POST", "/api/v1/transactions/", CREATED, new_sale),
    RbacRow("GET", "/api/v1/transactions/{id:int}/", OWN, confirmed),
    RbacRow("PATCH", "/api/v1/transactions/{id:int}/", OWN, patch_draft),
    RbacRow("POST", "/api/v1/transactions/{id:int}/confirm/", OWN, draft),
    RbacRow("POST", "/api/v1/transactions/{id:int}/cancel/", OWN, draft),
    RbacRow("GET", "/api/v1/meter-readings/", ANY_USER),
    RbacRow("POST", "/api/v1/meter-readings/", CREATED, next_reading),
    RbacRow("GET", "/api/v1/meter-readings/{id:int}/", OWN, reading),
    RbacRow("GET", "/api/v1/invoices/", ANY_USER),
    RbacRow("GET", "/api/v1/invoices/{id:int}/", OWN, invoice),
    RbacRow("POST", "/api/v1/invoices/{id:int}/mark-printed/", OWN, invoice),
    RbacRow("POST", "/api/v1/invoices/{id:int}/mark-emailed/", OWN, invoice),
    RbacRow(
        "POST",
        "/api/v1/invoices/{id:int}/mark-paid/",
        OWN,
        lambda world: invoice(world, {"amount": "10.00", "method": "cash"}),
    ),
]
