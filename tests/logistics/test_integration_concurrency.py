"""Concurrent confirms: no lost update, no oversold depot, no deadlock reaching a client, gap-free numbers."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from domain.accounts.policy import Actor
from domain.clock import business_year, utcnow
from domain.db import Database
from domain.errors import InsufficientStock, InvalidState
from domain.logistics import services as svc
from domain.logistics.models import DepotStock, Distribution, TruckStock
from domain.logistics.schemas import DistributionCreate, StockAdjustmentCreate
from domain.service import Call

THREADS = 8
DRIVER = Actor(2, "driver1", "driver")
ADMIN = Actor(1, "admin", "admin")


def call(db: Database, actor: Actor, work: Callable[[Call], Any]) -> Any:
    return db.run(lambda uow: work(Call(uow.session, actor, db.settings)))


def create_pending(db: Database, specs: list[tuple[int, int, list[dict[str, Any]]]]) -> list[int]:
    def work(c: Call) -> list[int]:
        return [
            svc.create_distribution(c, DistributionCreate(depot=depot, truck=truck, items=items)).id
            for depot, truck, items in specs
        ]

    return call(db, DRIVER, work)


def stock(db: Database) -> dict[tuple[str, int, int], tuple[int, int]]:
    def read(s):  # type: ignore[no-untyped-def]
        out = {("depot", r.depot_id, r.equipment_id): (r.full, r.empty) for r in s.scalars(select(DepotStock))}
        out.update({("truck", r.truck_id, r.equipment_id): (r.full, r.empty) for r in s.scalars(select(TruckStock))})
        return out

    return db.read(read)


def run_workers(work: Callable[[], None]) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 (reported by the caller)
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "a worker hangs"
    return errors


def test_eight_confirms_of_one_distribution_apply_once(demo: Database) -> None:
    (d_id,) = create_pending(demo, [(1, 1, [{"equipment": "CYL9", "movement_type": "collection", "qty": 7}])])
    before = stock(demo)
    outcomes: list[str] = []
    lock = threading.Lock()

    def confirm() -> None:
        try:
            number = call(demo, DRIVER, lambda c: svc.confirm_distribution(c, d_id).number)
            result = f"ok {number}"
        except InvalidState:
            result = "invalid_state"
        with lock:
            outcomes.append(result)

    assert run_workers(confirm) == []
    assert sorted(outcomes) == sorted(
        [f"ok DIST-{business_year(utcnow(), 'Asia/Singapore')}-000001"] + ["invalid_state"] * 7
    )
    after = stock(demo)
    assert after[("depot", 1, 1)] == (before[("depot", 1, 1)][0] - 7, 40)
    assert after[("truck", 1, 1)] == (before[("truck", 1, 1)][0] + 7, 0)


def test_competing_confirms_never_oversell_a_depot(demo: Database) -> None:
    """Depot 2 has 200 full CYL50; 12 distributions want 30 each: exactly 6 fit, the rest are refused."""
    ids = create_pending(
        demo, [(2, 1 + n % 3, [{"equipment": "CYL50", "movement_type": "collection", "qty": 30}]) for n in range(12)]
    )
    work: queue.Queue[int] = queue.Queue()
    for d_id in ids:
        work.put(d_id)
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                d_id = work.get_nowait()
            except queue.Empty:
                return
            try:
                call(demo, DRIVER, lambda c, d_id=d_id: svc.confirm_distribution(c, d_id))
                result = "ok"
            except InsufficientStock as exc:
                assert exc.details["requested"] == 30 and exc.details["available"] < 30
                result = "short"
            with lock:
                results.append(result)

    assert run_workers(worker) == []
    assert sorted(results) == ["ok"] * 6 + ["short"] * 6
    final = stock(demo)
    assert final[("depot", 2, 4)] == (20, 40)
    assert sum(final[("truck", t, 4)][0] for t in (1, 2, 3)) == 60 + 180


@pytest.mark.mysql_only
@pytest.mark.slow
def test_eight_threads_confirm_200_distributions_on_shared_rows(
    demo: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every confirm collects from and returns to depot 1 with trucks 1-3, items in varying order."""
    for truck in (1, 2, 3):
        cmd = StockAdjustmentCreate(place="truck", truck=truck, equipment="CYL12.7", empty_delta=100, reason="setup")
        call(demo, ADMIN, lambda c, cmd=cmd: svc.adjust_stock(c, cmd))
    specs = []
    for n in range(200):
        items = [
            {"equipment": "CYL9", "movement_type": "collection", "qty": 1},
            {"equipment": "CYL12.7", "movement_type": "empty_return", "qty": 1},
            {"equipment": "CYL14", "movement_type": "collection", "qty": 1},
        ]
        specs.append((1, 1 + n % 3, items if n % 2 else items[::-1]))
    ids = create_pending(demo, specs)
    start = stock(demo)
    # the sequential sum: what 200 confirms one after another would leave
    expected = dict(start)
    for _, truck, _ in specs:
        for place, holder, equipment, full, empty in (
            ("depot", 1, 1, -1, 0), ("truck", truck, 1, 1, 0),
            ("truck", truck, 2, 0, -1), ("depot", 1, 2, 0, 1),
            ("depot", 1, 3, -1, 0), ("truck", truck, 3, 1, 0),
        ):  # fmt: skip
            f, e = expected[(place, holder, equipment)]
            expected[(place, holder, equipment)] = (f + full, e + empty)
    work: queue.Queue[int] = queue.Queue()
    for d_id in ids:
        work.put(d_id)
    stop = threading.Event()
    minimum: list[int] = []

    def watch() -> None:  # no reader ever sees a negative quantity
        while not stop.is_set():
            minimum.append(min(min(v) for v in stock(demo).values()))

    def worker() -> None:
        while True:
            try:
                d_id = work.get_nowait()
            except queue.Empty:
                return
            call(demo, DRIVER, lambda c, d_id=d_id: svc.confirm_distribution(c, d_id))

    watcher = threading.Thread(target=watch)
    watcher.start()
    retries_before = demo.retries
    try:
        errors = run_workers(worker)
    finally:
        stop.set()
        watcher.join(30)
    assert errors == [], errors[:3]  # no deadlock (or anything else) reached a client
    final = stock(demo)
    assert final == expected
    assert min(min(v) for v in final.values()) >= 0 and min(minimum) >= 0
    assert final[("depot", 1, 1)] == (0, 40) and final[("depot", 1, 3)] == (0, 40)  # drained to exactly zero
    numbers = demo.read(lambda s: s.scalars(select(Distribution.number).where(Distribution.id.in_(ids))).all())
    year = business_year(utcnow(), "Asia/Singapore")
    assert sorted(numbers) == [f"DIST-{year}-{n:06d}" for n in range(1, 201)]
    with capsys.disabled():
        print(f"\n200 concurrent confirms: {demo.retries - retries_before} deadlock victims retried by Database.run")
