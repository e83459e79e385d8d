"""Validated commands of the invoice life cycle. Invoices change only through these (never their amounts)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from domain.sales.schemas import Decimal4, Money, Out, Time, WarningOut
from domain.wire import Command, Id, MoneyStr, Timestamp

PaymentMethod = Literal["cash", "cheque", "paynow", "bank_transfer"]


class MarkStep(Command):
    """The REST body of `mark-printed` / `mark-emailed` (optional): when it happened on the device."""

    occurred_at: Timestamp | None = None


class MarkPaid(Command):
    """The REST body of `mark-paid`: a payment of `amount` by `method` (partial payments add up)."""

    amount: MoneyStr
    method: PaymentMethod
    reference: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    occurred_at: Timestamp | None = None


class InvoiceStep(Command):
    """The sync ops `invoice.mark_printed` / `invoice.mark_emailed`: the invoice by its id, or by its
    transaction's (a tablet that printed offline never learned the invoice's id); exactly one of them.
    `invoicing.services.invoice_id_of(session, cmd)` gives the invoice id either way."""

    references: ClassVar[dict[str, str]] = {"invoice": "invoice", "transaction": "transaction"}

    invoice: Id | None = None
    transaction: Id | None = None
    occurred_at: Timestamp | None = None

    @model_validator(mode="after")
    def _exactly_one_target(self) -> InvoiceStep:
        if (self.invoice is None) == (self.transaction is None):
            raise ValueError("give exactly one of 'invoice' or 'transaction'")
        return self


class InvoicePayment(InvoiceStep):
    """The sync op `invoice.mark_paid`: `invoice` or `transaction`, `amount`, `method`, optional
    `reference`, `occurred_at`."""

    amount: MoneyStr
    method: PaymentMethod
    reference: Annotated[str, Field(min_length=1, max_length=100)] | None = None


# -- what the API answers (REST detail == change-feed doc; `docs.py` builds it) ------------------------


class InvoiceLineOut(Out):
    position: int
    kind: Literal["usage", "delivery", "empty_return", "half_return", "service"]
    code: str
    description: str
    qty: Decimal4
    unit_price: Decimal4
    amount: Money


class PaymentOut(Out):
    id: int
    amount: Money
    method: PaymentMethod
    reference: str | None
    occurred_at: Time
    recorded_at: Time
    recorded_by: int
    device_id: str | None


class InvoiceEventOut(Out):
    kind: Literal["printed", "emailed", "payment"]
    at: Time
    occurred_at: Time | None
    actor: int | None
    device_id: str | None
    detail: str | None = Field(description='"repeat" for a step taken again; the amount and method of a payment')


class TransactionNumber(Out):
    id: int
    number: str | None


class InvoiceOut(Out):
    """An invoice: the snapshot taken at issue, its payments and every life-cycle step."""

    id: int
    version: int
    last_modified: Time
    number: str = Field(examples=["INV-2026-000001"])
    status: Literal["generated", "printed", "emailed", "paid"]
    transaction: TransactionNumber
    customer: int
    driver: int
    issued_at: Time
    customer_name: str
    customer_address: str
    customer_email: str | None
    lines: list[InvoiceLineOut]
    subtotal: Money
    gst_rate: Decimal4
    gst: Money
    total: Money
    amount_paid: Money
    balance: Money = Field(description="total - amount paid; negative: the customer's credit")
    printed_at: Time | None
    printed_by: int | None
    emailed_at: Time | None
    emailed_by: int | None
    paid_at: Time | None
    paid_by: int | None
    payments: list[PaymentOut]
    events: list[InvoiceEventOut]


class InvoiceResult(InvoiceOut):
    """The answer to a life-cycle action: the invoice and its warnings (`overpaid`)."""

    warnings: list[WarningOut]
