"""REST representations of transactions and meter readings, also the `doc` of their change-feed entries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.catalog import lookups
from domain.catalog.models import EquipmentModel, Service
from domain.clock import rfc3339
from domain.invoicing.models import Invoice
from domain.money import decimal_str, money_str
from domain.sales.models import MeterReading, Transaction


def _meta(row: Any) -> dict[str, Any]:
    return {"id": row.id, "version": row.version, "last_modified": rfc3339(row.last_modified)}


def _code(session: Session, model: Any, record_id: int) -> str:
    found = lookups.held(session, model, record_id)
    return str(found.code) if found is not None else str(record_id)


def invoice_ref(invoice: Invoice | None) -> dict[str, Any] | None:
    """How a transaction names its invoice: `{"id", "number", "status"}`."""
    if invoice is None:
        return None
    return {"id": invoice.id, "number": invoice.number, "status": invoice.status}


def invoice_of(session: Session, transaction_id: int) -> Invoice | None:
    return session.execute(select(Invoice).where(Invoice.transaction_id == transaction_id)).scalar_one_or_none()


def transaction_doc(session: Session, t: Transaction, invoice: Invoice | None = None) -> dict[str, Any]:
    """A transaction with its lines and amounts. Amounts of a draft are a preview at today's prices; a
    confirmed transaction's are those of its invoice. A confirmed one names its invoice."""
    if invoice is None and t.status == "confirmed":
        invoice = invoice_of(session, t.id)
    meter = None
    if t.meter_reading is not None:
        meter = {
            "reading": decimal_str(t.meter_reading),
            "usage": decimal_str(t.usage),
            "amount": money_str(t.usage_amount),
        }
    return {
        **_meta(t),
        "number": t.number,
        "status": t.status,
        "customer": t.customer_id,
        "truck": t.truck_id,
        "driver": t.driver_id,
        "occurred_at": rfc3339(t.occurred_at),
        "created_at": rfc3339(t.created_at),
        "confirmed_at": rfc3339(t.confirmed_at),
        "cancelled_at": rfc3339(t.cancelled_at),
        "meter": meter,
        "deliveries": [
            {
                "equipment": _code(session, EquipmentModel, d.equipment_id),
                "kind": d.kind,
                "qty": d.qty,
                "remaining_kg": decimal_str(d.remaining_kg),
                "unit_price": decimal_str(d.unit_price),
                "amount": money_str(d.amount),
            }
            for d in t.deliveries
        ],
        "services": [
            {
                "code": _code(session, Service, s.service_id),
                "qty": s.qty,
                "unit_price": money_str(s.unit_price),
                "amount": money_str(s.amount),
            }
            for s in t.services
        ],
        "subtotal": money_str(t.subtotal),
        "gst": money_str(t.gst),
        "total": money_str(t.total),
        "invoice": invoice_ref(invoice),
        "device_id": t.device_id,
    }


def meter_reading_doc(r: MeterReading) -> dict[str, Any]:
    """A recorded reading: with or without a sale (`transaction` null when taken on its own)."""
    return {
        **_meta(r),
        "customer": r.customer_id,
        "meter": r.meter_id,
        "reading": decimal_str(r.reading),
        "previous_reading": decimal_str(r.previous_reading),
        "usage": decimal_str(r.usage),
        "occurred_at": rfc3339(r.occurred_at),
        "recorded_at": rfc3339(r.recorded_at),
        "driver": r.driver_id,
        "transaction": r.transaction_id,
        "device_id": r.device_id,
    }
