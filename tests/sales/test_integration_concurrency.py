"""Concurrent confirms selling from the same truck on MariaDB: no oversell, TRX and INV numbers unique and
gap-free, and refused sales leave no number, stock, audit or feed trace."""

from __future__ import annotations

import threading
from collections import Counter
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import select, update

from domain.audit.models import AuditEntry
from domain.db import Database
from domain.errors import DomainError
from domain.feed.models import FeedEntry
from domain.invoicing.models import Invoice
from domain.logistics.models import TruckStock
from domain.sales.models import Transaction
from domain.sales.schemas import MeterReadingCreate
from domain.sales.services import confirm_transaction, record_meter_reading
from domain.wire import parse
from tests.support.sales_support import DRIVER1, DRIVER2, full, run, sell, site_stock, truck_stock, when

THREADS = 8
PER_THREAD = 8
STOCK = 30


@pytest.mark.mysql_only
@pytest.mark.slow
def test_concurrent_confirms_from_one_truck_never_oversell_and_number_without_gaps(demo: Database) -> None:
    demo.run(
        lambda uow: uow.session.execute(
            update(TruckStock).where(TruckStock.truck_id == 1, TruckStock.equipment_id == 1).values(full=STOCK)
        )
    )
    baseline = parse(MeterReadingCreate, {"customer": 1, "reading": "1000.00", "occurred_at": when()})
    run(demo, lambda call: record_meter_reading(call, baseline))
    # Half the sales are drafts confirmed concurrently, half are created confirmed concurrently.
    drafts = [
        sell(
            demo,
            DRIVER1 if (n // (PER_THREAD // 2)) % 2 else DRIVER2,
            customer=2 + n % 4,
            deliveries=[full("CYL9", 1)],
            confirm=False,
        ).id
        for n in range(THREADS * PER_THREAD // 2)
    ]
    outcomes: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(PER_THREAD):
                actor = DRIVER1 if n % 2 else DRIVER2
                try:
                    if i % 2:
                        draft = drafts[n * PER_THREAD // 2 + i // 2]
                        run(demo, lambda call, d=draft: confirm_transaction(call, d), actor)
                    else:
                        sell(demo, actor, customer=2 + (n + i) % 4, deliveries=[full("CYL9", 1)])
                    result = "applied"
                except DomainError as exc:
                    result = exc.code
                # a sale that fails validation (meter regression) in between: it must leave no trace
                try:
                    sell(demo, actor, customer=1, meter="999.99", deliveries=[full("CYL9", 1)])
                    refused = "applied"
                except DomainError as exc:
                    refused = exc.code
                with lock:
                    outcomes.extend([result, refused])
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors

    tally = Counter(outcomes)
    assert tally == {
        "applied": STOCK,
        "insufficient_stock": THREADS * PER_THREAD - STOCK,
        "meter_regression": THREADS * PER_THREAD,
    }
    assert truck_stock(demo)["CYL9"] == (0, 0)
    assert sum(site_stock(demo, c).get("CYL9", 0) for c in range(1, 6)) == STOCK

    def numbers(session: Any) -> tuple[list[str], list[str], list[tuple[str, str]]]:
        trx = session.scalars(select(Transaction.number).where(Transaction.number.is_not(None))).all()
        inv = session.scalars(select(Invoice.number)).all()
        pairs = session.execute(
            select(Transaction.number, Invoice.number).join(Invoice, Invoice.transaction_id == Transaction.id)
        ).all()
        return list(trx), list(inv), [tuple(p) for p in pairs]

    trx_numbers, inv_numbers, pairs = demo.read(numbers)
    year = trx_numbers[0].split("-")[1]
    assert sorted(trx_numbers) == [f"TRX-{year}-{n:06d}" for n in range(1, STOCK + 1)]
    assert sorted(inv_numbers) == [f"INV-{year}-{n:06d}" for n in range(1, STOCK + 1)]
    assert len(pairs) == STOCK
    statuses = Counter(demo.read(lambda s: s.scalars(select(Transaction.status)).all()))
    confirmed_drafts = confirmed_among(demo, drafts)
    assert statuses == {"confirmed": STOCK, "draft": len(drafts) - confirmed_drafts}
    # Traces: exactly one transaction, invoice and audit entry per applied sale (drafts: one create each),
    # one feed row per transaction and invoice; the refused ones wrote nothing.
    audits = Counter(
        demo.read(
            lambda s: s.execute(
                select(AuditEntry.entity_type, AuditEntry.action).where(AuditEntry.entity_type != "user")
            ).all()
        )
    )
    assert audits[("transaction", "confirm")] == STOCK
    assert audits[("invoice", "create")] == STOCK
    assert audits[("transaction", "create")] == len(drafts)
    assert audits[("meter_reading", "create")] == 1
    feed = Counter(demo.read(lambda s: s.scalars(select(FeedEntry.entity)).all()))
    assert feed["invoice"] == STOCK and feed["meter_reading"] == 1
    assert feed["transaction"] == len(drafts) + STOCK - confirmed_drafts  # one row per transaction


def confirmed_among(db: Database, drafts: list[int]) -> int:
    return len(
        db.read(
            lambda s: s.scalars(
                select(Transaction.id).where(Transaction.id.in_(drafts), Transaction.status == "confirmed")
            ).all()
        )
    )


@pytest.mark.mysql_only
@pytest.mark.slow
def test_concurrent_readings_of_one_meter_chain_without_lost_updates(demo: Database) -> None:
    """Readings are judged in the order the server applies them: each recorded one follows the previous."""
    errors: list[BaseException] = []
    tally: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            for i in range(6):
                value = f"{100 + i * 10 + n}.00"  # threads race with interleaved values
                cmd = parse(MeterReadingCreate, {"customer": 2, "reading": value, "occurred_at": when()})
                try:
                    run(demo, lambda call, c=cmd: record_meter_reading(call, c), DRIVER1 if n % 2 else DRIVER2)
                    result = "applied"
                except DomainError as exc:
                    result = exc.code
                with lock:
                    tally[result] += 1
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert set(tally) <= {"applied", "meter_regression"} and sum(tally.values()) == THREADS * 6
    from domain.catalog.models import Meter
    from domain.sales.models import MeterReading

    readings = demo.read(
        lambda s: s.scalars(select(MeterReading).where(MeterReading.customer_id == 2).order_by(MeterReading.id)).all()
    )
    assert len(readings) == tally["applied"]
    assert readings[0].previous_reading is None
    for before, after in pairwise(readings):
        assert after.previous_reading == before.reading <= after.reading
        assert after.usage == after.reading - before.reading
    meter = demo.read(lambda s: s.scalars(select(Meter).where(Meter.customer_id == 2)).one())
    assert meter.last_reading == readings[-1].reading


def test_concurrent_sales_never_oversell_on_either_engine(demo: Database) -> None:
    """The same guarantee, smaller, on SQLite too (BEGIN IMMEDIATE serialises writers there)."""
    demo.run(
        lambda uow: uow.session.execute(
            update(TruckStock).where(TruckStock.truck_id == 2, TruckStock.equipment_id == 4).values(full=12)
        )
    )
    results: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(5):
            try:
                sell(demo, DRIVER1, customer=1 + n, truck=2, deliveries=[full("CYL50", 1)])
                result = "applied"
            except DomainError as exc:
                result = exc.code
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert Counter(results) == {"applied": 12, "insufficient_stock": 8}
    assert truck_stock(demo, 2)["CYL50"] == (0, 0)
    numbers = demo.read(lambda s: sorted(s.scalars(select(Invoice.number)).all()))
    assert [int(n[-6:]) for n in numbers] == list(range(1, 13))
