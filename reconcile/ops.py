"""The 14 sync operations: each maps to exactly one domain service call, the same one REST uses.

An op names its entity, the command class that validates its `data`, and how to call the service. The
command's `references` tell which fields may name another record by a device's client_temp_id; the batch
substitutes permanent ids before the command is parsed. Services are imported on first use.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, ClassVar, Literal

from pydantic import model_validator

from domain.service import Call, Outcome
from domain.wire import Command, Id, MoneyStr, Timestamp


class RecordId(Command):
    """`{"id": ...}` for confirm and cancel."""

    id: Id


class DistributionId(RecordId):
    references: ClassVar[dict[str, str]] = {"id": "distribution"}


class TransactionId(RecordId):
    references: ClassVar[dict[str, str]] = {"id": "transaction"}


class InvoiceMark(Command):
    """An invoice named by its id, or by its transaction (a tablet that printed offline never learned the
    invoice's id), and when it happened on the device."""

    invoice: Id | None = None
    transaction: Id | None = None
    occurred_at: Timestamp | None = None
    references: ClassVar[dict[str, str]] = {"invoice": "invoice", "transaction": "transaction"}

    @model_validator(mode="after")
    def _one_of(self) -> InvoiceMark:
        if (self.invoice is None) == (self.transaction is None):
            raise ValueError("give exactly one of 'invoice' or 'transaction'")
        return self


class InvoicePayment(InvoiceMark):
    amount: MoneyStr
    method: Literal["cash", "cheque", "paynow", "bank_transfer"]
    reference: str | None = None


@functools.cache
def _symbol(path: str) -> Any:
    """A service named `module:function`, imported on first use (the domain modules import this package's
    neighbours) and then held: one dictionary lookup per change."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _invoice_id(call: Call, cmd: InvoiceMark) -> int:
    if cmd.invoice is not None:
        return cmd.invoice
    assert cmd.transaction is not None
    return int(_symbol("domain.invoicing.services:invoice_id_for_transaction")(call.session, cmd.transaction))


def _mark(service: str) -> Callable[[Call, Any], Outcome]:
    def run(call: Call, cmd: InvoiceMark) -> Outcome:
        return _symbol(service)(call, _invoice_id(call, cmd), occurred_at=cmd.occurred_at)  # type: ignore[no-any-return]

    return run


def _pay(call: Call, cmd: InvoicePayment) -> Outcome:
    service = _symbol("domain.invoicing.services:mark_paid")
    outcome: Outcome = service(
        call, _invoice_id(call, cmd), Decimal(cmd.amount), cmd.method, cmd.reference, occurred_at=cmd.occurred_at
    )
    return outcome


def _by_id(service: str) -> Callable[[Call, Any], Outcome]:
    def run(call: Call, cmd: RecordId) -> Outcome:
        return _symbol(service)(call, cmd.id)  # type: ignore[no-any-return]

    return run


def _with_command(service: str) -> Callable[[Call, Any], Outcome]:
    def run(call: Call, cmd: Command) -> Outcome:
        return _symbol(service)(call, cmd)  # type: ignore[no-any-return]

    return run


@dataclass(frozen=True)
class Op:
    name: str
    entity: str
    command: str | type[Command]  # "module:Class" or the class
    run: Callable[[Call, Any], Outcome]

    @property
    def command_class(self) -> type[Command]:
        return _command_class(self.command)


@cache
def _command_class(command: str | type[Command]) -> type[Command]:
    return command if isinstance(command, type) else _symbol(command)


OPS: dict[str, Op] = {
    op.name: op
    for op in (
        Op(
            "customer.create",
            "customer",
            "domain.catalog.schemas:CustomerCreate",
            _with_command("domain.catalog.services:create_customer"),
        ),
        Op(
            "customer.update",
            "customer",
            "domain.catalog.schemas:CustomerUpdate",
            _with_command("domain.catalog.services:update_customer"),
        ),
        Op(
            "meter_reading.create",
            "meter_reading",
            "domain.sales.schemas:MeterReadingCreate",
            _with_command("domain.sales.services:record_meter_reading"),
        ),
        Op(
            "distribution.create",
            "distribution",
            "domain.logistics.schemas:DistributionCreate",
            _with_command("domain.logistics.services:create_distribution"),
        ),
        Op(
            "distribution.update",
            "distribution",
            "domain.logistics.schemas:DistributionUpdate",
            _with_command("domain.logistics.services:update_distribution"),
        ),
        Op(
            "distribution.confirm",
            "distribution",
            DistributionId,
            _by_id("domain.logistics.services:confirm_distribution"),
        ),
        Op(
            "distribution.cancel",
            "distribution",
            DistributionId,
            _by_id("domain.logistics.services:cancel_distribution"),
        ),
        Op(
            "transaction.create",
            "transaction",
            "domain.sales.schemas:TransactionCreate",
            _with_command("domain.sales.services:create_transaction"),
        ),
        Op(
            "transaction.update",
            "transaction",
            "domain.sales.schemas:TransactionUpdate",
            _with_command("domain.sales.services:update_transaction"),
        ),
        Op("transaction.confirm", "transaction", TransactionId, _by_id("domain.sales.services:confirm_transaction")),
        Op("transaction.cancel", "transaction", TransactionId, _by_id("domain.sales.services:cancel_transaction")),
        Op("invoice.mark_printed", "invoice", InvoiceMark, _mark("domain.invoicing.services:mark_printed")),
        Op("invoice.mark_emailed", "invoice", InvoiceMark, _mark("domain.invoicing.services:mark_emailed")),
        Op("invoice.mark_paid", "invoice", InvoicePayment, _pay),
    )
}


def references_of(op: Op) -> dict[str, str]:
    """Fields of this op's data that may name a record by temp id, and the entity they must name."""
    return _references(op.command)


@cache
def _references(command: str | type[Command]) -> dict[str, str]:
    # Held once per command class: a missing class attribute goes through pydantic's slow metaclass lookup.
    refs: dict[str, str] = getattr(_command_class(command), "references", {})
    return refs
