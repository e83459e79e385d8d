"""One business action = one transaction: an error after stock changed leaves no trace anywhere."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from domain.audit.models import AuditEntry
from domain.audit.services import audit
from domain.db import Database
from domain.feed.models import Counter, FeedEntry
from domain.feed.services import allocate_number, record_change
from domain.logistics.docs import stock_doc
from domain.logistics.models import TruckStock
from domain.logistics.stock import StockKey, lock_stock_rows


def snapshot(db: Database) -> dict[str, object]:
    def read(s):  # type: ignore[no-untyped-def]
        return {
            "stock": sorted(
                (r.truck_id, r.equipment_id, r.full, r.empty, r.version) for r in s.scalars(select(TruckStock))
            ),
            "feed": s.execute(select(func.count()).select_from(FeedEntry)).scalar_one(),
            "audit": s.execute(select(func.count()).select_from(AuditEntry)).scalar_one(),
            "counters": sorted((c.name, c.value, c.head) for c in s.scalars(select(Counter))),
        }

    return db.read(read)


class Boom(Exception):
    pass


def take_from_truck(session: Any, full: int, audited: bool = True) -> TruckStock:
    """Truck 1's CYL9 row: `full` cylinders fewer, recorded in the feed (and the audit log)."""
    key = StockKey("truck", 1, 1)
    row = lock_stock_rows(session, [key])[key]
    before = row.full
    row.full -= full
    row.touch()
    record_change(session, "truck_stock", row, doc=lambda: stock_doc(row, "CYL9"))
    if audited:
        audit(session, 1, None, "adjust", "truck_stock", row, before={"full": before}, after={"full": row.full})
    return row


def test_error_after_stock_change_leaves_no_trace(demo: Database) -> None:
    before = snapshot(demo)

    def work(uow):  # type: ignore[no-untyped-def]
        take_from_truck(uow.session, 5)
        allocate_number(uow.session, "TRX", 2026)
        uow.session.flush()
        raise Boom("after the stock update, before commit")

    with pytest.raises(Boom):
        demo.run(work)
    assert snapshot(demo) == before


def test_a_committed_unit_writes_stock_feed_audit_and_number_together(demo: Database) -> None:
    before = snapshot(demo)

    def work(uow):  # type: ignore[no-untyped-def]
        take_from_truck(uow.session, 5)
        return allocate_number(uow.session, "TRX", 2026)

    assert demo.run(work) == "TRX-2026-000001"
    after = snapshot(demo)
    assert after["audit"] == before["audit"] + 1  # type: ignore[operator]
    assert after["feed"] == before["feed"]  # the truck row's feed entry moved to a new seq (compaction)
    counters = {n: v for n, v, _ in after["counters"]}  # type: ignore[union-attr]
    assert counters["TRX-2026"] == 1 and counters["feed"] == {n: v for n, v, _ in before["counters"]}["feed"] + 1  # type: ignore[union-attr]
    row = next(r for r in after["stock"] if r[:2] == (1, 1))  # type: ignore[union-attr,index]
    assert row[2] == 15 and row[4] == 2


def test_feed_is_compacted_one_row_per_record_at_its_latest_seq(demo: Database) -> None:
    key = StockKey("truck", 2, 3)
    for _ in range(5):

        def work(uow):  # type: ignore[no-untyped-def]
            row = lock_stock_rows(uow.session, [key])[key]
            row.empty += 1
            row.touch()
            record_change(uow.session, "truck_stock", row, doc=lambda: stock_doc(row, "CYL14"))

        demo.run(work)
    rows = demo.read(lambda s: s.scalars(select(FeedEntry).where(FeedEntry.entity == "truck_stock")).all())
    mine = [r for r in rows if '"truck":2' in r.doc and '"CYL14"' in r.doc]
    assert len(mine) == 1
    assert mine[0].version == 6 and mine[0].seq == max(r.seq for r in rows)
    assert '"empty":5' in mine[0].doc


def counter_value(db: Database, name: str) -> int | None:
    return db.read(lambda s: s.execute(select(Counter.value).where(Counter.name == name)).scalar_one_or_none())


