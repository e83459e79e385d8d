"""Properties of the sales engine (Hypothesis): money is exact Decimal arithmetic, never a float; and sales
neither create nor destroy cylinders (only explicit adjustments do)."""

from __future__ import annotations

from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from domain.catalog.models import Meter
from domain.db import Database
from domain.errors import DomainError, InsufficientStock
from domain.invoicing.docs import invoice_doc
from domain.invoicing.models import Invoice
from domain.logistics.models import SiteStock, TruckStock
from domain.logistics.stock import StockKey, lock_stock_rows
from domain.sales import pricing
from domain.sales.services import cancel_transaction, confirm_transaction
from tests.support.sales_support import CODES, run, sell

CENT = Decimal("0.01")
DB_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def exact(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


prices = st.decimals(min_value=Decimal("0"), max_value=Decimal("9999.99"), places=2)
rates = st.decimals(min_value=Decimal("0"), max_value=Decimal("99.9999"), places=4)
kgs = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("50.00"), places=2)
qtys = st.integers(min_value=1, max_value=500)
gas_left = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9.00"), places=2)  # fits any one cylinder


@st.composite
def priced_lines(draw: Any) -> list[tuple[Decimal, Decimal]]:
    """(qty, unit price) pairs of every kind a transaction has: usage, cylinders, credits, services."""
    lines = []
    if draw(st.booleans()):
        lines.append((draw(st.decimals(min_value=Decimal("0"), max_value=Decimal("99999.99"), places=2)), draw(rates)))
    lines += [(Decimal(draw(qtys)), draw(prices)) for _ in range(draw(st.integers(0, 6)))]
    lines += [(draw(kgs), -draw(rates)) for _ in range(draw(st.integers(0, 3)))]
    return lines


@settings(max_examples=300)
@given(priced_lines(), st.sampled_from([Decimal("0.09"), Decimal("0.08"), Decimal("0.07"), Decimal("0")]))
def test_totals_are_the_exact_decimal_sum_of_the_rounded_lines(
    lines: list[tuple[Decimal, Decimal]], rate: Decimal
) -> None:
    amounts = [pricing.service_line("X", "x", 1, Decimal("0")).amount]  # a zero line changes nothing
    amounts += [pricing.line_amount(qty, price) for qty, price in lines]
    sums = pricing.totals(amounts, rate)
    expected_subtotal = sum((exact(qty * price) for qty, price in lines), Decimal("0"))
    assert sums.subtotal == expected_subtotal
    assert sums.gst == exact(expected_subtotal * rate)
    assert sums.total == sums.subtotal + sums.gst
    for value in (sums.subtotal, sums.gst, sums.total, *amounts):
        assert type(value) is Decimal and value.as_tuple().exponent == -2


# -- on the database -----------------------------------------------------------------------------------

deliveries = st.lists(
    st.one_of(
        st.builds(
            lambda c, q: {"equipment": c, "kind": "full_deliver", "qty": q},
            st.sampled_from(list(CODES.values())),
            st.integers(1, 9),
        ),
        st.builds(
            lambda c, q: {"equipment": c, "kind": "empty_return", "qty": q},
            st.sampled_from(list(CODES.values())),
            st.integers(1, 9),
        ),
        st.builds(
            lambda c, q, kg: {"equipment": c, "kind": "half_return", "qty": q, "remaining_kg": str(kg)},
            st.sampled_from(list(CODES.values())),
            st.integers(1, 3),
            gas_left,
        ),
    ),
    max_size=5,
)
services = st.lists(
    st.builds(
        lambda c, q: {"code": c, "qty": q}, st.sampled_from(["INSTALL", "DEPOSIT", "DELIVERY"]), st.integers(1, 4)
    ),
    max_size=3,
)


def no_floats(value: Any) -> None:
    assert not isinstance(value, float), value
    if isinstance(value, dict):
        for v in value.values():
            no_floats(v)
    elif isinstance(value, list):
        for v in value:
            no_floats(v)


