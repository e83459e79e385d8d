"""Outputs of invoices issued by the sales context's own confirm (not fixture rows): PDF, receipt, auto e-mail."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from domain.invoicing.models import Invoice, InvoiceLine
from domain.invoicing.outputs.escpos import receipt
from domain.invoicing.outputs.pdf import read_view
from tests.support.outbox_support import queue, send_all
from tests.support.outputs_smtp import Inbox, attachment, running
from tests.support.sales_support import DRIVER1, empty, full, half, sell


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    with running(box) as port:
        yield box, port


def confirmed_sale(db) -> int:  # type: ignore[no-untyped-def]
    sell(db, meter="1000.00")  # the meter's baseline
    outcome = sell(
        db,
        meter="1055.50",
        deliveries=[full("CYL12.7", 2), full("CYL50", 1), empty("CYL12.7", 2), half("CYL14", 1, "6.50")],
        services=[{"code": "INSTALL", "qty": 1}],
    )
    return int(outcome.related["invoice"].id)


def test_a_confirmed_sale_prints_every_line_and_the_totals(demo, settings, client, driver_headers, tmp_path) -> None:
    invoice_id = confirmed_sale(demo)
    invoice, lines = demo.read(
        lambda s: (
            s.get(Invoice, invoice_id),
            s.execute(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)).scalars().all(),
        )
    )
    assert {line.kind for line in lines} == {"usage", "delivery", "empty_return", "half_return", "service"}
    response = client.get(f"/api/v1/invoices/{invoice_id}/pdf/", headers=driver_headers)
    assert response.status_code == 200, response.text
    path = tmp_path / "sale.pdf"
    path.write_bytes(response.content)
    content = " ".join(
        subprocess.run(["pdftotext", str(path), "-"], capture_output=True, check=True).stdout.decode().split()
    )
    assert invoice.number in content
    for line in lines:
        assert " ".join(line.description.split()) in content, line.description
        assert f"{line.amount:,.2f}" in content
    for value in (invoice.subtotal, invoice.gst, invoice.total):
        assert f"{value:,.2f}" in content
    view = read_view(demo, settings, DRIVER1, invoice_id)
    for width in (58, 80):
        slip = receipt(view, width)
        assert any(f"{invoice.total:,.2f}" in line and "TOTAL" in line for line in slip.lines)


def test_auto_email_after_a_real_confirm(demo, settings, inbox) -> None:
    box, port = inbox
    invoice_id = confirmed_sale(demo)
    on = settings.with_(smtp_port=port, auto_email=True)
    queue(demo, on, invoice_id)
    assert send_all(demo, on) == "sent"
    (_from, to, message) = box.messages[0]
    assert to == ["ahseng@example.sg"]
    name, pdf = attachment(message)
    number = demo.read(lambda s: s.get(Invoice, invoice_id).number)  # type: ignore[union-attr]
    assert name == f"{number}.pdf" and pdf.startswith(b"%PDF-")
    status = demo.read(lambda s: s.get(Invoice, invoice_id).status)  # type: ignore[union-attr]
    assert status == "emailed"
