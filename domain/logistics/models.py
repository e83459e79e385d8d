"""Where cylinders are (depot, truck, customer site) and Workflow A: distributions between depot and truck."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.base import Base, BigId, Versioned, id_column
from domain.clock import utcnow


class DepotStock(Versioned, Base):
    """Full and empty cylinders of one model at one depot; the database refuses a negative quantity."""

    __tablename__ = "depot_stock"
    __table_args__ = (
        UniqueConstraint("depot_id", "equipment_id"),
        CheckConstraint("full >= 0", name="full_not_negative"),
        CheckConstraint("empty >= 0", name="empty_not_negative"),
    )

    id: Mapped[int] = id_column()
    depot_id: Mapped[int] = mapped_column(BigId, ForeignKey("depots.id"))
    equipment_id: Mapped[int] = mapped_column(BigId, ForeignKey("equipment.id"))
    full: Mapped[int] = mapped_column(default=0)
    empty: Mapped[int] = mapped_column(default=0)


class TruckStock(Versioned, Base):
    """Full and empty cylinders of one model on one truck; never negative."""

    __tablename__ = "truck_stock"
    __table_args__ = (
        UniqueConstraint("truck_id", "equipment_id"),
        CheckConstraint("full >= 0", name="full_not_negative"),
        CheckConstraint("empty >= 0", name="empty_not_negative"),
    )

    id: Mapped[int] = id_column()
    truck_id: Mapped[int] = mapped_column(BigId, ForeignKey("trucks.id"))
    equipment_id: Mapped[int] = mapped_column(BigId, ForeignKey("equipment.id"))
    full: Mapped[int] = mapped_column(default=0)
    empty: Mapped[int] = mapped_column(default=0)


class SiteStock(Versioned, Base):
    """Cylinders installed or stored at a customer site. May go below zero (an optimistic warning)."""

    __tablename__ = "site_stock"
    __table_args__ = (UniqueConstraint("customer_id", "equipment_id"),)

    id: Mapped[int] = id_column()
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id"))
    equipment_id: Mapped[int] = mapped_column(BigId, ForeignKey("equipment.id"))
    on_site: Mapped[int] = mapped_column(default=0)


class StockAdjustment(Base):
    """An admin's explicit correction: the only way cylinders are created or removed. Immutable."""

    __tablename__ = "stock_adjustments"
    __table_args__ = (CheckConstraint("place IN ('depot', 'truck', 'site')", name="place"),)

    id: Mapped[int] = id_column()
    place: Mapped[str] = mapped_column(String(10))
    depot_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("depots.id"))
    truck_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("trucks.id"))
    customer_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("customers.id"))
    equipment_id: Mapped[int] = mapped_column(BigId, ForeignKey("equipment.id"))
    full_delta: Mapped[int] = mapped_column(default=0)
    empty_delta: Mapped[int] = mapped_column(default=0)
    on_site_delta: Mapped[int] = mapped_column(default=0)
    reason: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Distribution(Versioned, Base):
    """A driver's visit to a depot with a truck: pending -> confirmed (immutable) or cancelled. No money."""

    __tablename__ = "distributions"
    __table_args__ = (CheckConstraint("status IN ('pending', 'confirmed', 'cancelled')", name="status"),)

    id: Mapped[int] = id_column()
    number: Mapped[str | None] = mapped_column(String(24), unique=True)
    depot_id: Mapped[int] = mapped_column(BigId, ForeignKey("depots.id"))
    truck_id: Mapped[int] = mapped_column(BigId, ForeignKey("trucks.id"))
    driver_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    occurred_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    device_id: Mapped[str | None] = mapped_column(String(100))

    items: Mapped[list[DistributionItem]] = relationship(
        back_populates="distribution", cascade="all, delete-orphan", order_by="DistributionItem.id"
    )


class DistributionItem(Base):
    """One line of a distribution: `collection` (depot full -> truck) or `empty_return` (truck empty -> depot)."""

    __tablename__ = "distribution_items"
    __table_args__ = (
        CheckConstraint("qty > 0", name="qty_positive"),
        CheckConstraint("movement_type IN ('collection', 'empty_return')", name="movement_type"),
    )

    id: Mapped[int] = id_column()
    distribution_id: Mapped[int] = mapped_column(BigId, ForeignKey("distributions.id"), index=True)
    equipment_id: Mapped[int] = mapped_column(BigId, ForeignKey("equipment.id"))
    movement_type: Mapped[str] = mapped_column(String(20))
    qty: Mapped[int]

    distribution: Mapped[Distribution] = relationship(back_populates="items")
