"""Invoices: issued when a transaction is confirmed, then generated -> printed -> emailed -> paid.

- An invoice is a snapshot: customer name, address, e-mail, every line's price and amount, the GST rate.
  Later changes to prices or to the customer never alter it.
- The status never moves backwards. Printing or e-mailing again is allowed: each repeat is recorded as an
  event with its time, actor and device, and a paid invoice stays paid. `printed_at` / `emailed_at` /
  `paid_at` keep the first time the step was reached.
- Payments add up; the invoice is paid when their sum reaches the total. A payment is never refused for its
  amount (it may have been taken offline): an over-payment is recorded, the invoice is paid, and the result
  carries the warning `overpaid` with the credit.
- Drivers act on their own invoices only (another driver's is `not_found`); admins on all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from domain.accounts.policy import ensure_visible
from domain.audit.services import audit
from domain.catalog.models import Customer
from domain.errors import NotFound, ValidationError
from domain.feed.services import number_for, record_change
from domain.invoicing.docs import invoice_doc
from domain.invoicing.models import INVOICE_STATUSES, PAYMENT_METHODS, Invoice, InvoiceEvent, InvoiceLine, Payment
from domain.invoicing.schemas import InvoiceStep
from domain.ledger import SharedDoc, Staged, row_ref, stage, write_late
from domain.money import money_str, to_money
from domain.sales.docs import transaction_doc
from domain.sales.models import Transaction
from domain.sales.planning import MAX_AMOUNT
from domain.sales.pricing import PricedLine, Totals
from domain.sales.timing import check_occurred_at
from domain.service import Call, Outcome, warning

INVOICES: Table = Invoice.__table__  # type: ignore[assignment]
INVOICE_LINES: Table = InvoiceLine.__table__  # type: ignore[assignment]
write_late(INVOICE_LINES)  # a push writes an invoice's lines with its locked writes
RANK = {status: rank for rank, status in enumerate(INVOICE_STATUSES)}


def issue_invoice(
    call: Call, trx: Transaction | Staged, customer: Customer, lines: Sequence[PricedLine], sums: Totals
) -> Staged:
    """Create the invoice of a transaction being confirmed (its INV number after the TRX number).

    Called by `confirm` after every check passed: it only writes. The invoice and its lines are staged
    rows (`domain.ledger.Staged`), written with the batch's other invoices by one INSERT per table."""
    session = call.session
    invoice = stage(
        session,
        INVOICES,
        {
            "number": number_for(session, "INV", call.now, call.settings.timezone, INVOICES.c.number),
            "transaction_id": row_ref(trx),
            "customer_id": customer.id,
            "driver_id": trx.driver_id,
            "status": "generated",
            "issued_at": call.now,
            "customer_name": customer.name,
            "customer_address": customer.address or "",
            "customer_email": customer.email,
            "subtotal": sums.subtotal,
            "gst_rate": sums.gst_rate,
            "gst": sums.gst,
            "total": sums.total,
            "amount_paid": Decimal("0.00"),
            "printed_at": None,
            "printed_by": None,
            "emailed_at": None,
            "emailed_by": None,
            "paid_at": None,
            "paid_by": None,
            "version": 1,
            "last_modified": call.now,
        },
    )
    invoice.lines = [
        stage(
            session,
            INVOICE_LINES,
            {
                "invoice_id": invoice,
                "position": position,
                "kind": line.kind,
                "code": line.code,
                "description": line.description,
                "qty": line.qty,
                "unit_price": line.unit_price,
                "amount": line.amount,
            },
        )
        for position, line in enumerate(lines, start=1)
    ]
    invoice.transaction, invoice.payments, invoice.events = trx, [], []  # what its document reads
    doc = SharedDoc(invoice, lambda: invoice_doc(session, invoice))  # type: ignore[arg-type]
    audit(
        session, call.actor.id, call.device_id, "create", "invoice", invoice,
        after=doc, transaction=lambda: trx.id, **call.audit_context(),
    )  # fmt: skip
    record_change(session, "invoice", invoice, doc=doc, scope=invoice.driver_id)
    return invoice


def invoice_id_for_transaction(session: Session, transaction_id: int) -> int:
    """The invoice of a confirmed transaction (a tablet that printed offline only knows the transaction)."""
    found = session.execute(select(Invoice.id).where(Invoice.transaction_id == transaction_id)).scalar_one_or_none()
    if found is None:
        raise NotFound(
            f"transaction {transaction_id} has no invoice (it does not exist or is not confirmed)",
            {"entity": "transaction", "id": transaction_id},
        )
    return int(found)


def invoice_id_of(session: Session, cmd: InvoiceStep) -> int:
    """The invoice a sync `invoice.mark_*` change names, directly or through its transaction."""
    if cmd.invoice is not None:
        return cmd.invoice
    assert cmd.transaction is not None, "validated by the schema"
    return invoice_id_for_transaction(session, cmd.transaction)


