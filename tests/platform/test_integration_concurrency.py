"""Locked counters and stock rows under concurrent writers, on both engines."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import select

from domain.db import Database
from domain.feed.services import allocate_number
from domain.logistics.models import TruckStock
from domain.logistics.stock import StockKey, lock_stock_rows

THREADS = 8


def run_threads(target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def test_8_threads_x_50_increments_give_the_exact_total(demo: Database) -> None:
    key = StockKey("truck", 1, 2)
    start = demo.read(lambda s: s.scalars(select(TruckStock).where(TruckStock.id == 2)).one().full)

    def increment(uow):  # type: ignore[no-untyped-def]
        row = lock_stock_rows(uow.session, [key])[key]
        row.full += 1
        row.touch()

    run_threads(lambda n: [demo.run(increment) for _ in range(50)])
    row = demo.read(lambda s: s.scalars(select(TruckStock).where(TruckStock.id == 2)).one())
    assert (row.truck_id, row.equipment_id) == (1, 2)
    assert row.full == start + THREADS * 50
    assert row.version == 1 + THREADS * 50


def test_numbers_are_distinct_and_gap_free_even_with_rollbacks(db: Database) -> None:
    committed: list[str] = []
    lock = threading.Lock()

    class Abort(Exception):
        pass

    def worker(n: int) -> None:
        done = attempts = 0
        while done < 50:
            attempts += 1

            def allocate(uow, fail=attempts % 3 == 0):  # type: ignore[no-untyped-def]
                number = allocate_number(uow.session, "DIST", 2026)
                if fail:
                    raise Abort(number)
                return number

            try:
                number = db.run(allocate)
            except Abort:
                continue
            with lock:
                committed.append(number)
            done += 1

    run_threads(worker)
    assert len(committed) == 400 == len(set(committed))
    assert sorted(committed) == [f"DIST-2026-{n:06d}" for n in range(1, 401)]


def test_missing_stock_rows_are_created_once_under_concurrency(demo: Database) -> None:
    """Site rows do not exist until first used; concurrent first users must not duplicate or lose them."""
    key = StockKey("site", 3, 4)

    def deliver(uow):  # type: ignore[no-untyped-def]
        row = lock_stock_rows(uow.session, [key])[key]
        row.on_site += 1
        row.touch()

    run_threads(lambda n: [demo.run(deliver) for _ in range(10)])
    from domain.logistics.models import SiteStock

    rows = demo.read(lambda s: s.scalars(select(SiteStock).where(SiteStock.customer_id == 3)).all())
    assert [(r.equipment_id, r.on_site) for r in rows] == [(4, THREADS * 10)]
