"""HTTP handlers of the invoicing context: parse, authorize (domain.accounts.policy), call one service, encode.

A driver sees and marks only their own invoices (another driver's is 404); an admin all of them.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import Field
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from domain.accounts.policy import ensure_visible, owner_filter
from domain.api import USER, Ctx, PageQuery, Router, paginate, path_id
from domain.errors import NotFound
from domain.invoicing import services
from domain.invoicing.docs import invoice_doc
from domain.invoicing.models import Invoice
from domain.invoicing.schemas import InvoiceOut, InvoiceResult, MarkPaid, MarkStep
from domain.ledger import flush_all
from domain.sales.timing import day_bounds
from domain.service import Call, Outcome
from domain.wire import MAX_ID

# A filter naming a record by id: within BIGINT (a larger one names nothing and would overflow the driver).
FilterId = Annotated[int, Field(ge=1, le=MAX_ID)]


class Page(PageQuery):
    """`PageQuery` with a bounded `page` (an offset beyond the database's integers is no page at all)."""

    page: int = Field(1, ge=1, le=1_000_000_000)


router = Router("invoicing")
MARK_ERRORS = ("validation_error", "read_only_field", "not_found")


class InvoiceQuery(Page):
    """Filters of `GET /invoices/`; dates are business-day dates (Asia/Singapore) of `issued_at`;
    `unpaid=true` lists those not yet paid, `unpaid=false` the paid ones."""

    customer: FilterId | None = None
    driver: FilterId | None = None
    status: Literal["generated", "printed", "emailed", "paid"] | None = None
    date_from: date | None = None
    date_to: date | None = None
    unpaid: bool | None = None


def _answer(call: Call, outcome: Outcome) -> dict[str, Any]:
    flush_all(call.session)
    body = invoice_doc(call.session, outcome.record)
    body["warnings"] = outcome.warnings
    return body


@router.get("/api/v1/invoices/", query=InvoiceQuery, response=InvoiceOut, auth=USER, errors=("validation_error",))
def list_invoices(ctx: Ctx) -> dict[str, Any]:
    """Invoices, newest first; a driver sees only their own."""
    q: InvoiceQuery = ctx.query
    stmt: Select[Any] = select(Invoice)
    owner = owner_filter(ctx.actor)
    if owner is not None:
        stmt = stmt.where(Invoice.driver_id == owner)
    for column, value in ((Invoice.customer_id, q.customer), (Invoice.driver_id, q.driver), (Invoice.status, q.status)):
        if value is not None:
            stmt = stmt.where(column == value)
    if q.unpaid is not None:
        stmt = stmt.where(Invoice.status != "paid" if q.unpaid else Invoice.status == "paid")
    start, end = day_bounds(q.date_from, q.date_to, ctx.settings.timezone)
    if start is not None:
        stmt = stmt.where(Invoice.issued_at >= start)
    if end is not None:
        stmt = stmt.where(Invoice.issued_at < end)
    stmt = stmt.order_by(Invoice.issued_at.desc(), Invoice.id.desc())
    return ctx.read(lambda s: paginate(ctx, s, stmt, lambda inv: invoice_doc(s, inv), q))


@router.get("/api/v1/invoices/{id:int}/", response=InvoiceOut, auth=USER, errors=("not_found",))
def get_invoice(ctx: Ctx) -> dict[str, Any]:
    """One invoice: lines, subtotal, GST, total, payments and life-cycle events."""

    def read(session: Session) -> dict[str, Any]:
        invoice = session.get(Invoice, path_id(ctx))
        if invoice is None:
            raise NotFound(f"invoice {ctx.path['id']} not found", {"entity": "invoice", "id": path_id(ctx)})
        ensure_visible(ctx.actor, invoice.driver_id, "invoice", invoice.id)
        return invoice_doc(session, invoice)

    return ctx.read(read)


def _occurred_at(ctx: Ctx) -> Any:
    return ctx.body.occurred_at if ctx.body is not None else None


@router.post(
    "/api/v1/invoices/{id:int}/mark-printed/",
    body=MarkStep,
    body_optional=True,
    response=InvoiceResult,
    auth=USER,
    errors=MARK_ERRORS,
)
def mark_printed(ctx: Ctx) -> dict[str, Any]:
    """The invoice was printed (again); the status never moves backwards."""
    return ctx.run(lambda call: _answer(call, services.mark_printed(call, path_id(ctx), _occurred_at(ctx))))


@router.post(
    "/api/v1/invoices/{id:int}/mark-emailed/",
    body=MarkStep,
    body_optional=True,
    response=InvoiceResult,
    auth=USER,
    errors=MARK_ERRORS,
)
def mark_emailed(ctx: Ctx) -> dict[str, Any]:
    """The invoice was e-mailed (again); a paid invoice stays paid."""
    return ctx.run(lambda call: _answer(call, services.mark_emailed(call, path_id(ctx), _occurred_at(ctx))))


@router.post(
    "/api/v1/invoices/{id:int}/mark-paid/", body=MarkPaid, response=InvoiceResult, auth=USER, errors=MARK_ERRORS
)
def mark_paid(ctx: Ctx) -> dict[str, Any]:
    """Record a payment; paid once the payments reach the total (over-payment: warning `overpaid`)."""
    body: MarkPaid = ctx.body
    return ctx.run(
        lambda call: _answer(
            call, services.mark_paid(call, path_id(ctx), body.amount, body.method, body.reference, body.occurred_at)
        )
    )
