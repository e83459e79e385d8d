"""The reports' queries: read-only, on committed data, the same on SQLite and MariaDB.

Each returns `{"report", "generated_at", "columns", "rows", "totals", ...}`; `rows` are flat dicts whose
keys are `columns`, so the CSV form is exactly the JSON rows.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import column, func, select, table
from sqlalchemy.orm import Session

from domain.accounts.models import Device, User
from domain.catalog.models import Customer, Depot, EquipmentModel, Truck
from domain.clock import rfc3339, zone
from domain.feed.services import current_seq
from domain.invoicing.models import Invoice
from domain.logistics.models import DepotStock, SiteStock, TruckStock
from domain.money import ZERO, decimal_str, money_str
from domain.reports.schemas import OutstandingRow, SalesRow, StockRow, SyncRow
from domain.sales.models import DeliveryLine, Transaction

# The reconciler's rejection list, read by name: `domain` may not import `reconcile` (layering), and a
# report only counts rows.
_rejections = table("sync_rejections", column("device_id"), column("resolved_at"))


def _columns(model: type[Any]) -> list[str]:
    return list(model.model_fields)


def stock_report(session: Session, now: datetime) -> dict[str, Any]:
    """Every depot, truck and site row, then per model the conservation total over all places.

    Apart from explicit admin adjustments no operation changes a model's total, so comparing two
    reports' totals shows whether cylinders appeared or vanished in between."""
    codes = dict(session.execute(select(EquipmentModel.id, EquipmentModel.code).order_by(EquipmentModel.id)).all())
    depots = dict(session.execute(select(Depot.id, Depot.code)).all())
    trucks = dict(session.execute(select(Truck.id, Truck.plate)).all())
    customers = dict(session.execute(select(Customer.id, Customer.name)).all())
    totals: dict[str, int] = dict.fromkeys(codes.values(), 0)
    rows: list[dict[str, Any]] = []
    for d in session.scalars(select(DepotStock).order_by(DepotStock.depot_id, DepotStock.equipment_id)):
        rows.append(_stock_row("depot", d.depot_id, depots.get(d.depot_id, ""), codes[d.equipment_id], d.full, d.empty))
    for t in session.scalars(select(TruckStock).order_by(TruckStock.truck_id, TruckStock.equipment_id)):
        rows.append(_stock_row("truck", t.truck_id, trucks.get(t.truck_id, ""), codes[t.equipment_id], t.full, t.empty))
    for s in session.scalars(select(SiteStock).order_by(SiteStock.customer_id, SiteStock.equipment_id)):
        name = customers.get(s.customer_id, "")
        rows.append(_stock_row("site", s.customer_id, name, codes[s.equipment_id], None, None, s.on_site))
    for row in rows:
        totals[row["equipment"]] += row["total"]
    for code, total in totals.items():
        rows.append(_stock_row("total", None, "all places", code, None, None, None, total))
    return {
        "report": "stock",
        "generated_at": rfc3339(now),
        "columns": _columns(StockRow),
        "rows": rows,
        "totals": totals,
    }


