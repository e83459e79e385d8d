"""Conservation, checked after every step of random create / confirm / cancel / adjust sequences.

A model of every depot and truck row predicts each step's fate (applied or `insufficient_stock`); after
every step the database must hold exactly the model's stock, no depot or truck quantity may be negative,
and per equipment model depot + truck + site must equal the demo's total plus the sum of adjustments.
"""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import create_engine, select

from domain.accounts.policy import Actor
from domain.db import Database
from domain.demo import load_demo
from domain.errors import InsufficientStock
from domain.logistics import services as svc
from domain.logistics.models import DepotStock, Distribution, SiteStock, TruckStock
from domain.logistics.queries import stock_totals
from domain.logistics.schemas import DistributionCreate, StockAdjustmentCreate
from domain.service import Call
from tests.conftest import ENGINE, MYSQL_URL, empty_mysql
from tests.conftest import test_settings as make_settings

DRIVER = Actor(2, "driver1", "driver")
ADMIN = Actor(1, "admin", "admin")
EQUIPMENT = (1, 2, 3, 4)
Key = tuple[str, int, int, str]  # place, holder, equipment, state

items = st.lists(
    st.tuples(st.sampled_from(EQUIPMENT), st.sampled_from(["collection", "empty_return"]), st.integers(1, 120)),
    min_size=1,
    max_size=4,
)


def read_stock(db: Database) -> dict[Key, int]:
    def read(s):  # type: ignore[no-untyped-def]
        out: dict[Key, int] = {}
        for r in s.scalars(select(DepotStock)):
            out[("depot", r.depot_id, r.equipment_id, "full")] = r.full
            out[("depot", r.depot_id, r.equipment_id, "empty")] = r.empty
        for r in s.scalars(select(TruckStock)):
            out[("truck", r.truck_id, r.equipment_id, "full")] = r.full
            out[("truck", r.truck_id, r.equipment_id, "empty")] = r.empty
        for r in s.scalars(select(SiteStock)):
            out[("site", r.customer_id, r.equipment_id, "on_site")] = r.on_site
        return out

    return db.read(read)


def per_model(stock: dict[Key, int]) -> Counter[int]:
    totals: Counter[int] = Counter()
    for (_, _, equipment, _), qty in stock.items():
        totals[equipment] += qty
    return totals


