"""Audit cases of the sales and invoicing services: one entry per business record (transaction, invoice,
meter reading); a sale's stock movements are in its transaction's entry; a refused change writes none."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from domain.errors import InsufficientStock, MeterRegression
from domain.invoicing.services import mark_emailed, mark_paid, mark_printed
from domain.ledger import settle_audits
from domain.sales.schemas import MeterReadingCreate, TransactionUpdate
from domain.sales.services import (
    cancel_transaction,
    create_transaction,
    record_meter_reading,
    update_transaction,
)
from domain.service import Call
from domain.wire import parse
from tests.support.audit_cases import AuditCase, AuditWorld, entry
from tests.support.sales_support import full, sale, sale_payload, when

SYNC = ("client_temp_id", "batch")
SOLD = [entry("create", "invoice", actor="driver")]


def draft(world: AuditWorld) -> int:
    r = world.client.post(
        "/api/v1/transactions/", json=sale_payload(meter="5.00", confirm=False), headers=world.headers["driver"]
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def invoice(world: AuditWorld) -> int:
    outcome = world.call(lambda call: create_transaction(call, sale(services=[{"code": "INSTALL"}])), "driver")
    return int(outcome.related["invoice"].id)


def sale_from_sync(world: AuditWorld) -> Any:
    cmd = sale(meter="12.00", deliveries=[full("CYL9", 2)], services=[{"code": "INSTALL"}])
    return world.call(
        lambda call: create_transaction(call, cmd), "driver", device_id="tab-1", client_temp_id="t-1", batch_id="b-1"
    )


def check_sale(world: AuditWorld, result: Any, log: list[Any]) -> None:
    contexts = {e.entity_type: orjson.loads(e.context) for e in log}
    trx = contexts["transaction"]
    assert trx["created"] is True and trx["after"]["status"] == "confirmed" and "before" not in trx
    assert trx["invoice"] == result.related["invoice"].number
    assert sorted((m["place"], m["equipment"]) for m in trx["stock"]) == [("site", "CYL9"), ("truck", "CYL9")]
    assert contexts["invoice"]["after"]["total"] == "86.11"  # (2 x 24.50 + 30.00) x 1.09 = 86.11
    assert contexts["meter_reading"]["after"]["reading"] == "12.00"
    assert all(c["client_temp_id"] == "t-1" and c["batch"] == "b-1" for c in contexts.values())


def confirm_draft(world: AuditWorld) -> Any:
    trx = draft(world)
    r = world.client.post(f"/api/v1/transactions/{trx}/confirm/", headers=world.headers["admin"])
    assert r.status_code == 200, r.text
    return r.json()


def check_confirm(world: AuditWorld, result: Any, log: list[Any]) -> None:
    confirm = next(orjson.loads(e.context) for e in log if e.action == "confirm")
    assert (confirm["before"]["status"], confirm["after"]["status"]) == ("draft", "confirmed")
    assert confirm["created"] is False and confirm["stock"] == []


def update_draft(world: AuditWorld) -> Any:
    trx = draft(world)
    cmd = parse(TransactionUpdate, {"id": trx, "base_version": 1, "services": [{"code": "DELIVERY"}]})
    return world.call(lambda call: update_transaction(call, cmd), "driver")


def cancel_draft(world: AuditWorld) -> Any:
    trx = draft(world)
    return world.call(lambda call: cancel_transaction(call, trx), "driver")


def reading_without_sale(world: AuditWorld) -> Any:
    cmd = parse(MeterReadingCreate, {"customer": 4, "reading": "3.30", "occurred_at": when()})
    return world.call(lambda call: record_meter_reading(call, cmd), "driver", device_id="tab-2")


def refused_regression(world: AuditWorld) -> None:
    reading_without_sale(world)  # writes one entry (expected below)
    cmd = parse(MeterReadingCreate, {"customer": 4, "reading": "3.29", "occurred_at": when()})
    try:
        world.call(lambda call: record_meter_reading(call, cmd), "driver")
    except MeterRegression:
        return
    raise AssertionError("a lower reading must be refused")


def refused_oversell(world: AuditWorld) -> None:
    try:
        world.call(lambda call: create_transaction(call, sale(meter="1.00", deliveries=[full("CYL50", 21)])), "driver")
    except InsufficientStock:
        return
    raise AssertionError("21 of 20 cylinders must be refused")


def two_sales_of_one_customer_in_one_batch(world: AuditWorld) -> None:
    """The reconciler's way: several changes in one transaction, snapshots settled after each."""

    def batch(call: Call) -> None:
        for n, reading in enumerate(("10.00", "14.00"), start=1):
            change = Call(call.session, call.actor, call.settings, "tab-3", f"t-{n}", "b-9")
            create_transaction(change, sale(meter=reading, deliveries=[full("CYL14", 1)]))
            settle_audits(call.session)

    world.call(batch, "driver")


