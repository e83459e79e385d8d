"""Invoices: a snapshot of names, addresses and prices at issue; generated -> printed -> emailed -> paid."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.base import Base, BigId, Money, Name, Rate, Versioned, id_column
from domain.clock import utcnow

INVOICE_STATUSES = ("generated", "printed", "emailed", "paid")
PAYMENT_METHODS = ("cash", "cheque", "paynow", "bank_transfer")


if TYPE_CHECKING:
    from domain.sales.models import Transaction


class Invoice(Versioned, Base):
    """Issued on confirm of a transaction; amounts never change afterwards, only the life cycle moves."""

    __tablename__ = "invoices"
    __table_args__ = (CheckConstraint("status IN ('generated', 'printed', 'emailed', 'paid')", name="status"),)

    id: Mapped[int] = id_column()
    number: Mapped[str] = mapped_column(String(24), unique=True)
    transaction_id: Mapped[int] = mapped_column(BigId, ForeignKey("transactions.id"), unique=True)
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id"), index=True)
    driver_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(10), default="generated")
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    customer_name: Mapped[str] = mapped_column(Name)
    customer_address: Mapped[str] = mapped_column(Text, default="")
    customer_email: Mapped[str | None] = mapped_column(String(254))
    subtotal: Mapped[Decimal] = mapped_column(Money)
    gst_rate: Mapped[Decimal] = mapped_column(Numeric(5, 4))
    gst: Mapped[Decimal] = mapped_column(Money)
    total: Mapped[Decimal] = mapped_column(Money)
    amount_paid: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    printed_at: Mapped[datetime | None]
    printed_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    emailed_at: Mapped[datetime | None]
    emailed_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    paid_at: Mapped[datetime | None]
    paid_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", cascade="all, delete-orphan", order_by="InvoiceLine.position"
    )
    payments: Mapped[list[Payment]] = relationship(
        back_populates="invoice", cascade="all, delete-orphan", order_by="Payment.id"
    )
    events: Mapped[list[InvoiceEvent]] = relationship(cascade="all, delete-orphan", order_by="InvoiceEvent.id")
    # The transaction it bills: set as an object, so a new invoice needs no flush to know its id.
    transaction: Mapped[Transaction] = relationship(foreign_keys=[transaction_id])


class InvoiceLine(Base):
    """One priced line: meter usage, cylinders, an empty return, a half-return credit, or a service."""

    __tablename__ = "invoice_lines"
    __table_args__ = (
        CheckConstraint("kind IN ('usage', 'delivery', 'empty_return', 'half_return', 'service')", name="kind"),
    )

    id: Mapped[int] = id_column()
    invoice_id: Mapped[int] = mapped_column(BigId, ForeignKey("invoices.id"), index=True)
    position: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20))
    code: Mapped[str] = mapped_column(String(40), default="")
    description: Mapped[str] = mapped_column(Text)
    qty: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    unit_price: Mapped[Decimal] = mapped_column(Rate)
    amount: Mapped[Decimal] = mapped_column(Money)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class Payment(Base):
    """Money received against an invoice; partial payments add up, over-payment is kept as a credit."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("method IN ('cash', 'cheque', 'paynow', 'bank_transfer')", name="method"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[int] = id_column()
    invoice_id: Mapped[int] = mapped_column(BigId, ForeignKey("invoices.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    method: Mapped[str] = mapped_column(String(20))
    reference: Mapped[str | None] = mapped_column(String(100))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorded_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    device_id: Mapped[str | None] = mapped_column(String(100))

    invoice: Mapped[Invoice] = relationship(back_populates="payments")


class InvoiceEvent(Base):
    """Each life-cycle step and each repeat (printed again, e-mailed again) with its time and actor."""

    __tablename__ = "invoice_events"

    id: Mapped[int] = id_column()
    invoice_id: Mapped[int] = mapped_column(BigId, ForeignKey("invoices.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    occurred_at: Mapped[datetime | None]
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    device_id: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text)


OUTBOX_STATUSES = ("pending", "sent", "failed")


class EmailOutbox(Base):
    """An invoice e-mail to send (LPG_AUTO_EMAIL): written in the confirm's own transaction, sent by any
    server process's sender (`domain.invoicing.outbox`). `message_id` is fixed when the row is written, so
    every attempt, and a resend after a crash, carries the same Message-ID. A sender holds a row while
    `lease_until` is in the future; `lease_token` names that claim."""

    __tablename__ = "email_outbox"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
        Index("ix_email_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = id_column()
    invoice_id: Mapped[int] = mapped_column(BigId, ForeignKey("invoices.id"), unique=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    lease_token: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    sent_by: Mapped[str | None] = mapped_column(String(100))
