"""The meter rule: a sale bills usage from the meter's last *billed* reading; a reading taken without a sale
(an inspection) is kept, audited and judged against the last *recorded* reading, and never moves the
billing baseline, so no gas goes unbilled. Through the services, the REST API and a push."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from domain.audit.models import AuditEntry
from domain.catalog.models import Meter
from domain.db import Database
from domain.errors import MeterRegression
from domain.invoicing.models import Invoice, InvoiceLine
from domain.sales.models import MeterReading
from tests.sales.test_integration_transactions import reading, sell
from tests.support.sales_support import sale_payload, traces, when
from tests.support.sync_support import by_temp_id, push, recent


def meter_of(db: Database, customer: int) -> Meter:
    return db.read(lambda s: s.scalars(select(Meter).where(Meter.customer_id == customer)).one())


def readings(db: Database, customer: int) -> list[tuple[Any, ...]]:
    rows = db.read(
        lambda s: s.scalars(
            select(MeterReading).where(MeterReading.customer_id == customer).order_by(MeterReading.id)
        ).all()
    )
    return [(r.previous_reading, r.reading, r.usage, r.transaction_id is not None) for r in rows]


def test_an_inspection_between_two_sales_leaves_no_gas_unbilled(demo: Database) -> None:
    sell(demo, meter="100.00")  # the baseline
    inspection = reading(demo, 1, "110.00")
    assert inspection.record.previous_reading == Decimal("100.00") and inspection.record.usage == Decimal("10.00")
    meter = meter_of(demo, 1)
    assert (meter.last_reading, meter.last_billed_reading) == (Decimal("110.00"), Decimal("100.00"))
    trx = sell(demo, meter="115.00").record
    # 15.00 x 3.2000 = 48.00: the 10 before the inspection are billed too
    assert (trx.usage, trx.usage_amount) == (Decimal("15.00"), Decimal("48.00"))
    assert readings(demo, 1) == [
        (None, Decimal("100.00"), Decimal("0.00"), True),
        (Decimal("100.00"), Decimal("110.00"), Decimal("10.00"), False),
        (Decimal("100.00"), Decimal("115.00"), Decimal("15.00"), True),
    ]
    meter = meter_of(demo, 1)
    assert (meter.last_reading, meter.last_billed_reading) == (Decimal("115.00"), Decimal("115.00"))

    def usage_line(s: Any) -> InvoiceLine:
        invoice = s.execute(select(Invoice).where(Invoice.transaction_id == trx.id)).scalar_one()
        return next(line for line in invoice.lines if line.kind == "usage")

    assert demo.read(usage_line).qty == Decimal("15.00")


def test_a_sale_below_an_inspection_is_a_regression_naming_both_readings(demo: Database) -> None:
    sell(demo, meter="100.00")
    reading(demo, 1, "110.00")
    before = traces(demo)
    with pytest.raises(MeterRegression) as caught:
        sell(demo, meter="105.00")
    assert (caught.value.details["last"], caught.value.details["current"]) == ("110.00", "105.00")
    with pytest.raises(MeterRegression):
        reading(demo, 1, "109.99")
    assert traces(demo) == before


def test_the_first_reading_is_the_baseline_even_when_taken_without_a_sale(demo: Database) -> None:
    first = reading(demo, 3, "40.00")
    assert (first.record.previous_reading, first.record.usage) == (None, Decimal("0.00"))
    assert meter_of(demo, 3).last_billed_reading == Decimal("40.00")
    reading(demo, 3, "41.00")
    assert meter_of(demo, 3).last_billed_reading == Decimal("40.00")
    assert sell(demo, customer=3, meter="42.50").record.usage == Decimal("2.50")


def test_an_inspection_is_audited(demo: Database) -> None:
    sell(demo, meter="100.00")
    rid = reading(demo, 1, "101.00").record.id
    entries = demo.read(
        lambda s: s.scalars(
            select(AuditEntry).where(AuditEntry.entity_type == "meter_reading", AuditEntry.entity_id == rid)
        ).all()
    )
    assert [e.action for e in entries] == ["create"]


def test_rest_inspection_then_sale_and_the_customer_shows_both_readings(
    client: TestClient, driver_headers: dict[str, str], demo: Database
) -> None:
    first = client.post("/api/v1/transactions/", json=sale_payload(4, meter="7.00"), headers=driver_headers)
    assert first.status_code == 201, first.text
    inspection = client.post(
        "/api/v1/meter-readings/",
        json={"customer": 4, "reading": "9.00", "occurred_at": when()},
        headers=driver_headers,
    )
    assert inspection.status_code == 201, inspection.text
    assert (inspection.json()["previous_reading"], inspection.json()["usage"]) == ("7.00", "2.00")
    customer = client.get("/api/v1/customers/4/", headers=driver_headers).json()
    assert [(m["last_reading"], m["last_billed_reading"]) for m in customer["meters"]] == [("9.00", "7.00")]
    low = client.post(
        "/api/v1/meter-readings/",
        json={"customer": 4, "reading": "8.00", "occurred_at": when()},
        headers=driver_headers,
    )
    assert low.status_code == 409 and low.json()["error"]["code"] == "meter_regression"
    assert low.json()["error"]["details"]["last"] == "9.00"
    sale = client.post("/api/v1/transactions/", json=sale_payload(4, meter="10.00"), headers=driver_headers)
    assert sale.status_code == 201, sale.text
    assert sale.json()["meter"]["usage"] == "3.00"


def test_push_inspection_then_sale(client: TestClient, driver_headers: dict[str, str], demo: Database) -> None:
    at = recent()

    def sale(temp: str, value: str) -> dict[str, Any]:
        data = {"customer": 5, "truck": 1, "confirm": True, "occurred_at": at, "meter": {"reading": value}}
        return {"client_temp_id": temp, "op": "transaction.create", "data": data}

    def inspect(temp: str, value: str) -> dict[str, Any]:
        data = {"customer": 5, "reading": value, "occurred_at": at}
        return {"client_temp_id": temp, "op": "meter_reading.create", "data": data}

    results = by_temp_id(
        push(
            client,
            driver_headers,
            [sale("s-1", "20.00"), inspect("i-1", "25.00"), inspect("i-2", "24.00"), sale("s-2", "30.00")],
        )
    )
    assert [results[t]["status"] for t in ("s-1", "i-1", "i-2", "s-2")] == ["applied", "applied", "rejected", "applied"]
    assert results["i-2"]["error"]["code"] == "meter_regression"
    assert sorted(readings(demo, 5), key=lambda r: r[1]) == [  # a batch writes rows grouped, not in order
        (None, Decimal("20.00"), Decimal("0.00"), True),
        (Decimal("20.00"), Decimal("25.00"), Decimal("5.00"), False),
        (Decimal("20.00"), Decimal("30.00"), Decimal("10.00"), True),
    ]


def test_the_migration_derives_the_billing_baseline_from_existing_readings(demo: Database) -> None:
    from alembic import command
    from domain.schema import alembic_config, upgrade

    sell(demo, meter="100.00")
    reading(demo, 1, "110.00")
    sell(demo, meter="115.00")
    reading(demo, 1, "120.00")  # customer 1: last billed 115
    reading(demo, 3, "40.00")
    reading(demo, 3, "41.00")  # customer 3: never sold, its first reading is the baseline
    engine = demo.engine
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0003_security")
    upgrade(engine)
    assert [meter_of(demo, c).last_billed_reading for c in (1, 2, 3)] == [Decimal("115.00"), None, Decimal("40.00")]