def check_two_sales(world: AuditWorld, result: Any, log: list[Any]) -> None:
    readings = [orjson.loads(e.context) for e in log if e.entity_type == "meter_reading"]
    assert [(r["after"]["previous_reading"], r["after"]["reading"], r["client_temp_id"]) for r in readings] == [
        (None, "10.00", "t-1"),
        ("10.00", "14.00", "t-2"),
    ]


def mark(step: str) -> Any:
    def perform(world: AuditWorld) -> Any:
        inv = invoice(world)
        if step == "paid":
            return world.call(lambda call: mark_paid(call, inv, Decimal("10.00"), "cash", "R-1"), "driver")
        action = mark_printed if step == "printed" else mark_emailed
        return world.call(lambda call: action(call, inv), "admin")

    return perform


def check_payment(world: AuditWorld, result: Any, log: list[Any]) -> None:
    paid = next(orjson.loads(e.context) for e in log if e.action == "mark_paid")
    assert paid["payment"] == {"amount": "10.00", "method": "cash", "reference": "R-1"}
    assert (paid["before"]["amount_paid"], paid["after"]["amount_paid"]) == ("0.00", "10.00")


CREATED = [entry("confirm", "transaction", "after", "stock", actor="driver"), *SOLD]

CASES = [
    AuditCase("sales_create_draft", draft, [entry("create", "transaction", actor="driver")]),
    AuditCase(
        "sales_create_confirmed_from_sync",
        sale_from_sync,
        [
            entry("confirm", "transaction", "after", "stock", *SYNC, actor="driver", device="tab-1"),
            entry("create", "invoice", "after", *SYNC, actor="driver", device="tab-1"),
            entry("create", "meter_reading", "after", *SYNC, actor="driver", device="tab-1"),
        ],
        check=check_sale,
    ),
    AuditCase(
        "sales_confirm_draft",
        confirm_draft,
        [
            entry("create", "transaction", actor="driver"),
            entry("confirm", "transaction", "before", "after", "stock", actor="admin"),
            entry("create", "invoice", actor="admin"),
            entry("create", "meter_reading", actor="admin"),
        ],
        check=check_confirm,
    ),
    AuditCase(
        "sales_update_draft",
        update_draft,
        [entry("create", "transaction"), entry("update", "transaction", "before", "after", actor="driver")],
    ),
    AuditCase(
        "sales_cancel_draft",
        cancel_draft,
        [entry("create", "transaction"), entry("cancel", "transaction", "before", "after", actor="driver")],
    ),
    AuditCase(
        "sales_reading_without_a_sale",
        reading_without_sale,
        [entry("create", "meter_reading", actor="driver", device="tab-2")],
    ),
    AuditCase(
        "sales_meter_regression_writes_nothing",
        refused_regression,
        [entry("create", "meter_reading", actor="driver")],
    ),
    AuditCase("sales_oversell_writes_nothing", refused_oversell, []),
    AuditCase(
        "sales_two_sales_of_one_customer_in_one_batch",
        two_sales_of_one_customer_in_one_batch,
        [
            *[
                entry(action, entity, "after", *SYNC, actor="driver", device="tab-3")
                for _ in range(2)
                for action, entity in (
                    ("confirm", "transaction"),
                    ("create", "invoice"),
                    ("create", "meter_reading"),
                )
            ]
        ],
        check=check_two_sales,
    ),
    AuditCase(
        "invoice_mark_printed",
        mark("printed"),
        [*CREATED, entry("mark_printed", "invoice", "before", "after", actor="admin")],
    ),
    AuditCase(
        "invoice_mark_emailed",
        mark("emailed"),
        [*CREATED, entry("mark_emailed", "invoice", "before", "after", actor="admin")],
    ),
    AuditCase(
        "invoice_mark_paid",
        mark("paid"),
        [*CREATED, entry("mark_paid", "invoice", "before", "after", "payment", actor="driver")],
        check=check_payment,
    ),
]
