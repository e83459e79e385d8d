"""Workflow B: a transaction bills one customer for one visit (meter usage + cylinders + services)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.base import Base, BigId, Kg, Money, Rate, Reading, Versioned, id_column
from domain.clock import utcnow


class MeterReading(Versioned, Base):
    """A recorded reading; usage is against the meter's previous reading (the first one is a baseline)."""

    __tablename__ = "meter_readings"

    id: Mapped[int] = id_column()
    meter_id: Mapped[int] = mapped_column(BigId, ForeignKey("meters.id"), index=True)
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id"), index=True)
    reading: Mapped[Decimal] = mapped_column(Reading)
    previous_reading: Mapped[Decimal | None] = mapped_column(Reading)
    usage: Mapped[Decimal] = mapped_column(Reading, default=Decimal("0"))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    driver_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    transaction_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("transactions.id"))
    device_id: Mapped[str | None] = mapped_column(String(100))


class Transaction(Versioned, Base):
    """draft -> confirmed (stock moved, invoice issued, immutable) or cancelled (drafts only)."""

    __tablename__ = "transactions"
    __table_args__ = (CheckConstraint("status IN ('draft', 'confirmed', 'cancelled')", name="status"),)

    id: Mapped[int] = id_column()
    number: Mapped[str | None] = mapped_column(String(24), unique=True)
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id"), index=True)
    truck_id: Mapped[int] = mapped_column(BigId, ForeignKey("trucks.id"))
    driver_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(10), default="draft")
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    meter_reading: Mapped[Decimal | None] = mapped_column(Reading)
    usage: Mapped[Decimal | None] = mapped_column(Reading)
    usage_amount: Mapped[Decimal | None] = mapped_column(Money)
    subtotal: Mapped[Decimal | None] = mapped_column(Money)
    gst: Mapped[Decimal | None] = mapped_column(Money)
    total: Mapped[Decimal | None] = mapped_column(Money)
    device_id: Mapped[str | None] = mapped_column(String(100))

    deliveries: Mapped[list[DeliveryLine]] = relationship(
        back_populates="transaction", cascade="all, delete-orphan", order_by="DeliveryLine.id"
    )
    services: Mapped[list[ServiceLine]] = relationship(
        back_populates="transaction", cascade="all, delete-orphan", order_by="ServiceLine.id"
    )


class DeliveryLine(Base):
    """Cylinders delivered (`full_deliver`), collected empty (`empty_return`) or part-used (`half_return`)."""

    __tablename__ = "delivery_lines"
    __table_args__ = (
        CheckConstraint("qty > 0", name="qty_positive"),
        CheckConstraint("kind IN ('full_deliver', 'empty_return', 'half_return')", name="kind"),
    )

    id: Mapped[int] = id_column()
    transaction_id: Mapped[int] = mapped_column(BigId, ForeignKey("transactions.id"), index=True)
    equipment_id: Mapped[int] = mapped_column(BigId, ForeignKey("equipment.id"))
    kind: Mapped[str] = mapped_column(String(20))
    qty: Mapped[int]
    remaining_kg: Mapped[Decimal | None] = mapped_column(Kg)
    unit_price: Mapped[Decimal | None] = mapped_column(Rate)
    amount: Mapped[Decimal | None] = mapped_column(Money)

    transaction: Mapped[Transaction] = relationship(back_populates="deliveries")


class ServiceLine(Base):
    """A fixed fee at the catalog (or the customer's) price."""

    __tablename__ = "service_lines"
    __table_args__ = (CheckConstraint("qty > 0", name="qty_positive"),)

    id: Mapped[int] = id_column()
    transaction_id: Mapped[int] = mapped_column(BigId, ForeignKey("transactions.id"), index=True)
    service_id: Mapped[int] = mapped_column(BigId, ForeignKey("services.id"))
    qty: Mapped[int]
    unit_price: Mapped[Decimal | None] = mapped_column(Money)
    amount: Mapped[Decimal | None] = mapped_column(Money)

    transaction: Mapped[Transaction] = relationship(back_populates="services")
