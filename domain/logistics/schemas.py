"""Logistics commands: distributions (Workflow A) and admin stock adjustments.

References to other records are plain integer ids; `references` names, for the sync reconciler, which
fields name which entity (it substitutes a device's temp ids with permanent ids before parsing).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from domain.errors import ValidationError
from domain.wire import CodeOrId, Command, Id, Qty, Timestamp

MovementType = Literal["collection", "empty_return"]
Place = Literal["depot", "truck", "site"]


def _signed_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


Delta = Annotated[int, BeforeValidator(_signed_int), Field(ge=-1_000_000, le=1_000_000)]


class DistributionItemIn(Command):
    """One line: `collection` (depot full -> truck full) or `empty_return` (truck empty -> depot empty)."""

    equipment: CodeOrId
    movement_type: MovementType
    qty: Qty


Items = Annotated[list[DistributionItemIn], Field(min_length=1, max_length=200)]


class DistributionCreate(Command):
    """`distribution.create` / `POST /api/v1/distributions/`: a pending draft, or confirmed at once."""

    references: ClassVar[dict[str, str]] = {"depot": "depot", "truck": "truck"}
    depot: Id
    truck: Id
    items: Items
    confirm: bool = False
    occurred_at: Timestamp | None = None


class DistributionPatch(Command):
    """`PATCH /api/v1/distributions/{id}/` (pending only): new items (replacing all), depot or truck."""

    base_version: Id | None = None
    depot: Id | None = None
    truck: Id | None = None
    items: Items | None = None


class DistributionUpdate(DistributionPatch):
    """`distribution.update`: last-write-wins like every update; confirmed or cancelled is `invalid_state`."""

    references: ClassVar[dict[str, str]] = {"id": "distribution", "depot": "depot", "truck": "truck"}
    id: Id


class DistributionRef(Command):
    """`distribution.confirm` / `distribution.cancel`: which distribution."""

    references: ClassVar[dict[str, str]] = {"id": "distribution"}
    id: Id


class StockAdjustmentCreate(Command):
    """`POST /api/v1/stock/adjustments/` (admin): signed deltas on one stock row, with a reason.

    Depot and truck rows take `full_delta` / `empty_delta`, a customer site `on_site_delta`; the holder is
    named by `depot`, `truck` or `customer` according to `place`.
    """

    place: Place
    depot: Id | None = None
    truck: Id | None = None
    customer: Id | None = None
    equipment: CodeOrId
    full_delta: Delta = 0
    empty_delta: Delta = 0
    on_site_delta: Delta = 0
    reason: Annotated[str, Field(min_length=1, max_length=1000)]

    @model_validator(mode="after")
    def _fits_the_place(self) -> StockAdjustmentCreate:
        holder = {"depot": "depot", "truck": "truck", "site": "customer"}[self.place]
        for name in ("depot", "truck", "customer"):
            given = getattr(self, name) is not None
            if name == holder and not given:
                raise ValidationError(f"place '{self.place}' needs '{holder}'", holder)
            if name != holder and given:
                raise ValidationError(f"'{name}' does not apply to place '{self.place}'", name)
        if self.place == "site":
            if self.full_delta or self.empty_delta:
                raise ValidationError(
                    "a customer site holds on_site cylinders: use on_site_delta",
                    "full_delta" if self.full_delta else "empty_delta",
                )
            if not self.on_site_delta:
                raise ValidationError("on_site_delta may not be 0", "on_site_delta")
        else:
            if self.on_site_delta:
                raise ValidationError(
                    f"a {self.place} holds full and empty cylinders: use full_delta / empty_delta", "on_site_delta"
                )
            if not (self.full_delta or self.empty_delta):
                raise ValidationError("full_delta and empty_delta may not both be 0", "full_delta")
        return self

    @property
    def holder(self) -> int:
        value = {"depot": self.depot, "truck": self.truck, "site": self.customer}[self.place]
        assert value is not None
        return value