class ConservationMachine(RuleBasedStateMachine):
    new_db: Callable[[], Database]

    @initialize()
    def start(self) -> None:
        self.db = type(self).new_db()
        self.model = read_stock(self.db)
        self.expected_totals = per_model(self.model)
        self.pending: dict[int, tuple[int, int, list[tuple[int, str, int]]]] = {}

    def teardown(self) -> None:
        if hasattr(self, "db"):
            self.db.dispose()

    def run(self, actor: Actor, work: Callable[[Call], Any]) -> Any:
        return self.db.run(lambda uow: work(Call(uow.session, actor, self.db.settings)))

    def predicted(self, deltas: dict[Key, int]) -> bool:
        return all(self.model.get(k, 0) + d >= 0 for k, d in deltas.items() if k[0] in ("depot", "truck"))

    def apply(self, deltas: dict[Key, int]) -> None:
        for k, d in deltas.items():
            self.model[k] = self.model.get(k, 0) + d

    @staticmethod
    def deltas(depot: int, truck: int, lines: list[tuple[int, str, int]]) -> dict[Key, int]:
        out: Counter[Key] = Counter()
        for equipment, movement, qty in lines:
            if movement == "collection":
                out[("depot", depot, equipment, "full")] -= qty
                out[("truck", truck, equipment, "full")] += qty
            else:
                out[("truck", truck, equipment, "empty")] -= qty
                out[("depot", depot, equipment, "empty")] += qty
        return dict(out)

    def attempt(self, deltas: dict[Key, int], work: Callable[[Call], Any], actor: Actor = DRIVER) -> Any:
        """Run a step; it must apply exactly when the model says the stock suffices."""
        expected = self.predicted(deltas)
        try:
            result = self.run(actor, work)
        except InsufficientStock:
            assert not expected, f"refused although the model has enough: {deltas}"
            return None
        assert expected, f"applied although the model predicted a shortage: {deltas}"
        self.apply(deltas)
        return result

    @rule(depot=st.sampled_from([1, 2]), truck=st.sampled_from([1, 2, 3]), lines=items, confirm=st.booleans())
    def create(self, depot: int, truck: int, lines: list[tuple[int, str, int]], confirm: bool) -> None:
        cmd = DistributionCreate(
            depot=depot,
            truck=truck,
            items=[{"equipment": e, "movement_type": m, "qty": q} for e, m, q in lines],
            confirm=confirm,
        )
        if not confirm:
            d_id = self.run(DRIVER, lambda call: svc.create_distribution(call, cmd).id)
            self.pending[d_id] = (depot, truck, lines)
            return
        self.attempt(self.deltas(depot, truck, lines), lambda call: svc.create_distribution(call, cmd).id)

    @precondition(lambda self: bool(self.pending))
    @rule(pick=st.integers(0, 10_000), as_admin=st.booleans())
    def confirm(self, pick: int, as_admin: bool) -> None:
        d_id = sorted(self.pending)[pick % len(self.pending)]
        depot, truck, lines = self.pending[d_id]
        actor = ADMIN if as_admin else DRIVER
        if self.attempt(self.deltas(depot, truck, lines), lambda call: svc.confirm_distribution(call, d_id).id, actor):
            del self.pending[d_id]

    @precondition(lambda self: bool(self.pending))
    @rule(pick=st.integers(0, 10_000))
    def cancel(self, pick: int) -> None:
        d_id = sorted(self.pending)[pick % len(self.pending)]
        self.run(DRIVER, lambda call: svc.cancel_distribution(call, d_id))
        del self.pending[d_id]

    @rule(
        place=st.sampled_from(["depot", "truck", "site"]),
        holder=st.integers(1, 2),
        equipment=st.sampled_from(EQUIPMENT),
        full=st.integers(-250, 100),
        empty=st.integers(-60, 100),
    )
    def adjust(self, place: str, holder: int, equipment: int, full: int, empty: int) -> None:
        if place == "site":
            fields: dict[str, Any] = {"customer": holder, "on_site_delta": full or 1}
            deltas = {("site", holder, equipment, "on_site"): full or 1}
        else:
            full, empty = (full, empty) if (full or empty) else (1, 0)
            fields = {place: holder, "full_delta": full, "empty_delta": empty}
            deltas = {
                k: v
                for k, v in {
                    (place, holder, equipment, "full"): full,
                    (place, holder, equipment, "empty"): empty,
                }.items()
                if v
            }
        cmd = StockAdjustmentCreate(place=place, equipment=equipment, reason="property test", **fields)
        if self.attempt(deltas, lambda call: svc.adjust_stock(call, cmd).id, ADMIN) is not None:
            for k, v in deltas.items():
                self.expected_totals[k[2]] += v

    @invariant()
    def conserved(self) -> None:
        if not hasattr(self, "db"):
            return
        stock = read_stock(self.db)
        assert {k: v for k, v in stock.items() if v} == {k: v for k, v in self.model.items() if v}
        assert all(v >= 0 for k, v in stock.items() if k[0] != "site")
        totals = self.db.read(lambda s: stock_totals(s))
        for t, equipment in zip(totals, EQUIPMENT, strict=True):
            assert t["total"] == self.expected_totals[equipment], (t, self.expected_totals)
        statuses = self.db.read(lambda s: dict(s.execute(select(Distribution.id, Distribution.status)).all()))
        assert {i for i, st_ in statuses.items() if st_ == "pending"} == set(self.pending)


def database_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Database]:
    """A fresh database with the demo data for every example."""
    if ENGINE == "mysql":
        engine = request.getfixturevalue("mysql_engine")

        def fresh_mysql() -> Database:
            empty_mysql(engine)
            db = Database(make_settings(MYSQL_URL))
            load_demo(db)
            return db

        return fresh_mysql
    template = tmp_path / "demo.db"
    shutil.copyfile(request.getfixturevalue("sqlite_template"), template)
    seed = Database(make_settings(f"sqlite:///{template}"))
    load_demo(seed)
    seed.dispose()
    engine = create_engine(f"sqlite:///{template}")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    numbers = itertools.count()

    def fresh_sqlite() -> Database:
        target = tmp_path / f"example-{next(numbers)}.db"
        shutil.copyfile(template, target)
        return Database(make_settings(f"sqlite:///{target}"))

    return fresh_sqlite


def test_conservation_per_model_after_every_step(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    factory = database_factory(request, tmp_path)

    class Machine(ConservationMachine):
        new_db = staticmethod(factory)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=25 if ENGINE == "sqlite" else 12,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
