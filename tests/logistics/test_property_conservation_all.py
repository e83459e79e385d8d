"""Conservation across distributions, transactions, adjustments and meter readings together (issues 5/6).

A Hypothesis state machine drives random sequences of create / confirm / cancel distributions,
create / confirm / cancel transactions (full_deliver, empty_return, half_return, with or without a meter
reading), admin stock adjustments and meter readings without a sale, through the real service functions,
each in its own `Database.run` unit, as the REST handlers and the reconciler run them.

A model predicts every step's fate: a depot or truck quantity that would go below zero is
`insufficient_stock`, a reading below the meter's last one is `meter_regression`; everything else applies
(a customer site may go negative: a warning, not a refusal). After every step:

- the database holds exactly the model's stock;
- per equipment model, depot + truck + site == the demo's total + the sum of applied adjustments;
- no depot or truck quantity is below zero;
- a refused step changed nothing: every table (stock, counters, numbers, meters, transactions, invoices,
  audit log, change feed, ...) is exactly as before it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from domain.accounts.policy import Actor
from domain.catalog.models import Meter
from domain.db import Database
from domain.errors import InsufficientStock, MeterRegression
from domain.logistics import services as logistics
from domain.logistics.queries import stock_totals
from domain.logistics.schemas import DistributionCreate, StockAdjustmentCreate
from domain.sales import services as sales
from domain.sales.models import Transaction
from domain.sales.schemas import MeterReadingCreate
from domain.service import Call
from domain.wire import parse
from tests.conftest import ENGINE
from tests.logistics.test_property_conservation import database_factory, per_model, read_stock
from tests.support.sales_support import CODES, sale, when
from tests.support.sync_support import table_fingerprint

DRIVER = Actor(2, "driver1", "driver")
ADMIN = Actor(1, "admin", "admin")
EQUIPMENT = (1, 2, 3, 4)
CUSTOMERS = (1, 2, 3)
Key = tuple[str, int, int, str]  # place, holder, equipment, state
Line = tuple[int, str, int]  # equipment, kind / movement, qty

distribution_lines = st.lists(
    st.tuples(
        st.sampled_from(EQUIPMENT), st.sampled_from(["collection", "collection", "empty_return"]), st.integers(1, 60)
    ),
    min_size=1,
    max_size=3,
)
delivery_lines = st.lists(
    st.tuples(
        st.sampled_from(EQUIPMENT), st.sampled_from(["full_deliver", "empty_return", "half_return"]), st.integers(1, 12)
    ),
    max_size=3,
)
readings = st.none() | st.integers(0, 40).map(lambda n: Decimal(n) / 2)


def distribution_deltas(depot: int, truck: int, lines: list[Line]) -> dict[Key, int]:
    out: Counter[Key] = Counter()
    for equipment, movement, qty in lines:
        if movement == "collection":
            out[("depot", depot, equipment, "full")] -= qty
            out[("truck", truck, equipment, "full")] += qty
        else:
            out[("truck", truck, equipment, "empty")] -= qty
            out[("depot", depot, equipment, "empty")] += qty
    return dict(out)


def sale_deltas(customer: int, truck: int, lines: list[Line]) -> dict[Key, int]:
    """full_deliver: truck.full -> site; empty_return and half_return: site -> truck.empty."""
    out: Counter[Key] = Counter()
    for equipment, kind, qty in lines:
        if kind == "full_deliver":
            out[("truck", truck, equipment, "full")] -= qty
            out[("site", customer, equipment, "on_site")] += qty
        else:
            out[("site", customer, equipment, "on_site")] -= qty
            out[("truck", truck, equipment, "empty")] += qty
    return dict(out)


def delivery_payload(lines: list[Line]) -> list[dict[str, Any]]:
    out = []
    for equipment, kind, qty in lines:
        line: dict[str, Any] = {"equipment": CODES[equipment], "kind": kind, "qty": qty}
        if kind == "half_return":
            line["remaining_kg"] = "1.50"
        out.append(line)
    return out


def meters(db: Database) -> dict[int, Decimal | None]:
    return db.read(lambda s: dict(s.execute(select(Meter.customer_id, Meter.last_reading)).all()))


class AllConservation(RuleBasedStateMachine):
    new_db: Callable[[], Database]

    @initialize()
    def start(self) -> None:
        self.db = type(self).new_db()
        self.model = read_stock(self.db)
        self.expected_totals = per_model(self.model)
        self.last_reading: dict[int, Decimal | None] = meters(self.db)
        self.pending: dict[int, tuple[int, int, list[Line]]] = {}  # distribution id -> depot, truck, lines
        self.drafts: dict[int, tuple[int, int, list[Line], Decimal | None]] = {}  # transaction id -> ...
        self.steps: Counter[str] = Counter()

    def teardown(self) -> None:
        if hasattr(self, "db"):
            for name in self.steps:
                event(name)  # `pytest --hypothesis-show-statistics` shows how often each step applied or was refused
            self.db.dispose()

    # -- the model --------------------------------------------------------------------------------------

    def stock_refusal(self, deltas: dict[Key, int]) -> bool:
        return any(self.model.get(k, 0) + d < 0 for k, d in deltas.items() if k[0] in ("depot", "truck"))

    def regression(self, customer: int, reading: Decimal | None) -> bool:
        last = self.last_reading.get(customer)
        return reading is not None and last is not None and reading < last

    def attempt(
        self,
        name: str,
        work: Callable[[Call], Any],
        *,
        actor: Actor = DRIVER,
        deltas: dict[Key, int] | None = None,
        meter: tuple[int, Decimal | None] | None = None,
    ) -> Any:
        """Run one step in its own unit. It must be refused exactly when the model says so, with the
        model's reason, and a refused step must leave every table as it was."""
        refusals: set[type[Exception]] = set()
        if deltas is not None and self.stock_refusal(deltas):
            refusals.add(InsufficientStock)
        if meter is not None and self.regression(*meter):
            refusals.add(MeterRegression)
        before = table_fingerprint(self.db)
        try:
            result = self.db.run(lambda uow: work(Call(uow.session, actor, self.db.settings)))
        except (InsufficientStock, MeterRegression) as exc:
            assert type(exc) in refusals, f"{name}: refused ({exc.code}) although the model allows it: {exc}"
            assert table_fingerprint(self.db) == before, f"{name}: a refused step changed the database"
            self.steps[f"{name} refused"] += 1
            return None
        assert not refusals, f"{name}: applied although the model predicted {refusals}"
        for k, d in (deltas or {}).items():
            self.model[k] = self.model.get(k, 0) + d
        if meter is not None and meter[1] is not None:
            self.last_reading[meter[0]] = meter[1]
        self.steps[name] += 1
        return result

    # -- distributions (Workflow A) --------------------------------------------------------------------------

    @rule(depot=st.sampled_from([1, 2]), truck=st.sampled_from([1, 2]), lines=distribution_lines, confirm=st.booleans())
    def create_distribution(self, depot: int, truck: int, lines: list[Line], confirm: bool) -> None:
        cmd = parse(
            DistributionCreate,
            {
                "depot": depot,
                "truck": truck,
                "confirm": confirm,
                "items": [{"equipment": e, "movement_type": m, "qty": q} for e, m, q in lines],
            },
        )
        deltas = distribution_deltas(depot, truck, lines) if confirm else {}
        d_id = self.attempt(
            "distribution.create", lambda call: logistics.create_distribution(call, cmd).id, deltas=deltas
        )
        if d_id is not None and not confirm:
            self.pending[d_id] = (depot, truck, lines)

    @precondition(lambda self: bool(self.pending))
    @rule(pick=st.integers(0, 10_000), as_admin=st.booleans())
    def confirm_distribution(self, pick: int, as_admin: bool) -> None:
        d_id = sorted(self.pending)[pick % len(self.pending)]
        depot, truck, lines = self.pending[d_id]
        done = self.attempt(
            "distribution.confirm",
            lambda call: logistics.confirm_distribution(call, d_id).id,
            actor=ADMIN if as_admin else DRIVER,
            deltas=distribution_deltas(depot, truck, lines),
        )
        if done is not None:
            del self.pending[d_id]

    @precondition(lambda self: bool(self.pending))
    @rule(pick=st.integers(0, 10_000))
    def cancel_distribution(self, pick: int) -> None:
        d_id = sorted(self.pending)[pick % len(self.pending)]
        self.attempt("distribution.cancel", lambda call: logistics.cancel_distribution(call, d_id).id, deltas={})
        del self.pending[d_id]

    # -- transactions (Workflow B) ---------------------------------------------------------------------------

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        truck=st.sampled_from([1, 2]),
        lines=delivery_lines,
        reading=readings,
        confirm=st.booleans(),
    )
    def create_transaction(
        self, customer: int, truck: int, lines: list[Line], reading: Decimal | None, confirm: bool
    ) -> None:
        if not lines and reading is None:
            reading = Decimal("0") if self.last_reading.get(customer) is None else self.last_reading[customer]
        cmd = sale(
            customer=customer,
            truck=truck,
            deliveries=delivery_payload(lines),
            meter=None if reading is None else str(reading),
            confirm=confirm,
        )
        t_id = (
            self.attempt(
                "transaction.create",
                lambda call: sales.create_transaction(call, cmd).id,
                deltas=sale_deltas(customer, truck, lines) if confirm else {},
                meter=(customer, reading) if confirm else (customer, None),
            )
            if confirm
            else self.create_draft(customer, reading, cmd)
        )
        if t_id is not None and not confirm:
            self.drafts[t_id] = (customer, truck, lines, reading)

    def create_draft(self, customer: int, reading: Decimal | None, cmd: Any) -> Any:
        """A draft moves nothing and records no reading, but its reading is judged already."""
        refused = self.regression(customer, reading)
        before = table_fingerprint(self.db)
        try:
            t_id = self.db.run(
                lambda uow: sales.create_transaction(Call(uow.session, DRIVER, self.db.settings), cmd).id
            )
        except MeterRegression:
            assert refused, "a draft's reading was refused although it is not below the last one"
            assert table_fingerprint(self.db) == before, "a refused draft changed the database"
            self.steps["transaction.create draft refused"] += 1
            return None
        assert not refused, "a draft with a regressing reading was accepted"
        self.steps["transaction.create draft"] += 1
        return t_id

    @precondition(lambda self: bool(self.drafts))
    @rule(pick=st.integers(0, 10_000), as_admin=st.booleans())
    def confirm_transaction(self, pick: int, as_admin: bool) -> None:
        t_id = sorted(self.drafts)[pick % len(self.drafts)]
        customer, truck, lines, reading = self.drafts[t_id]
        done = self.attempt(
            "transaction.confirm",
            lambda call: sales.confirm_transaction(call, t_id).id,
            actor=ADMIN if as_admin else DRIVER,
            deltas=sale_deltas(customer, truck, lines),
            meter=(customer, reading),
        )
        if done is not None:
            del self.drafts[t_id]

    @precondition(lambda self: bool(self.drafts))
    @rule(pick=st.integers(0, 10_000))
    def cancel_transaction(self, pick: int) -> None:
        t_id = sorted(self.drafts)[pick % len(self.drafts)]
        self.attempt("transaction.cancel", lambda call: sales.cancel_transaction(call, t_id).id, deltas={})
        del self.drafts[t_id]

    # -- adjustments and readings --------------------------------------------------------------------------

    @rule(
        place=st.sampled_from(["depot", "truck", "site"]),
        holder=st.integers(1, 2),
        equipment=st.sampled_from(EQUIPMENT),
        full=st.integers(-60, 40),
        empty=st.integers(-30, 30),
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
        cmd = parse(StockAdjustmentCreate, {"place": place, "equipment": equipment, "reason": "property", **fields})
        if self.attempt("adjust", lambda call: logistics.adjust_stock(call, cmd).id, actor=ADMIN, deltas=deltas):
            for k, v in deltas.items():
                self.expected_totals[k[2]] += v

    @rule(customer=st.sampled_from(CUSTOMERS), reading=st.integers(0, 40).map(lambda n: Decimal(n) / 2))
    def read_meter(self, customer: int, reading: Decimal) -> None:
        cmd = parse(MeterReadingCreate, {"customer": customer, "reading": str(reading), "occurred_at": when()})
        self.attempt(
            "meter_reading.create", lambda call: sales.record_meter_reading(call, cmd).id, meter=(customer, reading)
        )

    # -- after every step ----------------------------------------------------------------------------------

    @invariant()
    def conserved(self) -> None:
        if not hasattr(self, "db"):
            return
        stock = read_stock(self.db)
        assert {k: v for k, v in stock.items() if v} == {k: v for k, v in self.model.items() if v}
        assert all(v >= 0 for k, v in stock.items() if k[0] != "site"), stock
        totals = self.db.read(lambda s: stock_totals(s))
        for t, equipment in zip(totals, EQUIPMENT, strict=True):
            assert t["total"] == self.expected_totals[equipment], (t, self.expected_totals)
            parts = sum(t["depot"].values()) + sum(t["truck"].values()) + t["site"]["on_site"]
            assert parts == t["total"], t
        totals_now = per_model(stock)
        assert {e: totals_now[e] for e in EQUIPMENT} == {e: self.expected_totals[e] for e in EQUIPMENT}
        assert meters(self.db) == self.last_reading
        drafts = self.db.read(lambda s: set(s.scalars(select(Transaction.id).where(Transaction.status == "draft"))))
        assert drafts == set(self.drafts)


def test_conservation_across_distributions_sales_adjustments_and_readings(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    factory = database_factory(request, tmp_path)

    class Machine(AllConservation):
        new_db = staticmethod(factory)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=40 if ENGINE == "sqlite" else 12,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