@DB_SETTINGS
@given(
    customer=st.integers(1, 5),
    usage=st.none() | st.decimals(min_value=Decimal("0"), max_value=Decimal("9999.99"), places=2),
    lines=deliveries,
    fees=services,
)
def test_random_sales_give_invoices_whose_total_is_the_exact_decimal_sum(
    demo: Database, customer: int, usage: Decimal | None, lines: list, fees: list
) -> None:
    demo.run(lambda uow: uow.session.execute(update(TruckStock).values(full=100_000)))
    meter = None
    if usage is not None:
        last = demo.read(lambda s: s.scalars(select(Meter.last_reading).where(Meter.customer_id == customer)).one())
        meter = str((last or Decimal("0")) + usage)
    if meter is None and not lines and not fees:
        fees = [{"code": "DELIVERY", "qty": 1}]
    outcome = sell(demo, customer=customer, meter=meter, deliveries=lines, services=fees)
    inv_id = outcome.related["invoice"].id
    doc = demo.read(lambda s: invoice_doc(s, s.get(Invoice, inv_id)))
    wire = orjson.loads(orjson.dumps(doc))
    no_floats(wire)
    amounts = [Decimal(line["amount"]) for line in wire["lines"]]
    for line in wire["lines"]:
        assert Decimal(line["amount"]) == exact(Decimal(line["qty"]) * Decimal(line["unit_price"]))
    subtotal = sum(amounts, Decimal("0"))
    assert Decimal(wire["subtotal"]) == subtotal
    assert Decimal(wire["gst"]) == exact(subtotal * Decimal("0.09"))
    assert Decimal(wire["total"]) == subtotal + Decimal(wire["gst"])
    assert len(wire["lines"]) == (meter is not None) + len(lines) + len(fees)
    trx = outcome.record
    assert (trx.subtotal, trx.gst, trx.total) == (
        Decimal(wire["subtotal"]),
        Decimal(wire["gst"]),
        Decimal(wire["total"]),
    )


# -- conservation --------------------------------------------------------------------------------------


def totals_per_model(db: Database) -> Counter[int]:
    """Cylinders of each model on trucks (full + empty) and at customer sites."""

    def read(session: Any) -> Counter[int]:
        out: Counter[int] = Counter()
        for t in session.scalars(select(TruckStock)):
            assert t.full >= 0 and t.empty >= 0
            out[t.equipment_id] += t.full + t.empty
        for s in session.scalars(select(SiteStock)):
            out[s.equipment_id] += s.on_site
        return out

    return db.read(read)


def nonzero(counts: Counter[int]) -> dict[int, int]:
    return {k: v for k, v in counts.items() if v}


def adjust(db: Database, key: StockKey, column: str, delta: int) -> int:
    """An explicit stock adjustment (our own, standing in for the admin's): the only way cylinders appear
    or vanish. A truck is never adjusted below zero; returns the delta applied."""

    def work(uow: Any) -> int:
        row = lock_stock_rows(uow.session, [key])[key]
        applied = max(delta, -getattr(row, column)) if key.place == "truck" else delta
        setattr(row, column, getattr(row, column) + applied)
        row.touch()
        return applied

    return db.run(work)


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("sale"),
            st.integers(1, 5),
            st.integers(1, 3),
            deliveries,
            st.sampled_from(["now", "draft", "cancel"]),
        ),
        st.tuples(
            st.just("adjust"),
            st.sampled_from(["truck", "site"]),
            st.integers(1, 3),
            st.integers(1, 4),
            st.integers(-15, 15),
        ),
    ),
    min_size=1,
    max_size=12,
)


@DB_SETTINGS
@given(ops=operations)
def test_sales_conserve_cylinders_over_trucks_and_sites_apart_from_adjustments(demo: Database, ops: list) -> None:
    expected = totals_per_model(demo)
    for op in ops:
        if op[0] == "adjust":
            _, place, holder, equipment, delta = op
            column = "full" if place == "truck" else "on_site"
            expected[equipment] += adjust(demo, StockKey(place, holder, equipment), column, delta)
        else:
            _, customer, truck, lines, mode = op
            try:
                outcome = sell(
                    demo,
                    customer=customer,
                    truck=truck,
                    deliveries=lines or None,
                    services=None if lines else [{"code": "DELIVERY"}],
                    confirm=mode == "now",
                )
                if mode == "draft":
                    run(demo, lambda call, t=outcome.id: confirm_transaction(call, t))
                elif mode == "cancel":
                    run(demo, lambda call, t=outcome.id: cancel_transaction(call, t))
            except InsufficientStock:
                pass
            except DomainError as exc:  # nothing else may refuse these sales
                raise AssertionError(exc) from exc
        assert nonzero(totals_per_model(demo)) == nonzero(expected)
