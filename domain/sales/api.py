"""HTTP handlers of the sales context: parse, authorize (domain.accounts.policy), call one service, encode.

A driver sees and changes only their own transactions and meter readings (another driver's is 404); an
admin sees and changes all. The detail representation is exactly the change feed's `doc`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import Field
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from domain.accounts.policy import ensure_visible, owner_filter
from domain.api import USER, Ctx, PageQuery, Router, paginate, path_id
from domain.ledger import flush_all
from domain.sales import services
from domain.sales.docs import meter_reading_doc, transaction_doc
from domain.sales.models import MeterReading, Transaction
from domain.sales.planning import not_found
from domain.sales.schemas import (
    MeterReadingCreate,
    MeterReadingOut,
    TransactionCreate,
    TransactionOut,
    TransactionPatch,
    TransactionResult,
    TransactionUpdate,
)
from domain.sales.timing import day_bounds
from domain.service import Call, Outcome
from domain.wire import MAX_ID, parse

# A filter naming a record by id: within BIGINT (a larger one names nothing and would overflow the driver).
FilterId = Annotated[int, Field(ge=1, le=MAX_ID)]


class Page(PageQuery):
    """`PageQuery` with a bounded `page` (an offset beyond the database's integers is no page at all)."""

    page: int = Field(1, ge=1, le=1_000_000_000)


router = Router("sales")

TRANSACTION_ERRORS = (
    "validation_error",
    "read_only_field",
    "not_found",
    "invalid_state",
    "insufficient_stock",
    "meter_regression",
)


class TransactionQuery(Page):
    """Filters of `GET /transactions/`; dates are business-day dates (Asia/Singapore) of `occurred_at`."""

    customer: FilterId | None = None
    driver: FilterId | None = None
    truck: FilterId | None = None
    status: Literal["draft", "confirmed", "cancelled"] | None = None
    date_from: date | None = None
    date_to: date | None = None


class MeterReadingQuery(Page):
    """Filters of `GET /meter-readings/`; dates are business-day dates of `occurred_at`."""

    customer: FilterId | None = None
    driver: FilterId | None = None
    date_from: date | None = None
    date_to: date | None = None


def _answer(call: Call, outcome: Outcome) -> dict[str, Any]:
    """The record's representation, plus the outcome's warnings (and conflict, for an update)."""
    flush_all(call.session)
    body = transaction_doc(call.session, outcome.record, outcome.related.get("invoice"))
    body["warnings"] = outcome.warnings
    if outcome.conflict is not None:
        body["conflict"] = outcome.conflict
    return body


@router.get(
    "/api/v1/transactions/", query=TransactionQuery, response=TransactionOut, auth=USER, errors=("validation_error",)
)
def list_transactions(ctx: Ctx) -> dict[str, Any]:
    """Transactions, newest visit first; a driver sees only their own."""
    q: TransactionQuery = ctx.query
    stmt: Select[Any] = select(Transaction)
    owner = owner_filter(ctx.actor)
    if owner is not None:
        stmt = stmt.where(Transaction.driver_id == owner)
    for column, value in (
        (Transaction.customer_id, q.customer),
        (Transaction.driver_id, q.driver),
        (Transaction.truck_id, q.truck),
        (Transaction.status, q.status),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    start, end = day_bounds(q.date_from, q.date_to, ctx.settings.timezone)
    if start is not None:
        stmt = stmt.where(Transaction.occurred_at >= start)
    if end is not None:
        stmt = stmt.where(Transaction.occurred_at < end)
    stmt = stmt.order_by(Transaction.occurred_at.desc(), Transaction.id.desc())
    return ctx.read(lambda s: paginate(ctx, s, stmt, lambda t: transaction_doc(s, t), q))


@router.post(
    "/api/v1/transactions/",
    body=TransactionCreate,
    response=TransactionResult,
    auth=USER,
    status=201,
    errors=TRANSACTION_ERRORS,
)
def create_transaction(ctx: Ctx) -> dict[str, Any]:
    """Record a visit as a draft, or confirmed at once (`confirm: true`) with its invoice."""
    return ctx.run(lambda call: _answer(call, services.create_transaction(call, ctx.body)))


def _visible_transaction(ctx: Ctx, session: Session) -> Transaction:
    trx = session.get(Transaction, path_id(ctx))
    if trx is None:
        raise not_found("transaction", path_id(ctx))
    ensure_visible(ctx.actor, trx.driver_id, "transaction", trx.id)
    return trx


@router.get("/api/v1/transactions/{id:int}/", response=TransactionOut, auth=USER, errors=("not_found",))
def get_transaction(ctx: Ctx) -> dict[str, Any]:
    """One transaction with its lines, amounts and (once confirmed) its invoice."""
    return ctx.read(lambda s: transaction_doc(s, _visible_transaction(ctx, s)))


@router.patch(
    "/api/v1/transactions/{id:int}/",
    response=TransactionResult,
    body=TransactionPatch,
    auth=USER,
    errors=TRANSACTION_ERRORS,
)
def update_transaction(ctx: Ctx) -> dict[str, Any]:
    """Change a draft's fields (lists replace whole); confirmed and cancelled ones are `invalid_state`."""
    cmd = parse(TransactionUpdate, {**(ctx.payload or {}), "id": path_id(ctx)})  # the body was validated as a patch
    return ctx.run(lambda call: _answer(call, services.update_transaction(call, cmd)))


@router.post(
    "/api/v1/transactions/{id:int}/confirm/",
    response=TransactionResult,
    auth=USER,
    body_optional=True,
    errors=TRANSACTION_ERRORS,
)
def confirm_transaction(ctx: Ctx) -> dict[str, Any]:
    """Confirm a draft: stock moves, the meter reading is recorded, the invoice is issued."""
    return ctx.run(lambda call: _answer(call, services.confirm_transaction(call, path_id(ctx))))


@router.post(
    "/api/v1/transactions/{id:int}/cancel/",
    response=TransactionResult,
    auth=USER,
    body_optional=True,
    errors=("not_found", "invalid_state"),
)
def cancel_transaction(ctx: Ctx) -> dict[str, Any]:
    """Cancel a draft (a confirmed transaction stays: `invalid_state`)."""
    return ctx.run(lambda call: _answer(call, services.cancel_transaction(call, path_id(ctx))))


@router.get(
    "/api/v1/meter-readings/",
    query=MeterReadingQuery,
    response=MeterReadingOut,
    auth=USER,
    errors=("validation_error",),
)
def list_meter_readings(ctx: Ctx) -> dict[str, Any]:
    """Meter readings, newest first; a driver sees only their own."""
    q: MeterReadingQuery = ctx.query
    stmt: Select[Any] = select(MeterReading)
    owner = owner_filter(ctx.actor)
    if owner is not None:
        stmt = stmt.where(MeterReading.driver_id == owner)
    if q.customer is not None:
        stmt = stmt.where(MeterReading.customer_id == q.customer)
    if q.driver is not None:
        stmt = stmt.where(MeterReading.driver_id == q.driver)
    start, end = day_bounds(q.date_from, q.date_to, ctx.settings.timezone)
    if start is not None:
        stmt = stmt.where(MeterReading.occurred_at >= start)
    if end is not None:
        stmt = stmt.where(MeterReading.occurred_at < end)
    stmt = stmt.order_by(MeterReading.occurred_at.desc(), MeterReading.id.desc())
    return ctx.read(lambda s: paginate(ctx, s, stmt, meter_reading_doc, q))


@router.post(
    "/api/v1/meter-readings/",
    body=MeterReadingCreate,
    response=MeterReadingOut,
    auth=USER,
    status=201,
    errors=("validation_error", "read_only_field", "not_found", "invalid_state", "meter_regression"),
)
def create_meter_reading(ctx: Ctx) -> dict[str, Any]:
    """Record a reading taken without a sale (a new meter's baseline, a check)."""

    def work(call: Call) -> dict[str, Any]:
        outcome = services.record_meter_reading(call, ctx.body)
        flush_all(call.session)
        return meter_reading_doc(outcome.record)

    return ctx.run(work)


@router.get("/api/v1/meter-readings/{id:int}/", response=MeterReadingOut, auth=USER, errors=("not_found",))
def get_meter_reading(ctx: Ctx) -> dict[str, Any]:
    """One meter reading."""

    def read(session: Session) -> dict[str, Any]:
        reading = session.get(MeterReading, path_id(ctx))
        if reading is None:
            raise not_found("meter_reading", path_id(ctx))
        ensure_visible(ctx.actor, reading.driver_id, "meter_reading", reading.id)
        return meter_reading_doc(reading)

    return ctx.read(read)
