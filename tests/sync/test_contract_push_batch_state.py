"""A batch runs in one transaction and writes its records at the end: later changes of the batch must still
see what earlier ones did (meters, readings, prices, stock, numbers), and the statement count must not grow
with the batch (the fast path of sync-protocol.md "Push", issue 7's design)."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import event, select
from starlette.testclient import TestClient

from domain.audit.models import AuditEntry
from domain.audit.verify import verify_chain
from domain.catalog.models import Customer, Meter
from domain.catalog.services import CUSTOMERS
from domain.db import Database
from domain.errors import ValidationError
from domain.feed.models import Counter, FeedEntry
from domain.invoicing.models import Invoice, InvoiceLine
from domain.ledger import flush_all, stage
from domain.sales.models import MeterReading, Transaction
from domain.service import Call, Outcome
from reconcile.ops import OPS, Op
from tests.support.sync_support import by_temp_id, push, recent
from tests.support.sync_support import confirmed_sale as sale


def test_readings_of_one_batch_build_on_each_other(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    """A new customer without a meter: the first reading creates the meter (baseline), the next one bills
    usage from it, a lower one is refused, and exactly one meter exists afterwards."""
    changes = [
        {"client_temp_id": "c-1", "op": "customer.create", "data": {"name": "Meterless Kopitiam", "address": "1 Rd"}},
        sale("s-1", "c-1", reading="100.00"),
        sale("s-2", "c-1", reading="130.50"),
        sale("s-3", "c-1", reading="120.00"),
        sale("s-4", "c-1", reading="131.00"),
    ]
    results = by_temp_id(push(client, driver_headers, changes))
    assert [results[t]["status"] for t in ("c-1", "s-1", "s-2", "s-3", "s-4")] == [
        "applied", "applied", "applied", "rejected", "applied",
    ]  # fmt: skip
    assert results["s-3"]["error"]["code"] == "meter_regression"
    assert results["s-3"]["error"]["details"]["last"] == "130.50"
    customer_id = results["c-1"]["id"]

    def read(s: Any) -> Any:
        meters = s.scalars(select(Meter).where(Meter.customer_id == customer_id)).all()
        readings = s.execute(
            select(MeterReading.reading, MeterReading.previous_reading, MeterReading.usage, MeterReading.meter_id)
            .where(MeterReading.customer_id == customer_id)
            .order_by(MeterReading.id)
        ).all()
        usages = (
            s.execute(select(Transaction.usage).where(Transaction.customer_id == customer_id).order_by(Transaction.id))
            .scalars()
            .all()
        )
        return meters, readings, usages

    meters, readings, usages = demo.read(read)
    assert len(meters) == 1 and meters[0].last_reading == Decimal("131.00")
    assert [(r[0], r[1], r[2]) for r in readings] == [
        (Decimal("100.00"), None, Decimal("0.00")),
        (Decimal("130.50"), Decimal("100.00"), Decimal("30.50")),
        (Decimal("131.00"), Decimal("130.50"), Decimal("0.50")),
    ]
    assert {r[3] for r in readings} == {meters[0].id}
    assert usages == [Decimal("0.00"), Decimal("30.50"), Decimal("0.50")]


def test_an_admin_price_change_prices_the_next_sale_of_the_same_batch(
    client: TestClient, admin_headers: dict[str, str], demo: Database
) -> None:
    changes = [
        sale("a-1", 1),
        {
            "client_temp_id": "a-2",
            "op": "customer.update",
            "data": {"id": 1, "prices": {"equipment": {"CYL12.7": "30.00"}}},
        },
        sale("a-3", 1),
        {
            "client_temp_id": "a-4",
            "op": "customer.update",
            "data": {"id": 1, "prices": {"equipment": {"CYL12.7": None}}},
        },
        sale("a-5", 1),
    ]
    results = by_temp_id(push(client, admin_headers, changes, device="office-pc"))
    assert {r["status"] for r in results.values()} == {"applied"}, results
    invoices = [results[t]["related"]["invoice"]["id"] for t in ("a-1", "a-3", "a-5")]

    def prices(s: Any) -> list[Decimal]:
        return [
            s.execute(
                select(InvoiceLine.unit_price).where(InvoiceLine.invoice_id == i, InvoiceLine.kind == "delivery")
            ).scalar_one()
            for i in invoices
        ]

    assert demo.read(prices) == [Decimal("32.90"), Decimal("30.00"), Decimal("32.90")]


def test_stock_and_numbers_of_a_batch_add_up(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    """Truck 1 holds 20 x CYL12.7: 7 sales of 3 sell 18; the 7th (21) is refused; numbers have no gap and
    each series' counter row is left at its last number."""
    changes = [sale(f"n-{i}", 1 + i % 3, qty=3) for i in range(7)]
    results = by_temp_id(push(client, driver_headers, changes))
    assert [results[f"n-{i}"]["status"] for i in range(7)] == ["applied"] * 6 + ["rejected"]
    assert results["n-6"]["error"]["code"] == "insufficient_stock"
    assert results["n-6"]["error"]["details"]["available"] == 2

    def read(s: Any) -> Any:
        trx = s.scalars(select(Transaction.number).order_by(Transaction.id)).all()
        inv = s.scalars(select(Invoice.number).order_by(Invoice.id)).all()
        counters = {c.name: c.value for c in s.scalars(select(Counter))}
        return trx, inv, counters

    trx, inv, counters = demo.read(read)
    assert [int(n[-6:]) for n in trx] == list(range(1, 7)) and [int(n[-6:]) for n in inv] == list(range(1, 7))
    assert trx == [results[f"n-{i}"]["number"] for i in range(6)]
    year = trx[0].split("-")[1]
    assert counters[f"TRX-{year}"] == 6 and counters[f"INV-{year}"] == 6


