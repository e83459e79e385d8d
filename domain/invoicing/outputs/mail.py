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
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
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
AUTO_EMAIL_ATTEMPTS = 3
AUTO_EMAIL_BACKOFF_SECONDS = 2.0


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


def build_message(settings: Settings, rendered: RenderedInvoice, to: str) -> EmailMessage:
    view = rendered.view
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = f"Tax invoice {view.number} from {settings.company_name}"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2] or None)
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
# The queue is this process's memory: a thread pool and the jobs it holds. A restart while a job waits for
# its next attempt loses that e-mail; the invoice then simply stays `generated` (nothing half-done is
# recorded) and can be sent again with POST /api/v1/invoices/{id}/email/.

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_pending: set[Future[bool]] = set()


def _background() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lpg-auto-email")
        return _executor


def pending() -> list[Future[bool]]:
    """The automatic e-mails submitted and not finished yet."""
    with _executor_lock:
        return list(_pending)


def drain(timeout: float | None = 120) -> None:
    """Wait until every automatic e-mail submitted so far has finished (tests, and an orderly shutdown)."""
    for future in pending():
        future.exception(timeout=timeout)  # waits; never raises the job's own error


def _forget(future: Future[bool]) -> None:
    with _executor_lock:
        _pending.discard(future)


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


def auto_email(
    db: Database,
    settings: Settings,
    invoice_id: int,
    *,
    attempts: int = AUTO_EMAIL_ATTEMPTS,
    backoff: float | None = None,
) -> bool:
    """E-mail a just-confirmed invoice, retrying a failed send; the outcome is recorded either way
    (`emailed` through mark_emailed, or an `email_failed` event). Returns whether it was sent."""
    pause = AUTO_EMAIL_BACKOFF_SECONDS if backoff is None else backoff
    try:
        actor = invoice_owner(db, invoice_id)
    except Exception:
        log.exception("automatic e-mail of invoice %s: the invoice could not be read", invoice_id)
        return False
    to: str | None = None
    try:
        rendered = invoice_pdf(db, settings, actor, invoice_id)
    except Exception as exc:
        log.exception("automatic e-mail of invoice %s: the PDF could not be rendered", invoice_id)
        reason = f"the PDF could not be rendered: {type(exc).__name__}: {exc}"
        attempts = 0
    else:
        to = rendered.view.customer_email or None
        reason = "the customer has no e-mail address" if not to else ""
        if to and not valid_address(to):
            to, reason = None, f"not an e-mail address: {rendered.view.customer_email!r}"
    for attempt in range(1, attempts + 1):
        if not to:
            break
        try:
            deliver(settings, build_message(settings, rendered, to))
        except EmailFailed as exc:
            reason = f"{exc.message}: {exc.details.get('reason')}"
            log.warning(
                "automatic e-mail of %s failed (attempt %d of %d): %s", rendered.view.number, attempt, attempts, reason
            )
        except Exception as exc:  # a bug rather than the server: still recorded, never lost in the future
            reason = f"{type(exc).__name__}: {exc}"
            log.exception("automatic e-mail of %s failed (attempt %d of %d)", rendered.view.number, attempt, attempts)
        else:
            try:
                mark_emailed(db, settings, actor, invoice_id)
            except Exception:
                # The message has left: recording email_failed now would be false. Say so loudly instead.
                log.exception("invoice %s was e-mailed to %s but could not be marked emailed", invoice_id, to)
            else:
                log.info("invoice %s e-mailed automatically to %s", rendered.view.number, to)
            return True
        if attempt < attempts:
            time.sleep(pause * attempt)
    db.run(lambda uow: record_email_failure(Call(uow.session, actor, settings), invoice_id, reason, to))
    return False


def _auto_email_logged(db: Database, settings: Settings, invoice_id: int) -> bool:
    """auto_email in the background: nobody reads the future in production, so no error may vanish in it."""
    try:
        return auto_email(db, settings, invoice_id)
    except Exception:
        log.exception("automatic e-mail of invoice %s: the outcome could not be recorded", invoice_id)
        raise


def after_confirm(db: Database, settings: Settings, invoice_id: int, *, wait: bool = False) -> Future[bool] | None:
    """Hook for after a confirm's commit (never inside it, never holding a lock): when LPG_AUTO_EMAIL is on,
    e-mail the new invoice in the background. Returns the background job (or None when the setting is off
    or the job could not be queued). Never raises: the confirm it follows has already succeeded."""
    if not settings.auto_email:
        return None
    try:
        future = _background().submit(_auto_email_logged, db, settings, invoice_id)
    except RuntimeError:  # the pool is shut down: the interpreter is exiting
        log.warning("automatic e-mail of invoice %s not queued: shutting down", invoice_id)
        return None
    with _executor_lock:
        _pending.add(future)
    future.add_done_callback(_forget)
    if wait:
        future.exception()
    return future


def after_confirms(db: Database, settings: Settings, invoice_ids: list[int]) -> list[Future[bool]]:
    """after_confirm for each invoice a committed batch issued (the sync reconciler's hook)."""
    jobs = (after_confirm(db, settings, invoice_id) for invoice_id in invoice_ids)
    return [job for job in jobs if job is not None]
