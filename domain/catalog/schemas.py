"""Catalog commands: equipment, depots, trucks, services (admin), customers (drivers too; rates admin-only).

Updates are partial: only the fields present in the body change (`model_fields_set`); a field that names
a required value (a name, a code) may not be sent as null.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from domain.errors import ValidationError
from domain.wire import Command, Id, KgStr, MoneyStr, RateStr, Text200

Code = Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9._-]+$")]
Address = Annotated[str, Field(max_length=500)]
Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Phone = Annotated[str, Field(min_length=3, max_length=40, pattern=r"^[0-9+() .-]+$")]
Serial = Annotated[str, Field(min_length=1, max_length=64)]

# Fields a driver may not set: rates, prices and the customer's life cycle belong to the office.
CUSTOMER_ADMIN_ONLY = frozenset({"meter_rate", "kg_rate", "prices", "active"})


class _Partial(Command):
    """An update: fields listed in `required_if_sent` may be omitted but never sent as null."""

    required_if_sent: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> _Partial:
        for name in self.required_if_sent:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValidationError(f"'{name}' may not be null", name)
        return self

    def changes(self, exclude: frozenset[str] = frozenset({"id", "base_version"})) -> dict[str, object]:
        """The fields the client sent, with their validated values."""
        return {name: getattr(self, name) for name in self.model_fields_set if name not in exclude}


# -- equipment, depots, trucks, services (admin) ---------------------------------------------------


class EquipmentCreate(Command):
    code: Code
    name: Text200
    capacity_kg: KgStr
    unit_price: MoneyStr
    deposit: MoneyStr = Decimal("0.00")


class EquipmentUpdate(_Partial):
    """The code is immutable: documents everywhere name equipment by it."""

    required_if_sent = ("name", "capacity_kg", "unit_price", "deposit", "active")
    name: Text200 | None = None
    capacity_kg: KgStr | None = None
    unit_price: MoneyStr | None = None
    deposit: MoneyStr | None = None
    active: bool | None = None


class DepotCreate(Command):
    code: Code
    name: Text200
    address: Address = ""


class DepotUpdate(_Partial):
    required_if_sent = ("code", "name", "address", "active")
    code: Code | None = None
    name: Text200 | None = None
    address: Address | None = None
    active: bool | None = None


class TruckCreate(Command):
    plate: Code
    name: Annotated[str, Field(max_length=200)] = ""


class TruckUpdate(_Partial):
    required_if_sent = ("plate", "name", "active")
    plate: Code | None = None
    name: Annotated[str, Field(max_length=200)] | None = None
    active: bool | None = None


class ServiceCreate(Command):
    code: Code
    name: Text200
    price: MoneyStr


class ServiceUpdate(_Partial):
    """The code is immutable: transactions name services by it."""

    required_if_sent = ("name", "price", "active")
    name: Text200 | None = None
    price: MoneyStr | None = None
    active: bool | None = None


# -- customers -------------------------------------------------------------------------------------


class MeterIn(Command):
    """A gas meter installed at the customer's site."""

    serial: Serial | None = None


class PricesIn(Command):
    """Per-customer price overrides by code; null removes an override (the catalog price applies again)."""

    equipment: dict[Annotated[str, Field(min_length=1, max_length=40)], MoneyStr | None] = Field(default_factory=dict)
    services: dict[Annotated[str, Field(min_length=1, max_length=40)], MoneyStr | None] = Field(default_factory=dict)


class CustomerCreate(Command):
    """`customer.create`: name, address, optional email, phone, meter; rates and prices are admin-only."""

    name: Text200
    address: Address
    email: Email | None = None
    phone: Phone | None = None
    meter: MeterIn | None = None
    meter_rate: RateStr | None = None
    kg_rate: RateStr | None = None
    prices: PricesIn | None = None


class CustomerChanges(_Partial):
    """The fields a customer update may carry; contact fields for everyone, the rest for admins."""

    required_if_sent = ("name", "address", "meter_rate", "active")
    name: Text200 | None = None
    address: Address | None = None
    email: Email | None = None
    phone: Phone | None = None
    meter_rate: RateStr | None = None
    kg_rate: RateStr | None = None
    prices: PricesIn | None = None
    active: bool | None = None


class CustomerPatch(CustomerChanges):
    """`PATCH /api/v1/customers/{id}/`: the changed fields and, optionally, the version the client edited."""

    base_version: Id | None = None


class CustomerUpdate(CustomerChanges):
    """`customer.update`: last-write-wins; an older `base_version` is applied and reported as a conflict."""

    references: ClassVar[dict[str, str]] = {"id": "customer"}
    id: Id
    base_version: Id | None = None


class MeterCreate(Command):
    """`POST /api/v1/customers/{id}/meters/`: a meter installed at the site (its first reading is a baseline)."""

    serial: Serial | None = None


class MeterUpdate(_Partial):
    required_if_sent = ("active",)
    serial: Serial | None = None
    active: bool | None = None
