"""The catalog: equipment models, depots, trucks, the service catalog, customers, their prices and meters."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, BigId, Kg, Money, Name, Rate, Reading, Versioned, id_column
from domain.clock import utcnow


class EquipmentModel(Versioned, Base):
    """A kind of cylinder (`CYL12.7`): the shared foundation of both workflows."""

    __tablename__ = "equipment"

    id: Mapped[int] = id_column()
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(Name)
    capacity_kg: Mapped[Decimal] = mapped_column(Kg)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    deposit: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    active: Mapped[bool] = mapped_column(default=True)


class Depot(Versioned, Base):
    __tablename__ = "depots"

    id: Mapped[int] = id_column()
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(Name)
    address: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(default=True)


class Truck(Versioned, Base):
    """Trucks are not tied to drivers: any driver may use any active truck."""

    __tablename__ = "trucks"

    id: Mapped[int] = id_column()
    plate: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(Name, default="")
    active: Mapped[bool] = mapped_column(default=True)


class Service(Versioned, Base):
    """A fixed fee (installation, deposit, delivery) charged at the catalog price."""

    __tablename__ = "services"

    id: Mapped[int] = id_column()
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(Name)
    price: Mapped[Decimal] = mapped_column(Money)
    active: Mapped[bool] = mapped_column(default=True)


class Customer(Versioned, Base):
    """A customer site. Drivers may create customers and edit contact fields; rates are admin-only."""

    __tablename__ = "customers"

    id: Mapped[int] = id_column()
    name: Mapped[str] = mapped_column(Name)
    address: Mapped[str] = mapped_column(Text, default="")
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    meter_rate: Mapped[Decimal] = mapped_column(Rate, default=Decimal("0"))
    kg_rate: Mapped[Decimal | None] = mapped_column(Rate)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CustomerPrice(Versioned, Base):
    """A customer's own price for one equipment model or one service, overriding the catalog."""

    __tablename__ = "customer_prices"
    __table_args__ = (
        CheckConstraint("(equipment_id IS NULL) <> (service_id IS NULL)", name="one_item"),
        UniqueConstraint("customer_id", "equipment_id"),
        UniqueConstraint("customer_id", "service_id"),
    )

    id: Mapped[int] = id_column()
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id"))
    equipment_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("equipment.id"))
    service_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("services.id"))
    price: Mapped[Decimal] = mapped_column(Money)


class Meter(Versioned, Base):
    """A gas meter at a customer site (locked with the row): `last_reading` is the latest recorded reading,
    what a new reading is judged against (`meter_regression`); `last_billed_reading` is the reading the last
    confirmed sale billed up to (or the meter's first reading, its baseline), what a sale's usage counts from.
    A reading taken without a sale moves the first and never the second, so no gas goes unbilled."""

    __tablename__ = "meters"

    id: Mapped[int] = id_column()
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id"), index=True)
    serial: Mapped[str | None] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    last_reading: Mapped[Decimal | None] = mapped_column(Reading)
    last_reading_at: Mapped[datetime | None]
    last_billed_reading: Mapped[Decimal | None] = mapped_column(Reading)
