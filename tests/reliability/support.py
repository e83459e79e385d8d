"""What every reliability test checks at the end: each batch applied exactly once, stock and numbers exact."""

from __future__ import annotations

import re
from collections import Counter as Tally
from typing import Any

from sqlalchemy import func, select

from domain.audit.verify import verify_chain
from domain.catalog.models import Customer
from domain.db import Database
from domain.feed.models import FeedEntry
from domain.invoicing.models import Invoice
from domain.logistics.models import TruckStock
from domain.sales.models import Transaction
from reconcile.models import AppliedChange
from tests.contract.sync_support import recent

SUMMARY: Tally[str] = Tally()


def sales_batch(prefix: str, n: int, truck: int = 1, qty: int = 1) -> list[dict[str, Any]]:
    """`n` new customers, each with a confirmed sale of `qty` full CYL9 from `truck` (an invoice each)."""
    at = recent()
    changes: list[dict[str, Any]] = []
    for i in range(n):
        changes.append(
            {
                "client_temp_id": f"{prefix}-c{i}",
                "op": "customer.create",
                "data": {"name": f"Fault Customer {prefix} {i}", "address": f"{i} Fault Rd"},
            }
        )
        changes.append(
            {
                "client_temp_id": f"{prefix}-s{i}",
                "op": "transaction.create",
                "data": {
                    "customer": f"{prefix}-c{i}",
                    "truck": truck,
                    "confirm": True,
                    "occurred_at": at,
                    "deliveries": [{"equipment": "CYL9", "kind": "full_deliver", "qty": qty}],
                },
            }
        )
    return changes


def state(db: Database) -> dict[str, Any]:
    def read(s: Any) -> dict[str, Any]:
        count = lambda model: s.execute(select(func.count()).select_from(model)).scalar_one()  # noqa: E731
        return {
            "customers": count(Customer),
            "transactions": count(Transaction),
            "invoices": count(Invoice),
            "applied": count(AppliedChange),
            "feed": count(FeedEntry),
            "cyl9_full": dict(
                s.execute(select(TruckStock.truck_id, TruckStock.full).where(TruckStock.equipment_id == 1)).all()
            ),
            "trx_numbers": list(s.scalars(select(Transaction.number).order_by(Transaction.number))),
            "inv_numbers": list(s.scalars(select(Invoice.number).order_by(Invoice.number))),
            "max_seq": s.execute(select(func.max(FeedEntry.seq))).scalar_one() or 0,
        }

    return db.read(read)


def gap_free(numbers: list[str]) -> bool:
    """Per series (`TRX-2026`), the numbers are 1..n with none missing or repeated."""
    series: dict[str, list[int]] = {}
    for number in numbers:
        match = re.match(r"^(.*)-(\d+)$", number)
        assert match, number
        series.setdefault(match.group(1), []).append(int(match.group(2)))
    return all(sorted(v) == list(range(1, len(v) + 1)) for v in series.values())


def assert_applied_once(db: Database, before: dict[str, Any], batches: int, per_batch: int, qty: int = 1) -> None:
    """`batches` batches of `per_batch` customers + sales on truck 1, each applied exactly once."""
    after = state(db)
    n = batches * per_batch
    assert after["customers"] - before["customers"] == n, "customers doubled or lost"
    assert after["transactions"] - before["transactions"] == n, "sales doubled or lost"
    assert after["invoices"] - before["invoices"] == n, "invoices doubled or lost"
    assert after["applied"] - before["applied"] == 2 * n, "idempotency records"
    assert before["cyl9_full"][1] - after["cyl9_full"][1] == n * qty, "truck stock moved other than once"
    assert gap_free(after["trx_numbers"]) and gap_free(after["inv_numbers"]), "document numbers not gap-free"
    verdict = verify_chain(db)
    assert verdict.ok, verdict.as_dict()
