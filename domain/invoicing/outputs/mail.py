"""E-mailing an invoice: a text body and the PDF attached, over SMTP (STARTTLS and login when configured).

Nothing here runs inside a database transaction: the invoice is read in a read-only unit, the PDF rendered,
the message sent, and only then is the invoice marked emailed, in its own short unit of work. A refused or
unreachable SMTP server is `email_failed` (502) with the reason, and the invoice's status does not move.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from sqlalchemy import select

from domain.accounts.models import User
from domain.accounts.policy import Actor
from domain.audit.services import audit
from domain.db import Database
from domain.errors import EmailFailed, NotFound, ValidationError
from domain.invoicing import services as invoicing
from domain.invoicing.models import Invoice, InvoiceEvent
from domain.invoicing.outputs.pdf import RenderedInvoice, invoice_pdf
from domain.invoicing.outputs.render import InvoiceView
from domain.service import Call, Outcome
from domain.settings import Settings

log = logging.getLogger("lpg.outputs.mail")

ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"\\]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
SMTP_TIMEOUT_SECONDS = 20


def valid_address(address: str) -> bool:
    """One plain address (no display name, no header tricks): `name@example.sg`."""
    return len(address) <= 254 and bool(ADDRESS.match(address))


def body_text(view: InvoiceView) -> str:
    lines = [
        f"Dear {view.customer_name},",
        "",
        f"Please find attached tax invoice {view.number} ({view.issued_at}) for transaction {view.transaction_number}.",
        "",
        f"Total: SGD {view.total}",
        f"Paid: SGD {view.amount_paid}",
        f"Balance due: SGD {view.balance}",
        "",
        f"Pay by PayNow to UEN {view.paynow_uen} with reference {view.paynow_reference}.",
        "",
        "Thank you for your business.",
        view.company_name,
        view.company_address,
        f"GST Reg. No. {view.gst_reg_no}",
    ]
    return "\n".join(lines) + "\n"


def build_message(
    settings: Settings,
    rendered: RenderedInvoice,
    to: str,
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """The message; `message_id` fixed by the caller (the outbox's, the same on every attempt) or a new one."""
    view = rendered.view
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = f"Tax invoice {view.number} from {settings.company_name}"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id or make_msgid(domain=settings.mail_from.rpartition("@")[2] or None)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body_text(view))
    message.add_attachment(rendered.pdf, maintype="application", subtype="pdf", filename=rendered.filename)
    return message


def deliver(settings: Settings, message: EmailMessage) -> None:
    """Hand the message to the configured SMTP server, or raise `email_failed` saying why."""
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            refused = smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        reason = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise EmailFailed(
            "the mail server refused the message",
            {"reason": reason, "smtp_code": exc.smtp_code, "server": settings.smtp_host},
        ) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        reasons = {to: f"{code} {msg.decode(errors='replace')}" for to, (code, msg) in exc.recipients.items()}
        raise EmailFailed("the mail server refused the recipient", {"reason": reasons}) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise EmailFailed(
            "the mail server could not be reached",
            {"reason": f"{type(exc).__name__}: {exc}", "server": f"{settings.smtp_host}:{settings.smtp_port}"},
        ) from exc
    if refused:
        raise EmailFailed("the mail server refused a recipient", {"reason": {k: str(v) for k, v in refused.items()}})


def mark_emailed(db: Database, settings: Settings, actor: Actor, invoice_id: int) -> Outcome:
    """The invoicing context's `mark_emailed` in its own unit of work, after the message has left."""
    return db.run(lambda uow: invoicing.mark_emailed(Call(uow.session, actor, settings), invoice_id))


def email_invoice(db: Database, settings: Settings, actor: Actor, invoice_id: int, to: str | None = None) -> Outcome:
    """Send the invoice (to `to`, else the customer's address on the invoice) and mark it emailed."""
    rendered = invoice_pdf(db, settings, actor, invoice_id)
    recipient = to or rendered.view.customer_email
    if not recipient:
        raise ValidationError("the invoice has no customer e-mail address: give 'to'", "to")
    if not valid_address(recipient):
        raise ValidationError("'to' is not an e-mail address", "to")
    deliver(settings, build_message(settings, rendered, recipient))
    log.info("invoice %s e-mailed to %s", rendered.view.number, recipient)
    return mark_emailed(db, settings, actor, invoice_id)


# -- automatic e-mail after confirm (LPG_AUTO_EMAIL) -------------------------------------------------------
#
# A confirm writes an outbox row in its own transaction; the sender in every server process sends it
# (domain.invoicing.outbox). The helpers below are what the sender uses.


def invoice_owner(db: Database, invoice_id: int) -> Actor:
    """Automatic e-mails act for the invoice's driver (the one whose confirm issued it)."""

    def read(session: Any) -> Actor:
        row = session.execute(
            select(User.id, User.username, User.role)
            .join(Invoice, Invoice.driver_id == User.id)
            .where(Invoice.id == invoice_id)
        ).first()
        if row is None:
            raise NotFound(f"invoice {invoice_id} not found", {"entity": "invoice", "id": invoice_id})
        return Actor(row.id, row.username, row.role)

    return db.read(read)


def record_email_failure(call: Call, invoice_id: int, reason: str, to: str | None) -> None:
    """An automatic e-mail that failed for good: an `email_failed` event and its audit entry; the status stays."""
    invoice = call.session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found", {"entity": "invoice", "id": invoice_id})
    detail = f"to {to or '-'}: {reason}"[:2000]
    invoice.events.append(InvoiceEvent(kind="email_failed", at=call.now, actor_id=call.actor.id, detail=detail))
    audit(
        call.session, call.actor.id, call.device_id, "email_failed", "invoice", invoice,
        after={"number": invoice.number, "to": to, "reason": reason[:500]},
    )  # fmt: skip
