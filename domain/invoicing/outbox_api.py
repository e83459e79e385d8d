"""Admin endpoints of the invoice e-mail outbox: see what waits, what was sent, what failed, and retry."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.api import ADMIN, Ctx, PageQuery, Router, paginate, path_id
from domain.invoicing import outbox
from domain.invoicing.models import EmailOutbox, Invoice

router = Router("outbox")


class OutboxQuery(PageQuery):
    """`status`: only rows in that state; `invoice`: the row of one invoice. Newest first."""

    status: Literal["pending", "sent", "failed"] | None = None
    invoice: int | None = Field(None, ge=1, le=2**63 - 1)


class OutboxOut(BaseModel):
    """One invoice e-mail. `pending` with a `leased_until` in the future: a sender is sending it now;
    `pending` with attempts > 0: waiting for its next try at `next_attempt_at` (see `last_error`);
    `failed`: every try failed, an `email_failed` event is on the invoice; POST .../retry/ sends it again."""

    model_config = ConfigDict(extra="forbid")

    id: int
    invoice: int
    invoice_number: str | None
    message_id: str = Field(description="fixed per invoice: every try and any resend carries it")
    status: Literal["pending", "sent", "failed"]
    attempts: int
    next_attempt_at: str | None
    leased_until: str | None
    last_error: str | None
    created_at: str | None
    sent_at: str | None
    sent_by: str | None = Field(description="the server process that sent it (host/pid)")


def _doc(session: Session) -> Any:
    def serialize(item: EmailOutbox) -> dict[str, Any]:
        number = session.execute(select(Invoice.number).where(Invoice.id == item.invoice_id)).scalar()
        return outbox.outbox_doc(item, number)

    return serialize


@router.get("/api/v1/outbox/", query=OutboxQuery, response=OutboxOut, auth=ADMIN, errors=("validation_error",))
def list_outbox(ctx: Ctx) -> dict[str, Any]:
    """The invoice e-mails (LPG_AUTO_EMAIL), newest first (admins only)."""
    query: OutboxQuery = ctx.query
    stmt = select(EmailOutbox).order_by(EmailOutbox.id.desc())
    if query.status is not None:
        stmt = stmt.where(EmailOutbox.status == query.status)
    if query.invoice is not None:
        stmt = stmt.where(EmailOutbox.invoice_id == query.invoice)
    return ctx.read(lambda s: paginate(ctx, s, stmt, _doc(s), query))


@router.post(
    "/api/v1/outbox/{id:int}/retry/",
    response=OutboxOut,
    auth=ADMIN,
    body_optional=True,
    errors=("not_found", "invalid_state"),
)
def retry_outbox(ctx: Ctx) -> dict[str, Any]:
    """Send a failed invoice e-mail again (same Message-ID, a fresh count of tries); admins only."""

    def work(call: Any) -> dict[str, Any]:
        item = outbox.retry(call, path_id(ctx)).record
        call.session.flush()
        return _doc(call.session)(item)

    return ctx.run(work)
