"""Helpers for the sales and invoicing tests: service calls as a given user, payloads, stock and trace
snapshots. Demo data: driver1 = user 2, driver2 = user 3, admin = user 1; trucks 1-3 with 20 full of each
model; customers 1-5 with one meter each (no reading yet); CYL9/CYL12.7/CYL14/CYL50 = ids 1-4."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import func, select, text

from domain.accounts.policy import Actor
from domain.db import Database
from domain.logistics.models import SiteStock, TruckStock
from domain.sales.schemas import TransactionCreate
from domain.service import Call, Outcome
from domain.wire import parse

T = TypeVar("T")
ADMIN = Actor(1, "admin", "admin")
DRIVER1 = Actor(2, "driver1", "driver")
DRIVER2 = Actor(3, "driver2", "driver")
CODES = {1: "CYL9", 2: "CYL12.7", 3: "CYL14", 4: "CYL50"}
TRACE_TABLES = (
    "transactions",
    "delivery_lines",
    "service_lines",
    "invoices",
    "invoice_lines",
    "meter_readings",
    "meters",
    "audit_log",
    "change_feed",
    "payments",
    "invoice_events",
)


def when(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def run(db: Database, work: Callable[[Call], T], actor: Actor = DRIVER1, **call_kw: Any) -> T:
    """One service call in its own committed unit of work, as `actor`."""
    return db.run(lambda uow: work(Call(uow.session, actor, db.settings, **call_kw)))


def sale_payload(
    customer: int = 1,
    truck: int = 1,
    *,
    meter: str | None = None,
    deliveries: list[dict[str, Any]] | None = None,
    services: list[dict[str, Any]] | None = None,
    confirm: bool = True,
    occurred_at: str | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "customer": customer,
        "truck": truck,
        "occurred_at": occurred_at or when(),
        "confirm": confirm,
        "deliveries": deliveries or [],
        "services": services or [],
    }
    if meter is not None:
        payload["meter"] = {"reading": meter}
    return payload


def sale(**kwargs: Any) -> TransactionCreate:
    cmd: TransactionCreate = parse(TransactionCreate, sale_payload(**kwargs))
    return cmd


def sell(db: Database, actor: Actor = DRIVER1, **kwargs: Any) -> Outcome:
    from domain.sales.services import create_transaction

    cmd = sale(**kwargs)
    return run(db, lambda call: create_transaction(call, cmd), actor)


def full(code: str, qty: int) -> dict[str, Any]:
    return {"equipment": code, "kind": "full_deliver", "qty": qty}


def empty(code: str, qty: int) -> dict[str, Any]:
    return {"equipment": code, "kind": "empty_return", "qty": qty}


def half(code: str, qty: int, kg: str) -> dict[str, Any]:
    return {"equipment": code, "kind": "half_return", "qty": qty, "remaining_kg": kg}


def truck_stock(db: Database, truck: int = 1) -> dict[str, tuple[int, int]]:
    rows = db.read(lambda s: s.scalars(select(TruckStock).where(TruckStock.truck_id == truck)).all())
    return {CODES[r.equipment_id]: (r.full, r.empty) for r in rows}


def site_stock(db: Database, customer: int = 1) -> dict[str, int]:
    rows = db.read(lambda s: s.scalars(select(SiteStock).where(SiteStock.customer_id == customer)).all())
    return {CODES[r.equipment_id]: r.on_site for r in rows}


def all_stock(db: Database) -> dict[tuple[str, int, int], tuple[int, ...]]:
    """Every stock row's quantities (rows at zero are the same as absent ones)."""

    def read(session: Any) -> dict[tuple[str, int, int], tuple[int, ...]]:
        out: dict[tuple[str, int, int], tuple[int, ...]] = {}
        for r in session.scalars(select(TruckStock)):
            if r.full or r.empty:
                out[("truck", r.truck_id, r.equipment_id)] = (r.full, r.empty)
        for s in session.scalars(select(SiteStock)):
            if s.on_site:
                out[("site", s.customer_id, s.equipment_id)] = (s.on_site,)
        return out

    return db.read(read)


def traces(db: Database) -> dict[str, Any]:
    """Row counts of everything a sale writes, plus the number counters and the stock quantities."""

    def read(session: Any) -> dict[str, Any]:
        out: dict[str, Any] = {t: session.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in TRACE_TABLES}
        out["counters"] = dict(session.execute(text("SELECT name, value FROM counters ORDER BY name")).all())
        out["meter_last"] = [
            str(v) for v in session.execute(text("SELECT last_reading FROM meters ORDER BY id")).scalars()
        ]
        return out

    result = db.read(read)
    result["stock"] = all_stock(db)
    return result


def count(db: Database, model: Any, *where: Any) -> int:
    return db.read(lambda s: s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def money(text_value: str) -> Decimal:
    return Decimal(text_value)