def test_statements_do_not_grow_with_the_batch(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    """Confirmed sales are checked against rows locked once and written together: 2, 4 or 12 sales cost
    the same number of statements (on MariaDB one more past the one-trip statement's size), apart from SQLite's row-at-a-time INSERT ... RETURNING (no round trips
    there). A service that flushed or queried per sale would make the count grow with the batch."""
    statements: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    def cost(prefix: str, n: int) -> int:
        statements.clear()
        event.listen(demo.engine, "before_cursor_execute", listen)
        try:
            response = push(client, driver_headers, [sale(f"{prefix}-{i}", 1 + i % 2) for i in range(n)])
        finally:
            event.remove(demo.engine, "before_cursor_execute", listen)
        assert {r["status"] for r in response["results"]} == {"applied"}
        if demo.dialect == "sqlite":
            return sum(1 for s in statements if not (s.startswith("INSERT") and "RETURNING" in s))
        return len(statements)

    cost("warm", 2)  # first use of the number series and of both sites' stock rows
    small, medium, large = cost("s", 2), cost("m", 4), cost("l", 12)  # truck 1 holds 20 x CYL12.7
    assert medium == small, (small, medium)
    # On MariaDB 12 sales write more feed rows than the one-trip statement takes (domain.ledger.ONE_TRIP_ROWS):
    # the late lock is then a statement of its own, and that is the only difference.
    assert large == small + (1 if demo.dialect == "mysql" else 0), (small, large)


def test_a_change_that_refuses_after_writing_sends_the_batch_change_by_change(
    client: TestClient,
    driver_headers: dict[str, str],
    demo: Database,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path trusts services to check before they write. An op that breaks that rule (injected
    here: it writes the batch's staged customers, stages one of its own, then refuses) trips the wire:
    the batch is run again with a savepoint per change. The refused change's savepoint also took the
    earlier changes' customers it had written: they are written again, exactly once."""

    def faulty(call: Call, command: Any) -> Outcome:
        flush_all(call.session)  # writes f-0's staged customer inside this change's savepoint
        stage(call.session, CUSTOMERS, {"name": "Never Written", "address": "x", "meter_rate": Decimal("0"),
                                        "active": True, "version": 1, "last_modified": call.now})  # fmt: skip
        raise ValidationError("refused after writing", "data.id")

    op = OPS["customer.update"]
    monkeypatch.setitem(OPS, "customer.update", Op(op.name, op.entity, op.command, faulty))
    changes = [
        {"client_temp_id": "f-0", "op": "customer.create", "data": {"name": "Plain One", "address": "1 Rd"}},
        {"client_temp_id": "f-1", "op": "customer.update", "data": {"id": 1, "phone": "+65 6000 0001"}},
        {"client_temp_id": "f-2", "op": "customer.create", "data": {"name": "Plain Two", "address": "2 Rd"}},
        sale("f-3", "f-0", reading="10.00"),
    ]
    with caplog.at_level(logging.INFO, logger="lpg.reconcile"):
        results = by_temp_id(push(client, driver_headers, changes))
    assert any("applying change by change" in r.getMessage() for r in caplog.records)
    assert {t: r["status"] for t, r in results.items()} == {
        "f-0": "applied", "f-1": "rejected", "f-2": "applied", "f-3": "applied",
    }  # fmt: skip

    def read(s: Any) -> Any:
        wanted = ["Plain One", "Plain Two", "Never Written"]
        rows = s.execute(select(Customer.name, Customer.id).where(Customer.name.in_(wanted))).all()
        buyer = s.execute(select(Transaction.customer_id).where(Transaction.id == results["f-3"]["id"])).scalar_one()
        return sorted(rows), buyer

    rows, buyer = demo.read(read)
    assert rows == [("Plain One", results["f-0"]["id"]), ("Plain Two", results["f-2"]["id"])]
    assert buyer == results["f-0"]["id"]
    assert verify_chain(demo).ok


DETAIL = {
    "customer": "/api/v1/customers/{}/",
    "transaction": "/api/v1/transactions/{}/",
    "invoice": "/api/v1/invoices/{}/",
    "meter_reading": "/api/v1/meter-readings/{}/",
}


def test_staged_records_documents_equal_their_rest_representations(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    """New customers, confirmed sales, their invoices and readings are written as staged rows and their
    documents built from them: the feed docs and the audit entries' `after` must be exactly what the REST
    API answers once they are in the database."""
    changes = [
        {"client_temp_id": "d-1", "op": "customer.create", "data": {"name": "Doc Kopitiam", "address": "9 Rd"}},
        sale("d-2", "d-1", reading="12.30"),
        {
            "client_temp_id": "d-3",
            "op": "transaction.create",
            "data": {
                "customer": 2,
                "truck": 1,
                "confirm": True,
                "occurred_at": recent(),
                "meter": {"reading": "99999.00"},
                "deliveries": [
                    {"equipment": "CYL12.7", "kind": "full_deliver", "qty": 2},
                    {"equipment": "CYL9", "kind": "half_return", "qty": 1, "remaining_kg": "3.5"},
                ],
                "services": [{"code": "INSTALL", "qty": 1}, {"code": "DELIVERY", "qty": 2}],
            },
        },
        {
            "client_temp_id": "d-4",
            "op": "meter_reading.create",
            "data": {"customer": 3, "reading": "88888.00", "occurred_at": recent()},
        },
    ]
    results = by_temp_id(push(client, driver_headers, changes))
    assert {r["status"] for r in results.values()} == {"applied"}, results
    wanted = {
        ("customer", results["d-1"]["id"]),
        ("transaction", results["d-2"]["id"]),
        ("transaction", results["d-3"]["id"]),
        ("invoice", results["d-2"]["related"]["invoice"]["id"]),
        ("invoice", results["d-3"]["related"]["invoice"]["id"]),
        ("meter_reading", results["d-4"]["id"]),
    }

    def read(s: Any) -> Any:
        feed = {(e.entity, e.entity_id): orjson.loads(e.doc) for e in s.scalars(select(FeedEntry))}
        audits = {}
        for a in s.scalars(select(AuditEntry).where(AuditEntry.action.in_(["create", "confirm"]))):
            audits[(a.entity_type, a.entity_id)] = orjson.loads(a.context).get("after")
        return feed, audits

    feed, audits = demo.read(read)
    readings = {
        ("meter_reading", r["id"])
        for r in client.get("/api/v1/meter-readings/", headers=driver_headers).json()["results"]
    }
    for key in sorted(wanted | readings):
        rest = client.get(DETAIL[key[0]].format(key[1]), headers=driver_headers)
        assert rest.status_code == 200, key
        assert feed[key] == rest.json(), key
        if key[0] != "customer":  # a reading republishes its customer: its create entry shows version 1
            assert audits[key] == rest.json(), key


def test_a_stock_value_the_database_refuses_at_the_commit_refuses_only_its_change(
    client: TestClient, driver_headers: dict[str, str], demo: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stock rows changed by a batch are written with the commit's locked writes. Should the database
    refuse a value there (a CHECK: a truck below zero, which the service's own check normally refuses
    first; switched off here), nothing of the batch is kept from that attempt: it runs again change by
    change, and only the offending change is refused."""
    from domain.logistics.models import TruckStock
    from domain.sales import planning

    monkeypatch.setattr(planning, "_refuse_short_truck", lambda *args: None)
    before = demo.read(
        lambda s: {(r.truck_id, r.equipment_id): (r.full, r.version) for r in s.scalars(select(TruckStock))}
    )
    changes = [
        sale("ok-1", 1),
        sale("too-many", 2, qty=100_000),
        {"client_temp_id": "c-after", "op": "customer.create", "data": {"name": "After Kopitiam", "address": "2 Rd"}},
        sale("ok-2", 3),
    ]
    results = by_temp_id(push(client, driver_headers, changes))
    assert {t: r["status"] for t, r in results.items()} == {
        "ok-1": "applied", "too-many": "rejected", "c-after": "applied", "ok-2": "applied",
    }  # fmt: skip
    assert results["too-many"]["error"]["code"] == "invalid_state"
    after = demo.read(
        lambda s: {(r.truck_id, r.equipment_id): (r.full, r.version) for r in s.scalars(select(TruckStock))}
    )
    moved = {key: (before[key], now) for key, now in after.items() if now != before[key]}
    assert len(moved) == 1, moved
    ((full, version), now) = next(iter(moved.values()))
    assert now == (full - 2, version + 2)  # the two sales, once each
    trx = demo.read(lambda s: s.scalars(select(Transaction).where(Transaction.customer_id.in_([1, 2, 3]))).all())
    assert sorted(t.customer_id for t in trx if t.device_id is not None) == [1, 3]


def test_the_rows_a_batch_writes_with_its_commit_read_back_as_the_documents_it_published(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    """A push writes a sale's lines, its invoice's lines and the stock rows with its commit's locked writes,
    not as it goes. Read back from the database afterwards, every record the batch touched gives exactly
    the document its feed entry published, a later change of the batch naming an earlier sale included."""
    from domain.catalog.lookups import equipment_codes
    from domain.invoicing.docs import invoice_doc
    from domain.logistics.docs import FEED_ENTITY, stock_doc
    from domain.sales.docs import transaction_doc

    at = recent()
    two = sale("s-1", 1)
    two["data"]["deliveries"].append({"equipment": "CYL9", "kind": "empty_return", "qty": 2})
    two["data"]["services"] = [{"code": "DELIVERY", "qty": 1}, {"code": "INSTALL", "qty": 2}]
    changes = [
        two,
        {"client_temp_id": "p-1", "op": "invoice.mark_paid",
         "data": {"transaction": "s-1", "amount": "5.00", "method": "cash", "occurred_at": at}},
        sale("s-2", 2, qty=3),
        sale("s-3", 1),
    ]  # fmt: skip
    results = by_temp_id(push(client, driver_headers, changes))
    assert {r["status"] for r in results.values()} == {"applied"}, results

    def published(session: Any) -> dict[tuple[str, int], Any]:
        latest: dict[tuple[str, int], Any] = {}
        for entry in session.scalars(select(FeedEntry).order_by(FeedEntry.seq)):
            latest[(entry.entity, entry.entity_id)] = orjson.loads(entry.doc)
        return latest

    def compare(session: Any) -> int:
        latest = published(session)
        compared = 0
        for trx in session.scalars(select(Transaction).where(Transaction.device_id == "tab-017")):
            assert transaction_doc(session, trx) == latest[("transaction", trx.id)]
            invoice = session.scalars(select(Invoice).where(Invoice.transaction_id == trx.id)).one()
            assert invoice_doc(session, invoice) == latest[("invoice", invoice.id)]
            assert len(invoice.lines) == len(trx.deliveries) + len(trx.services)
            compared += 1
        codes = equipment_codes(session)
        for model, entity in FEED_ENTITY.items():
            for row in session.scalars(select(model)):
                if (entity, row.id) in latest and row.version > 1:
                    assert stock_doc(row, codes[row.equipment_id]) == latest[(entity, row.id)]
                    compared += 1
        return compared

    # 3 sales with their invoices; the stock rows they moved: truck 1's CYL12.7 and CYL9, customer 1's
    # CYL12.7 and CYL9, customer 2's CYL12.7
    assert demo.read(compare) == 3 + 5


def test_a_customer_updated_between_two_sales_of_one_batch(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    """A sale reads its customer without the columns a sale never needs (version, stamps, phone); a
    `customer.update` of the same customer later in the batch still checks and moves the real version, and
    the documents published at the commit show the update, whichever change came first."""
    start = demo.read(lambda s: s.get(Customer, 1))
    version, phone = start.version, start.phone
    changes = [
        sale("u-1", 1),
        {
            "client_temp_id": "u-2",
            "op": "customer.update",
            "data": {"id": 1, "base_version": version, "phone": "+65 6111 2222"},
        },
        sale("u-3", 1),
        {
            "client_temp_id": "u-4",
            "op": "customer.update",
            "data": {"id": 1, "base_version": version + 1, "phone": "+65 6333 4444"},
        },
    ]
    results = by_temp_id(push(client, driver_headers, changes))
    assert {r["status"] for r in results.values()} == {"applied"}, results
    assert "conflict" not in results["u-2"] and "conflict" not in results["u-4"], results
    assert (results["u-2"]["version"], results["u-4"]["version"]) == (version + 1, version + 2)
    assert phone != "+65 6333 4444"

    def read(s: Any) -> Any:
        customer = s.get(Customer, 1)
        doc = orjson.loads(
            s.scalars(select(FeedEntry.doc).where(FeedEntry.entity == "customer", FeedEntry.entity_id == 1)).one()
        )
        sales = s.scalars(
            select(Transaction).where(Transaction.number.in_([results["u-1"]["number"], results["u-3"]["number"]]))
        ).all()
        return customer.version, customer.phone, doc, [t.customer_id for t in sales]

    db_version, db_phone, doc, customers = demo.read(read)
    assert (db_version, db_phone) == (version + 2, "+65 6333 4444")
    assert (doc["version"], doc["phone"]) == (version + 2, "+65 6333 4444")
    assert customers == [1, 1]
    assert verify_chain(demo).ok
