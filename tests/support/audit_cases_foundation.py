"""Audit cases for what the foundation changes today: demo loading and stock writes through the ledger.

`adjust_truck` is written exactly as a service must be (check, then act; lock; touch; feed; audit with
before/after and the sync context), so these cases also show other areas the expected shape.
"""

from __future__ import annotations

from typing import Any

import orjson

from domain.audit.services import audit
from domain.demo import load_demo
from domain.errors import InsufficientStock
from domain.feed.services import record_change
from domain.ledger import settle_audits
from domain.logistics.docs import stock_doc
from domain.logistics.stock import StockKey, lock_stock_rows
from domain.service import Call, Outcome
from tests.support.audit_cases import AuditCase, AuditWorld, entries, entry

SYNC_UPDATE = ("before", "after", "client_temp_id", "batch")  # the context of an update that came by sync
KEY = StockKey("truck", 1, 2)  # truck 1, CYL12.7: 20 full in the demo


def adjust_truck(call: Call, key: StockKey, full_delta: int) -> Outcome:
    row = lock_stock_rows(call.session, [key])[key]
    if row.full + full_delta < 0:
        raise InsufficientStock(
            "not enough full cylinders on the truck",
            {"place": "truck", "equipment": "CYL12.7", "available": row.full, "requested": -full_delta},
        )
    before = stock_doc(row, "CYL12.7")
    row.full += full_delta
    row.touch(call.now)
    record_change(call.session, "truck_stock", row, doc=lambda: stock_doc(row, "CYL12.7"))
    audit(call.session, call.actor.id, call.device_id, "adjust", "truck_stock", row, before=before,
          after=lambda: stock_doc(row, "CYL12.7"), **call.audit_context())  # fmt: skip
    call.session.flush()
    return Outcome("truck_stock", row)


def refused_adjustment(world: AuditWorld) -> None:
    try:
        world.call(lambda call: adjust_truck(call, KEY, -21))
    except InsufficientStock:
        return
    raise AssertionError("taking 21 of 20 cylinders must be refused")


def two_changes_in_one_batch(world: AuditWorld) -> None:
    """What the reconciler does: several changes in one transaction, snapshots settled after each."""

    def batch(call: Call) -> None:
        for n, delta in enumerate((-3, -4), start=1):
            change = Call(call.session, call.actor, call.settings, call.device_id, f"tmp-{n}", "batch-7")
            adjust_truck(change, KEY, delta)
            settle_audits(call.session)

    world.call(batch, role="driver", device_id="tablet-1")


def check_two_changes(world: AuditWorld, result: Any, log: list[Any]) -> None:
    first, second = (orjson.loads(e.context) for e in log)
    assert (first["before"]["full"], first["after"]["full"]) == (20, 17)
    assert (second["before"]["full"], second["after"]["full"]) == (17, 13)
    assert first["after"] == second["before"]
    assert [first["client_temp_id"], second["client_temp_id"]] == ["tmp-1", "tmp-2"]


def check_demo(world: AuditWorld, result: Any, log: list[Any]) -> None:
    assert result is True
    contexts = [orjson.loads(e.context) for e in log]
    assert all(c["source"] == "demo" and c["after"] for c in contexts)
    users = [c["after"] for e, c in zip(log, contexts, strict=True) if e.entity_type == "user"]
    assert [u["username"] for u in users] == ["admin", "driver1", "driver2"]
    assert all("password" not in orjson.dumps(c).decode() for c in contexts), "no password hash in the log"


def check_adjustment(world: AuditWorld, result: Any, log: list[Any]) -> None:
    context = orjson.loads(log[0].context)
    assert (context["before"]["full"], context["after"]["full"]) == (20, 15)
    assert context["after"]["version"] == context["before"]["version"] + 1
    assert (context["client_temp_id"], context["batch"]) == ("tmp-42", "batch-1")


CASES = [
    AuditCase(
        "demo_loading",
        lambda w: load_demo(w.db),
        [
            *entries(3, "create", "user", "after", "source", actor=None, device=None),
            *entries(4, "create", "equipment", "after", "source", actor=None),
            *entries(3, "create", "service", "after", "source", actor=None),
            *entries(2, "create", "depot", "after", "source", actor=None),
            *entries(3, "create", "truck", "after", "source", actor=None),
            *entries(5, "create", "customer", "after", "source", actor=None),
            *entries(8, "create", "depot_stock", "after", "source", actor=None),
            *entries(12, "create", "truck_stock", "after", "source", actor=None),
        ],
        base="empty",
        ordered=True,
        check=check_demo,
    ),
    AuditCase(
        "stock_adjustment_through_the_ledger_from_sync",
        lambda w: w.call(
            lambda call: adjust_truck(call, KEY, -5),
            device_id="tablet-9",
            client_temp_id="tmp-42",
            batch_id="batch-1",
        ),
        [entry("adjust", "truck_stock", *SYNC_UPDATE, actor="admin", device="tablet-9", entity_id=2)],
        check=check_adjustment,
    ),
    AuditCase(
        "stock_adjustment_refused_writes_nothing",
        refused_adjustment,
        [],
    ),
    AuditCase(
        "two_changes_of_one_record_in_one_batch",
        two_changes_in_one_batch,
        entries(2, "adjust", "truck_stock", *SYNC_UPDATE, actor="driver", device="tablet-1", entity_id=2),
        ordered=True,
        check=check_two_changes,
    ),
]