def test_numbers_are_given_at_commit_and_the_counter_is_written_once(demo: Database) -> None:
    """A number is a token until the commit's late lock, where the series' counter row is locked and
    written once; tokens handed out in a rolled-back savepoint take no number (no gap)."""

    def work(uow):  # type: ignore[no-untyped-def]
        session = uow.session
        got = [allocate_number(session, "DIST", 2031) for _ in range(3)]
        savepoint = uow.savepoint()  # what the reconciler takes around each change
        got += [allocate_number(session, "DIST", 2031), allocate_number(session, "INV", 2031)]
        savepoint.rollback()  # the rows and the unit's state (these two tokens) at once
        got += [allocate_number(session, "DIST", 2031), allocate_number(session, "INV", 2031)]
        assert all(n.startswith("~N") and len(n) == 18 for n in got)  # tokens inside the unit
        assert len(set(got)) == len(got) == 7
        assert counter_value_in(session, "DIST-2031") is None  # nothing locked or written before the commit
        rolled_back = got[3:5]
        return got, rolled_back

    got, rolled_back = demo.run(work)  # the unit's answer carries the numbers its commit gave
    assert got[:3] == ["DIST-2031-000001", "DIST-2031-000002", "DIST-2031-000003"]
    assert all(n.startswith("~N") for n in rolled_back)  # rolled back with the savepoint: never numbered
    assert got[5:] == ["DIST-2031-000004", "INV-2031-000001"]  # the next numbers: no gap
    assert counter_value(demo, "DIST-2031") == 4 and counter_value(demo, "INV-2031") == 1


def test_a_series_first_used_in_a_rolled_back_unit_leaves_nothing(demo: Database) -> None:
    with demo.unit() as uow:
        assert allocate_number(uow.session, "TRX", 2032).startswith("~N")
        uow.rollback()
    assert counter_value(demo, "TRX-2032") is None
    assert demo.run(lambda uow: allocate_number(uow.session, "TRX", 2032)) == "TRX-2032-000001"
    assert counter_value(demo, "TRX-2032") == 1


def counter_value_in(session: Any, name: str) -> int | None:
    value = session.execute(select(Counter.value).where(Counter.name == name)).scalar_one_or_none()
    return None if value is None else int(value)


def test_a_savepoint_undoes_the_rows_and_the_units_state_at_once(demo: Database) -> None:
    """`uow.savepoint()`: its rollback undoes the rows written since and forgets what the unit recorded
    since (feed changes, audit entries, numbers, locks), so the commit writes only what came before."""
    before = snapshot(demo)

    def work(uow):  # type: ignore[no-untyped-def]
        take_from_truck(uow.session, 1, audited=False)
        kept = uow.state.snapshot()
        savepoint = uow.savepoint()
        take_from_truck(uow.session, 5)
        allocate_number(uow.session, "TRX", 2033)
        assert uow.state.snapshot() != kept and uow.state.stock_locks
        savepoint.rollback()
        assert uow.state.snapshot() == kept and not uow.state.stock_locks

    demo.run(work)
    after = snapshot(demo)
    row = next(r for r in after["stock"] if r[:2] == (1, 1))  # type: ignore[union-attr,index]
    assert row[2] == 19 and row[4] == 2  # only the change before the savepoint
    assert after["audit"] == before["audit"]  # the audit entry went with the savepoint
    assert counter_value(demo, "TRX-2033") is None  # and the number