def _stock_row(
    place: str,
    holder_id: int | None,
    holder: str,
    code: str,
    full: int | None,
    empty: int | None,
    on_site: int | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    count = total if total is not None else (full or 0) + (empty or 0) + (on_site or 0)
    return {
        "place": place,
        "holder_id": holder_id,
        "holder": holder,
        "equipment": code,
        "full": full,
        "empty": empty,
        "on_site": on_site,
        "total": count,
    }


def business_bounds(date_from: date | None, date_to: date | None, tz_name: str) -> tuple[datetime | None, ...]:
    """Inclusive business days in the business time zone -> a half-open UTC interval."""
    tz = zone(tz_name)
    start = datetime.combine(date_from, time(), tz).astimezone(UTC) if date_from else None
    end = datetime.combine(date_to + timedelta(days=1), time(), tz).astimezone(UTC) if date_to else None
    return start, end


def sales_report(
    session: Session, now: datetime, tz_name: str, group_by: str, date_from: date | None, date_to: date | None
) -> dict[str, Any]:
    """Confirmed transactions only (their invoices carry the same amounts), grouped by the business day of
    the visit (`occurred_at` in the business time zone), by driver or by customer."""
    start, end = business_bounds(date_from, date_to, tz_name)
    where = [Transaction.status == "confirmed"]
    if start is not None:
        where.append(Transaction.occurred_at >= start)
    if end is not None:
        where.append(Transaction.occurred_at < end)
    sales = session.execute(
        select(
            Transaction.id,
            Transaction.occurred_at,
            Transaction.driver_id,
            Transaction.customer_id,
            Transaction.usage,
            Transaction.subtotal,
            Transaction.gst,
            Transaction.total,
        )
        .where(*where)
        .order_by(Transaction.id)
    ).all()
    quantities: dict[int, dict[str, int]] = defaultdict(dict)
    for trx_id, kind, qty in session.execute(
        select(DeliveryLine.transaction_id, DeliveryLine.kind, func.sum(DeliveryLine.qty))
        .join(Transaction, Transaction.id == DeliveryLine.transaction_id)
        .where(*where)
        .group_by(DeliveryLine.transaction_id, DeliveryLine.kind)
    ):
        quantities[trx_id][kind] = int(qty)
    tz = zone(tz_name)
    names = _group_names(session, group_by)
    groups: dict[Any, _Sum] = {}
    grand = _Sum()
    for sale in sales:
        if group_by == "day":
            key: Any = sale.occurred_at.astimezone(tz).date()
        else:
            key = sale.driver_id if group_by == "driver" else sale.customer_id
        for acc in (groups.setdefault(key, _Sum()), grand):
            acc.add(sale, quantities.get(sale.id, {}))
    rows = [
        groups[key].row(key.isoformat() if group_by == "day" else str(key), _name(group_by, key, names))
        for key in sorted(groups)
    ]
    return {
        "report": "sales",
        "generated_at": rfc3339(now),
        "group_by": group_by,
        "date_from": date_from.isoformat() if date_from else None,
        "date_to": date_to.isoformat() if date_to else None,
        "columns": _columns(SalesRow),
        "rows": rows,
        "totals": grand.row("total", "all"),
    }


def _group_names(session: Session, group_by: str) -> dict[int, str]:
    if group_by == "driver":
        return dict(session.execute(select(User.id, User.username)).all())
    if group_by == "customer":
        return dict(session.execute(select(Customer.id, Customer.name)).all())
    return {}


def _name(group_by: str, key: Any, names: dict[int, str]) -> str:
    return key.strftime("%A") if group_by == "day" else names.get(key, "")


class _Sum:
    def __init__(self) -> None:
        self.count = 0
        self.usage = Decimal(0)
        self.qty = {"full_deliver": 0, "empty_return": 0, "half_return": 0}
        self.subtotal = self.gst = self.total = ZERO

    def add(self, sale: Any, qty: dict[str, int]) -> None:
        self.count += 1
        self.usage += sale.usage or 0
        for kind, n in qty.items():
            self.qty[kind] = self.qty.get(kind, 0) + n
        self.subtotal += sale.subtotal or ZERO
        self.gst += sale.gst or ZERO
        self.total += sale.total or ZERO

    def row(self, key: str, name: str) -> dict[str, Any]:
        return {
            "key": key,
            "name": name,
            "transactions": self.count,
            "usage": decimal_str(self.usage),
            "full_delivered": self.qty["full_deliver"],
            "empty_returned": self.qty["empty_return"],
            "half_returned": self.qty["half_return"],
            "subtotal": money_str(self.subtotal),
            "gst": money_str(self.gst),
            "total": money_str(self.total),
        }


def outstanding_report(
    session: Session, now: datetime, tz_name: str, customer: int | None, driver: int | None
) -> dict[str, Any]:
    """Invoices not fully paid (amount paid below the total), oldest first, with their age in business days."""
    stmt = select(Invoice).where(Invoice.amount_paid < Invoice.total)
    if customer is not None:
        stmt = stmt.where(Invoice.customer_id == customer)
    if driver is not None:
        stmt = stmt.where(Invoice.driver_id == driver)
    tz = zone(tz_name)
    today = now.astimezone(tz).date()
    rows = []
    balance_sum = ZERO
    for inv in session.scalars(stmt.order_by(Invoice.issued_at, Invoice.id)):
        balance = inv.total - inv.amount_paid
        balance_sum += balance
        rows.append(
            {
                "id": inv.id,
                "number": inv.number,
                "issued_at": rfc3339(inv.issued_at),
                "status": inv.status,
                "customer_id": inv.customer_id,
                "customer_name": inv.customer_name,
                "driver_id": inv.driver_id,
                "total": money_str(inv.total),
                "amount_paid": money_str(inv.amount_paid),
                "balance": money_str(balance),
                "age_days": (today - inv.issued_at.astimezone(tz).date()).days,
            }
        )
    return {
        "report": "outstanding_invoices",
        "generated_at": rfc3339(now),
        "columns": _columns(OutstandingRow),
        "rows": rows,
        "totals": {"invoices": len(rows), "balance": money_str(balance_sum) or "0.00"},
    }


def sync_report(session: Session, now: datetime) -> dict[str, Any]:
    """Every device: its user, last push and pull, how far behind the feed it is, and its change counts."""
    seq = current_seq(session)
    open_counts: dict[str, int] = dict(
        session.execute(
            select(_rejections.c.device_id, func.count())
            .where(_rejections.c.resolved_at.is_(None))
            .group_by(_rejections.c.device_id)
        ).all()
    )
    rows: list[dict[str, Any]] = []
    for device, username in session.execute(
        select(Device, User.username).join(User, User.id == Device.user_id).order_by(Device.device_id)
    ):
        rows.append(
            {
                "device_id": device.device_id,
                "user_id": device.user_id,
                "username": username,
                "first_seen": rfc3339(device.first_seen),
                "last_push_at": rfc3339(device.last_push_at),
                "last_pull_at": rfc3339(device.last_pull_at),
                "last_pulled_seq": device.last_pulled_seq,
                "lag": max(seq - (device.last_pulled_seq or 0), 0),
                "applied": device.applied_count,
                "duplicates": device.duplicate_count,
                "rejected": device.rejected_count,
                "open_rejections": int(open_counts.get(device.device_id, 0)),
                "app_version": device.app_version,
                "clock_skew_ms": device.clock_skew_ms,
            }
        )
    return {
        "report": "sync",
        "generated_at": rfc3339(now),
        "current_seq": seq,
        "columns": _columns(SyncRow),
        "rows": rows,
        "totals": {
            "devices": len(rows),
            "rejected": sum(r["rejected"] for r in rows),
            "open_rejections": sum(r["open_rejections"] for r in rows),
            "max_lag": max((r["lag"] for r in rows), default=0),
        },
    }
