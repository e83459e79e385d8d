"""The invoice as customers see it: a read-only view of the committed rows, and the HTML template around it.

`load_view` reads the invoice, its lines and payments, its transaction's number and the meter reading in one
read-only unit (no lock is taken or waited for), and turns them into plain display strings. Everything a
customer or driver typed (names, addresses, descriptions, references) reaches the HTML only through Jinja2's
autoescape, so it is text in the document, never markup.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.accounts.models import User
from domain.clock import zone
from domain.errors import NotFound
from domain.invoicing.models import Invoice, InvoiceLine, Payment
from domain.invoicing.outputs.paynow import paynow_payload
from domain.money import ZERO, decimal_str
from domain.sales.models import MeterReading, Transaction
from domain.settings import Settings

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
ASSETS = HERE / "assets"

# Lines appear grouped, in this order, under these headings ("cylinders by kind").
KIND_TITLES = {
    "usage": "Gas usage (meter)",
    "delivery": "Cylinders delivered",
    "empty_return": "Empty cylinders collected",
    "half_return": "Half-return credits",
    "service": "Services",
}
METHOD_LABELS = {"cash": "Cash", "cheque": "Cheque", "paynow": "PayNow", "bank_transfer": "Bank transfer"}


@dataclass(frozen=True)
class LineView:
    kind: str
    code: str
    description: str
    qty: str
    unit_price: str
    amount: str
    detail: str  # the meter readings under a usage line, else ""


@dataclass(frozen=True)
class GroupView:
    kind: str
    title: str
    lines: tuple[LineView, ...]


@dataclass(frozen=True)
class PaymentView:
    date: str
    method: str
    reference: str
    amount: str


@dataclass(frozen=True)
class MeterView:
    previous: str
    current: str
    usage: str


@dataclass(frozen=True)
class InvoiceView:
    """Everything the PDF, the e-mail and the receipt show, already formatted; nothing else goes in."""

    id: int
    driver_id: int
    number: str
    status: str
    issued_at: str
    transaction_number: str
    visit_at: str
    driver_name: str
    customer_name: str
    customer_address: str
    customer_email: str
    meter: MeterView | None
    groups: tuple[GroupView, ...]
    subtotal: str
    gst_rate: str
    gst: str
    total: str
    amount_paid: str
    balance: str
    credit: str
    payments: tuple[PaymentView, ...]
    company_name: str
    company_address: str
    gst_reg_no: str
    paynow_uen: str
    paynow_reference: str
    paynow_payload: str

    @property
    def lines(self) -> tuple[LineView, ...]:
        return tuple(line for group in self.groups for line in group.lines)

    @property
    def fingerprint(self) -> str:
        """A hash of the content and of the template: equal fingerprints render equal documents."""
        data = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256((template_fingerprint() + data).encode()).hexdigest()


def local_time(moment: datetime | None, settings: Settings) -> str:
    """`25 Nov 2026, 14:05` in the business time zone (Asia/Singapore)."""
    if moment is None:
        return ""
    return moment.astimezone(zone(settings.timezone)).strftime("%d %b %Y, %H:%M")


def amount(value: Decimal | None) -> str:
    """`1,234.50`, `-12.00`: two places, thousands separated (the currency is said once, in the header)."""
    return f"{(value if value is not None else ZERO):,.2f}"


def _percent(rate: Decimal) -> str:
    text = decimal_str(rate * 100, 0) or "0"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _qty(value: Decimal) -> str:
    """`2` for whole units (cylinders), `55.50` for measured quantities."""
    return f"{value:.0f}" if value == value.to_integral() else (decimal_str(value) or "0")


def load_view(session: Session, settings: Settings, invoice_id: int) -> InvoiceView:
    """Read one invoice and what it shows, as committed; a missing invoice is `not_found`."""
    invoice = session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found", {"entity": "invoice", "id": invoice_id})
    lines = session.execute(
        select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id).order_by(InvoiceLine.position, InvoiceLine.id)
    ).scalars()
    payments = session.execute(
        select(Payment).where(Payment.invoice_id == invoice_id).order_by(Payment.occurred_at, Payment.id)
    ).scalars()
    trx = session.get(Transaction, invoice.transaction_id)
    reading = (
        session.execute(
            select(MeterReading).where(MeterReading.transaction_id == invoice.transaction_id).order_by(MeterReading.id)
        )
        .scalars()
        .first()
    )
    driver = session.execute(select(User.full_name, User.username).where(User.id == invoice.driver_id)).first()

    meter = None
    if reading is not None:
        meter = MeterView(
            decimal_str(reading.previous_reading) or "",
            decimal_str(reading.reading) or "",
            decimal_str(reading.usage) or "",
        )
    elif trx is not None and trx.meter_reading is not None:
        meter = MeterView("", decimal_str(trx.meter_reading) or "", decimal_str(trx.usage) or "")

    grouped: dict[str, list[LineView]] = {}
    for line in lines:
        detail = ""
        if line.kind == "usage" and meter is not None:
            detail = f"Meter {meter.previous or '-'} → {meter.current}, usage {meter.usage}"
        grouped.setdefault(line.kind, []).append(
            LineView(
                line.kind,
                line.code,
                line.description,
                _qty(line.qty),
                decimal_str(line.unit_price) or "",
                amount(line.amount),
                detail,
            )
        )
    order = [*KIND_TITLES, *sorted(set(grouped) - set(KIND_TITLES))]
    groups = tuple(
        GroupView(kind, KIND_TITLES.get(kind, "Other"), tuple(grouped[kind])) for kind in order if kind in grouped
    )

    balance = invoice.total - invoice.amount_paid
    due = balance if balance > 0 else None
    return InvoiceView(
        id=invoice.id,
        driver_id=invoice.driver_id,
        number=invoice.number,
        status=invoice.status,
        issued_at=local_time(invoice.issued_at, settings),
        transaction_number=(trx.number or "") if trx is not None else "",
        visit_at=local_time(trx.occurred_at if trx is not None else None, settings),
        driver_name=(driver.full_name or driver.username) if driver is not None else "",
        customer_name=invoice.customer_name,
        customer_address=invoice.customer_address or "",
        customer_email=invoice.customer_email or "",
        meter=meter,
        groups=groups,
        subtotal=amount(invoice.subtotal),
        gst_rate=_percent(invoice.gst_rate),
        gst=amount(invoice.gst),
        total=amount(invoice.total),
        amount_paid=amount(invoice.amount_paid),
        balance=amount(max(balance, ZERO)),
        credit=amount(-balance) if balance < 0 else "",
        payments=tuple(
            PaymentView(
                local_time(p.occurred_at, settings),
                METHOD_LABELS.get(p.method, p.method),
                p.reference or "",
                amount(p.amount),
            )
            for p in payments
        ),
        company_name=settings.company_name,
        company_address=settings.company_address,
        gst_reg_no=settings.gst_reg_no,
        paynow_uen=settings.paynow_uen,
        paynow_reference=invoice.number,
        paynow_payload=paynow_payload(settings.paynow_uen, due, invoice.number, settings.company_name),
    )


@lru_cache(maxsize=1)
def environment() -> Environment:
    """Autoescape on for every template, and a missing variable is an error rather than a blank."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@lru_cache(maxsize=1)
def template_fingerprint() -> str:
    """A hash of the templates and assets, so a new template invalidates every cached PDF."""
    digest = hashlib.sha256()
    for folder in (TEMPLATES, ASSETS):
        for path in sorted(folder.iterdir()):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def render_html(view: InvoiceView) -> str:
    """The invoice as an HTML document (A4); its only external references are `lpg-asset:` URLs."""
    return environment().get_template("invoice.html").render(invoice=view)