def test_a_deferred_update_that_finds_no_row_fails_the_commit_and_writes_nothing(demo: Database) -> None:
    """`update_one_after_numbers`: an UPDATE run under the late lock with the other locked writes (on
    MariaDB inside the compound statement, checked there by ROW_COUNT()) must change exactly one row; when
    it finds none, the commit fails with `RowMoved` and nothing of the unit is written."""
    from sqlalchemy import bindparam, update

    from domain.accounts.models import Device
    from domain.ledger import RowMoved, update_one_after_numbers

    devices = Device.__table__.c
    bump = (
        update(Device.__table__)
        .where(devices.device_id == bindparam("b_device_id"))
        .values(version=devices.version + 1)
    )
    before = snapshot(demo)

    def work(uow):  # type: ignore[no-untyped-def]
        take_from_truck(uow.session, 2)
        update_one_after_numbers(uow.session, bump, {"b_device_id": "no-such-device"}, "no-such-device moved")

    with pytest.raises(RowMoved, match="no-such-device moved"):
        demo.run(work)
    assert snapshot(demo) == before

    with demo.unit() as uow:  # a device that exists: the same write commits
        uow.session.add(Device(device_id="tab-moved", user_id=2))
        uow.commit()
    demo.run(lambda uow: update_one_after_numbers(uow.session, bump, {"b_device_id": "tab-moved"}, "moved"))
    version = demo.read(lambda s: s.scalar(select(Device.version).where(Device.device_id == "tab-moved")))
    assert version == 2


def test_a_unit_committed_by_its_last_statement_leaves_the_next_units_on_its_connection_committing(
    demo: Database,
) -> None:
    """On MariaDB a unit's COMMIT ends its last compound statement (domain/ledger.py) and the unit's own
    COMMIT then sends nothing (domain/db.py). That must stay the unit's business: on one pooled connection,
    the units after it (a plain UPDATE, locking reads) commit for real, seen from another connection, and
    their locks are released. On SQLite every unit commits as always; the same checks hold."""
    from dataclasses import replace

    from sqlalchemy import update

    single = Database(replace(demo.settings, db_pool_size=1))
    seen: list[Any] = []
    try:
        raw = single.engine.raw_connection()
        first = raw.dbapi_connection
        raw.close()
        for n in range(3):
            single.run(lambda uow: take_from_truck(uow.session, 1))  # ledger writes: folded on MariaDB
            single.run(
                lambda uow, n=n: uow.session.execute(update(TruckStock).where(TruckStock.id == 1).values(empty=100 + n))
            )
            seen.append(demo.read(lambda s: s.get(TruckStock, 1).empty))  # another connection
            single.run(lambda uow: lock_stock_rows(uow.session, [StockKey("truck", 1, 1)]))
            # Its lock is gone: another writer takes the row at once (a lock wait would time out the test).
            demo.run(lambda uow: lock_stock_rows(uow.session, [StockKey("truck", 1, 1)]))
        raw = single.engine.raw_connection()
        assert raw.dbapi_connection is first, "the units shared one connection"
        assert not getattr(raw.dbapi_connection, "_lpg_committed_in_statement", False)
        raw.close()
    finally:
        single.dispose()
    assert seen == [100, 101, 102]
    assert next(r for r in snapshot(demo)["stock"] if r[:2] == (1, 1))[2] == 17  # type: ignore[union-attr,index]


def test_an_update_under_the_late_lock_that_names_a_number_gets_the_number(demo: Database) -> None:
    """A deferred UPDATE whose values name a token (`update_one_after_numbers`) is written with the number,
    whichever way the unit's locked writes go (on MariaDB such an UPDATE cannot ride in the one-trip statement,
    whose numbers are SQL expressions, so the unit takes the two round trips)."""
    from sqlalchemy import bindparam, update

    from domain.catalog.models import Customer
    from domain.ledger import update_one_after_numbers

    customers = Customer.__table__.c
    rename = (
        update(Customer.__table__)
        .where(customers.id == bindparam("b_id"))
        .values(name=bindparam("b_name"), version=customers.version + 1)
    )

    def work(uow):  # type: ignore[no-untyped-def]
        take_from_truck(uow.session, 1)  # a feed row and an audit entry: a small unit
        number = allocate_number(uow.session, "DIST", 2034)
        update_one_after_numbers(uow.session, rename, {"b_id": 1, "b_name": f"Paid with {number}"}, "customer 1")
        return number

    number = demo.run(work)
    assert number == "DIST-2034-000001"
    assert demo.read(lambda s: s.get(Customer, 1)).name == "Paid with DIST-2034-000001"
    assert counter_value(demo, "DIST-2034") == 1
