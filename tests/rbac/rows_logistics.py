"""RBAC rows of the catalog, stock and distribution endpoints.

Everyone logged in reads the catalog and the stock (drivers need the truck's stock offline); reference data
and stock adjustments are admin-only; customers are created and edited by any user; a driver acts on their
own distributions only and gets 404 for another driver's.
"""

from __future__ import annotations

import itertools
from typing import Any

from domain.accounts.policy import Actor
from domain.logistics.schemas import DistributionCreate
from domain.logistics.services import create_distribution
from domain.service import Call
from tests.rbac.matrix import RbacRow, Request, World, expect

_unique = itertools.count(1)


class PathId(int):
    """A path parameter for templates declared as `{id:int}`: `format` ignores the converter name."""

    def __format__(self, spec: str) -> str:
        return str(int(self))


def _code() -> str:
    return f"RBAC{next(_unique)}"


def pending_distribution(world: World) -> int:
    """A pending distribution owned by driver1."""
    actor = Actor(world.users["driver1"], "driver1", "driver")
    cmd = DistributionCreate(depot=1, truck=1, items=[{"equipment": "CYL9", "movement_type": "collection", "qty": 1}])
    return int(world.db.run(lambda uow: create_distribution(Call(uow.session, actor, world.settings), cmd).id))


def _item(path: dict[str, Any] | None = None, json: Any = None) -> Any:
    def setup(world: World) -> Request:
        return Request(path={k: PathId(v) for k, v in (path or {}).items()}, json=json() if callable(json) else json)

    return setup


def _distribution(json: Any = None) -> Any:
    def setup(world: World) -> Request:
        return Request(path={"id": PathId(pending_distribution(world))}, json=json)

    return setup


READ = expect(401, 200, 200, 200)
ADMIN_WRITE = expect(401, 403, 403, 200)
ADMIN_CREATE = expect(401, 403, 403, 201)
OWN = expect(401, 200, 404, 200)
ITEMS = [{"equipment": "CYL12.7", "movement_type": "collection", "qty": 2}]

ROWS: list[RbacRow] = []
for base, create_body, update_body in (
    (
        "/api/v1/equipment/",
        lambda: {"code": _code(), "name": "CYL 6kg", "capacity_kg": "6.00", "unit_price": "19.90"},
        {"name": "CYL 9kg (blue)"},
    ),
    ("/api/v1/depots/", lambda: {"code": _code(), "name": "Tuas Depot"}, {"address": "1 Tuas Ave"}),
    ("/api/v1/trucks/", lambda: {"plate": _code(), "name": "Lorry 9"}, {"name": "Lorry 1A"}),
    ("/api/v1/services/", lambda: {"code": _code(), "name": "Hose change", "price": "12.00"}, {"price": "31.00"}),
):
    ROWS += [
        RbacRow("GET", base, READ),
        RbacRow("GET", base + "{id:int}/", READ, _item({"id": 1})),
        RbacRow("POST", base, ADMIN_CREATE, _item(json=create_body)),
        RbacRow("PATCH", base + "{id:int}/", ADMIN_WRITE, _item({"id": 1}, update_body)),
    ]

ROWS += [
    RbacRow("GET", "/api/v1/customers/", READ),
    RbacRow("GET", "/api/v1/customers/{id:int}/", READ, _item({"id": 1})),
    RbacRow(
        "POST",
        "/api/v1/customers/",
        expect(401, 201, 201, 201),
        _item(json={"name": "Kopi Corner", "address": "3 Tampines St", "meter": {"serial": None}}),
    ),
    RbacRow(
        "PATCH",
        "/api/v1/customers/{id:int}/",
        expect(401, 200, 200, 200),
        _item({"id": 1}, {"phone": "+65 6123 4567"}),
        note="contact fields: any user",
    ),
    RbacRow(
        "POST",
        "/api/v1/customers/{id:int}/meters/",
        expect(401, 201, 201, 201),
        _item({"id": 2}, lambda: {"serial": _code()}),
    ),
    RbacRow(
        "PATCH",
        "/api/v1/customers/{id:int}/meters/{meter_id:int}/",
        ADMIN_WRITE,
        _item({"id": 1, "meter_id": 1}, lambda: {"serial": _code()}),
    ),
    RbacRow("GET", "/api/v1/stock/", READ, note="drivers read stock: the RBAC table is silent, drivers need it"),
    RbacRow("GET", "/api/v1/stock/totals/", READ),
    RbacRow(
        "POST",
        "/api/v1/stock/adjustments/",
        ADMIN_CREATE,
        _item(json={"place": "truck", "truck": 1, "equipment": "CYL9", "full_delta": 1, "reason": "recount"}),
    ),
    RbacRow("GET", "/api/v1/stock/adjustments/", ADMIN_WRITE),
    RbacRow("GET", "/api/v1/distributions/", READ),
    RbacRow("GET", "/api/v1/distributions/{id:int}/", OWN, _distribution()),
    RbacRow(
        "POST",
        "/api/v1/distributions/",
        expect(401, 201, 201, 201),
        _item(json={"depot": 1, "truck": 2, "items": ITEMS}),
    ),
    RbacRow("PATCH", "/api/v1/distributions/{id:int}/", OWN, _distribution({"items": ITEMS})),
    RbacRow("POST", "/api/v1/distributions/{id:int}/confirm/", OWN, _distribution()),
    RbacRow("POST", "/api/v1/distributions/{id:int}/cancel/", OWN, _distribution()),
]
