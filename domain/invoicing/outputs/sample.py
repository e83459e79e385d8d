"""A sample invoice without a database, for working on the template and for the README's picture:
`python -m domain.invoicing.outputs.sample sample.pdf`, then
`pdftoppm -png -r 80 -singlefile sample.pdf docs/sample-invoice`.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

from domain.invoicing.outputs.paynow import paynow_payload
from domain.invoicing.outputs.pdf import render_pdf
from domain.invoicing.outputs.render import GroupView, InvoiceView, LineView, MeterView, PaymentView, amount
from domain.settings import Settings


def sample_view(settings: Settings | None = None) -> InvoiceView:
    """A mixed invoice: meter usage with readings, cylinders, an empty return, a half-return credit, a service,
    a partial payment; the customer's name in Chinese and English."""
    s = settings or Settings(secret_key="x" * 32)
    meter = MeterView("1234.50", "1290.00", "55.50")
    groups = (
        GroupView(
            "usage",
            "Gas usage (meter)",
            (
                LineView(
                    "usage",
                    "GAS",
                    "Gas usage 55.50 units @ 3.2000",
                    "55.50",
                    "3.20",
                    "177.60",
                    "Meter 1234.50 → 1290.00, usage 55.50",
                ),
            ),
        ),
        GroupView(
            "delivery",
            "Cylinders delivered",
            (
                LineView("delivery", "CYL12.7", "CYL 12.7kg full cylinder", "2", "32.90", "65.80", ""),
                LineView("delivery", "CYL50", "CYL 50kg full cylinder", "1", "118.00", "118.00", ""),
            ),
        ),
        GroupView(
            "empty_return",
            "Empty cylinders collected",
            (LineView("empty_return", "CYL12.7", "CYL 12.7kg empty collected", "2", "0.00", "0.00", ""),),
        ),
        GroupView(
            "half_return",
            "Half-return credits",
            (LineView("half_return", "CYL14", "CYL 14kg half-return credit 6.50 kg", "1", "-16.67", "-16.67", ""),),
        ),
        GroupView(
            "service",
            "Services",
            (LineView("service", "INSTALL", "Installation and safety check", "1", "30.00", "30.00", ""),),
        ),
    )
    return InvoiceView(
        id=1,
        driver_id=2,
        number="INV-2026-000001",
        status="generated",
        issued_at="24 Nov 2026, 10:15",
        transaction_number="TRX-2026-000001",
        visit_at="24 Nov 2026, 10:10",
        driver_name="Tan Ah Kow",
        customer_name="金龙海鲜楼 Golden Dragon Seafood",
        customer_address="1 Seafood Way, #02-11\nSingapore 449876",
        customer_email="goldendragon@example.sg",
        meter=meter,
        groups=groups,
        subtotal="374.73",
        gst_rate="9",
        gst="33.73",
        total="408.46",
        amount_paid="100.00",
        balance=amount(Decimal("308.46")),
        credit="",
        payments=(PaymentView("24 Nov 2026, 10:15", "Cash", "R-0042", "100.00"),),
        company_name=s.company_name,
        company_address=s.company_address,
        gst_reg_no=s.gst_reg_no,
        paynow_uen=s.paynow_uen,
        paynow_reference="INV-2026-000001",
        paynow_payload=paynow_payload(s.paynow_uen, Decimal("308.46"), "INV-2026-000001", s.company_name),
    )


def main(argv: list[str]) -> None:
    target = Path(argv[0] if argv else "sample-invoice.pdf")
    target.write_bytes(render_pdf(sample_view()))
    print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
