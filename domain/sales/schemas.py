"""Validated commands of the sales context (Workflow B). They carry no prices: every price, rate, fee and
amount comes from the catalog and the customer's record on the server (`read_only_field` otherwise).

Records are named by plain integer ids; the sync reconciler substitutes a device's client_temp_ids for
permanent ids before parsing, guided by each command's `references` (field -> entity).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

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

    base_version: Annotated[int, Field(ge=1)] | None = None
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

    id: Id


class TransactionRef(Command):
    """The sync ops `transaction.confirm` and `transaction.cancel`: `{"id"}`."""

    references: ClassVar[dict[str, str]] = {"id": "transaction"}

    id: Id


class MeterReadingCreate(Command):
    """A reading taken without a sale (sync op `meter_reading.create`, `POST /meter-readings/`)."""

    references: ClassVar[dict[str, str]] = {"customer": "customer"}

    customer: Id
    reading: ReadingStr
    occurred_at: Timestamp
