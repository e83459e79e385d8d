"""Validated commands of the invoice life cycle. Invoices change only through these (never their amounts)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

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
