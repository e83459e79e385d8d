"""Audit cases of a push through the reconciler (reconcile.batch.apply_batch): each applied change writes
exactly its service's entries, with the change's client_temp_id and the batch id in the context; a refused
change (and a change depending on it, and every change of a refused atomic batch) writes none; several
changes of one record in one batch each get their own before/after snapshots."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from domain.accounts.policy import Actor
from reconcile.batch import apply_batch
from reconcile.envelope import parse_envelope
from tests.support.audit_cases import AuditCase, AuditWorld, entry
from tests.support.sales_support import when

SYNC = ("client_temp_id", "batch")
DEVICE = "tab-sync-1"


def push(world: AuditWorld, changes: list[dict[str, Any]], batch: str, atomic: bool = False) -> dict[str, Any]:
    actor = Actor(world.users["driver"], "driver1", "driver")
    envelope = parse_envelope({"device_id": DEVICE, "atomic": atomic, "changes": changes})
    return apply_batch(world.db, actor, envelope, batch_id=batch)


def change(temp_id: str, op: str, **data: Any) -> dict[str, Any]:
    return {"client_temp_id": temp_id, "op": op, "data": data}


def statuses(response: dict[str, Any]) -> dict[str, str]:
    return {r["client_temp_id"]: r["status"] for r in response["results"]}


def contexts(log: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(e.context) for e in log]


def sync_entry(action: str, entity: str, *context: str) -> Any:
    return entry(action, entity, *(context or ("after",)), *SYNC, actor="driver", device=DEVICE)


# -- every applied change: its service's entries, tagged with the change and the batch ----------------------

MIXED = [
    change("c-1", "customer.create", name="Hawker Stall 9", address="9 Bedok North St", meter={}),
    change(
        "d-1",
        "distribution.create",
        depot=1,
        truck=1,
        confirm=True,
        items=[{"equipment": "CYL9", "movement_type": "collection", "qty": 4}],
    ),
    change(
        "t-1",
        "transaction.create",
        customer="c-1",
        truck=1,
        occurred_at=when(),
        confirm=True,
        meter={"reading": "5.00"},
        deliveries=[{"equipment": "CYL9", "kind": "full_deliver", "qty": 2}],
    ),
    change("p-1", "invoice.mark_printed", transaction="t-1"),
]


def mixed_push(world: AuditWorld) -> Any:
    response = push(world, MIXED, "batch-mixed")
    assert set(statuses(response).values()) == {"applied"}, response
    return response


def check_mixed(world: AuditWorld, result: Any, log: list[Any]) -> None:
    by_change: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for e, c in zip(log, contexts(log), strict=True):
        assert c["batch"] == "batch-mixed", c
        by_change[c["client_temp_id"]].append((e.action, e.entity_type))
    assert {k: sorted(v) for k, v in by_change.items()} == {
        "c-1": [("create", "customer")],
        "d-1": [("confirm", "distribution"), ("create", "distribution")],
        "t-1": [("confirm", "transaction"), ("create", "invoice"), ("create", "meter_reading")],
        "p-1": [("mark_printed", "invoice")],
    }
    ids = {r["client_temp_id"]: r["id"] for r in result["results"]}
    for e, c in zip(log, contexts(log), strict=True):
        if e.entity_type in ("customer", "distribution", "transaction"):
            assert e.entity_id == ids[c["client_temp_id"]], (e.action, e.entity_type)
    customer = next(c for e, c in zip(log, contexts(log), strict=True) if e.entity_type == "customer")
    trx = next(c for e, c in zip(log, contexts(log), strict=True) if e.entity_type == "transaction")
    assert trx["after"]["customer"] == customer["after"]["id"]  # the temp id was resolved


# -- a refused change writes nothing; neither does one that depends on it ------------------------------------


def partly_refused(world: AuditWorld) -> Any:
    changes = [
        change(
            "t-ok",
            "transaction.create",
            customer=1,
            truck=1,
            occurred_at=when(),
            confirm=True,
            deliveries=[{"equipment": "CYL14", "kind": "full_deliver", "qty": 1}],
        ),
        change(
            "t-draft",
            "transaction.create",
            customer=2,
            truck=1,
            occurred_at=when(),
            confirm=False,
            deliveries=[{"equipment": "CYL50", "kind": "full_deliver", "qty": 1}],
        ),
        change(
            "t-over",
            "transaction.create",
            customer=2,
            truck=1,
            occurred_at=when(),
            confirm=True,
            meter={"reading": "1.00"},
            deliveries=[{"equipment": "CYL50", "kind": "full_deliver", "qty": 21}],
        ),  # 20 on the truck: insufficient_stock
        change(
            "d-bad",
            "distribution.create",
            depot=1,
            truck=2,
            confirm=True,
            items=[{"equipment": "CYL9", "movement_type": "empty_return", "qty": 1}],
        ),  # the truck carries no empties: insufficient_stock
        change("t-bad", "transaction.confirm", id="t-missing"),
        change("c-bad", "customer.update", id=1, meter_rate="9.0000"),  # a driver may not set a rate
        change("p-dep", "invoice.mark_printed", transaction="d-bad"),  # depends on a refused change
    ]
    response = push(world, changes, "batch-partial")
    assert statuses(response) == {
        "t-ok": "applied",
        "t-draft": "applied",
        "t-over": "rejected",
        "d-bad": "rejected",
        "t-bad": "rejected",
        "c-bad": "rejected",
        "p-dep": "rejected",
    }, response
    return response


def check_partial(world: AuditWorld, result: Any, log: list[Any]) -> None:
    assert {c["client_temp_id"] for c in contexts(log)} == {"t-ok", "t-draft"}


def atomic_refused(world: AuditWorld) -> Any:
    changes = [
        change("c-2", "customer.create", name="Would be rolled back", address="1 Nowhere Rd"),
        change(
            "d-2",
            "distribution.create",
            depot=1,
            truck=2,
            confirm=True,
            items=[{"equipment": "CYL9", "movement_type": "empty_return", "qty": 1}],
        ),
    ]
    response = push(world, changes, "batch-atomic", atomic=True)
    assert set(statuses(response).values()) == {"rejected"}, response
    return response


def pushed_twice(world: AuditWorld) -> Any:
    """A retried push (the device never saw the answer): the duplicate writes no second entry."""
    changes = [change("c-3", "customer.create", name="Retried Customer", address="3 Retry Lane")]
    push(world, changes, "batch-first")
    response = push(world, changes, "batch-retry")
    assert statuses(response) == {"c-3": "duplicate"}, response
    return response


def check_twice(world: AuditWorld, result: Any, log: list[Any]) -> None:
    assert [c["batch"] for c in contexts(log)] == ["batch-first"]


# -- several changes of one record in one batch: per-change snapshots ----------------------------------------


def one_record_three_times(world: AuditWorld) -> Any:
    changes = [
        change(
            "d-9",
            "distribution.create",
            depot=1,
            truck=1,
            items=[{"equipment": "CYL9", "movement_type": "collection", "qty": 1}],
        ),
        change(
            "u-9",
            "distribution.update",
            id="d-9",
            base_version=1,
            items=[{"equipment": "CYL12.7", "movement_type": "collection", "qty": 6}],
        ),
        change("k-9", "distribution.confirm", id="d-9"),
        change("c-9a", "customer.update", id=3, base_version=1, phone="+65 6000 0001"),
        change("c-9b", "customer.update", id=3, base_version=2, phone="+65 6000 0002"),
    ]
    response = push(world, changes, "batch-same")
    assert set(statuses(response).values()) == {"applied"}, response
    return response


def check_same_record(world: AuditWorld, result: Any, log: list[Any]) -> None:
    c = {ctx["client_temp_id"]: ctx for ctx in contexts(log)}
    created, updated, confirmed = c["d-9"], c["u-9"], c["k-9"]
    assert [(i["equipment"], i["qty"]) for i in created["after"]["items"]] == [("CYL9", 1)]
    assert updated["before"] == created["after"]
    assert [(i["equipment"], i["qty"]) for i in updated["after"]["items"]] == [("CYL12.7", 6)]
    assert (created["after"]["version"], updated["after"]["version"]) == (1, 2)
    assert confirmed["after"]["status"] == "confirmed" and confirmed["after"]["version"] == 3
    assert [(m["equipment"], m["before"], m["after"]) for m in confirmed["stock"] if m["place"] == "truck"] == [
        ("CYL12.7", 20, 26)
    ]
    first, second = c["c-9a"], c["c-9b"]
    assert (first["before"]["phone"], first["after"]["phone"]) != (second["before"]["phone"], second["after"]["phone"])
    assert first["after"] == second["before"]
    assert (first["after"]["phone"], second["after"]["phone"]) == ("+65 6000 0001", "+65 6000 0002")


CASES = [
    AuditCase(
        "sync_push_each_applied_change_writes_its_services_entries",
        mixed_push,
        [
            sync_entry("create", "customer"),
            sync_entry("create", "distribution"),
            sync_entry("confirm", "distribution", "before", "after", "stock"),
            sync_entry("confirm", "transaction", "after", "stock"),
            sync_entry("create", "invoice"),
            sync_entry("create", "meter_reading"),
            sync_entry("mark_printed", "invoice", "before", "after"),
        ],
        check=check_mixed,
    ),
    AuditCase(
        "sync_push_refused_changes_write_nothing",
        partly_refused,
        [
            sync_entry("confirm", "transaction", "after", "stock"),
            sync_entry("create", "invoice"),
            sync_entry("create", "transaction"),
        ],
        check=check_partial,
    ),
    AuditCase("sync_push_refused_atomic_batch_writes_nothing", atomic_refused, []),
    AuditCase(
        "sync_push_duplicate_writes_nothing_more",
        pushed_twice,
        [sync_entry("create", "customer")],
        check=check_twice,
    ),
    AuditCase(
        "sync_push_changes_of_one_record_in_one_batch",
        one_record_three_times,
        [
            sync_entry("create", "distribution"),
            sync_entry("update", "distribution", "before", "after"),
            sync_entry("confirm", "distribution", "before", "after", "stock"),
            sync_entry("update", "customer", "before", "after"),
            sync_entry("update", "customer", "before", "after"),
        ],
        ordered=True,
        check=check_same_record,
    ),
]
