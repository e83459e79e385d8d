"""Invoices for the outputs tests, written with the ORM the way a transaction confirm leaves them.

A mixed invoice: meter usage with readings, two cylinder deliveries, an empty return, a half-return credit,
a service, and a partial payment."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from domain.db import Database
from domain.invoicing.models import Invoice, InvoiceLine, Payment
from domain.money import gst_on, line_amount
from domain.sales.models import DeliveryLine, MeterReading, ServiceLine, Transaction

VISIT = datetime(2026, 11, 24, 2, 10, tzinfo=UTC)  # 10:10 in Singapore
ISSUED = datetime(2026, 11, 24, 2, 15, 30, tzinfo=UTC)
D = Decimal

# kind, code, description, qty, unit price
MIXED_LINES = (
    ("usage", "GAS", "Gas usage 55.50 units @ 3.2000", D("55.50"), D("3.2000")),
    ("delivery", "CYL12.7", "CYL 12.7kg full cylinder", D("2"), D("32.90")),
    ("delivery", "CYL50", "CYL 50kg full cylinder", D("1"), D("118.00")),
    ("empty_return", "CYL12.7", "CYL 12.7kg empty collected", D("2"), D("0.00")),
    ("half_return", "CYL14", "CYL 14kg half-return credit 6.50 kg", D("1"), D("-16.67")),
    ("service", "INSTALL", "Installation and safety check", D("1"), D("30.00")),
)


def make_invoice(
    db: Database,
    *,
    customer_id: int = 1,
    driver_id: int = 2,
    seq: int = 1,
    customer_name: str | None = None,
    customer_address: str | None = None,
    customer_email: str | None = "ahseng@example.sg",
    paid: Decimal | None = D("100.00"),
    lines: tuple[tuple[str, str, str, Decimal, Decimal], ...] = MIXED_LINES,
) -> int:
    """Write a confirmed transaction and its invoice (status generated); returns the invoice id."""

    def work(uow: Any) -> int:
        s = uow.session
        trx = Transaction(
            number=f"TRX-2026-{seq:06d}",
            customer_id=customer_id,
            truck_id=1,
            driver_id=driver_id,
            status="confirmed",
            occurred_at=VISIT,
            confirmed_at=ISSUED,
            meter_reading=D("1290.00"),
            usage=D("55.50"),
            usage_amount=D("177.60"),
        )
        s.add(trx)
        s.flush()
        s.add(
            MeterReading(
                meter_id=customer_id,
                customer_id=customer_id,
                reading=D("1290.00"),
                previous_reading=D("1234.50"),
                usage=D("55.50"),
                occurred_at=VISIT,
                driver_id=driver_id,
                transaction_id=trx.id,
            )
        )
        s.add_all(
            [
                DeliveryLine(transaction_id=trx.id, equipment_id=2, kind="full_deliver", qty=2),
                DeliveryLine(transaction_id=trx.id, equipment_id=4, kind="full_deliver", qty=1),
                DeliveryLine(transaction_id=trx.id, equipment_id=2, kind="empty_return", qty=2),
                DeliveryLine(transaction_id=trx.id, equipment_id=3, kind="half_return", qty=1, remaining_kg=D("6.50")),
                ServiceLine(transaction_id=trx.id, service_id=1, qty=1, unit_price=D("30.00"), amount=D("30.00")),
            ]
        )
        amounts = [line_amount(qty, price) for _, _, _, qty, price in lines]
        subtotal = sum(amounts, D("0.00"))
        gst = gst_on(subtotal, D("0.09"))
        invoice = Invoice(
            number=f"INV-2026-{seq:06d}",
            transaction_id=trx.id,
            customer_id=customer_id,
            driver_id=driver_id,
            issued_at=ISSUED,
            customer_name=customer_name if customer_name is not None else "Ah Seng Eating House",
            customer_address=customer_address
            if customer_address is not None
            else "12 Jurong Port Rd, #01-05, Singapore 619094",
            customer_email=customer_email,
            subtotal=subtotal,
            gst_rate=D("0.09"),
            gst=gst,
            total=subtotal + gst,
            amount_paid=paid or D("0.00"),
        )
        invoice.lines = [
            InvoiceLine(position=i, kind=kind, code=code, description=desc, qty=qty, unit_price=price, amount=amt)
            for i, ((kind, code, desc, qty, price), amt) in enumerate(zip(lines, amounts, strict=True), start=1)
        ]
        if paid:
            invoice.payments = [
                Payment(amount=paid, method="cash", reference="R-0042", occurred_at=ISSUED, recorded_by=driver_id)
            ]
        s.add(invoice)
        s.flush()
        return int(invoice.id)

    return db.run(work)


def expected_totals() -> dict[str, str]:
    amounts = [line_amount(qty, price) for _, _, _, qty, price in MIXED_LINES]
    subtotal = sum(amounts, D("0.00"))
    gst = gst_on(subtotal, D("0.09"))
    return {"subtotal": f"{subtotal:,.2f}", "gst": f"{gst:,.2f}", "total": f"{subtotal + gst:,.2f}"}
