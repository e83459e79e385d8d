"""Audit cases of the logistics services (domain/logistics/services.py): distributions (create, update,
confirm, cancel) and admin stock adjustments. A confirm's stock movements are listed in the distribution's
entry (`stock`: place, holder, equipment, state, before, after); an adjustment's entry names the stock row
with its before quantities and, after, the row and the adjustment with its reason. A refused change
writes nothing."""

from __future__ import annotations

from typing import Any

import orjson

from domain.errors import Forbidden, InsufficientStock, InvalidState, NotFound
from domain.logistics import services as svc
from domain.logistics.schemas import DistributionCreate, DistributionUpdate, StockAdjustmentCreate
from domain.wire import parse
from tests.support.audit_cases import AuditCase, AuditWorld, entry

UPDATE = ("before", "after")
SYNC = ("client_temp_id", "batch")
COLLECT = [{"equipment": "CYL9", "movement_type": "collection", "qty": 5}]
RETURN = [{"equipment": "CYL14", "movement_type": "empty_return", "qty": 3}]


def dist(items: list[dict[str, Any]] | None = None, confirm: bool = False, truck: int = 1) -> DistributionCreate:
    cmd: DistributionCreate = parse(
        DistributionCreate, {"depot": 1, "truck": truck, "items": items or COLLECT, "confirm": confirm}
    )
    return cmd


def pending(world: AuditWorld, items: list[dict[str, Any]] | None = None) -> int:
    return int(world.call(lambda call: svc.create_distribution(call, dist(items)), "driver").id)


def ctx_of(log: list[Any], action: str) -> dict[str, Any]:
    return orjson.loads(next(e.context for e in log if e.action == action))  # type: ignore[no-any-return]


# -- distributions ---------------------------------------------------------------------------------------


def create_by_rest(world: AuditWorld) -> Any:
    body = {"depot": 1, "truck": 1, "items": COLLECT}
    r = world.client.post("/api/v1/distributions/", json=body, headers=world.headers["driver"])
    assert r.status_code == 201, r.text
    return r.json()


def check_created(world: AuditWorld, result: Any, log: list[Any]) -> None:
    ctx = ctx_of(log, "create")
    assert "before" not in ctx and ctx["after"]["status"] == "pending" and ctx["after"]["id"] == result["id"]
    assert log[0].entity_id == result["id"]


def create_confirmed_from_sync(world: AuditWorld) -> Any:
    cmd = dist([*COLLECT, {"equipment": "CYL14", "movement_type": "collection", "qty": 7}], confirm=True)
    return world.call(
        lambda call: svc.create_distribution(call, cmd),
        "driver",
        device_id="tab-4",
        client_temp_id="d-1",
        batch_id="b-4",
    )


def check_confirmed_at_once(world: AuditWorld, result: Any, log: list[Any]) -> None:
    created, confirmed = ctx_of(log, "create"), ctx_of(log, "confirm")
    assert confirmed["before"] == {"status": "pending"} and confirmed["after"]["status"] == "confirmed"
    assert confirmed["after"]["number"].startswith("DIST-")
    moves = {(m["place"], m["equipment"], m["state"]): (m["before"], m["after"]) for m in confirmed["stock"]}
    assert moves == {
        ("depot", "CYL9", "full"): (200, 195),
        ("truck", "CYL9", "full"): (20, 25),
        ("depot", "CYL14", "full"): (200, 193),
        ("truck", "CYL14", "full"): (20, 27),
    }
    assert all(c["client_temp_id"] == "d-1" and c["batch"] == "b-4" for c in (created, confirmed))


def update_pending(world: AuditWorld) -> Any:
    d = pending(world)
    cmd = parse(DistributionUpdate, {"id": d, "base_version": 1, "truck": 2, "items": RETURN})
    return world.call(lambda call: svc.update_distribution(call, cmd), "driver")


def check_update(world: AuditWorld, result: Any, log: list[Any]) -> None:
    ctx = ctx_of(log, "update")
    assert (ctx["before"]["truck"], ctx["after"]["truck"]) == (1, 2)
    assert [i["movement_type"] for i in ctx["after"]["items"]] == ["empty_return"]
    assert [i["movement_type"] for i in ctx["before"]["items"]] == ["collection"]
    assert ctx["after"]["version"] == ctx["before"]["version"] + 1


def confirm_by_rest(world: AuditWorld) -> Any:
    d = pending(world)
    r = world.client.post(f"/api/v1/distributions/{d}/confirm/", headers=world.headers["admin"])
    assert r.status_code == 200, r.text
    return r.json()


def check_confirm(world: AuditWorld, result: Any, log: list[Any]) -> None:
    ctx = ctx_of(log, "confirm")
    assert ctx["after"]["number"] == result["number"] and ctx["after"]["status"] == "confirmed"
    assert sorted((m["place"], m["before"], m["after"]) for m in ctx["stock"]) == [
        ("depot", 200, 195),
        ("truck", 20, 25),
    ]


def cancel_pending(world: AuditWorld) -> Any:
    d = pending(world)
    return world.call(lambda call: svc.cancel_distribution(call, d), "driver")


def check_cancel(world: AuditWorld, result: Any, log: list[Any]) -> None:
    ctx = ctx_of(log, "cancel")
    assert ctx["before"] == {"status": "pending"} and ctx["after"]["status"] == "cancelled"


def refused_after_draft(error: type[Exception], step: Any, role: str = "driver") -> Any:
    """A pending draft (one `create` entry), then a refused step that writes nothing more."""

    def perform(world: AuditWorld) -> None:
        d = pending(world, [{"equipment": "CYL50", "movement_type": "collection", "qty": 500}])
        try:
            world.call(lambda call: step(call, d), role)
        except error:
            return
        raise AssertionError(f"must be refused with {error.__name__}")

    return perform


