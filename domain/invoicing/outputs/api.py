"""HTTP handlers for invoice outputs: the PDF, e-mailing it, and thermal-printer data. Thin: read, authorize,
render outside any transaction, answer."""

from __future__ import annotations

from base64 import b64encode
from typing import Any

from pydantic import Field, field_validator
from starlette.responses import Response

from domain.api import USER, Ctx, Router
from domain.clock import rfc3339
from domain.invoicing.outputs.escpos import COLUMNS, receipt
from domain.invoicing.outputs.mail import email_invoice
from domain.invoicing.outputs.pdf import invoice_pdf, read_view
from domain.wire import Command, Query

router = Router("invoices")


class EmailInvoice(Command):
    """`to`: where to send it; default the customer's e-mail on the invoice."""

    to: str | None = Field(None, min_length=3, max_length=254)


class PrintQuery(Query):
    """`width`: paper width in mm, 58 (32 columns) or 80 (48 columns)."""

    width: int = 58

    @field_validator("width")
    @classmethod
    def _known_width(cls, value: int) -> int:
        if value not in COLUMNS:
            raise ValueError("must be 58 or 80")
        return value


@router.get("/api/v1/invoices/{id:int}/pdf/", auth=USER, errors=("not_found",), extra_content=("application/pdf",))
def invoice_pdf_view(ctx: Ctx) -> Response:
    """The invoice as a PDF (A4), rendered after commit and cached by content. A driver: own invoices only."""
    rendered = invoice_pdf(ctx.db, ctx.settings, ctx.actor, ctx.path["id"])
    headers = {
        "ETag": rendered.etag,
        "Cache-Control": "private, no-cache",
        "Content-Disposition": f'inline; filename="{rendered.filename}"',
    }
    if ctx.request.headers.get("if-none-match") == rendered.etag:
        return Response(status_code=304, headers=headers)
    return Response(rendered.pdf, media_type="application/pdf", headers=headers)


@router.post(
    "/api/v1/invoices/{id:int}/email/",
    auth=USER,
    body=EmailInvoice,
    body_optional=True,
    errors=("not_found", "validation_error", "email_failed"),
)
def email_invoice_view(ctx: Ctx) -> dict[str, Any]:
    """E-mail the invoice PDF (to `to`, default the customer's address), then mark it emailed."""
    to = ctx.body.to if ctx.body is not None else None
    outcome = email_invoice(ctx.db, ctx.settings, ctx.actor, ctx.path["id"], to)
    invoice = outcome.record
    return {
        "id": invoice.id,
        "number": invoice.number,
        "status": invoice.status,
        "version": invoice.version,
        "emailed_at": rfc3339(invoice.emailed_at),
        "to": to or invoice.customer_email,
    }


@router.get("/api/v1/invoices/{id:int}/print/", auth=USER, query=PrintQuery, errors=("not_found", "validation_error"))
def invoice_print_view(ctx: Ctx) -> dict[str, Any]:
    """The receipt for the tablet's thermal printer: text lines and ESC/POS bytes (base64). Marking it
    printed stays the tablet's mark-printed call."""
    view = read_view(ctx.db, ctx.settings, ctx.actor, ctx.path["id"])
    slip = receipt(view, ctx.query.width)
    return {
        "invoice": {"id": view.id, "number": view.number},
        "width": slip.width,
        "columns": slip.columns,
        "lines": list(slip.lines),
        "escpos": b64encode(slip.escpos).decode("ascii"),
    }
