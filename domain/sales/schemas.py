"""Validated commands of the sales context (Workflow B). They carry no prices: every price, rate, fee and
amount comes from the catalog and the customer's record on the server (`read_only_field` otherwise).

Records are named by plain integer ids; the sync reconciler substitutes a device's client_temp_ids for
permanent ids before parsing, guided by each command's `references` (field -> entity).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.wire import CodeOrId, Command, Id, KgStr, Qty, ReadingStr, Timestamp

DeliveryKind = Literal["full_deliver", "empty_return", "half_return"]
MAX_LINES = 100


class MeterIn(Command):
    """The meter reading taken at the visit; usage is against the meter's last recorded reading."""

    reading: ReadingStr


class DeliveryIn(Command):
    """Cylinders: `full_deliver` (sold), `empty_return` (collected empty), `half_return` (collected part-used,
    `remaining_kg` is the gas left in all `qty` cylinders of the line together, credited at the kg rate)."""

    equipment: CodeOrId
    kind: DeliveryKind
    qty: Qty
    remaining_kg: KgStr | None = None

    @model_validator(mode="after")
    def _remaining_kg_only_for_half_returns(self) -> DeliveryIn:
        if self.kind == "half_return" and self.remaining_kg is None:
            raise ValueError("remaining_kg is required for a half_return")
        if self.kind != "half_return" and self.remaining_kg is not None:
            raise ValueError("remaining_kg is only for a half_return")
        return self


class ServiceIn(Command):
    """A fixed fee from the service catalog, named by its code (or id)."""

    code: CodeOrId
    qty: Qty = 1


Deliveries = Annotated[list[DeliveryIn], Field(max_length=MAX_LINES)]
Services = Annotated[list[ServiceIn], Field(max_length=MAX_LINES)]


class TransactionCreate(Command):
    """A visit to one customer with one truck; `confirm: true` confirms in the same unit (tablets do)."""

    references: ClassVar[dict[str, str]] = {"customer": "customer", "truck": "truck"}
    read_only: ClassVar[frozenset[str]] = frozenset({"id"})  # the server gives a new record its id

    customer: Id
    truck: Id
    occurred_at: Timestamp
    meter: MeterIn | None = None
    deliveries: Deliveries = Field(default_factory=list)
    services: Services = Field(default_factory=list)
    confirm: bool = False


class TransactionPatch(Command):
    """The REST body of `PATCH /transactions/{id}/`: the changed fields of a draft; lists replace whole.
    `meter: null` removes the draft's meter reading. `base_version` (optional over REST) is the version
    the client edited: an older one is still applied (last write wins) and reported as a conflict."""

    references: ClassVar[dict[str, str]] = {"customer": "customer", "truck": "truck"}
    read_only: ClassVar[frozenset[str]] = frozenset({"id"})  # over REST the id is in the path

    base_version: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    customer: Id | None = None
    truck: Id | None = None
    occurred_at: Timestamp | None = None
    meter: MeterIn | None = None
    deliveries: Deliveries | None = None
    services: Services | None = None

    def changed(self) -> set[str]:
        """The fields the client sent (an explicit `null` counts: it clears the meter)."""
        return set(self.model_fields_set) - {"id", "base_version"}


class TransactionUpdate(TransactionPatch):
    """The sync op `transaction.update`: `id`, `base_version` and the changed fields (drafts only)."""

    references: ClassVar[dict[str, str]] = {"id": "transaction", "customer": "customer", "truck": "truck"}
    read_only: ClassVar[frozenset[str]] = frozenset()

    id: Id


class TransactionRef(Command):
    """The sync ops `transaction.confirm` and `transaction.cancel`: `{"id"}`."""

    references: ClassVar[dict[str, str]] = {"id": "transaction"}

    id: Id


class MeterReadingCreate(Command):
    """A reading taken without a sale (sync op `meter_reading.create`, `POST /meter-readings/`)."""

    references: ClassVar[dict[str, str]] = {"customer": "customer"}
    read_only: ClassVar[frozenset[str]] = frozenset({"id"})

    customer: Id
    reading: ReadingStr
    occurred_at: Timestamp


# -- what the API answers (REST detail == change-feed doc; `docs.py` builds them) ----------------------

Money = Annotated[str, Field(pattern=r"^-?\d+\.\d{2}$", examples=["25.50"])]
Decimal4 = Annotated[str, Field(pattern=r"^-?\d+\.\d{2,4}$", examples=["3.2000"])]
Time = Annotated[str, Field(description="RFC 3339, UTC, microseconds", examples=["2026-11-24T03:15:30.123456Z"])]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WarningOut(Out):
    code: str = Field(examples=["negative_site_inventory"])
    message: str
    details: dict[str, Any]


class MeterOut(Out):
    reading: Decimal4
    usage: Decimal4 | None = Field(description="since the meter's last recorded reading (first reading: 0)")
    amount: Money | None = Field(description="usage x the customer's meter rate")


class DeliveryOut(Out):
    equipment: str = Field(examples=["CYL12.7"])
    kind: DeliveryKind
    qty: int
    remaining_kg: Decimal4 | None
    unit_price: Decimal4 | None = Field(description="per cylinder; per kg (negative: a credit) for half_return")
    amount: Money | None


class ServiceLineOut(Out):
    code: str = Field(examples=["INSTALL"])
    qty: int
    unit_price: Money | None
    amount: Money | None


class InvoiceRef(Out):
    id: int
    number: str = Field(examples=["INV-2026-000001"])
    status: Literal["generated", "printed", "emailed", "paid"]


class TransactionOut(Out):
    """A transaction: amounts of a draft are a preview; a confirmed one names its invoice."""

    id: int
    version: int
    last_modified: Time
    number: str | None = Field(examples=["TRX-2026-000001"])
    status: Literal["draft", "confirmed", "cancelled"]
    customer: int
    truck: int
    driver: int
    occurred_at: Time
    created_at: Time
    confirmed_at: Time | None
    cancelled_at: Time | None
    meter: MeterOut | None
    deliveries: list[DeliveryOut]
    services: list[ServiceLineOut]
    subtotal: Money | None
    gst: Money | None
    total: Money | None
    invoice: InvoiceRef | None
    device_id: str | None


class ConflictOut(Out):
    base_version: int
    overwritten_version: int
    policy: Literal["last_write_wins"]


class TransactionResult(TransactionOut):
    """The answer to a create, update, confirm or cancel: the transaction, its warnings and any conflict."""

    warnings: list[WarningOut]
    conflict: ConflictOut | None = None


class MeterReadingOut(Out):
    id: int
    version: int
    last_modified: Time
    customer: int
    meter: int
    reading: Decimal4
    previous_reading: Decimal4 | None
    usage: Decimal4
    occurred_at: Time
    recorded_at: Time
    driver: int
    transaction: int | None = Field(description="null for a reading taken without a sale")
    device_id: str | None