def confirm_twice(world: AuditWorld) -> None:
    d = pending(world)
    world.call(lambda call: svc.confirm_distribution(call, d), "driver")
    try:
        world.call(lambda call: svc.confirm_distribution(call, d), "driver")
    except InvalidState:
        return
    raise AssertionError("a confirmed distribution is final")


def refused_create_confirmed(world: AuditWorld) -> None:
    try:
        world.call(lambda call: svc.create_distribution(call, dist(RETURN, confirm=True)), "driver")
    except InsufficientStock:  # the trucks carry no empties in the demo
        return
    raise AssertionError("returning empties the truck does not hold must be refused")


# -- stock adjustments -----------------------------------------------------------------------------------


def adjust(fields: dict[str, Any], role: str = "admin") -> Any:
    def perform(world: AuditWorld) -> Any:
        cmd = parse(StockAdjustmentCreate, {"equipment": "CYL12.7", "reason": "stock take", **fields})
        return world.call(lambda call: svc.adjust_stock(call, cmd), role)

    return perform


def stock_id(result: Any) -> int:
    return int(result.related["stock"].id)


def check_adjust(before: dict[str, int], after: dict[str, int]) -> Any:
    def check(world: AuditWorld, result: Any, log: list[Any]) -> None:
        ctx = orjson.loads(log[0].context)
        assert ctx["before"] == before
        assert {k: ctx["after"]["stock"][k] for k in after} == after
        adjustment = ctx["after"]["adjustment"]
        assert adjustment["id"] == result.id and adjustment["reason"] == "stock take" == ctx["reason"]

    return check


def refused_adjustment(fields: dict[str, Any], error: type[Exception], role: str = "admin") -> Any:
    def perform(world: AuditWorld) -> None:
        try:
            adjust(fields, role)(world)
        except error:
            return
        raise AssertionError(f"must be refused with {error.__name__}")

    return perform


CASES = [
    AuditCase(
        "logistics_create_distribution",
        create_by_rest,
        [entry("create", "distribution", actor="driver")],
        check=check_created,
    ),
    AuditCase(
        "logistics_create_confirmed_distribution_from_sync",
        create_confirmed_from_sync,
        [
            entry("create", "distribution", "after", *SYNC, actor="driver", device="tab-4", entity_id=lambda r: r.id),
            entry(
                "confirm",
                "distribution",
                *UPDATE,
                "stock",
                *SYNC,
                actor="driver",
                device="tab-4",
                entity_id=lambda r: r.id,
            ),
        ],
        ordered=True,
        check=check_confirmed_at_once,
    ),
    AuditCase(
        "logistics_update_distribution",
        update_pending,
        [entry("create", "distribution"), entry("update", "distribution", *UPDATE, actor="driver")],
        ordered=True,
        check=check_update,
    ),
    AuditCase(
        "logistics_confirm_distribution",
        confirm_by_rest,
        [entry("create", "distribution"), entry("confirm", "distribution", *UPDATE, "stock", actor="admin")],
        ordered=True,
        check=check_confirm,
    ),
    AuditCase(
        "logistics_cancel_distribution",
        cancel_pending,
        [entry("create", "distribution"), entry("cancel", "distribution", *UPDATE, actor="driver")],
        ordered=True,
        check=check_cancel,
    ),
    AuditCase(
        "logistics_confirm_insufficient_stock_writes_nothing",
        refused_after_draft(InsufficientStock, svc.confirm_distribution),
        [entry("create", "distribution")],
    ),
    AuditCase(
        "logistics_cancel_by_another_driver_writes_nothing",
        refused_after_draft(NotFound, svc.cancel_distribution, role="other_driver"),
        [entry("create", "distribution")],
    ),
    AuditCase(
        "logistics_confirm_twice_writes_one_confirm",
        confirm_twice,
        [entry("create", "distribution"), entry("confirm", "distribution", *UPDATE, "stock")],
        ordered=True,
    ),
    AuditCase("logistics_create_confirmed_refused_writes_nothing", refused_create_confirmed, []),
    AuditCase(
        "logistics_adjust_depot_stock",
        adjust({"place": "depot", "depot": 2, "full_delta": 10, "empty_delta": -5}),
        [entry("adjust", "depot_stock", *UPDATE, "reason", actor="admin", entity_id=stock_id)],
        check=check_adjust({"full": 200, "empty": 40}, {"full": 210, "empty": 35}),
    ),
    AuditCase(
        "logistics_adjust_truck_stock",
        adjust({"place": "truck", "truck": 3, "full_delta": -20}),
        [entry("adjust", "truck_stock", *UPDATE, "reason", actor="admin", entity_id=stock_id)],
        check=check_adjust({"full": 20}, {"full": 0}),
    ),
    AuditCase(
        "logistics_adjust_site_stock",
        adjust({"place": "site", "customer": 5, "on_site_delta": 2}),
        [entry("adjust", "site_stock", *UPDATE, "reason", actor="admin", entity_id=stock_id)],
        check=check_adjust({"on_site": 0}, {"on_site": 2}),
    ),
    AuditCase(
        "logistics_adjust_below_zero_writes_nothing",
        refused_adjustment({"place": "truck", "truck": 1, "full_delta": -21}, InsufficientStock),
        [],
    ),
    AuditCase(
        "logistics_adjust_by_driver_writes_nothing",
        refused_adjustment({"place": "depot", "depot": 1, "full_delta": 1}, Forbidden, role="driver"),
        [],
    ),
]
