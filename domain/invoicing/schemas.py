"""Validated commands of the invoice life cycle. Invoices change only through these (never their amounts)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

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
    """The sync ops `invoice.mark_printed` / `invoice.mark_emailed`: the invoice by its id (the reconciler
    resolves a `transaction` reference to its invoice with `invoice_id_for_transaction`)."""

    references: ClassVar[dict[str, str]] = {"invoice": "invoice"}

    invoice: Id
    occurred_at: Timestamp | None = None


class InvoicePayment(MarkPaid):
    """The sync op `invoice.mark_paid`."""

    references: ClassVar[dict[str, str]] = {"invoice": "invoice"}

    invoice: Id