def _locked_invoice(call: Call, invoice_id: int) -> Invoice:
    """The invoice, row-locked until the commit; another driver's is `not_found` like a missing one."""
    session = call.session
    session.flush()  # populate_existing must not overwrite this unit's unflushed changes
    invoice = session.execute(
        select(Invoice).where(Invoice.id == invoice_id).with_for_update().execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found", {"entity": "invoice", "id": invoice_id})
    ensure_visible(call.actor, invoice.driver_id, "invoice", invoice_id)
    return invoice


def _advance(call: Call, invoice: Invoice, status: str) -> None:
    """Move forward to `status`, never backwards. The transaction's representation names its invoice's
    status, so the transaction is touched and re-published too (its doc stays current in the feed)."""
    if RANK[status] <= RANK[invoice.status]:
        return
    invoice.status = status
    session = call.session
    trx = session.get(Transaction, invoice.transaction_id)
    if trx is not None:
        trx.touch(call.now)
        record_change(
            session, "transaction", trx, doc=lambda: transaction_doc(session, trx, invoice), scope=trx.driver_id
        )


def _record_step(call: Call, invoice: Invoice, kind: str, occurred_at: datetime | None, detail: str | None) -> None:
    """Every step and every repeat is an event with its time, actor and device; the invoice changes."""
    session = call.session
    invoice.events.append(
        InvoiceEvent(
            kind=kind,
            at=call.now,
            occurred_at=occurred_at,
            actor_id=call.actor.id,
            device_id=call.device_id,
            detail=detail,
        )
    )
    invoice.touch(call.now)
    session.flush()
    record_change(session, "invoice", invoice, doc=lambda: invoice_doc(session, invoice), scope=invoice.driver_id)


def _mark(call: Call, invoice_id: int, step: str, occurred_at: datetime | None) -> Outcome:
    if occurred_at is not None:
        check_occurred_at(call, occurred_at)
    invoice = _locked_invoice(call, invoice_id)
    # -- nothing above this line writes --
    before = invoice_doc(call.session, invoice)
    first = getattr(invoice, f"{step}_at") is None
    if first:
        setattr(invoice, f"{step}_at", call.now)
        setattr(invoice, f"{step}_by", call.actor.id)
    _advance(call, invoice, step)
    _record_step(call, invoice, step, occurred_at, None if first else "repeat")
    audit(
        call.session, call.actor.id, call.device_id, f"mark_{step}", "invoice", invoice,
        before=before, after=lambda: invoice_doc(call.session, invoice), repeat=not first, **call.audit_context(),
    )  # fmt: skip
    return Outcome("invoice", invoice)


def mark_printed(call: Call, invoice_id: int, occurred_at: datetime | None = None) -> Outcome:
    """The invoice was printed (again): generated -> printed; a later status is kept."""
    return _mark(call, invoice_id, "printed", occurred_at)


def mark_emailed(call: Call, invoice_id: int, occurred_at: datetime | None = None) -> Outcome:
    """The invoice was e-mailed (again): -> emailed unless already paid."""
    return _mark(call, invoice_id, "emailed", occurred_at)


def mark_paid(
    call: Call,
    invoice_id: int,
    amount: Decimal,
    method: str,
    reference: str | None = None,
    occurred_at: datetime | None = None,
) -> Outcome:
    """Record a payment; the invoice is paid once the payments reach its total (over-payment: `overpaid`)."""
    if isinstance(amount, float) or not isinstance(amount, Decimal | int):
        raise ValidationError("'amount' must be a decimal amount", "amount")
    if amount <= 0 or to_money(amount) != amount:
        raise ValidationError("'amount' must be positive with at most 2 decimal places", "amount")
    if amount > MAX_AMOUNT:
        raise ValidationError(f"'amount' may not exceed {MAX_AMOUNT}", "amount")
    if method not in PAYMENT_METHODS:
        raise ValidationError(f"'method' must be one of {', '.join(PAYMENT_METHODS)}", "method")
    if reference is not None and len(reference) > 100:
        raise ValidationError("'reference' is at most 100 characters", "reference")
    if occurred_at is not None:
        check_occurred_at(call, occurred_at)
    invoice = _locked_invoice(call, invoice_id)
    if invoice.amount_paid + amount > MAX_AMOUNT:
        raise ValidationError(f"the payments of an invoice may not exceed {MAX_AMOUNT}", "amount")
    # -- nothing above this line writes --
    session = call.session
    before = invoice_doc(session, invoice)
    payment = Payment(
        amount=to_money(amount),
        method=method,
        reference=reference,
        occurred_at=occurred_at or call.now,
        recorded_at=call.now,
        recorded_by=call.actor.id,
        device_id=call.device_id,
    )
    invoice.payments.append(payment)
    invoice.amount_paid = to_money(invoice.amount_paid + payment.amount)
    warnings = []
    if invoice.amount_paid >= invoice.total and invoice.paid_at is None:
        invoice.paid_at = call.now
        invoice.paid_by = call.actor.id
    if invoice.amount_paid >= invoice.total:
        _advance(call, invoice, "paid")
    if invoice.amount_paid > invoice.total:
        credit = invoice.amount_paid - invoice.total
        warnings.append(
            warning(
                "overpaid",
                f"invoice {invoice.number} is overpaid by {money_str(credit)}: kept as the customer's credit",
                invoice=invoice.id,
                total=money_str(invoice.total),
                amount_paid=money_str(invoice.amount_paid),
                credit=money_str(credit),
            )
        )
    _record_step(call, invoice, "payment", occurred_at, f"{money_str(payment.amount)} {method}")
    audit(
        session, call.actor.id, call.device_id, "mark_paid", "invoice", invoice,
        before=before, after=lambda: invoice_doc(session, invoice),
        payment={"amount": money_str(payment.amount), "method": method, "reference": reference},
        **call.audit_context(),
    )  # fmt: skip
    return Outcome("invoice", invoice, warnings=warnings)
