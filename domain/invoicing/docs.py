"""The REST representation of an invoice, also the `doc` of its change-feed entries."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from domain.clock import rfc3339
from domain.invoicing.models import Invoice
from domain.money import decimal_str, money_str


def balance_of(invoice: Invoice) -> Any:
    """What is still owed (negative: a credit the customer has with us)."""
    return invoice.total - (invoice.amount_paid or 0)


def invoice_doc(session: Session, inv: Invoice) -> dict[str, Any]:
    """An invoice: the snapshot taken at issue (customer, lines, subtotal, GST, total), the payments, and
    every life-cycle step with its time and actor (repeats included)."""
    trx = inv.transaction
    events = inv.events
    return {
        "id": inv.id,
        "version": inv.version,
        "last_modified": rfc3339(inv.last_modified),
        "number": inv.number,
        "status": inv.status,
        "transaction": {"id": inv.transaction_id, "number": trx.number if trx is not None else None},
        "customer": inv.customer_id,
        "driver": inv.driver_id,
        "issued_at": rfc3339(inv.issued_at),
        "customer_name": inv.customer_name,
        "customer_address": inv.customer_address,
        "customer_email": inv.customer_email,
        "lines": [
            {
                "position": line.position,
                "kind": line.kind,
                "code": line.code,
                "description": line.description,
                "qty": decimal_str(line.qty),
                "unit_price": decimal_str(line.unit_price),
                "amount": money_str(line.amount),
            }
            for line in inv.lines
        ],
        "subtotal": money_str(inv.subtotal),
        "gst_rate": decimal_str(inv.gst_rate),
        "gst": money_str(inv.gst),
        "total": money_str(inv.total),
        "amount_paid": money_str(inv.amount_paid),
        "balance": money_str(balance_of(inv)),
        "printed_at": rfc3339(inv.printed_at),
        "printed_by": inv.printed_by,
        "emailed_at": rfc3339(inv.emailed_at),
        "emailed_by": inv.emailed_by,
        "paid_at": rfc3339(inv.paid_at),
        "paid_by": inv.paid_by,
        "payments": [
            {
                "id": p.id,
                "amount": money_str(p.amount),
                "method": p.method,
                "reference": p.reference,
                "occurred_at": rfc3339(p.occurred_at),
                "recorded_at": rfc3339(p.recorded_at),
                "recorded_by": p.recorded_by,
                "device_id": p.device_id,
            }
            for p in inv.payments
        ],
        "events": [
            {
                "kind": e.kind,
                "at": rfc3339(e.at),
                "occurred_at": rfc3339(e.occurred_at),
                "actor": e.actor_id,
                "device_id": e.device_id,
                "detail": e.detail,
            }
            for e in events
        ],
    }
