"""A retry racing its original: two (or more) identical pushes at once apply each change exactly once."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from domain.accounts.models import Device
from domain.accounts.policy import Actor
from domain.catalog.models import Customer
from domain.db import Database
from domain.invoicing.models import Invoice
from domain.logistics.models import TruckStock
from domain.sales.models import Transaction
from reconcile.batch import apply_batch
from reconcile.envelope import parse_envelope
from tests.support.sync_support import recent


def batch(n: int) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []
    at = recent()
    for i in range(n):
        changes.append(
            {
                "client_temp_id": f"c-{i}",
                "op": "customer.create",
                "data": {"name": f"Race Customer {i}", "address": f"{i} Race Rd"},
            }
        )
        changes.append(
            {
                "client_temp_id": f"s-{i}",
                "op": "transaction.create",
                "data": {
                    "customer": f"c-{i}",
                    "truck": 1,
                    "confirm": True,
                    "occurred_at": at,
                    "deliveries": [{"equipment": "CYL9", "kind": "full_deliver", "qty": 1}],
                },
            }
        )
    return changes


@pytest.mark.parametrize("threads", [2, 4])
def test_identical_pushes_at_once_apply_each_change_once(demo: Database, threads: int) -> None:
    driver = Actor(2, "driver1", "driver")
    envelope = parse_envelope({"device_id": "tab-race", "changes": batch(10)})
    responses: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(threads)

    def run() -> None:
        try:
            gate.wait()
            responses.append(apply_batch(demo, driver, envelope))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not errors, errors
    assert len(responses) == threads
    for index in range(20):
        statuses = sorted(r["results"][index]["status"] for r in responses)
        assert statuses == ["applied"] + ["duplicate"] * (threads - 1)
    maps = [r["id_map"] for r in responses]
    assert all(m == maps[0] for m in maps)

    def counts(s: Any) -> tuple[int, int, int, int]:
        return (
            s.execute(select(func.count()).select_from(Customer).where(Customer.name.like("Race%"))).scalar_one(),
            s.execute(select(func.count()).select_from(Transaction)).scalar_one(),
            s.execute(select(func.count()).select_from(Invoice)).scalar_one(),
            s.execute(
                select(TruckStock.full).where(TruckStock.truck_id == 1, TruckStock.equipment_id == 1)
            ).scalar_one(),
        )

    assert demo.read(counts) == (10, 10, 10, 10)
    # The device registry counts what each push answered: every change applied once, the rest duplicates.
    device = demo.read(
        lambda s: s.execute(
            select(Device.applied_count, Device.duplicate_count, Device.rejected_count, Device.version).where(
                Device.device_id == "tab-race"
            )
        ).one()
    )
    assert tuple(device) == (20, 20 * (threads - 1), 0, 1 + threads)
